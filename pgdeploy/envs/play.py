"""Play a model file in its environment: what ``pgdeploy run`` does, as one call.

Needs gymnasium (a base dependency) for the env and the runtime (numpy + onnxruntime) for
the agent; no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pgdeploy._io import check_writable
from pgdeploy.errors import InvalidArgumentError
from pgdeploy.runtime.loop import EpisodeResult, PlayReport


def play_model(
    model: str | Path,
    *,
    env_id: str | None = None,
    episodes: int = 10,
    seed: int = 0,
    deterministic: bool = False,
    render: bool = False,
    video_dir: str | Path | None = None,
    on_episode: Callable[[int, EpisodeResult], None] | None = None,
    trust_env_module: bool = False,
) -> PlayReport:
    """Load ``model`` (ONNX) with the runtime agent and play ``episodes`` episodes.

    ``env_id`` defaults to the env the model was trained on; ``seed`` seeds the env's first
    reset and the agent's sampler. ``render`` shows a window, ``video_dir`` records one MP4
    per episode. ``on_episode(index, result)`` is called as each episode finishes.
    The model's env id is data: a ``module:EnvId`` there is not imported unless ``env_id``
    names the env or ``trust_env_module`` is set (:func:`pgdeploy.envs.env_id_from_file`).
    Everything is checked (arguments, model, env, renderer, video folder) before the
    first step.
    """
    from pgdeploy.envs.making import env_id_from_file, make_play_env
    from pgdeploy.runtime import Agent, play

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise InvalidArgumentError(f"episodes must be an integer >= 1, got {episodes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"seed must be an integer >= 0, got {seed!r}")
    agent = Agent.load(model, seed=seed, deterministic=deterministic)
    if video_dir is not None:
        _check_video_dir(Path(video_dir))
    chosen = env_id_from_file(
        agent.spec.env_id,
        source=str(model),
        user_env_id=env_id,
        trust_env_module=trust_env_module,
    )
    env: Any = make_play_env(chosen, render=render, video_dir=video_dir)
    try:
        return play(agent, env, episodes=episodes, seed=seed, on_episode=on_episode)
    finally:
        env.close()


def _check_video_dir(folder: Path) -> None:
    """The folder can be written; removed again if this made it (RecordVideo warns about an
    existing folder)."""
    existed = folder.exists()
    check_writable(folder)
    if not existed:
        folder.rmdir()
