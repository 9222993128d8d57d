"""The REINFORCE learner: Monte-Carlo returns, a baseline, one policy-gradient step per batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy.training.config import TrainConfig
from pgdeploy.training.optim import Adam
from pgdeploy.training.policy import SoftmaxPolicy
from pgdeploy.training.rollout import EpisodeBatch


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


@dataclass(frozen=True)
class UpdateStats:
    loss: float
    entropy: float
    grad_norm: float


class ReinforceLearner:
    """One gradient step per :class:`EpisodeBatch` on

        L(theta) = -(1/|D|) sum_{(t,n) in D} log pi(a_t|s_t) * A_t  -  beta * H[pi(.|s_t)]

    where A_t = (G_t - b_t), standardised over the batch when ``normalize_advantages``, G_t
    is the discounted return-to-go, b_t the per-timestep baseline (or 0) and beta the
    entropy coefficient. Running observation statistics are updated after the step, so the
    gradient is taken under the normalisation the batch was collected with.
    """

    def __init__(self, policy: SoftmaxPolicy, config: TrainConfig) -> None:
        self.policy = policy
        self.config = config
        self.optimizer = Adam(policy.parameters(), lr=config.learning_rate)

    def advantages(self, batch: EpisodeBatch) -> npt.NDArray[np.float32]:
        """A_t on the batch's valid steps, flattened in (T, N) order of ``batch.mask``."""
        returns = discounted_returns(batch.rewards, batch.mask, self.config.gamma)
        if self.config.baseline == "timestep":
            returns = returns - timestep_baseline(returns, batch.mask)
        adv = returns[batch.mask]
        if self.config.normalize_advantages and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        return adv.astype(np.float32)

    def update(self, batch: EpisodeBatch) -> UpdateStats:
        obs = torch.from_numpy(batch.obs[batch.mask])
        actions = torch.from_numpy(batch.actions[batch.mask])
        adv = torch.from_numpy(self.advantages(batch))
        log_probs = torch.log_softmax(self.policy(obs), dim=-1)
        chosen = log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)
        entropy = -(log_probs.exp() * log_probs).sum(dim=-1).mean()
        loss = -(chosen * adv).mean() - self.config.entropy_coef * entropy
        self.optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.optimizer.params, max_norm)
        self.optimizer.step()
        if self.config.normalize_obs:
            self.policy.update_obs_stats(batch.obs[batch.mask])
        return UpdateStats(loss.item(), entropy.item(), float(grad_norm))
