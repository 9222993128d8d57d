"""The ``pgdeploy`` command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import json
import signal
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pgdeploy import __version__
from pgdeploy._process import claim_process, exit_now
from pgdeploy.errors import PgdeployError


class _Group(click.Group):
    """Turns pgdeploy's typed errors into one clean line and exit code 1 (no traceback).

    The library turns the failures it foresees into PgdeployErrors naming the file and
    what was left intact; an OSError that still escapes (a failing disk in a place no check
    covers) gets the same one-line treatment rather than a traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _ShortUsageError(exc.format_message(), exc.ctx) from exc
        except PgdeployError as exc:
            raise click.ClickException(_one_line(str(exc))) from exc
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            reason = exc.strerror or str(exc)
            raise click.ClickException(_one_line(f"{where}{reason}")) from exc


class _ShortUsageError(click.UsageError):
    """A bad option in two lines (the error, where to get help) instead of click's four."""

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {_one_line(self.format_message())}", err=True)
        if self.ctx is not None:
            click.echo(f"Try '{self.ctx.command_path} --help' for help.", err=True)


def _one_line(message: str) -> str:
    return " ".join(message.split())


class IntList(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """Comma-separated integers (``64,64``), each at least ``min``."""

    name = "N[,N...]"

    def __init__(self, min: int | None = None) -> None:
        self.min = min

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        parts = [part.strip() for part in str(value).split(",")]
        try:
            numbers = tuple(int(part) for part in parts)
        except ValueError:
            self.fail(f"expected comma-separated integers, got {value!r}", param, ctx)
        if self.min is not None and any(n < self.min for n in numbers):
            self.fail(f"every value must be >= {self.min}, got {value!r}", param, ctx)
        return numbers


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pgdeploy")
def main() -> None:
    """Train a REINFORCE policy, export it to ONNX/TorchScript, and run it with onnxruntime."""


_TRUST_ENV_MODULE = click.option(
    "--trust-env-module",
    is_flag=True,
    help="Let an env id read from the model file (module:EnvId) import its module; "
    "off by default, since importing a module runs its code.",
)


#: Extra spellings of generated flags (``--env`` is what SB3/RL Zoo users type).
_ALIASES = {"env_id": ["--env"]}


def _config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One flag per TrainConfig field, generated so new fields appear without CLI edits."""
    from pgdeploy.training.config_files import config_fields

    for field in reversed(config_fields()):
        decls, kwargs = _option(field)
        decls += _ALIASES.get(field.name, [])
        command = click.option(*decls, field.name, **kwargs)(command)
    return command


#: What ``None`` means for the optional config fields, shown as their default.
_OPTIONAL_DEFAULTS = {
    "solve_threshold": "env's reward_threshold",
    "max_episode_steps": "env's time limit",
}


def _option(field: Any) -> tuple[list[str], dict[str, Any]]:
    kind, args = typing.get_origin(field.type), typing.get_args(field.type)
    doc = field.doc.replace("``", "")
    kwargs: dict[str, Any] = {"default": field.default, "show_default": True, "help": doc}
    if field.type is bool:
        return [f"{field.flag}/--no-{field.flag[2:]}"], kwargs
    if kind is typing.Literal:
        return [field.flag], {**kwargs, "type": click.Choice([str(a) for a in args])}
    if kind is tuple:
        default = ",".join(str(v) for v in field.default)
        return [field.flag], {**kwargs, "default": default, "type": IntList()}
    if kind in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        shown = _OPTIONAL_DEFAULTS.get(field.name, "none")
        return [field.flag], {**kwargs, "type": inner, "show_default": shown}
    return [field.flag], {**kwargs, "type": field.type}


@main.command()
@_config_options
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML, YAML or JSON file of config fields; flags given on the command line win.",
)
@click.option(
    "--preset/--no-preset",
    default=True,
    show_default=True,
    help="Apply the env's preset (pgdeploy.training.presets) under the config file and flags.",
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: model.pt, config.json, metrics, learning_curve.png.  [default: the "
    "resumed run's folder, else a new runs/<env>-NNN; runs/latest points to it]",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the run that --out already holds (otherwise such a folder is refused).",
)
@click.option(
    "--metrics-format",
    type=click.Choice(["csv", "jsonl"]),
    default=None,
    help="Per-iteration metrics file: OUT/metrics.csv or OUT/metrics.jsonl.  [default: the "
    "resumed run's, else csv]",
)
@click.option(
    "--tensorboard",
    "tensorboard_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also log scalars for TensorBoard here (needs the 'tensorboard' extra).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output (the final lines stay).")
@click.option(
    "--resume",
    "resume_path",
    default=None,
    type=click.Path(path_type=Path),
    metavar="RUN_DIR_OR_MODEL.pt",
    help="Continue that run (a run folder or its model.pt) with its config, into its own "
    "folder; flags given override the config (not the env or network).",
)
@click.option(
    "--require-solved",
    is_flag=True,
    help="Exit with status 3 when the run ends NOT SOLVED (for scripts and CI).",
)
@_TRUST_ENV_MODULE
@click.pass_context
def train(
    ctx: click.Context,
    /,
    config_file: Path | None,
    preset: bool,
    out_dir: Path | None,
    overwrite: bool,
    metrics_format: str | None,
    tensorboard_dir: Path | None,
    quiet: bool,
    resume_path: Path | None,
    trust_env_module: bool,
    require_solved: bool,
    **fields: Any,
) -> None:
    """Train with REINFORCE; writes OUT/model.pt, OUT/config.json, metrics and a learning curve.

    Every hyperparameter is a flag. Precedence, lowest first: defaults, the env's preset,
    --config FILE, flags given on the command line. The run is saved periodically
    (--checkpoint-every, --checkpoint-seconds), at the end, and on Ctrl-C or SIGTERM. The
    last line says SOLVED or NOT SOLVED.
    """
    from pgdeploy.training.run import outcome_line, resolve_config, run_training

    given = {k: v for k, v in fields.items() if _given(ctx, k)}
    resolved = resolve_config(
        given,
        config_file=config_file,
        resume=resume_path,
        use_preset=preset,
        trust_env_module=trust_env_module,
    )
    if resolved.preset and not quiet:
        click.echo(
            f"preset for {resolved.config.env_id}: {dict(resolved.preset)} (--no-preset to skip)",
            err=True,
        )
    result = run_training(
        resolved.config,
        out_dir,
        resume_from=resolved.resume_from,
        overwrite=overwrite,
        metrics_format=metrics_format,  # type: ignore[arg-type]
        tensorboard_dir=tensorboard_dir,
        progress=not quiet,
        require_threshold=require_solved,
    )
    summary = result.summary
    for warning in summary["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"{summary['stop_reason']} after {summary['env_steps']} env steps, "
        f"{summary['episodes']} episodes ({summary['env_steps_this_process']} steps in "
        f"{summary['seconds_this_process']:.2f} s here, {summary['steps_per_second']:,.0f} "
        f"steps/s); "
        + (f"wrote {result.checkpoint_path}" if result.checkpoint_path else "nothing to save")
    )
    if result.interrupted is not None and result.checkpoint_path is not None:
        run_dir = result.checkpoint_path.parent
        click.echo(f"saved; continue this run with: pgdeploy train --resume {run_dir}")
    click.echo(outcome_line(summary))
    if result.interrupted is not None:
        ctx.exit(128 + int(getattr(signal, result.interrupted)))
    if require_solved and not result.solved:
        ctx.exit(3)


def _given(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source in (
        click.core.ParameterSource.COMMANDLINE,
        click.core.ParameterSource.ENVIRONMENT,
    )


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the files.  [default: beside the checkpoint]",
)
@click.option(
    "--atol",
    default=1e-9,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Absolute floor added to the per-observation float32 bound on probability differences.",
)
@click.option(
    "--target",
    type=click.Choice(["onnx", "c"]),
    default="onnx",
    show_default=True,
    help="onnx: model.onnx and model.torchscript.pt; c: policy.c and policy.h "
    "(dependency-free C99, compiled with cc and verified; see docs/c-target.md).",
)
@click.option(
    "--env",
    "env_id",
    default=None,
    help="Env for on-policy verification.  [default: the checkpoint's, if registered]",
)
@click.option(
    "--vecnormalize",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A Stable-Baselines3 VecNormalize .pkl whose statistics the SB3 model was trained "
    "with (read as data, never unpickled); folded into the graph.",
)
@_TRUST_ENV_MODULE
def export(
    checkpoint: Path,
    out_dir: Path | None,
    atol: float,
    target: str,
    env_id: str | None,
    vecnormalize: Path | None,
    trust_env_module: bool,
) -> None:
    """Export CHECKPOINT (model.pt) to model.onnx + model.torchscript.pt (or C), verified first.

    CHECKPOINT may also be a Stable-Baselines3 zip (PPO, A2C, DQN) or a CleanRL state dict
    (with --env), recognised by content; see docs/from-sb3.md.
    """
    from pgdeploy.importers import foreign_kind
    from pgdeploy.training.checkpoint_file import checkpoint_file

    if foreign_kind(checkpoint) is not None:
        _export_foreign(checkpoint, out_dir, vecnormalize, env_id, target)
        return
    if vecnormalize is not None:
        raise click.UsageError("--vecnormalize applies to Stable-Baselines3 zips only")
    checkpoint_file(checkpoint)  # a wrong path fails now, not after torch's import
    if target == "c":
        from pgdeploy.export import export_c

        c_report = export_c(
            checkpoint, out_dir, atol=atol, env_id=env_id, trust_env_module=trust_env_module
        )
        for notice in c_report.notices:
            click.echo(f"notice: {notice}", err=True)
        c_check = c_report.check
        assert c_check is not None  # export_c verifies unless told not to
        click.echo(
            f"c: {c_report.header} and {c_report.source} compiled with {c_report.compiler} and "
            f"verified on {c_check.n_observations} observations ({c_report.n_random} random, "
            f"{c_report.n_on_policy} on-policy): max |dp| = {c_check.max_abs_diff:.2e} "
            f"({c_check.max_tolerance_ratio:.2g}x its float32 tolerance), action mismatches: "
            f"{c_check.greedy_mismatches} greedy, "
            f"{c_check.sampled_mismatches} sampled"
        )
        return
    from pgdeploy.export.progress import ExportProgress

    progress = ExportProgress()  # stderr: rewritten in place on a terminal, lines otherwise
    progress("loading torch, onnx and the checkpoint")
    from pgdeploy.export import export_checkpoint

    try:
        report = export_checkpoint(
            checkpoint,
            out_dir=out_dir,
            atol=atol,
            env_id=env_id,
            trust_env_module=trust_env_module,
            progress=progress,
        )
    finally:
        progress.close()
    for notice in report.notices:
        click.echo(f"notice: {notice}", err=True)
    for check in (report.onnx, report.torchscript):
        click.echo(
            f"{check.format}: {check.path} verified on {check.n_observations} observations "
            f"({report.n_random} random, {report.n_on_policy} on-policy): max |dp| = "
            f"{check.max_abs_diff:.2e} ({check.max_tolerance_ratio:.2g}x its float32 tolerance), "
            "action mismatches: "
            f"{check.greedy_mismatches} greedy, {check.sampled_mismatches} sampled"
        )


def _export_foreign(
    path: Path, out_dir: Path | None, vecnormalize: Path | None, env_id: str | None, target: str
) -> None:
    from pgdeploy.export.imported import export_foreign

    report = export_foreign(
        path, out_dir=out_dir, vecnormalize=vecnormalize, env_id=env_id, target=target
    )
    origin = report.provenance
    for notice in report.notices:
        click.echo(f"notice: {notice}", err=True)
    click.echo(
        f"onnx: {report.path} ({origin['algorithm']} from {origin['source']} "
        f"{origin['source_version']}) verified on {report.n_observations} observations "
        f"({report.n_on_policy} on-policy) "
        f"against the source policy rebuilt in PyTorch: max |dp| = {report.max_abs_diff:.2e}, "
        f"greedy mismatches: {report.greedy_mismatches}"
    )


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--env", "env_id", default=None, help="Gymnasium env id.  [default: from the model]")
@click.option(
    "--episodes",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Episodes to play.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seeds the env's first reset and the agent.",
)
@click.option("--deterministic", is_flag=True, help="Greedy actions instead of sampling.")
@click.option("--render", is_flag=True, help="Show the env in a window (needs a display).")
@click.option(
    "--record-video",
    "video_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write one MP4 per episode here (gymnasium's RecordVideo; needs the 'video' extra).",
)
@_TRUST_ENV_MODULE
def run(
    model: Path,
    env_id: str | None,
    episodes: int,
    seed: int,
    deterministic: bool,
    render: bool,
    video_dir: Path | None,
    trust_env_module: bool,
) -> None:
    """Play episodes with the runtime agent; print each return, their mean ± std, act latency."""
    from pgdeploy.envs.play import play_model
    from pgdeploy.runtime import EpisodeResult

    def show(index: int, episode: EpisodeResult) -> None:
        click.echo(f"episode {index}: return {episode.total_reward:g} ({episode.length} steps)")

    report = play_model(
        model,
        env_id=env_id,
        episodes=episodes,
        seed=seed,
        deterministic=deterministic,
        render=render,
        video_dir=video_dir,
        on_episode=show,
        trust_env_module=trust_env_module,
    )
    click.echo(
        f"mean return {report.mean_return:.2f} ± {report.std_return:.2f} (mean ± std over "
        f"{episodes} episodes); act latency p50 {report.act_latency_us(50):.1f} us, "
        f"p99 {report.act_latency_us(99):.1f} us"
    )
    if video_dir is not None:
        click.echo(f"videos in {video_dir}")


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(path: Path, as_json: bool) -> None:
    """Print what a model file (.onnx, model.pt, .torchscript.pt) says about itself."""
    from pgdeploy.inspect import describe, format_text

    info = describe(path)
    click.echo(json.dumps(info, indent=2) if as_json else format_text(info))


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--threads",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="onnxruntime intra-op threads.",
)
@click.option(
    "--batch-sizes",
    default="1,64,4096,65536",
    show_default=True,
    type=IntList(min=1),
    help="Comma-separated batch sizes for act_batch.",
)
@click.option(
    "--batch-threads",
    default=None,
    type=click.IntRange(min=1),
    help="act_batch threads.  [default: up to 2]",
)
@click.option(
    "--calls",
    default=20_000,
    show_default=True,
    type=click.IntRange(min=1),
    help="act() calls to time.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def bench(
    model: Path,
    threads: int,
    batch_threads: int | None,
    batch_sizes: tuple[int, ...],
    calls: int,
    as_json: bool,
) -> None:
    """Measure act latency and act_batch throughput of MODEL on this machine."""
    from pgdeploy.runtime.bench import bench_model

    result = bench_model(
        model, threads=threads, batch_threads=batch_threads, batch_sizes=batch_sizes, calls=calls
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    act = result["act"]
    click.echo(
        f"act: p50 {act['p50_us']:.2f} us, p99 {act['p99_us']:.2f} us ({act['calls']} calls, "
        f"fast path: {result['fast_path']}, pruned graph: {result['pruned_graph']}, "
        f"batch threads: {result['batch_threads']})"
    )
    for row in result["act_batch"]:
        click.echo(
            f"act_batch n={row['batch_size']}: {row['median_seconds'] * 1e3:.3f} ms median, "
            f"{row['obs_per_second'] / 1e6:.2f} M obs/s"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def console_main() -> None:
    """The console script (``pgdeploy``, ``python -m pgdeploy``): :func:`main` in a process
    that is the command and nothing else (:mod:`pgdeploy._process`).

    Its heavy imports run with the garbage collector paused and are then frozen, and once
    the command has returned (its files closed, its output written) the process ends
    without the interpreter's teardown; atexit handlers (Ray's shutdown among them) run.
    """
    claim_process()
    try:
        main(prog_name="pgdeploy")
    except SystemExit as stop:  # how click's standalone mode always ends
        exit_now(stop.code)
