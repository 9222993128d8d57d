"""The REINFORCE learner: Monte-Carlo returns, a baseline, one policy-gradient step per batch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy.errors import CheckpointError, TrainingDivergedError
from pgdeploy.training.checkpoint import check_tensors
from pgdeploy.training.checkpoint_safety import non_finite_weights
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.optim import Adam
from pgdeploy.training.policy import SoftmaxPolicy, build_mlp, log_prob_entropy
from pgdeploy.training.rollout import EpisodeBatch

#: Steps per minibatch when fitting the value baseline.
VALUE_MINIBATCH = 1024


def discounted_returns(
    rewards: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_], gamma: float
) -> npt.NDArray[np.float32]:
    """G_t = r_t + gamma * G_{t+1} within each episode, for (T, N) arrays; 0 off the mask."""
    returns = np.zeros(rewards.shape, dtype=np.float64)
    running = np.zeros(rewards.shape[1], dtype=np.float64)
    for t in range(len(rewards) - 1, -1, -1):
        running = np.where(mask[t], rewards[t] + gamma * running, 0.0)
        returns[t] = running
    return returns.astype(np.float32)


def timestep_baseline(
    returns: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float32]:
    """b_t: mean return-to-go at step t over the batch's episodes still running at t, (T, 1)."""
    alive = mask.sum(axis=1, keepdims=True)
    totals = np.where(mask, returns, 0.0).sum(axis=1, keepdims=True)
    return (totals / np.maximum(alive, 1)).astype(np.float32)  # type: ignore[no-any-return]


class ValueBaseline:
    """b(s) = V(s): an MLP on the policy's features, regressed onto Monte-Carlo returns.

    This is REINFORCE with a baseline (Sutton & Barto, 13.4), not actor-critic: the
    advantage is G_t - V(s_t) with the full Monte-Carlo return, V never bootstraps. V is
    evaluated before it is fitted to the batch, so b does not depend on that batch's own
    returns. Its input is the policy's encoded, normalised observation (detached).
    """

    def __init__(self, policy: SoftmaxPolicy, config: TrainConfig) -> None:
        self.policy = policy
        self.epochs = config.value_epochs
        self.net = build_mlp(policy.spec.obs_layout.n_features, config.hidden_sizes, 1)
        self.optimizer = Adam(self.net.parameters(), lr=config.value_learning_rate)
        self.rng = np.random.default_rng(config.seed)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.policy.features(obs)

    def predict(self, features: torch.Tensor) -> npt.NDArray[np.float32]:
        with torch.no_grad():
            return self.net(features).squeeze(1).numpy()  # type: ignore[no-any-return]

    def fit(self, features: torch.Tensor, returns: npt.NDArray[np.float32]) -> float:
        """``value_epochs`` passes of MSE regression in minibatches; the last loss."""
        target = torch.from_numpy(returns)
        loss = torch.zeros(())
        for _ in range(self.epochs):
            order = self.rng.permutation(len(target))
            for begin in range(0, len(order), VALUE_MINIBATCH):
                chunk = torch.from_numpy(order[begin : begin + VALUE_MINIBATCH])
                loss = ((self.net(features[chunk]).squeeze(1) - target[chunk]) ** 2).mean()
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
        return float(loss.detach())

    def state_dict(self) -> dict[str, object]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """A saved :meth:`state_dict`, checked whole (names, shapes, dtypes, finite) first."""
        net, optimizer = state.get("net"), state.get("optimizer")
        if not isinstance(net, dict) or not isinstance(optimizer, dict):
            raise CheckpointError("checkpoint's value baseline must hold 'net' and 'optimizer'")
        check_tensors(net, self.net.state_dict(), source="checkpoint's value baseline")
        if non_finite_weights(net):
            raise CheckpointError("checkpoint's value baseline holds NaN or infinity")
        self.optimizer.load_state_dict(optimizer)
        self.net.load_state_dict(net)


@dataclass(frozen=True)
class UpdateStats:
    loss: float
    entropy: float
    grad_norm: float


class ReinforceLearner:
    """One gradient step per :class:`EpisodeBatch` on

        L(theta) = -(1/|D|) sum_{(t,n) in D} log pi(a_t|s_t) * A_t  -  beta * H[pi(.|s_t)]

    where D is the batch's masked steps (those of episodes that finished in it), A_t =
    (G_t - b_t), standardised over the batch when ``normalize_advantages``, G_t the
    discounted return-to-go, b_t the baseline (per-timestep batch mean, a learned V(s_t),
    or 0), log pi summed over the action heads and beta the entropy coefficient. Running
    observation statistics are updated after the step, so the gradient is taken under the
    normalisation the batch was collected with.

    The learner's state stays finite: :meth:`step` refuses a non-finite loss or gradient
    before it touches a weight, and restores the state of the iteration's start if the step
    made any weight, statistic or moment non-finite (:class:`TrainingDivergedError` either
    way), so the run can save its last finite state.
    """

    def __init__(self, policy: SoftmaxPolicy, config: TrainConfig) -> None:
        self.policy = policy
        self.config = config
        self.optimizer = Adam(policy.parameters(), lr=config.learning_rate)
        self.value = ValueBaseline(policy, config) if config.baseline == "value" else None
        self._start: list[torch.Tensor] = []

    def advantages(
        self, batch: EpisodeBatch, features: torch.Tensor | None = None
    ) -> npt.NDArray[np.float32]:
        """A_t on the batch's masked steps, flattened in (T, N) order of ``batch.mask``.

        With the value baseline, ``features`` are the value net's inputs for those steps,
        and V is fitted to this batch's returns after it has been evaluated. Begins the
        iteration: the learner's state is kept here, for :meth:`step` to fall back on.
        """
        self._start = [t.detach().clone() for t in self._tensors()]
        with np.errstate(over="ignore", invalid="ignore"):
            returns = discounted_returns(batch.rewards, batch.mask, self.config.gamma)
        if not np.isfinite(returns[batch.mask]).all():
            raise TrainingDivergedError(
                "a return was not finite (the env gave an infinite or NaN reward, or rewards "
                "too large for float32)"
            )
        if self.config.baseline == "timestep":
            returns = returns - timestep_baseline(returns, batch.mask)
        adv = returns[batch.mask]
        if self.value is not None and len(adv):
            if features is None:
                features = self.value.features(torch.from_numpy(batch.obs[batch.mask]))
            targets = adv.copy()
            adv = adv - self.value.predict(features)
            self.value.fit(features, targets)
        if self.config.normalize_advantages and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        return adv.astype(np.float32)

    def loss(
        self, batch: EpisodeBatch, advantages: npt.NDArray[np.float32]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """L(theta) on the masked steps, and the policy's mean entropy there."""
        obs = torch.from_numpy(batch.obs[batch.mask])
        actions = torch.from_numpy(batch.actions[batch.mask])
        policy = self.policy
        chosen, entropies = log_prob_entropy(policy(obs), actions, policy.nvec, policy.start)
        entropy = entropies.mean()
        adv = torch.from_numpy(advantages)
        return -(chosen * adv).mean() - self.config.entropy_coef * entropy, entropy

    def step(self, loss: torch.Tensor, batch: EpisodeBatch, *, progress: float = 0.0) -> float:
        """One Adam step on ``loss``; the gradient's norm before clipping. ``progress`` in
        [0, 1] (env steps spent / budget) drives the lr schedule."""
        if self.config.lr_schedule == "linear":
            self.optimizer.lr = self.config.learning_rate * max(1.0 - progress, 0.0)
        self.optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.optimizer.params, max_norm))
        if not (math.isfinite(loss.item()) and math.isfinite(grad_norm)):
            self._fall_back()
            raise TrainingDivergedError(
                f"the loss was {loss.item():.4g} and the gradient norm {grad_norm:.4g}"
            )
        self.optimizer.step()
        if self.config.normalize_obs:
            self.policy.update_obs_stats(batch.obs[batch.mask])
        if not all(bool(torch.isfinite(t).all()) for t in self._tensors()):
            self._fall_back()
            raise TrainingDivergedError("the step made a weight or optimiser moment non-finite")
        return grad_norm

    def update(self, batch: EpisodeBatch, *, progress: float = 0.0) -> UpdateStats:
        """:meth:`advantages`, :meth:`loss` and :meth:`step` in one call (no step, and NaN
        statistics, when no episode finished in the batch)."""
        advantages = self.advantages(batch)
        if not batch.mask.any():
            return UpdateStats(math.nan, math.nan, math.nan)
        loss, entropy = self.loss(batch, advantages)
        grad_norm = self.step(loss, batch, progress=progress)
        return UpdateStats(loss.item(), entropy.item(), grad_norm)

    def _tensors(self) -> list[torch.Tensor]:
        """Everything a step changes: weights, obs statistics, moments, the value baseline."""
        tensors = [*self.policy.state_dict().values(), *self.optimizer.exp_avg]
        tensors += self.optimizer.exp_avg_sq
        if self.value is not None:
            tensors += [*self.value.net.state_dict().values(), *self.value.optimizer.exp_avg]
            tensors += self.value.optimizer.exp_avg_sq
        return tensors

    def _fall_back(self) -> None:
        with torch.no_grad():
            for tensor, kept in zip(self._tensors(), self._start, strict=True):
                tensor.copy_(kept)
        self.optimizer.zero_grad()
