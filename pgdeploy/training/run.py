"""A training run as the CLI does it, one call for Python users too.

:func:`resolve_config` decides what a run's configuration is (defaults, the env's preset,
a config file, explicit overrides, or a checkpoint being resumed); :func:`run_training`
trains with the usual callbacks and writes the run's artefacts beside the checkpoint:
``model.pt``, ``config.json``, the metrics file and ``learning_curve.png``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from pgdeploy.training.config import TrainConfig
from pgdeploy.training.config_files import build_config, load_config_file, save_config
from pgdeploy.training.presets import preset_for

MetricsFormat = Literal["csv", "jsonl"]


@dataclass(frozen=True)
class ResolvedConfig:
    """A run's configuration and where its values came from."""

    config: TrainConfig
    preset: Mapping[str, Any] = field(default_factory=dict)
    """The env preset that was applied (empty when none was)."""


def resolve_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: str | Path | None = None,
    resume_from: Any = None,
    use_preset: bool = True,
    trust_env_module: bool = False,
) -> ResolvedConfig:
    """The run's config. Precedence, lowest first: the dataclass defaults, the env's preset
    (skipped when ``use_preset`` is false or when resuming), ``config_file``, ``overrides``.

    When ``resume_from`` (a :class:`~pgdeploy.training.checkpoint.Checkpoint`) is given, its
    saved config replaces the defaults and the preset; its env id is data from a file, so a
    ``module:EnvId`` there is refused (:func:`pgdeploy.envs.env_id_from_file`) unless the
    user names the env (``env_id`` in ``overrides`` or the config file) or passes
    ``trust_env_module``.
    """
    given = dict(overrides or {})
    from_file = load_config_file(config_file) if config_file is not None else {}
    if resume_from is not None:
        config = build_config(resume_from.config.to_dict(), from_file, given)
        if "env_id" not in given and "env_id" not in from_file:
            from pgdeploy.envs import env_id_from_file

            env_id_from_file(
                config.env_id,
                source="the checkpoint being resumed",
                trust_env_module=trust_env_module,
            )
        return ResolvedConfig(config)
    env_id = given.get("env_id", from_file.get("env_id", TrainConfig.env_id))
    preset = preset_for(env_id) if use_preset else {}
    return ResolvedConfig(build_config(preset, from_file, given | {"env_id": env_id}), preset)


def run_training(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume_from: Any = None,
    metrics_format: MetricsFormat = "csv",
    tensorboard_dir: str | Path | None = None,
    progress: bool | TextIO = True,
) -> Any:
    """Train and write the run's artefacts into ``out_dir``; returns the TrainResult.

    ``progress``: ``True`` shows progress on stderr, a stream shows it there, ``False`` hides it.
    """
    from pgdeploy.training.callbacks import MetricsWriter, ProgressReporter, TensorBoardWriter
    from pgdeploy.training.learning_curve import plot_learning_curve
    from pgdeploy.training.train import train

    out_dir = Path(out_dir)
    save_config(config, out_dir)
    callbacks: list[Any] = []
    if tensorboard_dir is not None:  # first: a missing extra fails before any file is open
        callbacks.append(TensorBoardWriter(tensorboard_dir))
    callbacks.append(MetricsWriter(out_dir / f"metrics.{metrics_format}"))
    if progress is not False:
        stream = None if progress is True else progress
        callbacks.append(ProgressReporter(config.total_timesteps, stream=stream))
    try:
        result = train(config, out_dir=out_dir, callbacks=tuple(callbacks), resume_from=resume_from)
    finally:
        for callback in callbacks:
            callback.close()
    plot_learning_curve(
        result.history,
        out_dir / "learning_curve.png",
        title=f"REINFORCE on {config.env_id} (seed {config.seed})",
        threshold=result.summary["reward_threshold"],
    )
    return result
