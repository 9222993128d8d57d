"""Strings from files are data, by class: every string field of a config file and of a model's
metadata carries every payload (terminal escape sequences, a newline forging an error line,
a bidi override, C comment breakout, a ``module:`` whose module writes a marker file). For
every member: no module is imported, nothing reaches the terminal raw, and the command ends
with 0 or one clean error line, never a traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.training.config_files import config_fields
from tests.attack_files import get_meta, load_onnx, marker_module, save_onnx, set_meta

PAYLOADS = {
    "escape": "\x1b]0;pwned\x07\x1b[2J\x1b[31m",
    "newline": "CartPole-v1\nError: forged line",
    "bidi": "Cart\u202epole-v1",
    "c_breakout": "CartPole-v1 *\\\n/ int x;",
    "module": "evilmod:CartPole-v1",
    "module_callable": "evilmod:wrap",
    "nul": "Cart\x00Pole-v1",
}
#: Config fields a file may give as a string (the env id, the wrapper, choices, addresses).
STRING_FIELDS = [f.name for f in config_fields() if f.type is str or "Literal" in str(f.type)]
RAW = ("\x1b", "\x07", "\u202e", "\x00")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working folder holding evilmod.py, on sys.path as under ``python -m pgdeploy``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("evilmod", None)


def check_output(result: Any, marker: Path) -> None:
    text = result.output
    assert not marker.exists(), "a module named by a file was imported"
    assert "Traceback" not in text and result.exit_code in (0, 1), (result.exit_code, text)
    assert not any(ch in text for ch in RAW), ascii(text)
    assert not any(line.startswith("Error: forged") for line in text.splitlines()), text
    if result.exit_code == 1:
        assert [line for line in text.splitlines() if line.startswith("Error:")], text


def config_text(suffix: str, data: dict[str, Any]) -> str:
    """``data`` as TOML, YAML or JSON: JSON's escaped strings are valid in all three."""
    if suffix == "json":
        return json.dumps(data)
    sep = " = " if suffix == "toml" else ": "
    return "".join(f"{json.dumps(k)}{sep}{json.dumps(v)}\n" for k, v in data.items())


CONFIG_CASES = [
    (suffix, field, payload)
    for suffix in ("json", "toml", "yaml")
    for field in [*STRING_FIELDS, "unknown key", "env_kwargs key", "env_kwargs value"]
    for payload in PAYLOADS
]


@pytest.mark.parametrize(("suffix", "field", "payload"), CONFIG_CASES)
def test_config_file_strings(folder: Path, suffix: str, field: str, payload: str) -> None:
    marker = marker_module(folder, "evilmod")
    value = PAYLOADS[payload]
    data: dict[str, Any] = {"total_timesteps": 1, "num_envs": 2}
    if field == "unknown key":
        data[value] = 1
    elif field == "env_kwargs key":
        data["env_kwargs"] = {value: 1}
    elif field == "env_kwargs value":
        data["env_kwargs"] = {"render_mode": value}
    else:
        data[field] = value
    if suffix != "json" and field.startswith("env_kwargs"):
        suffix = "json"  # nested tables: JSON states them the same way
    path = folder / f"c.{suffix}"
    path.write_text(config_text(suffix, data), encoding="utf-8")
    result = CliRunner().invoke(
        main, ["train", "--config", str(path), "--out", str(folder / "out"), "-q"]
    )
    check_output(result, marker)


#: Where a model file's metadata holds strings a command may print or act on.
def _put(model: Any, where: str, value: str) -> None:
    section, _, key = where.partition(".")
    data = get_meta(model, section)
    if key.startswith("config."):
        data.setdefault("config", {})[key[len("config.") :]] = value
    elif key == "action_names":
        data[key] = [value, "right"]
    else:
        data[key] = value
    set_meta(model, section, data)


METADATA_PLACES = [
    "spec.env_id",
    "spec.action_names",
    "training.stop_reason",
    "training.config.env_id",
    "training.config.wrapper",
    "training.note",
]
COMMANDS = {
    "inspect": ["inspect"],
    "inspect --json": ["inspect", "--json"],
    "run": ["run", "--episodes", "1"],
    "bench": ["bench", "--calls", "5", "--batch-sizes", "1"],
}


@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("where", METADATA_PLACES)
def test_model_metadata_strings(
    exported_model: Path, folder: Path, where: str, payload: str
) -> None:
    marker = marker_module(folder, "evilmod")
    model = load_onnx(exported_model)
    _put(model, where, PAYLOADS[payload])
    path = save_onnx(model, folder / "model.onnx")
    for args in COMMANDS.values():
        result = CliRunner().invoke(main, [*args[:1], str(path), *args[1:]])
        check_output(result, marker)
