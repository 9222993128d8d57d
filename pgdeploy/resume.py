"""Resume training from a ``model.pt``: the same run continues where the checkpoint left it.

A checkpoint's ``resume`` section carries what the weights alone do not: the optimiser's
moments and step count, the env-step, episode and iteration counters, and the window of
recent returns the solved check averages. Envs restart from fresh episodes (an env's
internal state is not saved); their seed is derived from ``(seed, iterations)``, so
resuming the same checkpoint twice gives the same run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgdeploy.checkpoint import Checkpoint
from pgdeploy.config import TrainConfig
from pgdeploy.errors import CheckpointError
from pgdeploy.optim import Adam
from pgdeploy.policy import SoftmaxPolicy

_COUNTERS = ("env_steps", "episodes", "iterations")


@dataclass(frozen=True)
class ResumeState:
    """Where a run stopped; built from a checkpoint by :func:`resume_state`."""

    env_steps: int
    episodes: int
    iterations: int
    window: tuple[float, ...]
    optimizer: dict[str, Any]

    def collector_seed(self, seed: int) -> int:
        """A seed for the envs and sampler of the resumed run, distinct per resume point."""
        return int(np.random.SeedSequence([seed, self.iterations]).generate_state(1)[0])

    def restore(self, checkpoint: Checkpoint, policy: SoftmaxPolicy, optimizer: Adam) -> None:
        """Load the weights, observation statistics and optimiser state into a fresh run."""
        policy.load_state_dict(checkpoint.state_dict)
        try:
            optimizer.load_state_dict(self.optimizer)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"cannot restore the optimiser state: {exc}") from exc


def resume_state(checkpoint: Checkpoint) -> ResumeState:
    """The saved counters and optimiser state; a CheckpointError if they are not there."""
    saved = checkpoint.resume
    missing = [key for key in (*_COUNTERS, "window", "optimizer") if key not in saved]
    if missing:
        raise CheckpointError(
            f"checkpoint cannot be resumed: its 'resume' section lacks {missing} (it was written "
            "by an older pgdeploy or not by 'pgdeploy train'); start a new run instead"
        )
    try:
        counters = {key: int(saved[key]) for key in _COUNTERS}
        window = tuple(float(v) for v in saved["window"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint has a malformed 'resume' section: {exc}") from exc
    return ResumeState(**counters, window=window, optimizer=dict(saved["optimizer"]))


def resume_payload(
    optimizer: Adam, *, env_steps: int, episodes: int, iterations: int, window: list[float]
) -> dict[str, Any]:
    """The ``resume`` section :func:`pgdeploy.train.train` writes into every checkpoint."""
    return {
        "optimizer": optimizer.state_dict(),
        "env_steps": env_steps,
        "episodes": episodes,
        "iterations": iterations,
        "window": list(window),
    }


def resume_config(checkpoint: Checkpoint, **overrides: Any) -> TrainConfig:
    """The checkpoint's own config, with e.g. a larger ``total_timesteps`` to train further."""
    return dataclasses.replace(checkpoint.config, **overrides)
