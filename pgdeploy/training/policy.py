"""The softmax policy in torch: observation normalisation + MLP, and its deployable form."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

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


def clip_bounds(spec: PolicySpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The observation space's bounds as float32, infinite ones replaced by float32's max."""
    low = torch.tensor([max(v, -FLOAT32_MAX) for v in spec.obs_low], dtype=torch.float32)
    high = torch.tensor([min(v, FLOAT32_MAX) for v in spec.obs_high], dtype=torch.float32)
    return low, high


class SoftmaxPolicy(nn.Module):
    """pi(a|s) = softmax(MLP(normalise(clip(s)))).

    ``clip`` keeps observations inside the observation space; ``normalise`` uses running
    mean/variance (identity when ``normalize_obs`` is off) and clips to +-``obs_clip``,
    as SB3's VecNormalize does. Statistics are buffers, so they travel in the state_dict.
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
        low, high = clip_bounds(spec)
        self.register_buffer("obs_low", low)
        self.register_buffer("obs_high", high)
        self.register_buffer("obs_mean", torch.zeros(spec.obs_dim))
        self.register_buffer("obs_var", torch.ones(spec.obs_dim))
        self.register_buffer("obs_count", torch.zeros((), dtype=torch.float64))
        self.net = build_mlp(spec.obs_dim, hidden_sizes, spec.n_actions)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        clipped = torch.minimum(torch.maximum(obs, self.obs_low), self.obs_high)
        scaled = (clipped - self.obs_mean) / torch.sqrt(self.obs_var + _VAR_EPS)
        return scaled.clamp(-self.obs_clip, self.obs_clip)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits, shape (n, n_actions)."""
        return self.net(self.normalize(obs))  # type: ignore[no-any-return]

    def probs(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(obs), dim=-1)

    def act_outputs(
        self, obs: torch.Tensor, uniform: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three outputs of the exported graph, computed the training way (reference)."""
        probs = self.probs(obs)
        return probs, probs.argmax(dim=-1), sample_actions(probs, uniform)

    @torch.no_grad()
    def update_obs_stats(self, obs: npt.NDArray[np.float32]) -> None:
        """Merge a batch (n, obs_dim) into the running mean/variance (parallel Welford)."""
        batch = np.asarray(obs, dtype=np.float64)
        n = float(len(batch))
        if n == 0:
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
    """(obs, uniform) -> (probs, greedy_action, sampled_action): the exported graph.

    Normalisation is folded into the first layer: clipping to the space and to the
    normalised +-obs_clip becomes one elementwise clip of the raw observation to
    ``[max(low, mean - c*std), min(high, mean + c*std)]``, and ``(x - mean)/std`` moves into
    the first Linear's weights. That is the same function with three fewer ONNX nodes
    (each costs ~0.35 us per call in onnxruntime); export verifies it against
    :class:`SoftmaxPolicy` before writing anything. (No class-level buffer annotations here:
    TorchScript cannot resolve them under postponed annotations.)
    """

    def __init__(self, policy: SoftmaxPolicy) -> None:
        super().__init__()
        std = torch.sqrt(policy.obs_var + _VAR_EPS)
        mean = policy.obs_mean
        low = torch.maximum(policy.obs_low, mean - policy.obs_clip * std)
        high = torch.minimum(policy.obs_high, mean + policy.obs_clip * std)
        self.register_buffer("clip_low", low.detach().clone())
        self.register_buffer("clip_high", high.detach().clone())
        layers = [_copy_module(m) for m in policy.net]
        first = layers[0]
        assert isinstance(first, nn.Linear)
        with torch.no_grad():
            weight = first.weight.double() / std.double()
            first.bias.copy_((first.bias.double() - weight @ mean.double()).float())
            first.weight.copy_(weight.float())
        self.net = nn.Sequential(*layers)

    def forward(
        self, obs: torch.Tensor, uniform: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.minimum(torch.maximum(obs, self.clip_low), self.clip_high)  # type: ignore[arg-type]
        probs = torch.softmax(self.net(x), dim=-1)
        return probs, probs.argmax(dim=-1), sample_actions(probs, uniform)


def _copy_module(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.Linear):
        copy = nn.Linear(module.in_features, module.out_features)
        copy.load_state_dict(module.state_dict())
        return copy
    return type(module)()
