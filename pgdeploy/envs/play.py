"""Play a model file in its environment: what ``pgdeploy run`` does, as one call.

Needs gymnasium (a base dependency) for the env and the runtime (numpy + onnxruntime) for
the agent; no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pgdeploy._io import check_writable
from pgdeploy.errors import InvalidArgumentError, UnsupportedEnvError
from pgdeploy.runtime.loop import EpisodeResult, PlayReport

#: The CLI's word for the runtime's ``out_of_bounds='reject'``.
OUT_OF_BOUNDS = {"raise": "reject", "reject": "reject", "clip": "clip"}


@dataclass(frozen=True)
class PlayOutcome:
    """What ``pgdeploy run`` prints: the episodes' returns and the agent's act latency."""

    report: PlayReport
    env_id: str
    video_dir: Path | None = None

    def render(self) -> str:
        r = self.report
        lines = [
            f"mean return {r.mean_return:.2f} ± {r.std_return:.2f} (mean ± std over "
            f"{len(r.episodes)} episodes on {self.env_id}); act latency p50 "
            f"{r.act_latency_us(50):.1f} us, p99 {r.act_latency_us(99):.1f} us"
        ]
        if self.video_dir is not None:
            lines.append(f"videos in {self.video_dir}")
        return "\n".join(lines)


def render_episode(index: int, episode: EpisodeResult) -> str:
    return f"episode {index}: return {episode.total_reward:g} ({episode.length} steps)"


def play_model(
    model: str | Path,
    *,
    env_id: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    wrapper: str | None = None,
    episodes: int = 10,
    seed: int = 0,
    deterministic: bool = False,
    render: bool = False,
    video_dir: str | Path | None = None,
    on_episode: Callable[[int, EpisodeResult], None] | None = None,
    trust_env_module: bool = False,
    allow_env_mismatch: bool = False,
    out_of_bounds: Literal["raise", "reject", "clip"] = "raise",
) -> PlayOutcome:
    """Load ``model`` (ONNX) with the runtime agent and play ``episodes`` episodes.

    ``env_id`` defaults to the env the model was trained on, with the env keywords and
    wrapper recorded at training (``env_kwargs``, ``wrapper`` replace them). A different
    ``env_id`` is refused unless ``allow_env_mismatch``; an env whose spaces differ from
    the model's always is. The model's env id and wrapper are data: a ``module:`` there
    is imported only when the caller confirms it (:func:`pgdeploy.envs.recipe.run_env`).
    ``out_of_bounds``: ``raise`` refuses an observation outside the model's space, ``clip``
    clips it in. ``on_episode(index,
    result)`` runs as each episode ends. Everything is checked before the first step.
    """
    from pgdeploy.envs.making import make_play_env
    from pgdeploy.envs.recipe import check_same_spaces, recorded_env, run_env, same_env
    from pgdeploy.runtime import Agent, play

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise InvalidArgumentError(f"episodes must be an integer >= 1, got {episodes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"seed must be an integer >= 0, got {seed!r}")
    if out_of_bounds not in OUT_OF_BOUNDS:
        raise InvalidArgumentError(
            f"out_of_bounds must be 'raise' or 'clip', got {out_of_bounds!a}"
        )
    agent = Agent.load(
        model,
        seed=seed,
        deterministic=deterministic,
        out_of_bounds=OUT_OF_BOUNDS[out_of_bounds],  # type: ignore[arg-type]
    )
    if video_dir is not None:
        _check_video_dir(Path(video_dir))
    spec, source = agent.spec, ascii(str(model))
    training = agent.model.metadata.training
    config = training.get("config") if isinstance(training, Mapping) else None
    recorded = recorded_env(spec.env_id, config, source=source)
    if env_id is not None and not same_env(env_id, spec.env_id) and not allow_env_mismatch:
        raise UnsupportedEnvError(
            f"{source} was trained on {spec.env_id}, not {env_id!a}; pass --allow-env-mismatch "
            "(allow_env_mismatch=True) to play it there anyway"
        )
    chosen = run_env(
        recorded,
        source=source,
        env_id=env_id,
        env_kwargs=env_kwargs,
        wrapper=wrapper,
        trust_env_module=trust_env_module,
    )
    played = chosen.policy_spec()
    check_same_spaces(
        spec,
        chosen,
        played.obs_layout.tree,
        played.action_layout,
        who=source,
        advice="play it on an env with the same spaces",
    )
    env: Any = make_play_env(
        chosen.env_id,
        render=render,
        video_dir=video_dir,
        env_kwargs=chosen.env_kwargs,
        wrapper=chosen.wrapper,
    )
    try:
        report = play(agent, env, episodes=episodes, seed=seed, on_episode=on_episode)
    finally:
        env.close()
    return PlayOutcome(report, chosen.env_id, Path(video_dir) if video_dir is not None else None)


def _check_video_dir(folder: Path) -> None:
    """The folder can be written; removed again if this made it (RecordVideo warns about an
    existing folder)."""
    existed = folder.exists()
    check_writable(folder)
    if not existed:
        folder.rmdir()
