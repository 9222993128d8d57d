"""The softmax policy in torch, written once: clip -> encode -> MLP -> softmax heads.

One forward-pass definition serves training, acting and export:

- :class:`ObsEncoder` turns the graph's raw observation row into features: Box and
  MultiBinary columns are clipped (and normalised while training), Discrete and
  MultiDiscrete columns one-hot encoded (an ``Equal`` against the category values).
- :func:`build_mlp` is the network; :func:`action_heads` turns its logits into the three
  outputs (per-head softmax, greedy action, inverse-CDF sample, plus the action ``start``).
- :class:`SoftmaxPolicy` (training) = encoder with running normalisation + MLP;
  :class:`DeployablePolicy` (export, and acting through
  :class:`~pgdeploy.training.rollout.ActingNet`) is the same function with the
  statistics fixed (:func:`network_from_policy`'s numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from pgdeploy.layout import ObsLayout
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.spec import FLOAT32_MAX, PolicySpec

_VAR_EPS = 1e-8


def build_mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int) -> nn.Sequential:
    """Linear -> ReLU -> ... -> Linear: the seed article's net for ``hidden_sizes=(128,)``."""
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


def sample_actions(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sample, the contract of :mod:`pgdeploy.runtime.sampling`.

    ``probs`` (n, A), ``uniform`` (n, 1) -> int64 (n,): how many of the first A-1 cumulative
    sums are <= u. The cumulative sums are a matmul with an upper-triangular ones matrix:
    one ONNX node instead of Slice + CumSum, with float32 accumulation like the reference.
    """
    n_actions = probs.shape[-1]
    upper = torch.ones(n_actions, n_actions - 1, dtype=probs.dtype, device=probs.device).triu()
    cdf = probs @ upper
    return (cdf <= uniform).sum(dim=-1)


def action_heads(
    logits: torch.Tensor, uniform: torch.Tensor, nvec: list[int], start: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(probs, greedy, sampled) from logits (n, sum(nvec)) and uniforms (n, len(nvec)).

    One softmax per head; actions are the env's own values (``start`` added). One head
    (Discrete) gives actions of shape (n,), several (MultiDiscrete) (n, heads).
    """
    if len(nvec) == 1:
        probs = torch.softmax(logits, dim=-1)
        greedy = probs.argmax(dim=-1)
        sampled = sample_actions(probs, uniform)
        if start[0] != 0:
            greedy = greedy + start[0]
            sampled = sampled + start[0]
        return probs, greedy, sampled
    heads: list[torch.Tensor] = []
    greedy_heads: list[torch.Tensor] = []
    sampled_heads: list[torch.Tensor] = []
    offset = 0
    for index, n in enumerate(nvec):
        probs = torch.softmax(logits[:, offset : offset + n], dim=-1)
        heads.append(probs)
        greedy_heads.append(probs.argmax(dim=-1) + start[index])
        sampled_heads.append(sample_actions(probs, uniform[:, index : index + 1]) + start[index])
        offset += n
    return torch.cat(heads, dim=1), torch.stack(greedy_heads, 1), torch.stack(sampled_heads, 1)


def log_prob_entropy(
    logits: torch.Tensor, actions: torch.Tensor, nvec: list[int], start: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(a|s) (n,) and the policy's entropy (n,), summed over heads (independent)."""
    actions = actions.reshape(len(actions), -1)
    log_prob = torch.zeros(len(logits), dtype=logits.dtype)
    entropy = torch.zeros(len(logits), dtype=logits.dtype)
    offset = 0
    for index, n in enumerate(nvec):
        logp = torch.log_softmax(logits[:, offset : offset + n], dim=-1)
        chosen = (actions[:, index] - start[index]).unsqueeze(1)
        log_prob = log_prob + logp.gather(1, chosen).squeeze(1)
        entropy = entropy - (logp.exp() * logp).sum(dim=-1)
        offset += n
    return log_prob, entropy


class ObsEncoder(nn.Module):
    """Raw observation rows (n, obs_dim) -> MLP features (n, n_features).

    Features are ``[continuous columns, one-hot columns]``: the continuous (Box,
    MultiBinary) columns clipped to ``[low, high]`` and, when ``mean``/``std`` are given,
    standardised; then one 0/1 feature per category of each Discrete/MultiDiscrete value
    (``raw[:, column] == value``). A plain 1-D Box skips the column selection, so its graph
    is clip -> MLP as before.
    """

    def __init__(self, layout: ObsLayout) -> None:
        super().__init__()
        self.select = not layout.plain and len(layout.onehot_columns) > 0
        self.n_continuous = len(layout.continuous_columns)
        self.has_onehot = len(layout.onehot_columns) > 0
        cont = torch.tensor(layout.continuous_columns, dtype=torch.long)
        self.register_buffer("continuous_columns", cont, persistent=False)
        onehot = torch.tensor(layout.onehot_columns, dtype=torch.long)
        self.register_buffer("onehot_columns", onehot, persistent=False)
        values = torch.tensor(layout.onehot_values, dtype=torch.float32)
        self.register_buffer("onehot_values", values, persistent=False)

    def forward(
        self,
        obs: torch.Tensor,
        low: torch.Tensor,
        high: torch.Tensor,
        mean: Optional[torch.Tensor] = None,  # noqa: UP045 (TorchScript needs Optional)
        std: Optional[torch.Tensor] = None,  # noqa: UP045
    ) -> torch.Tensor:
        onehot = obs
        if self.has_onehot:
            picked = obs.index_select(1, self.onehot_columns)  # type: ignore[arg-type]
            onehot = torch.eq(picked, self.onehot_values).to(obs.dtype)  # type: ignore[arg-type]
            if self.n_continuous == 0:
                return onehot
        x = obs.index_select(1, self.continuous_columns) if self.select else obs  # type: ignore[arg-type]
        x = torch.minimum(torch.maximum(x, low), high)
        if mean is not None and std is not None:
            x = (x - mean) / std
        if self.has_onehot:
            x = torch.cat([x, onehot], dim=1)
        return x


def clip_bounds(spec: PolicySpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of the continuous columns as float32, infinite ones replaced by float32's max."""
    columns = spec.obs_layout.continuous_columns
    low = [max(spec.obs_low[c], -FLOAT32_MAX) for c in columns]
    high = [min(spec.obs_high[c], FLOAT32_MAX) for c in columns]
    return torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32)


class SoftmaxPolicy(nn.Module):
    """pi(a|s) = softmax(MLP(encode(s))) per action head.

    ``encode`` clips continuous values to the observation space and, when
    ``normalize_obs`` is on, standardises them with running mean/variance, clipped to
    +-``obs_clip`` (as SB3's VecNormalize; written as one clip of the raw value to
    ``[max(low, mean - c*std), min(high, mean + c*std)]``, the form export folds);
    categorical values are one-hot encoded. Statistics are buffers, so they travel in the
    state_dict; they cover the continuous columns only.
    """

    obs_low: torch.Tensor
    obs_high: torch.Tensor
    obs_mean: torch.Tensor
    obs_var: torch.Tensor
    obs_count: torch.Tensor

    def __init__(
        self,
        spec: PolicySpec,
        *,
        hidden_sizes: Sequence[int] = (128,),
        obs_clip: float = 10.0,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.obs_clip = float(obs_clip)
        self.encoder = ObsEncoder(spec.obs_layout)
        actions = spec.action_layout
        self.nvec, self.start = list(actions.nvec), list(actions.start)
        low, high = clip_bounds(spec)
        n_cont = len(low)
        self.register_buffer("obs_low", low)
        self.register_buffer("obs_high", high)
        self.register_buffer("obs_mean", torch.zeros(n_cont))
        self.register_buffer("obs_var", torch.ones(n_cont))
        self.register_buffer("obs_count", torch.zeros((), dtype=torch.float64))
        self.net = build_mlp(spec.obs_layout.n_features, hidden_sizes, actions.n_logits)

    def clip_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The one clip of raw continuous values: the space and the normalised +-obs_clip."""
        std = self.obs_std()
        low = torch.maximum(self.obs_low, self.obs_mean - self.obs_clip * std)
        high = torch.minimum(self.obs_high, self.obs_mean + self.obs_clip * std)
        return low, high

    def obs_std(self) -> torch.Tensor:
        return torch.sqrt(self.obs_var + _VAR_EPS)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """MLP inputs (n, n_features) for raw observation rows (n, obs_dim)."""
        low, high = self.clip_range()
        return self.encoder(obs, low, high, self.obs_mean, self.obs_std())  # type: ignore[no-any-return]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits, shape (n, n_actions) (every head's, concatenated)."""
        return self.net(self.features(obs))  # type: ignore[no-any-return]

    def probs(self, obs: torch.Tensor) -> torch.Tensor:
        uniform = torch.zeros(len(obs), len(self.nvec))
        return self.act_outputs(obs, uniform)[0]

    def act_outputs(
        self, obs: torch.Tensor, uniform: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three outputs of the exported graph, computed the training way (reference)."""
        return action_heads(self(obs), uniform, self.nvec, self.start)

    @torch.no_grad()
    def update_obs_stats(self, obs: npt.NDArray[np.float32]) -> None:
        """Merge a batch of raw rows (n, obs_dim) into the continuous columns' running
        mean/variance (parallel Welford)."""
        columns = list(self.spec.obs_layout.continuous_columns)
        batch = np.asarray(obs, dtype=np.float64)[:, columns]
        n = float(len(batch))
        if n == 0 or not columns:
            return
        count = float(self.obs_count)
        mean = self.obs_mean.double().numpy()
        var = self.obs_var.double().numpy()
        batch_mean, batch_var = batch.mean(axis=0), batch.var(axis=0)
        total = count + n
        delta = batch_mean - mean
        new_mean = mean + delta * n / total
        m2 = var * count + batch_var * n + delta**2 * count * n / total
        self.obs_mean.copy_(torch.from_numpy(new_mean))
        self.obs_var.copy_(torch.from_numpy(m2 / total))
        self.obs_count.fill_(total)


class DeployablePolicy(nn.Module):
    """(obs, uniform) -> (probs, greedy_action, sampled_action): the exported function.

    The same arithmetic as :class:`SoftmaxPolicy` and the ONNX graph: the clip of
    :meth:`SoftmaxPolicy.clip_range`, then ``(x - mean) / std`` in float32 exactly as
    training computes it (never folded into the first layer, where ``W / std`` and
    ``mean / std`` cancel badly for near-constant columns), then the MLP. The statistics
    come from :func:`network_from_policy` (left out when they are exactly 0 and 1). (No
    class-level buffer annotations here: TorchScript cannot resolve them under postponed
    annotations.)
    """

    def __init__(self, policy: SoftmaxPolicy) -> None:
        super().__init__()
        network = network_from_policy(policy)
        self.register_buffer("clip_low", torch.from_numpy(network.clip_low))
        self.register_buffer("clip_high", torch.from_numpy(network.clip_high))
        self.normalize = network.obs_mean is not None
        mean, std = network.obs_mean, network.obs_std
        n_cont = len(network.clip_low)
        self.register_buffer(
            "obs_mean", torch.from_numpy(mean) if mean is not None else torch.zeros(n_cont)
        )
        self.register_buffer(
            "obs_std", torch.from_numpy(std) if std is not None else torch.ones(n_cont)
        )
        self.encoder = ObsEncoder(policy.spec.obs_layout)
        self.nvec, self.start = list(policy.nvec), list(policy.start)
        self.net = nn.Sequential(*[_copy_module(m) for m in policy.net])

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            return self.encoder(obs, self.clip_low, self.clip_high, self.obs_mean, self.obs_std)  # type: ignore[no-any-return]
        return self.encoder(obs, self.clip_low, self.clip_high)  # type: ignore[no-any-return]

    def forward(
        self, obs: torch.Tensor, uniform: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return action_heads(self.net(self.features(obs)), uniform, self.nvec, self.start)


def _copy_module(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.Linear):
        copy = nn.Linear(module.in_features, module.out_features)
        copy.load_state_dict(module.state_dict())
        return copy
    return type(module)()


def network_from_policy(policy: SoftmaxPolicy) -> PolicyNetwork:
    """The numbers of a trained policy, unfolded: the graph computes what training did.

    Normalisation stays ``(x - mean) / std`` in float32 (folding it into the first layer
    cancels badly for near-constant columns); statistics that are exactly 0 and 1 (a run
    without ``normalize_obs``) are left out, which changes no value.
    """
    with torch.no_grad():
        low, high = (t.detach().float().numpy().copy() for t in policy.clip_range())
        mean = policy.obs_mean.detach().float().numpy().copy()
        std = policy.obs_std().detach().float().numpy().copy()
        layers = tuple(
            (m.weight.detach().float().numpy().copy(), m.bias.detach().float().numpy().copy())
            for m in policy.net
            if isinstance(m, nn.Linear)
        )
    identity = bool((mean == 0).all() and (std == 1).all())
    return PolicyNetwork(
        clip_low=low,
        clip_high=high,
        layers=layers,
        obs_mean=None if identity else mean,
        obs_std=None if identity else std,
    )
