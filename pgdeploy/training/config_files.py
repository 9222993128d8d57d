"""Configuration from files and flags: ``--config FILE`` (TOML/YAML) and the saved config.json.

The CLI builds one ``pgdeploy train`` flag per :class:`~pgdeploy.training.config.TrainConfig` field
from :func:`config_fields`, so a field added to the dataclass becomes a flag with its
default and its docstring as help, with no CLI change. Precedence, lowest first: the
dataclass defaults, the env's preset (:mod:`pgdeploy.training.presets`), the config file, flags.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import re
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgdeploy._io import atomic_write_text, decode_utf8, read_small_file
from pgdeploy._optional import require
from pgdeploy.errors import ConfigError, EnvModuleRefusedError
from pgdeploy.spec import check_env_id
from pgdeploy.training.config import TrainConfig

#: Fields that are not hyperparameters and get no generated flag.
_NOT_FLAGS = frozenset({"extra"})


@dataclass(frozen=True)
class ConfigField:
    """One TrainConfig field as the CLI sees it."""

    name: str
    type: Any
    default: Any
    doc: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def help(self) -> str:
        """The docstring's first sentence: what the field is. The why (and any measured
        figure) stays in the docstring, not in ``pgdeploy train --help``."""
        text = self.doc.replace("``", "")
        first = re.split(r"(?<=;)\s+|(?<=\.)\s+(?=[A-Z(])", text, maxsplit=1)[0]
        return first.rstrip(";") + ("" if first.endswith(".") else ".")

    @property
    def none_is(self) -> str:
        """What ``None`` means for an optional field, shown as its default."""
        return _NONE_MEANS.get(self.name, "none")


_NONE_MEANS = {"solve_threshold": "env's reward_threshold", "max_episode_steps": "env's time limit"}


def config_fields() -> list[ConfigField]:
    """TrainConfig's fields in order, with resolved types, defaults and docstrings."""
    hints = typing.get_type_hints(TrainConfig)
    docs = field_docs(TrainConfig)
    fields = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in _NOT_FLAGS:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        fields.append(ConfigField(f.name, hints[f.name], default, docs.get(f.name, "")))
    return fields


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal right under a field), as CleanRL writes them."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


#: A config file is a few dozen values; anything larger is refused unread.
MAX_CONFIG_BYTES = 1 << 20

#: Fields whose value names Python code to import (``module:...``).
MODULE_FIELDS = ("env_id", "wrapper")


def load_config_file(
    path: str | Path,
    *,
    trust_env_module: bool = False,
    confirmed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A flat mapping of TrainConfig fields from ``.toml``, ``.yaml``/``.yml`` or ``.json``.

    The file is data: read as at most ``MAX_CONFIG_BYTES`` bytes of UTF-8 from a regular
    file; unknown keys are refused (so a typo never falls back to a default); and a field
    that would import a module (an ``env_id`` or ``wrapper`` with a ``module:`` part) is
    refused unless ``trust_env_module`` or the same value is in ``confirmed`` (what the user
    typed on the command line): only the user's own words name code to run.
    """
    path = Path(path)
    shown = ascii(str(path))
    what = f"config file {shown}"
    data_bytes = read_small_file(
        path, limit=MAX_CONFIG_BYTES, what="config file", error=ConfigError
    )
    text = decode_utf8(data_bytes, what=what, error=ConfigError)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"{what} has suffix {suffix!a}; expected .toml, .yaml, .yml or .json")
    try:
        data = _PARSERS[suffix](text)
    except ConfigError:
        raise
    except Exception as exc:  # each parser has its own error type
        raise ConfigError(f"cannot parse {what}: {_parse_reason(exc)}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must hold a mapping of fields, got {type(data).__name__}")
    known = {f.name for f in config_fields()}
    unknown = sorted(ascii(key) for key in set(data) - known)
    if unknown:
        raise ConfigError(
            f"{what} has unknown keys [{', '.join(unknown[:10])}]; expected some of {sorted(known)}"
        )
    typed = confirmed or {}
    unconfirmed = {k: v for k, v in data.items() if k not in typed or typed[k] != v}
    check_module_fields(unconfirmed, source=what, trusted=trust_env_module)
    return dict(data)


def check_module_fields(data: Mapping[str, Any], *, source: str, trusted: bool) -> None:
    """Refuse a ``module:`` env id or wrapper from a file unless the user trusts it; env ids
    must match the one grammar (:func:`pgdeploy.spec.check_env_id`) either way."""
    if isinstance(data.get("env_id"), str):
        check_env_id(data["env_id"], source=f"{source}: env_id")
    for name in MODULE_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and ":" in value and not trusted:
            module = value.split(":", 1)[0]
            label, flag = ("env", "--env") if name == "env_id" else ("wrapper", "--wrapper")
            raise EnvModuleRefusedError(
                f"{source} names {label} {ascii(value)[:80]}, which would import the Python "
                f"module {ascii(module)[:60]}; pgdeploy never imports a module a file names. "
                f"Pass {flag} {value} on the command line (or --trust-env-module) if you trust "
                "that module"
            )


def _parse_reason(exc: Exception) -> str:
    """The parser's complaint in one escaped line; a too-long integer is named as such."""
    text = str(exc)
    if isinstance(exc, ValueError) and "integer string conversion" in text:
        return "it holds a number too large (more than 4300 digits)"
    if isinstance(exc, RecursionError):
        return "it is nested too deeply"
    line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return ascii(line)[1:-1][:200]


def _load_toml(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        tomllib = require("tomli", extra="train", feature="reading TOML config files")
    return tomllib.loads(text)


#: Nodes a YAML config may expand to, counting every alias use in full. A config is a
#: flat mapping of a few dozen values; "billion laughs" (aliases of aliases) expands
#: 30 lines into 10**9 nodes, which ``yaml.safe_load`` would hand on as shared lists.
MAX_YAML_NODES = 10_000


def _load_yaml(text: str) -> Any:
    yaml = require("yaml", extra="train", feature="reading YAML config files")
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        return None
    size = _expanded_size(node, {})
    if size > MAX_YAML_NODES:
        raise ConfigError(
            f"YAML config expands to more than {MAX_YAML_NODES} values through aliases "
            f"({size}); write the values out instead of nesting anchors"
        )
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """Nodes in the document with every alias expanded, counted without expanding it:
    each distinct node's size is computed once (memo), so the walk is linear in the text.
    A node inside its own value (a recursive alias) counts as unbounded."""
    key = id(node)
    if key in memo:
        if memo[key] < 0:
            return MAX_YAML_NODES + 1
        return memo[key]
    memo[key] = -1
    value = node.value
    total = 1
    if isinstance(value, list):
        for item in value:
            children = item if isinstance(item, tuple) else (item,)
            for child in children:
                total += _expanded_size(child, memo)
                if total > MAX_YAML_NODES:
                    break
    memo[key] = min(total, MAX_YAML_NODES + 1)
    return memo[key]


_PARSERS: dict[str, Callable[[str], Any]] = {
    ".toml": _load_toml,
    ".yaml": _load_yaml,
    ".yml": _load_yaml,
    ".json": json.loads,
}


def build_config(*layers: Mapping[str, Any]) -> TrainConfig:
    """TrainConfig from layers of overrides, later layers winning."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return TrainConfig.from_dict(merged)


def save_config(config: TrainConfig, out_dir: str | Path) -> Path:
    """Write ``out_dir/config.json``: ``pgdeploy train --config OUT/config.json`` reruns it."""
    path = Path(out_dir) / "config.json"
    return atomic_write_text(path, json.dumps(config.to_dict(), indent=2) + "\n")
