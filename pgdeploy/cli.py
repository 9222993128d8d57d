"""``pgdeploy``: each command parses, makes one library call, prints the library's report.
Exit codes: 0 done, 1 a refusal, 2 a bad option, 3 NOT SOLVED under --require-solved, 70 an
internal error (traceback in a file), 130 Ctrl-C before work, 128+N stopped by signal N."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from pgdeploy import __version__
from pgdeploy._process import claim_process, exit_now, one_line, save_traceback
from pgdeploy.errors import PgdeployError
from pgdeploy.training.command import IntList, Kwargs, config_options

EXIT_INTERNAL = 70  #: EX_SOFTWARE: a bug in pgdeploy, not a bad input.
EXIT_INTERRUPTED = 130  #: 128 + SIGINT.


class _Group(click.Group):
    """Every failure becomes one escaped line; an unforeseen one also saves its traceback."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            _interrupted()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _ShortUsageError(exc.format_message(), exc.ctx) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (PgdeployError, OSError) as exc:
            raise click.ClickException(one_line(exc)) from None
        except KeyboardInterrupt:
            _interrupted()
        except Exception as exc:  # a bug: one line here, the traceback in a file
            command = f"pgdeploy {ctx.invoked_subcommand or ''}".strip()
            where = save_traceback(exc)
            click.echo(
                f"Error: internal error in '{command}' ({type(exc).__name__}); the full "
                f"traceback is in {where}; please report it",
                err=True,
            )
            raise click.exceptions.Exit(EXIT_INTERNAL) from None


def _interrupted() -> NoReturn:
    click.echo("Error: interrupted before any work began; nothing was written", err=True)
    raise click.exceptions.Exit(EXIT_INTERRUPTED)


class _ShortUsageError(click.UsageError):
    """A bad option in two lines (the error, where to get help) instead of click's four."""

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {one_line(self.format_message())}", err=True)
        if self.ctx is not None:
            click.echo(f"Try '{self.ctx.command_path} --help' for help.", err=True)


def _say(text: str, *, err: bool = False) -> None:
    """Print library-rendered lines, each escaped: no byte from a file reaches the terminal
    as a control sequence."""
    for line in text.splitlines():
        click.echo(one_line(line), err=err)


TRUST = click.option(
    "--trust-env-module", is_flag=True, help="Let a module:EnvId read from a file be imported."
)
OOB = click.option(
    "--out-of-bounds",
    type=click.Choice(["raise", "clip"]),
    default="raise",
    show_default=True,
    help="An observation outside the model's space: refuse it, or clip it into the space.",
)
SOURCE = click.core.ParameterSource
POSITIVE = click.IntRange(min=1)
ABOVE_0 = click.FloatRange(min=0, min_open=True)
PATH = click.Path(path_type=Path)
FOLDER = click.Path(file_okay=False, path_type=Path)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pgdeploy")
def main() -> None:
    """Train a REINFORCE policy, export it to ONNX/TorchScript/C, run it with onnxruntime.

    Exit codes: 0 done, 1 refused (one line), 2 bad option, 3 NOT SOLVED (--require-solved),
    70 internal error (traceback saved to a file), 130 Ctrl-C at start-up, 128+N signal N.
    """


@main.command()
@config_options
@click.option("--config", "config_file", type=PATH, help="TOML/YAML/JSON of fields; flags win.")
@click.option("--preset/--no-preset", default=True, help="Start from the env's preset.")
@click.option("--out", "out_dir", type=FOLDER, help="Run folder.  [default: runs/<env>-NNN]")
@click.option("--overwrite", is_flag=True, help="Replace the run --out already holds.")
@click.option("--metrics-format", type=click.Choice(["csv", "jsonl"]), help="Metrics file type.")
@click.option("--tensorboard", "tensorboard_dir", type=FOLDER, help="Also log for TensorBoard.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option("--resume", "resume_path", type=PATH, help="Continue a run folder or model.pt.")
@click.option("--require-solved", is_flag=True, help="Exit 3 when the run ends NOT SOLVED.")
@TRUST
@click.pass_context
def train(ctx: click.Context, /, **options: Any) -> None:
    """Train with REINFORCE into a run folder (model.pt, config.json, metrics, curve).

    Precedence, lowest first: defaults, the env's preset, --config, flags. Ctrl-C saves.
    """
    from pgdeploy.envs.making import allow_local_modules
    from pgdeploy.training.command import train_from_flags
    from pgdeploy.training.config_files import config_fields

    fields = {f.name for f in config_fields()}
    given = {k: v for k, v in options.items() if k in fields and _given(ctx, k)}
    allow_local_modules(given.get("env_id"), given.get("wrapper"))
    report = train_from_flags(given, **{k: v for k, v in options.items() if k not in fields})
    _say(report.render())
    ctx.exit(report.exit_code)


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) in (SOURCE.COMMANDLINE, SOURCE.ENVIRONMENT)


@main.command()
@click.argument("checkpoint", type=PATH)
@click.option("--out-dir", type=FOLDER, help="Where to write.  [default: beside CHECKPOINT]")
@click.option("--atol", default=1e-9, type=ABOVE_0, help="Floor added to the float32 bound.")
@click.option("--target", type=click.Choice(["onnx", "c"]), default="onnx", help="Format.")
@click.option("--env", "env_id", help="Env for on-policy checks.  [default: the checkpoint's]")
@click.option("--wrapper", help="module:callable wrapping that env.  [default: the run's]")
@click.option("--quantize", type=click.Choice(["float32", "int8", "int8-integer"]), help="C only.")
@click.option(
    "--min-agreement", type=click.FloatRange(0, 1), help="int8 C: least greedy agreement."
)
@click.option("--vecnormalize", type=PATH, help="SB3 VecNormalize .pkl (read as data).")
@TRUST
def export(checkpoint: Path, target: str, **options: Any) -> None:
    """Export CHECKPOINT (model.pt, an SB3 zip or a CleanRL file) verified, to ONNX or C."""
    from pgdeploy.envs.making import allow_local_modules
    from pgdeploy.export.command import export_file
    from pgdeploy.export.progress import ExportProgress

    allow_local_modules(options.get("env_id"), options.get("wrapper"))
    options = {k: v for k, v in options.items() if v is not None}
    if target != "c" and {"quantize", "min_agreement"} & set(options):
        raise click.UsageError("--quantize and --min-agreement need --target c")
    progress = ExportProgress()  # stderr: rewritten in place on a terminal, lines otherwise
    try:
        report = export_file(checkpoint, target=target, progress=progress, **options)
    finally:
        progress.close()
    _say("".join(f"notice: {n}\n" for n in report.notices), err=True)
    _say(report.render())


@main.command()
@click.argument("model", type=PATH)
@click.option("--env", "env_id", help="Gymnasium env id.  [default: the model's]")
@click.option("--env-kwargs", type=Kwargs(), help="Env constructor keywords.")
@click.option("--wrapper", help="module:callable wrapping the env.")
@click.option("--episodes", default=10, show_default=True, type=POSITIVE)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--deterministic", is_flag=True, help="Greedy actions instead of sampled ones.")
@click.option("--render", is_flag=True, help="Show the env in a window.")
@click.option("--record-video", "video_dir", type=FOLDER, help="One MP4 per episode here.")
@click.option("--allow-env-mismatch", is_flag=True, help="Play an env other than the model's.")
@OOB
@TRUST
def run(model: Path, **options: Any) -> None:
    """Play MODEL (ONNX) in its env; print each return, their mean and the act latency."""
    from pgdeploy.envs.making import allow_local_modules
    from pgdeploy.envs.play import play_model, render_episode

    allow_local_modules(options.get("env_id"), options.get("wrapper"))
    report = play_model(model, on_episode=lambda i, e: _say(render_episode(i, e)), **options)
    _say(report.render())


@main.command()
@click.argument("path", type=PATH)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(path: Path, as_json: bool) -> None:
    """Print what a model file (.onnx, model.pt, .torchscript.pt) says about itself."""
    from pgdeploy.inspect import describe, format_text

    info = describe(path)
    click.echo(json.dumps(info, indent=2, ensure_ascii=True) if as_json else format_text(info))


@main.command()
@click.argument("model", type=PATH)
@click.option("--threads", default=1, show_default=True, type=POSITIVE, help="ORT threads.")
@click.option("--batch-sizes", default="1,64,4096,65536", type=IntList(), help="act_batch sizes.")
@click.option("--batch-threads", type=POSITIVE, help="act_batch threads.  [default: up to 2]")
@click.option("--calls", default=20_000, show_default=True, type=POSITIVE, help="act() calls.")
@OOB
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def bench(model: Path, as_json: bool, **options: Any) -> None:
    """Time act latency and act_batch throughput of MODEL on this machine."""
    from pgdeploy.runtime.bench import bench_model

    report = bench_model(model, **options)
    _say(json.dumps(report.to_dict(), indent=2) if as_json else report.render())


def console_main() -> None:
    """``pgdeploy`` and ``python -m pgdeploy``: :func:`main` in a process that is the command
    alone (:mod:`pgdeploy._process`); Ctrl-C while starting up is one line and status 130."""
    try:
        claim_process()
        main(prog_name="pgdeploy")
    except SystemExit as stop:  # how click's standalone mode always ends
        exit_now(stop.code)
    except KeyboardInterrupt:
        print("Error: interrupted before any work began; nothing was written", file=sys.stderr)
        exit_now(EXIT_INTERRUPTED)
