"""The collector seam: policy weights in, an :class:`EpisodeBatch` out.

The learner, the solved window, checkpoints, metrics and export see only this interface,
so rollouts can run in this process (:class:`~pgdeploy.training.rollout.RolloutCollector`)
or on Ray actors across machines (:mod:`pgdeploy.training.ray_collector`, imported only
when ``workers > 0``) with no other change to training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy.spec import PolicySpec
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.rollout import EpisodeBatch, RolloutCollector


class Collector(Protocol):
    """What training needs from rollouts: one batch of finished episodes per call."""

    def collect(self, policy_state: Mapping[str, torch.Tensor]) -> EpisodeBatch:
        """Play one episode per env with these weights; episodes in a fixed env order."""
        ...

    def close(self) -> None:
        """Release envs (and workers); called once, also when training fails."""
        ...


def make_collector(config: TrainConfig, spec: PolicySpec, *, seed: int) -> Collector:
    """The local collector, or Ray workers when ``config.workers > 0``.

    ``seed`` is the run's collector seed (the config's seed, or one derived from it on
    resume); both collectors give env ``j`` the seed ``seed + j``.
    """
    if config.workers == 0:
        return RolloutCollector(
            spec,
            num_envs=config.num_envs,
            seed=seed,
            hidden_sizes=config.hidden_sizes,
            obs_clip=config.obs_clip,
            max_episode_steps=config.max_episode_steps,
            vectorization=config.vectorization,
        )
    from pgdeploy.training.ray_collector import RayCollector  # the only module importing ray

    return RayCollector(config, spec, seed=seed)


def split_envs(num_envs: int, workers: int) -> list[int]:
    """Envs per worker, as even as possible, the larger shares first: (16, 3) -> [6, 5, 5]."""
    share, extra = divmod(num_envs, workers)
    return [share + (1 if i < extra else 0) for i in range(workers)]


def concat_batches(batches: Sequence[EpisodeBatch]) -> EpisodeBatch:
    """Join batches along the env axis, in the order given, padding time to the longest.

    Padding steps are masked out (mask False, reward 0), so the learner sees exactly the
    episodes of the parts; the order makes a run with workers reproducible.
    """
    if len(batches) == 1:
        return batches[0]
    horizon = max(len(b.obs) for b in batches)

    def pad(array: npt.NDArray[np.generic], fill: float | bool) -> npt.NDArray[np.generic]:
        extra = horizon - len(array)
        if extra == 0:
            return array
        filler = np.full((extra, *array.shape[1:]), fill, dtype=array.dtype)
        return np.concatenate([array, filler])

    return EpisodeBatch(
        obs=np.concatenate([pad(b.obs, 0.0) for b in batches], axis=1),
        actions=np.concatenate([pad(b.actions, 0) for b in batches], axis=1),
        rewards=np.concatenate([pad(b.rewards, 0.0) for b in batches], axis=1),
        mask=np.concatenate([pad(b.mask, False) for b in batches], axis=1),
        lengths=np.concatenate([b.lengths for b in batches]),
        episode_returns=np.concatenate([b.episode_returns for b in batches]),
    )
