"""A training run as the CLI does it, one call for Python users too.

:func:`resolve_config` decides what a run's configuration is (defaults, the env's preset,
a config file, explicit overrides, or a run being resumed); :func:`run_training` checks
every precondition before the first step of work (extras installed, env makeable, resume
compatible, output folder free and writable), then trains with the usual callbacks,
saving the run's artefacts as one set (:mod:`pgdeploy.training.folder`) periodically,
at the end, and on Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from pgdeploy._io import check_writable
from pgdeploy._optional import require
from pgdeploy.errors import ConfigError
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.config_files import build_config, check_module_fields, load_config_file
from pgdeploy.training.presets import preset_for

if TYPE_CHECKING:
    from pgdeploy.training.checkpoint import Checkpoint
    from pgdeploy.training.train import TrainResult

MetricsFormat = Literal["csv", "jsonl"]

#: What a training run imports, checked up front so a runtime-only install fails in one line.
_TRAIN_EXTRAS = (("torch", "train"), ("PIL", "train"), ("tqdm", "train"))


@dataclass(frozen=True)
class ResolvedConfig:
    """A run's configuration and where its values came from."""

    config: TrainConfig
    preset: Mapping[str, Any] = field(default_factory=dict)
    """The env preset that was applied (empty when none was)."""
    resume_from: Checkpoint | None = None
    """The checkpoint of the run being continued (``resume``), loaded and checked."""


def resolve_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: str | Path | None = None,
    resume: str | Path | Checkpoint | None = None,
    resume_from: Checkpoint | None = None,
    use_preset: bool = True,
    trust_env_module: bool = False,
) -> ResolvedConfig:
    """The run's config. Precedence, lowest first: the dataclass defaults, the env's preset
    (skipped when ``use_preset`` is false or when resuming), ``config_file``, ``overrides``.

    ``resume``: a run folder, its ``model.pt``, or a loaded Checkpoint (``resume_from`` is the
    older spelling); its saved config replaces the defaults and the preset (whether the new
    config can continue it is checked once, when training starts). Its env id
    is data from a file, so a ``module:EnvId`` there is refused
    (:func:`pgdeploy.envs.env_id_from_file`) unless the user names the env (``env_id`` in
    ``overrides`` or the config file) or passes ``trust_env_module``.
    """
    given = dict(overrides or {})
    from_file = (
        load_config_file(config_file, trust_env_module=trust_env_module, confirmed=given)
        if config_file is not None
        else {}
    )
    resume = resume if resume is not None else resume_from
    if resume is not None:
        checkpoint = load_resumable(resume)
        config = build_config(checkpoint.config.to_dict(), from_file, given)
        named = {k: v for k, v in config.to_dict().items() if k not in {**from_file, **given}}
        check_module_fields(named, source="the checkpoint being resumed", trusted=trust_env_module)
        return ResolvedConfig(config, resume_from=checkpoint)
    env_id = given.get("env_id", from_file.get("env_id", TrainConfig.env_id))
    preset = preset_for(env_id) if use_preset else {}
    return ResolvedConfig(build_config(preset, from_file, given | {"env_id": env_id}), preset)


def load_resumable(resume: str | Path | Checkpoint) -> Checkpoint:
    """The checkpoint of a run folder (its ``model.pt``), of a ``model.pt``, or as given."""
    if not isinstance(resume, (str, Path)):
        return resume
    require_training_extras()
    from pgdeploy.training.checkpoint import load_checkpoint

    path = Path(resume)
    return load_checkpoint(path / "model.pt" if path.is_dir() else path)


def require_training_extras(*, tensorboard: bool = False) -> None:
    """A MissingDependencyError naming the ``train`` extra on a runtime-only install."""
    needed = [*_TRAIN_EXTRAS, *([("tensorboard", "tensorboard")] if tensorboard else [])]
    for module, extra in needed:
        require(module, extra=extra, feature="training")


def run_training(
    config: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume_from: Checkpoint | None = None,
    overwrite: bool = False,
    metrics_format: MetricsFormat | None = None,
    tensorboard_dir: str | Path | None = None,
    progress: bool | TextIO = True,
    require_threshold: bool = False,
    handle_signals: bool = True,
    runs_root: str | Path = "runs",
) -> TrainResult:
    """Check every precondition, then train and save the run into its folder.

    The folder: ``out_dir``; else, when resuming, the run's own folder (its metrics and
    curve continue); else a fresh ``runs_root/<env>-NNN`` (``runs_root/latest`` points to
    it). A folder holding another run is refused unless ``overwrite``.
    ``metrics_format``: ``csv`` or ``jsonl`` (default: the resumed run's, else ``csv``).
    ``progress``: ``True`` shows progress on stderr, a stream shows it there, ``False`` hides it.
    ``require_threshold``: refuse up front an env without a reward threshold (nothing
    could then say the run solved). ``handle_signals``: the first Ctrl-C or SIGTERM stops
    after the current iteration and saves; the result's ``interrupted`` names the signal.
    """
    require_training_extras(tensorboard=tensorboard_dir is not None)
    from pgdeploy.envs.making import policy_spec
    from pgdeploy.training.callbacks import ProgressReporter, TensorBoardWriter
    from pgdeploy.training.folder import RunFolder, detect_metrics_format, new_run_dir
    from pgdeploy.training.signals import StopRequest, stop_on_signals
    from pgdeploy.training.train import train

    spec = policy_spec(
        config.env_id, env_kwargs=config.env_kwargs, wrapper=config.wrapper
    )  # the env can be made, with spaces pgdeploy supports
    if require_threshold and config.solve_threshold is None and spec.reward_threshold is None:
        raise ConfigError(
            f"{config.env_id} has no reward threshold, so no run can count as solved; "
            "set solve_threshold"
        )
    own_dir = resume_from.path.parent if resume_from and resume_from.path else None
    folder_path = Path(out_dir) if out_dir is not None else own_dir
    continuing = own_dir is not None and folder_path is not None and _same(folder_path, own_dir)
    if folder_path is None:
        folder_path = new_run_dir(config.env_id, root=runs_root)
    fmt = metrics_format or (detect_metrics_format(folder_path) if continuing else "csv")
    folder = RunFolder(folder_path, metrics_format=fmt)
    if tensorboard_dir is not None:
        check_writable(tensorboard_dir)
    folder.prepare(overwrite=overwrite, continuing=continuing)  # claims it until the end
    callbacks: list[Any] = []
    try:
        if tensorboard_dir is not None:
            callbacks.append(TensorBoardWriter(tensorboard_dir))
        if progress is not False:
            stream = None if progress is True else progress
            callbacks.append(ProgressReporter(config.total_timesteps, stream=stream))
        signals: contextlib.AbstractContextManager[StopRequest | None] = (
            stop_on_signals() if handle_signals else contextlib.nullcontext()
        )
        with signals as stop:
            return train(
                config,
                out_dir=folder,
                callbacks=tuple(callbacks),
                resume_from=resume_from,
                should_stop=stop,
            )
    finally:
        for callback in callbacks:
            callback.close()
        folder.release()


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()
