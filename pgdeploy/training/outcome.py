"""How a run ended, said plainly: SOLVED or NOT SOLVED, and why a run that cannot learn can't.

A run that spends its budget without solving exits like one that solved unless something
says otherwise; these functions build that statement from the run's history and summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pgdeploy.training.callbacks import IterationStats

#: Iterations in a row that make a flat gradient or a collapsed entropy worth a warning.
STREAK = 20
#: Below this entropy (nats) the policy is practically deterministic.
COLLAPSED_ENTROPY = 1e-3


def health_warnings(history: Sequence[IterationStats], *, solved: bool) -> list[str]:
    """Warnings about a run that ended unsolved with a gradient of exactly zero, or with an
    entropy near zero, over its last ``STREAK`` iterations (or all of them, if fewer).

    A solved run is left alone: zero advantages once every episode hits the time limit are
    how a solved policy stays solved.
    """
    if solved or not history:
        return []
    warnings = []
    flat = _trailing(history, lambda s: s.grad_norm == 0.0)
    if flat >= min(STREAK, len(history)):
        warnings.append(
            f"the policy gradient was exactly zero in {_span(flat, len(history))}: every "
            "episode of each batch had the same return, so REINFORCE had nothing to learn from "
            "(e.g. MountainCar-v0 never reaches the goal by chance); this run cannot improve"
        )
    collapsed = _trailing(history, lambda s: s.entropy < COLLAPSED_ENTROPY)
    if collapsed >= min(STREAK, len(history)):
        warnings.append(
            f"the policy's entropy stayed below {COLLAPSED_ENTROPY:g} in "
            f"{_span(collapsed, len(history))}: it acts deterministically without solving; "
            "try a lower learning_rate or an entropy_coef above 0"
        )
    return warnings


def outcome_line(summary: Mapping[str, Any]) -> str:
    """``SOLVED: ...`` or ``NOT SOLVED: ...`` with the final window mean against the threshold."""
    threshold = summary.get("reward_threshold")
    mean = summary.get("final_window_mean_return")
    window = summary.get("solve_window")
    episodes = f"the last {window} episodes" if window else "the last episodes"
    if threshold is None:
        return (
            f"NOT SOLVED: {summary.get('env_id')} has no reward threshold "
            "(set solve_threshold to judge the run)"
        )
    if mean is None:
        return f"NOT SOLVED: no episode finished (threshold {threshold:g})"
    if summary.get("solved"):
        return f"SOLVED: mean return of {episodes} {mean:.2f} >= threshold {threshold:g}"
    if not summary.get("window_full", True):
        return (
            f"NOT SOLVED: only {summary.get('episodes')} episodes finished, fewer than the "
            f"{window} the solved check averages (their mean {mean:.2f}, threshold {threshold:g})"
        )
    return (
        f"NOT SOLVED: the mean return of {episodes} was {mean:.2f}, below the threshold "
        f"{threshold:g}. Most likely to help: a learning rate a tenth of this one with "
        "--entropy-coef 0.01 (the defaults suit CartPole), or a larger --total-timesteps."
    )


def _trailing(history: Sequence[IterationStats], test: Any) -> int:
    count = 0
    for stats in reversed(history):
        if not test(stats):
            break
        count += 1
    return count


def _span(streak: int, total: int) -> str:
    return f"all {total} iterations" if streak == total else f"the last {streak} iterations"
