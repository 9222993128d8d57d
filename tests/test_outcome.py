"""Honest outcomes: SOLVED / NOT SOLVED as the last line, --require-solved, and a warning
when the run could not learn (a zero gradient, a collapsed entropy)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.training.callbacks import IterationStats
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.outcome import health_warnings, outcome_line
from pgdeploy.training.train import train

GUESS = "tests.tiny_envs:Guess-v0"
STATS = IterationStats(1, 8, 1, 4.0, 4.0, 8.0, 0.1, 0.6, 0.2, 0.1, 80.0)


def test_mountain_car_warns_that_the_gradient_was_zero_all_run() -> None:
    config = TrainConfig(env_id="MountainCar-v0", num_envs=2, total_timesteps=1200)
    summary = train(config).summary
    assert not summary["solved"]
    (warning,) = summary["warnings"]
    assert warning.startswith("the policy gradient was exactly zero in all 3 iterations")
    assert outcome_line(summary) == (
        "NOT SOLVED: only 6 episodes finished, fewer than the 100 the solved check averages "
        "(their mean -200.00, threshold -110)"
    )


def test_collapsed_entropy_and_long_flat_streaks_warn_only_when_unsolved() -> None:
    collapsed = [dataclasses.replace(STATS, iteration=i, entropy=1e-5) for i in range(1, 31)]
    history = [dataclasses.replace(STATS, iteration=0), *collapsed]
    (warning,) = health_warnings(history, solved=False)
    assert "entropy stayed below 0.001 in the last 30 iterations" in warning
    assert health_warnings(history, solved=True) == []
    flat = [dataclasses.replace(STATS, grad_norm=0.0)] * 19
    assert health_warnings([STATS, *flat], solved=False) == []  # 19 < 20: not yet


@pytest.mark.parametrize(
    "summary, line",
    [
        (
            {"solved": True, "reward_threshold": 475.0, "final_window_mean_return": 480.5,
             "solve_window": 100, "window_full": True},
            "SOLVED: mean return of the last 100 episodes 480.50 >= threshold 475",
        ),
        (
            {"solved": False, "reward_threshold": 475.0, "final_window_mean_return": 210.0,
             "solve_window": 100, "window_full": True},
            "NOT SOLVED: the mean return of the last 100 episodes was 210.00, below the "
            "threshold 475. Most likely to help: a learning rate a tenth of this one with "
            "--entropy-coef 0.01 (the defaults suit CartPole), or a larger --total-timesteps.",
        ),
        (
            {"solved": False, "reward_threshold": None, "env_id": "X-v0"},
            "NOT SOLVED: X-v0 has no reward threshold (set solve_threshold to judge the run)",
        ),
    ],
)  # fmt: skip
def test_outcome_line(summary: dict[str, object], line: str) -> None:
    assert outcome_line(summary) == line


def test_cli_last_line_and_require_solved(tmp_path: Path) -> None:
    args = ["train", "--env", GUESS, "--num-envs", "2", "--total-timesteps", "64", "-q"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("NOT SOLVED: only 8 episodes")
    strict = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--require-solved"])
    assert strict.exit_code == 3
    assert strict.stdout.strip().splitlines()[-1].startswith("NOT SOLVED")
    solved = CliRunner().invoke(
        main,
        ["train", "--env", GUESS, "--num-envs", "8", "--total-timesteps", "20000", "-q",
         "--out", str(tmp_path / "c"), "--require-solved"],
    )  # fmt: skip
    assert solved.exit_code == 0, solved.output
    assert solved.stdout.strip().splitlines()[-1].startswith("SOLVED: mean return of the last")
