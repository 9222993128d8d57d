"""A run's own file cannot destroy it: every hostile resume state is refused in one line.

The family (tests/checkpoint_attacks.py) sets every number a resume trusts to NaN, inf,
-1, 2**300 or worse, swaps every tensor for zero-stride, transposed, non-finite, mistyped
or misshapen ones, breaks the RNG JSON (bad words, nesting 200,000 deep), removes keys and
nests containers past the limits. Each member goes through what ``pgdeploy train --resume``
does (load, resolve the config, train) and must end in a one-line PgdeployError before any
step, never another exception, never a run.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import tests.tiny_envs  # noqa: F401 - registers Guess-v0
from pgdeploy.errors import PgdeployError
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.launch import resolve_config
from pgdeploy.training.train import TrainResult, train
from tests.checkpoint_attacks import apply, mutations

CONFIG = TrainConfig(
    env_id="Guess-v0", num_envs=2, hidden_sizes=(8,), total_timesteps=200, stop_on_solve=False
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("run")
    train(CONFIG, out_dir=folder)
    data: dict[str, Any] = torch.load(folder / "model.pt", weights_only=True)
    data["config"]["total_timesteps"] = 10**6  # budget left: a refusal must have its own reason
    return data


def resume(data: dict[str, Any], path: Path) -> TrainResult:
    """``pgdeploy train --resume path``, stopped before its first step."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # to write the deeply nested members
    try:
        torch.save(data, path)
    finally:
        sys.setrecursionlimit(limit)
    resolved = resolve_config(resume=path)
    return train(resolved.config, resume_from=resolved.resume_from, should_stop=lambda: "SIGINT")


def test_the_unchanged_checkpoint_resumes(base: dict[str, Any], tmp_path: Path) -> None:
    result = resume(base, tmp_path / "model.pt")
    assert result.interrupted == "SIGINT" and result.new_iterations == 0


@pytest.mark.parametrize(
    "stride",
    [pytest.param(1, marks=pytest.mark.slow, id="every member"), pytest.param(16, id="every 16th")],
)
def test_every_hostile_resume_state_is_refused_in_one_line(
    base: dict[str, Any], tmp_path: Path, stride: int
) -> None:
    family = list(mutations(base))
    assert len(family) > 400
    family = family[::stride]
    wrong = []
    for name, mutate in family:
        try:
            resume(apply(base, (name, mutate)), tmp_path / "model.pt")
            wrong.append(f"{name}: resumed")
        except PgdeployError as exc:
            message = str(exc)
            if "\n" in message or "\x1b" in message or len(message) > 600:
                wrong.append(f"{name}: message {message[:200]!r}")
        except Exception as exc:
            wrong.append(f"{name}: {type(exc).__name__}: {str(exc)[:200]}")
    assert not wrong, f"{len(wrong)} of {len(family)}:\n" + "\n".join(wrong)


def test_a_window_of_infinite_returns_never_reports_solved(
    base: dict[str, Any], tmp_path: Path
) -> None:
    data = apply(base, ("", lambda d: d["resume"].__setitem__("window", [math.inf] * 5)))
    data["config"]["solve_window"] = 5
    data["config"]["solve_threshold"] = 1.0
    with pytest.raises(PgdeployError, match=r"window\[0\] must be a finite number, got inf"):
        resume(data, tmp_path / "model.pt")
