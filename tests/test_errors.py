"""The error contract: one base class to catch, ValueError where callers expect it, and every
error class raised somewhere in the tests with a message the test matches."""

from __future__ import annotations

import re
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


def test_every_error_class_has_a_test_matching_its_message() -> None:
    """A new error class must come with a test that raises it and matches its message."""
    classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.PgdeployError)
    } - {"PgdeployError"}
    tested = set()
    for path in Path(__file__).parent.glob("*.py"):  # tests and their helper scripts
        text = path.read_text(encoding="utf-8")
        tested |= set(re.findall(r"pytest\.raises\(\s*(?:errors\.)?(\w+Error),\s*match=", text))
        # Errors raised in a subprocess scenario and caught there to report their message.
        tested |= set(re.findall(r"except (?:errors\.)?(\w+Error) as", text))
    tested |= {cls.__name__ for _, cls, _, _ in CASES}
    # Raised inside a Ray cluster run in a loopback-only subprocess; the test there checks
    # the type by name and the message.
    ray_test = (Path(__file__).parent / "test_ray.py").read_text(encoding="utf-8")
    if 'result["error_type"] == "RolloutWorkerError"' in ray_test:
        tested.add("RolloutWorkerError")
    assert classes, "pgdeploy.errors defines no error classes"
    assert classes <= tested, f"no test matches the message of {sorted(classes - tested)}"
