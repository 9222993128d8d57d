"""``pgdeploy train`` as a library call: its flags, generated from TrainConfig's fields (a
field added to the dataclass becomes a flag, its docstring's first sentence as help, with no
CLI edit), the one call it makes, and the report it prints."""

from __future__ import annotations

import json
import signal
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pgdeploy._process import one_line
from pgdeploy.errors import PgdeployError
from pgdeploy.training.config_files import config_fields

if TYPE_CHECKING:  # imported when a command runs: the CLI's start-up stays light
    from pgdeploy.training.launch import MetricsFormat
    from pgdeploy.training.train import TrainResult


class IntList(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """Comma-separated positive integers (``64,64``)."""

    name = "N[,N...]"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            numbers = tuple(int(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"expected comma-separated integers, got {value!a}", param, ctx)
        if any(n < 1 for n in numbers):
            self.fail(f"every value must be >= 1, got {value!a}", param, ctx)
        return numbers


class Kwargs(click.ParamType):  # type: ignore[type-arg]
    """Env keyword arguments: a JSON object, or ``key=value,key=value`` (values read as JSON
    where they parse, else as strings)."""

    name = "JSON|K=V[,K=V...]"

    def convert(self, value: Any, param: Any, ctx: Any) -> dict[str, Any]:
        from pgdeploy.spec import check_env_kwargs

        if isinstance(value, dict):
            return value
        text = str(value).strip()
        try:
            pairs = json.loads(text) if text.startswith("{") else dict(_pairs(text))
            return check_env_kwargs(pairs)
        except (ValueError, PgdeployError) as exc:
            self.fail(f"expected a JSON object or key=value pairs: {one_line(exc)}", param, ctx)


def _pairs(text: str) -> typing.Iterator[tuple[str, Any]]:
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"{item!a} has no '='")
        try:
            yield key.strip(), json.loads(raw)
        except ValueError:
            yield key.strip(), raw.strip()


def _option(field: Any) -> Callable[[Any], Any]:
    """One train flag per TrainConfig field, so a new field needs no CLI edit."""
    kind, args = typing.get_origin(field.type), typing.get_args(field.type)
    decls = [field.flag, *(["--env"] if field.name == "env_id" else [])]
    kw: dict[str, Any] = {"default": field.default, "show_default": True, "help": field.help}
    if field.type is bool:
        decls = [f"{field.flag}/--no-{field.flag[2:]}"]
    elif kind is typing.Literal:
        kw["type"] = click.Choice([str(a) for a in args])
    elif kind is tuple:
        kw.update(default=",".join(map(str, field.default)), type=IntList())
    elif kind in (typing.Union, types.UnionType):
        kw.update(type=next(a for a in args if a is not type(None)), show_default=field.none_is)
    elif field.name == "env_kwargs":
        kw.update(type=Kwargs(), default=None, show_default=False)
    elif field.name == "wrapper":
        kw.update(default=None, show_default=False)
    else:
        kw["type"] = field.type
    return click.option(*decls, field.name, **kw)


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for config_field in reversed(config_fields()):
        command = _option(config_field)(command)
    return command


@dataclass(frozen=True)
class TrainReport:
    """What ``pgdeploy train`` says at the end, and the exit code it ends with."""

    result: TrainResult
    require_solved: bool = False
    preset: Mapping[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        from pgdeploy.training.outcome import outcome_line

        result, summary = self.result, self.result.summary
        path = result.checkpoint_path
        lines = [f"warning: {w}" for w in summary["warnings"]]
        lines.append(
            f"{summary['stop_reason']} after {summary['env_steps']} env steps, "
            f"{summary['episodes']} episodes ({summary['env_steps_this_process']} steps in "
            f"{summary['seconds_this_process']:.2f} s here, {summary['steps_per_second']:,.0f} "
            "steps/s); " + (f"wrote {path}" if path else "nothing to save")
        )
        if result.interrupted is not None and path is not None:
            lines.append(f"saved; continue this run with: pgdeploy train --resume {path.parent}")
        return "\n".join([*lines, outcome_line(summary)])

    @property
    def exit_code(self) -> int:
        """128+N after signal N (the run was saved); 3 when NOT SOLVED and required; else 0."""
        if self.result.interrupted is not None:
            return 128 + int(getattr(signal, self.result.interrupted))
        return 3 if self.require_solved and not self.result.solved else 0


def train_from_flags(
    given: Mapping[str, Any],
    *,
    config_file: Path | None = None,
    resume_path: Path | None = None,
    preset: bool = True,
    trust_env_module: bool = False,
    out_dir: Path | None = None,
    overwrite: bool = False,
    metrics_format: MetricsFormat | None = None,
    tensorboard_dir: Path | None = None,
    quiet: bool = False,
    require_solved: bool = False,
) -> TrainReport:
    """``pgdeploy train`` as one call: resolve the config (``given``: the fields typed on
    the command line), train into the run folder, and return what to print."""
    from pgdeploy.training.launch import resolve_config, run_training

    resolved = resolve_config(
        given,
        config_file=config_file,
        resume=resume_path,
        use_preset=preset,
        trust_env_module=trust_env_module,
    )
    if resolved.preset and not quiet:
        print(f"preset for {resolved.config.env_id}: {dict(resolved.preset)}", file=sys.stderr)
    result = run_training(
        resolved.config,
        out_dir,
        resume_from=resolved.resume_from,
        overwrite=overwrite,
        metrics_format=metrics_format,
        tensorboard_dir=tensorboard_dir,
        progress=not quiet,
        require_threshold=require_solved,
    )
    return TrainReport(result, require_solved, resolved.preset)
