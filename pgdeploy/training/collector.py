"""The collector seam: policy weights in, a bounded :class:`EpisodeBatch` out.

The learner, the solved window, checkpoints, metrics and export see only this interface,
so rollouts can run in this process (:class:`~pgdeploy.training.rollout.RolloutCollector`)
or on Ray actors across machines (:mod:`pgdeploy.training.ray_collector`, imported only
when ``workers > 0``) with no other change to training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import torch

from pgdeploy.spec import PolicySpec
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.rollout import EpisodeBatch, RolloutCollector


class Collector(Protocol):
    """What training needs from rollouts: one bounded batch of steps per call."""

    def collect(
        self,
        policy_state: Mapping[str, torch.Tensor],
        *,
        max_steps: int | None = None,
        should_stop: Callable[[], object] | None = None,
    ) -> EpisodeBatch | None:
        """Play each env to the end of its episode with these weights, for at most
        ``config.iteration_steps`` and ``max_steps`` steps per env; episodes in a fixed env
        order. None, promptly, once ``should_stop`` answers truthy."""
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
            iteration_steps=config.iteration_steps,
            vectorization=config.vectorization,
            env_kwargs=config.env_kwargs,
            wrapper=config.wrapper,
        )
    from pgdeploy.training.ray_collector import RayCollector  # the only module importing ray

    return RayCollector(config, spec, seed=seed)
