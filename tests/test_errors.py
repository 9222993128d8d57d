"""The error contract: one base class to catch, ValueError where callers expect it, each
class provoked through real library calls with the message matched, and no dead class."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pgdeploy import errors

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "CartPole-v1" / "model.onnx"


def bad_observation(_: Path) -> None:
    from pgdeploy.runtime import Agent

    Agent.load(SHIPPED).act(np.zeros(5, np.float32))


def missing_model(tmp_path: Path) -> None:
    from pgdeploy.runtime import Agent

    Agent.load(tmp_path / "missing.onnx")


def missing_checkpoint(tmp_path: Path) -> None:
    from pgdeploy.training.checkpoint import load_checkpoint

    load_checkpoint(tmp_path / "missing.pt")


def negative_learning_rate(_: Path) -> None:
    from pgdeploy.training.config import TrainConfig

    TrainConfig(learning_rate=-1.0)


def unknown_env(_: Path) -> None:
    from pgdeploy.envs.making import policy_spec

    policy_spec("NoSuchEnv-v0")


def hostile_env_id(_: Path) -> None:
    from pgdeploy.spec import PolicySpec

    PolicySpec("CartPole-v1 */ int x;", 4, 2, (-1.0,) * 4, (1.0,) * 4)


def env_module_from_a_file(_: Path) -> None:
    from pgdeploy.envs.making import env_id_from_file

    env_id_from_file("evilmod:Evil-v0", source="model.onnx")


def absent_module(_: Path) -> None:
    from pgdeploy._optional import require

    require("pgdeploy_no_such_module", extra="train", feature="this test")


# (how to provoke it, the class, whether callers may catch it as ValueError, message)
CASES: list[tuple[Callable[[Path], None], type[errors.PgdeployError], bool, str]] = [
    (bad_observation, errors.ObservationError, True, r"shape \(4,\)"),
    (missing_model, errors.ModelLoadError, False, r"missing\.onnx"),
    (missing_checkpoint, errors.CheckpointError, False, r"missing\.pt"),
    (negative_learning_rate, errors.ConfigError, True, r"learning_rate"),
    (unknown_env, errors.UnsupportedEnvError, True, r"NoSuchEnv-v0"),
    (absent_module, errors.MissingDependencyError, False, r"pgdeploy_no_such_module"),
    (hostile_env_id, errors.InvalidArgumentError, True, r"is not a gymnasium env id"),
    (env_module_from_a_file, errors.EnvModuleRefusedError, True, r"evilmod"),
]


@pytest.mark.parametrize(("provoke", "cls", "is_value_error", "match"), CASES)
def test_one_except_clause_catches_what_the_library_raises(
    tmp_path: Path,
    provoke: Callable[[Path], None],
    cls: type[errors.PgdeployError],
    is_value_error: bool,
    match: str,
) -> None:
    with pytest.raises(errors.PgdeployError, match=match) as info:
        provoke(tmp_path)
    assert type(info.value) is cls
    assert isinstance(info.value, ValueError) is is_value_error


def raised_names(source: str) -> set[str]:
    """Names called in a ``raise`` statement or returned by a function (error factories)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        value = node.exc if isinstance(node, ast.Raise) else getattr(node, "value", None)
        if isinstance(node, (ast.Raise, ast.Return)) and isinstance(value, ast.Call):
            func = value.func
            found.add(getattr(func, "id", getattr(func, "attr", "")))
    return found


def test_every_error_class_is_raised_by_the_library() -> None:
    """No dead error class: each is raised (or built by an error factory) in pgdeploy."""
    classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.PgdeployError)
    } - {"PgdeployError"}
    raised: set[str] = set()
    for path in (ROOT / "pgdeploy").rglob("*.py"):
        raised |= raised_names(path.read_text(encoding="utf-8"))
    assert classes, "pgdeploy.errors defines no error classes"
    assert classes <= raised, f"never raised by pgdeploy: {sorted(classes - raised)}"


def test_the_raise_scan_sees_raises_and_factories_only() -> None:
    source = "def f():\n    raise A('x')\ndef g():\n    return B('y')\nC('z')\n"
    assert raised_names(source) == {"A", "B"}
