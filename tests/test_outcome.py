"""Honest outcomes: SOLVED / NOT SOLVED as the last line, --require-solved, and a warning
when the run could not learn (a zero gradient, a collapsed entropy)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.training.callbacks import IterationStats
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.outcome import health_warnings, outcome_line, run_evidence
from pgdeploy.training.presets import preset_for
from pgdeploy.training.train import train

GUESS = "tests.tiny_envs:Guess-v0"
STATS = IterationStats(1, 8, 1, 4.0, 4.0, 8.0, 0.1, 0.6, 0.2, 0.1, 80.0)


@pytest.mark.parametrize("entropy_coef", [0.0, 0.01])
def test_mountain_car_warns_that_the_gradient_was_zero_all_run(entropy_coef: float) -> None:
    """With an entropy bonus the gradient's norm is not zero, but the REINFORCE term's is."""
    config = TrainConfig(
        env_id="MountainCar-v0", num_envs=2, total_timesteps=1200, entropy_coef=entropy_coef
    )
    result = train(config)
    assert all((s.grad_norm == 0.0) == (entropy_coef == 0.0) for s in result.history)
    summary = result.summary
    assert not summary["solved"]
    (warning,) = summary["warnings"]
    assert warning.startswith("the policy gradient was exactly zero in all 3 iterations")
    assert outcome_line(summary) == (
        "NOT SOLVED: only 6 episodes finished, fewer than the 100 the solved check averages "
        "(their mean -200.00, threshold -110)"
    )


def test_a_collapse_that_makes_returns_equal_is_named_as_the_collapse() -> None:
    both = [dataclasses.replace(STATS, iteration=i, entropy=0.0, grad_norm=0.0) for i in range(25)]
    (warning,) = health_warnings(both, solved=False)
    assert warning.startswith("the policy's entropy stayed below 0.001 in all 25 iterations")


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
            "threshold 475. Most likely to help: a learning rate a fifth of this one with "
            "--entropy-coef 0.01, or a larger --total-timesteps.",
        ),
        (
            {"solved": False, "reward_threshold": None, "env_id": "X-v0"},
            "NOT SOLVED: X-v0 has no reward threshold (set solve_threshold to judge the run)",
        ),
    ],
)  # fmt: skip
def test_outcome_line(summary: dict[str, object], line: str) -> None:
    assert outcome_line(summary) == line


REACH = "tests.tiny_envs:Reach-v0"
EVIDENCE = {
    "learning_rate": 0.05, "entropy_coef": 0.0, "baseline": "timestep",
    "total_timesteps": 100_000, "preset": {}, "first_batch_mean_return": -0.3,
    "final_entropy": 0.4, "entropy_collapsed": False, "gradient_flat": False,
}  # fmt: skip
HEAD = "NOT SOLVED: the mean return of the last 100 episodes was {:.2f}, below the threshold {:g}: "


def unsolved(
    final: float,
    best: float,
    best_steps: int,
    env: str = REACH,
    threshold: float = 0.8,
    **evidence: object,
) -> dict[str, object]:
    """A summary of an unsolved Reach-like run (threshold 0.8, 100k steps spent)."""
    return {
        "env_id": env, "solved": False, "reward_threshold": threshold, "solve_window": 100,
        "window_full": True, "env_steps": 100_010, "final_window_mean_return": final,
        "best_window_mean_return": best, "best_env_steps": best_steps,
        "evidence": {**EVIDENCE, **evidence},
    }  # fmt: skip


FROZEN_PRESET = {"baseline": "value", "learning_rate": 0.005, "entropy_coef": 0.01}


@pytest.mark.parametrize(
    "summary, tail",
    [
        (  # today's lr 0.05 on the user's env: deterministic, no bonus
            unsolved(-0.5, -0.2, 20_000, entropy_collapsed=True, final_entropy=2e-5),
            "the policy turned almost deterministic (entropy 2e-05) before it solved. Most likely "
            "to help: --learning-rate 0.01 (a fifth of 0.05) with --entropy-coef 0.01.",
        ),
        (  # a bonus already on: a larger one
            unsolved(-0.5, -0.2, 20_000, entropy_collapsed=True, final_entropy=3e-4,
                     learning_rate=0.01, entropy_coef=0.01),
            "the policy turned almost deterministic (entropy 0.0003) before it solved. Most likely "
            "to help: --learning-rate 0.002 (a fifth of 0.01) with --entropy-coef 0.05.",
        ),
        (  # an env with a preset the run did not use: the preset first
            unsolved(0.08, 0.16, 60_000, env="FrozenLake-v1", entropy_collapsed=True,
                     final_entropy=1e-6, first_batch_mean_return=0.0, preset=FROZEN_PRESET),
            "the policy turned almost deterministic (entropy 1e-06) before it solved. Most "
            "likely to help: FrozenLake-v1's preset (--baseline value, --learning-rate 0.005, "
            "--entropy-coef 0.01; pgdeploy train applies it unless --no-preset).",  # it sets lr
        ),
        (  # peaked, then fell (today's defaults on Reach, seed 0)
            unsolved(0.53, 0.776, 41_000),
            "it fell from its best window mean 0.78 (at 41000 env steps, kept in best.pt). "
            "Most likely to help: --learning-rate 0.01 (a fifth of 0.05) or --entropy-coef 0.01.",
        ),
        (  # best window at the very end: the budget
            unsolved(0.71, 0.72, 98_000, learning_rate=0.01, entropy_coef=0.01),
            "it was still improving when the budget of 100000 env steps ran out. Most likely "
            "to help: --total-timesteps 200000.",
        ),
        (  # still improving, with a preset partly unused: the preset's values, then budget
            unsolved(0.6, 0.62, 99_000, env="FrozenLake-v1", first_batch_mean_return=0.0,
                     preset={"baseline": "value"}),
            "it was still improving when the budget of 100000 env steps ran out. Most likely "
            "to help: FrozenLake-v1's preset (--baseline value; pgdeploy train applies it "
            "unless --no-preset) or --total-timesteps 200000.",
        ),
        (  # a tuple-valued preset, written as the flag takes it
            unsolved(-172.0, -92.5, 20_000, env="LunarLander-v3", first_batch_mean_return=-180.0,
                     threshold=200.0, preset={"gamma": 0.995, "hidden_sizes": [64, 64]}),
            "it fell from its best window mean -92.50 (at 20000 env steps, kept in best.pt). "
            "Most likely to help: LunarLander-v3's preset (--gamma 0.995, --hidden-sizes 64,64; "
            "pgdeploy train applies it unless --no-preset) or --learning-rate 0.01 (a fifth of "
            "0.05).",
        ),
        (  # ended below where it began (MiniGrid at lr 0.01, seed 1)
            unsolved(0.0, 0.108, 30_000, first_batch_mean_return=0.26, learning_rate=0.01,
                     entropy_coef=0.01),
            "it ended worse than its first batches (0.26). Most likely to help: "
            "--learning-rate 0.002 (a fifth of 0.01) or --entropy-coef 0.05.",
        ),
        (  # hardly moved from where it began, no value baseline yet
            unsolved(-0.22, -0.2, 50_000),
            "it barely improved on its first batches (-0.30). Most likely to help: --baseline "
            "value or --learning-rate 0.01 (a fifth of 0.05).",
        ),
        (  # levelled off halfway with a value baseline already
            unsolved(0.35, 0.36, 30_000, baseline="value", learning_rate=0.01),
            "it levelled off at a best window mean of 0.36 by 30000 env steps. Most likely "
            "to help: --learning-rate 0.002 (a fifth of 0.01).",
        ),
        (  # equal returns from an exploring policy: nothing to learn from (MountainCar)
            unsolved(-0.5, -0.5, 10_000, gradient_flat=True),
            "every episode of its last batches returned the same, so the gradient was zero. "
            "Most likely to help: a reward shaped to tell episodes apart (a --wrapper), since "
            "REINFORCE learns nothing from equal returns.",
        ),
        (  # equal returns because the policy repeats one episode (MiniGrid at lr 0.05)
            unsolved(0.0, 0.0, 10_000, gradient_flat=True, entropy_collapsed=True,
                     final_entropy=0.0, first_batch_mean_return=0.4),
            "the policy turned almost deterministic (entropy 0) before it solved. Most likely "
            "to help: --learning-rate 0.01 (a fifth of 0.05) with --entropy-coef 0.01.",
        ),
    ],
)  # fmt: skip
def test_not_solved_names_what_the_run_shows_and_what_to_change(
    summary: dict[str, object], tail: str
) -> None:
    line = outcome_line(summary)
    assert (
        line == HEAD.format(summary["final_window_mean_return"], summary["reward_threshold"]) + tail
    )
    assert "\n" not in line and line.endswith(".") and line.count("Most likely to help") == 1
    changes = re.sub(r"\([^)]*\)", "", line.split("Most likely to help: ")[1])
    assert changes.count(" or ") <= 1  # one or two changes


def test_iterations_without_an_update_neither_count_nor_break_a_streak() -> None:
    """A last iteration cut by the budget before any episode finished has NaN statistics."""
    nan = float("nan")
    none = dataclasses.replace(STATS, loss=nan, entropy=nan, grad_norm=nan)
    collapsed = [dataclasses.replace(STATS, iteration=i, entropy=1e-5) for i in range(1, 21)]
    (warning,) = health_warnings([STATS, *collapsed, none], solved=False)
    assert "entropy stayed below 0.001 in the last 20 iterations" in warning
    evidence = run_evidence(TrainConfig(), [none, *collapsed, none])
    assert evidence["entropy_collapsed"] and evidence["final_entropy"] == 1e-5
    assert evidence["first_batch_mean_return"] == STATS.batch_mean_return


@pytest.mark.parametrize(
    "first, last, collapsed",
    [(1.39, 0.006, True), (1.39, 0.05, False), (0.69, 0.01, True), (0.69, 0.02, False)],
)
def test_almost_deterministic_is_judged_against_the_first_entropy(
    first: float, last: float, collapsed: bool
) -> None:
    """Below 2% of the first iteration's entropy (about the uniform policy's) for 20 updates."""
    history = [dataclasses.replace(STATS, entropy=first)]
    history += [dataclasses.replace(STATS, iteration=i, entropy=last) for i in range(2, 22)]
    assert run_evidence(TrainConfig(), history)["entropy_collapsed"] is collapsed
    assert health_warnings(history, solved=False) == []  # the warning keeps its 1e-3


def test_evidence_comes_from_the_config_and_the_history() -> None:
    collapsed = [dataclasses.replace(STATS, iteration=i, entropy=1e-5) for i in range(1, 21)]
    today = {"learning_rate": 0.05, "entropy_coef": 0.0, "baseline": "timestep"}
    evidence = run_evidence(TrainConfig(env_id="FrozenLake-v1", **today), collapsed)
    assert evidence["entropy_collapsed"] and not evidence["gradient_flat"]
    assert evidence["preset"] == {"baseline": "value", "learning_rate": 0.005, "entropy_coef": 0.01}
    assert (evidence["first_batch_mean_return"], evidence["final_entropy"]) == (4.0, 1e-5)
    preset = {k: v for k, v in preset_for("LunarLander-v3").items() if k != "total_timesteps"}
    applied = TrainConfig(env_id="LunarLander-v3", total_timesteps=1000, **preset)
    assert run_evidence(applied, [STATS])["preset"] == {}  # a budget of one's own keeps it
    changed = dataclasses.replace(applied, gamma=0.99)
    assert run_evidence(changed, [STATS])["preset"] == {"gamma": 0.995}  # only what differs
    assert run_evidence(TrainConfig(), [])["final_entropy"] is None


def test_an_unsolved_run_ends_on_its_diagnosis(tmp_path: Path) -> None:
    args = ["train", "--env", REACH, "--total-timesteps", "5000", "-q"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"NOT SOLVED: the mean return of the last 100 episodes was \d+\.\d\d, below the "
        r"threshold 0.8: [^.]+(\.\d+[^.]*)*\. Most likely to help: .+\.",
        last,
    ), last
    summary = load_checkpoint(tmp_path / "model.pt").training
    assert summary["evidence"]["total_timesteps"] == 5000
    assert outcome_line(summary) == last  # the same line from the saved checkpoint


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
