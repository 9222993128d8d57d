"""The collector seam: policy weights in, an :class:`EpisodeBatch` out.

The learner, the solved window, checkpoints, metrics and export see only this interface,
so rollouts can run in this process (:class:`~pgdeploy.training.rollout.RolloutCollector`)
or on Ray actors across machines (:mod:`pgdeploy.training.ray_collector`, imported only
when ``workers > 0``) with no other change to training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

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
            env_kwargs=config.env_kwargs,
            wrapper=config.wrapper,
        )
    from pgdeploy.training.ray_collector import RayCollector  # the only module importing ray

    return RayCollector(config, spec, seed=seed)
