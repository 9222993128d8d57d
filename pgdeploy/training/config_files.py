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
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgdeploy._io import atomic_write_text
from pgdeploy._optional import require
from pgdeploy.errors import ConfigError
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


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A flat mapping of TrainConfig fields from ``.toml``, ``.yaml``/``.yml`` or ``.json``.

    Unknown keys are refused here (with the known ones listed) so a typo never silently
    falls back to a default.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".toml":
            data = _load_toml(text)
        elif suffix in (".yaml", ".yml"):
            data = _load_yaml(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(
                f"config file {path} has suffix {suffix!r}; expected .toml, .yaml, .yml or .json"
            )
    except ConfigError:
        raise
    except Exception as exc:  # each parser has its own error type
        raise ConfigError(f"cannot parse config file {path}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"config file {path} must hold a mapping of fields, got {type(data)}")
    known = {f.name for f in config_fields()}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"config file {path} has unknown keys {unknown}; expected some of {sorted(known)}"
        )
    return dict(data)


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
