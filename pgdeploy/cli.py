"""The ``pgdeploy`` command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pgdeploy import __version__
from pgdeploy.errors import PgdeployError


class _Group(click.Group):
    """Turns pgdeploy's typed errors into one clean line and exit code 1 (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PgdeployError as exc:
            raise click.ClickException(str(exc)) from exc


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
        return [field.flag], {
            **kwargs,
            "default": default,
            "callback": _int_tuple,
            "metavar": "N[,N...]",
        }
    if kind in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        shown = _OPTIONAL_DEFAULTS.get(field.name, "none")
        return [field.flag], {**kwargs, "type": inner, "show_default": shown}
    return [field.flag], {**kwargs, "type": field.type}


def _int_tuple(ctx: click.Context, param: click.Parameter, value: Any) -> tuple[int, ...]:
    if isinstance(value, tuple):
        return value
    try:
        return tuple(int(v) for v in str(value).split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from exc


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
    default="runs/latest",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: model.pt, config.json, metrics, learning_curve.png.",
)
@click.option(
    "--metrics-format",
    type=click.Choice(["csv", "jsonl"]),
    default="csv",
    show_default=True,
    help="Per-iteration metrics file: OUT/metrics.csv or OUT/metrics.jsonl.",
)
@click.option(
    "--tensorboard",
    "tensorboard_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also log scalars for TensorBoard here (needs the 'tensorboard' extra).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output (the final line stays).")
@click.option(
    "--resume",
    "resume_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Continue the run saved in this model.pt with its config; flags given override it.",
)
@_TRUST_ENV_MODULE
@click.pass_context
def train(
    ctx: click.Context,
    /,
    config_file: Path | None,
    preset: bool,
    out_dir: Path,
    metrics_format: str,
    tensorboard_dir: Path | None,
    quiet: bool,
    resume_path: Path | None,
    trust_env_module: bool,
    **fields: Any,
) -> None:
    """Train with REINFORCE; writes OUT/model.pt, OUT/config.json, metrics and a learning curve.

    Every hyperparameter is a flag. Precedence, lowest first: defaults, the env's preset,
    --config FILE, flags given on the command line.
    """
    from pgdeploy.training.checkpoint import load_checkpoint
    from pgdeploy.training.run import resolve_config, run_training

    given = {k: v for k, v in fields.items() if _given(ctx, k)}
    resume_from = load_checkpoint(resume_path) if resume_path is not None else None
    resolved = resolve_config(
        given,
        config_file=config_file,
        resume_from=resume_from,
        use_preset=preset,
        trust_env_module=trust_env_module,
    )
    config = resolved.config
    if resolved.preset and not quiet:
        click.echo(
            f"preset for {config.env_id}: {dict(resolved.preset)} (--no-preset to skip)", err=True
        )
    result = run_training(
        config,
        out_dir,
        resume_from=resume_from,
        metrics_format=metrics_format,  # type: ignore[arg-type]
        tensorboard_dir=tensorboard_dir,
        progress=not quiet,
    )
    summary = result.summary
    click.echo(
        f"{summary['stop_reason']} after {summary['env_steps']} env steps, "
        f"{summary['episodes']} episodes, {summary['wall_seconds']:.2f} s; "
        f"wrote {result.checkpoint_path}"
    )


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
@_TRUST_ENV_MODULE
def export(
    checkpoint: Path,
    out_dir: Path | None,
    atol: float,
    target: str,
    env_id: str | None,
    trust_env_module: bool,
) -> None:
    """Export CHECKPOINT (model.pt) to model.onnx + model.torchscript.pt (or C), verified first."""
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
    from pgdeploy.export import export_checkpoint

    report = export_checkpoint(
        checkpoint, out_dir=out_dir, atol=atol, env_id=env_id, trust_env_module=trust_env_module
    )
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


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--env", "env_id", default=None, help="Gymnasium env id.  [default: from the model]")
@click.option("--episodes", default=10, show_default=True, help="Episodes to play.")
@click.option(
    "--seed", default=0, show_default=True, help="Seeds the env's first reset and the agent."
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
    """Play episodes with the runtime agent; print returns and act latency."""
    from pgdeploy.envs import env_id_from_file, make_play_env
    from pgdeploy.runtime import Agent, play

    agent = Agent.load(model, seed=seed, deterministic=deterministic)
    chosen = env_id_from_file(
        agent.spec.env_id,
        source=str(model),
        user_env_id=env_id,
        trust_env_module=trust_env_module,
    )
    env: Any = make_play_env(chosen, render=render, video_dir=video_dir)
    try:
        report = play(agent, env, episodes=episodes, seed=seed)
    finally:
        env.close()
    for index, episode in enumerate(report.episodes):
        click.echo(f"episode {index}: return {episode.total_reward:g} ({episode.length} steps)")
    click.echo(
        f"mean return {report.mean_return:.2f} over {episodes} episodes; act latency "
        f"p50 {report.act_latency_us(50):.1f} us, p99 {report.act_latency_us(99):.1f} us"
    )
    if video_dir is not None:
        click.echo(f"videos in {video_dir}")


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(path: Path, as_json: bool) -> None:
    """Print what a model file (.onnx, model.pt, .torchscript.pt) says about itself."""
    from pgdeploy.export.inspect import describe, format_text

    info = describe(path)
    click.echo(json.dumps(info, indent=2) if as_json else format_text(info))


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--threads", default=1, show_default=True, help="onnxruntime intra-op threads.")
@click.option(
    "--batch-sizes", default="1,64,4096,65536", show_default=True, help="Comma-separated."
)
@click.option(
    "--batch-threads", default=None, type=int, help="act_batch threads.  [default: up to 2]"
)
@click.option("--calls", default=20_000, show_default=True, help="act() calls to time.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def bench(
    model: Path,
    threads: int,
    batch_threads: int | None,
    batch_sizes: str,
    calls: int,
    as_json: bool,
) -> None:
    """Measure act latency and act_batch throughput of MODEL on this machine."""
    from pgdeploy.runtime import Agent
    from pgdeploy.runtime.bench import run_bench

    sizes = tuple(int(s) for s in batch_sizes.split(",") if s.strip())
    agent = Agent.load(model, seed=0, threads=threads, batch_threads=batch_threads)
    result = run_bench(agent, batch_sizes=sizes, calls=calls)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    act = result["act"]
    click.echo(
        f"act: p50 {act['p50_us']:.2f} us, p99 {act['p99_us']:.2f} us ({act['calls']} calls, "
        f"fast path: {result['fast_path']}, batch threads: {result['batch_threads']})"
    )
    for row in result["act_batch"]:
        click.echo(
            f"act_batch n={row['batch_size']}: {row['median_seconds'] * 1e3:.3f} ms median, "
            f"{row['obs_per_second'] / 1e6:.2f} M obs/s"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
