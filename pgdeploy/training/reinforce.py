"""The REINFORCE learner: Monte-Carlo returns, a baseline, one policy-gradient step per batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

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

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.net.load_state_dict(state["net"])  # type: ignore[arg-type]
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]


@dataclass(frozen=True)
class UpdateStats:
    loss: float
    entropy: float
    grad_norm: float


class ReinforceLearner:
    """One gradient step per :class:`EpisodeBatch` on

        L(theta) = -(1/|D|) sum_{(t,n) in D} log pi(a_t|s_t) * A_t  -  beta * H[pi(.|s_t)]

    where A_t = (G_t - b_t), standardised over the batch when ``normalize_advantages``, G_t
    is the discounted return-to-go, b_t the baseline (per-timestep batch mean, a learned
    V(s_t), or 0), log pi sums over the action heads and beta is the entropy coefficient.
    Running observation statistics are updated after the step, so the gradient is taken
    under the normalisation the batch was collected with.
    """

    def __init__(self, policy: SoftmaxPolicy, config: TrainConfig) -> None:
        self.policy = policy
        self.config = config
        self.optimizer = Adam(policy.parameters(), lr=config.learning_rate)
        self.value = ValueBaseline(policy, config) if config.baseline == "value" else None

    def advantages(
        self, batch: EpisodeBatch, features: torch.Tensor | None = None
    ) -> npt.NDArray[np.float32]:
        """A_t on the batch's valid steps, flattened in (T, N) order of ``batch.mask``.

        With the value baseline, ``features`` are the value net's inputs for those steps,
        and V is fitted to this batch's returns after it has been evaluated.
        """
        returns = discounted_returns(batch.rewards, batch.mask, self.config.gamma)
        if self.config.baseline == "timestep":
            returns = returns - timestep_baseline(returns, batch.mask)
        adv = returns[batch.mask]
        if self.value is not None:
            if features is None:
                features = self.value.features(torch.from_numpy(batch.obs[batch.mask]))
            targets = adv.copy()
            adv = adv - self.value.predict(features)
            self.value.fit(features, targets)
        if self.config.normalize_advantages and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        return adv.astype(np.float32)

    def update(self, batch: EpisodeBatch, *, progress: float = 0.0) -> UpdateStats:
        """One step; ``progress`` in [0, 1] (env steps spent / budget) drives the lr schedule."""
        if self.config.lr_schedule == "linear":
            self.optimizer.lr = self.config.learning_rate * max(1.0 - progress, 0.0)
        obs = torch.from_numpy(batch.obs[batch.mask])
        actions = torch.from_numpy(batch.actions[batch.mask])
        adv = torch.from_numpy(self.advantages(batch))
        policy = self.policy
        chosen, entropies = log_prob_entropy(policy(obs), actions, policy.nvec, policy.start)
        entropy = entropies.mean()
        loss = -(chosen * adv).mean() - self.config.entropy_coef * entropy
        self.optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.optimizer.params, max_norm)
        self.optimizer.step()
        if self.config.normalize_obs:
            self.policy.update_obs_stats(batch.obs[batch.mask])
        return UpdateStats(loss.item(), entropy.item(), float(grad_norm))
