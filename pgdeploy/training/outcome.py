"""How a run ended, said plainly: SOLVED or NOT SOLVED, and why a run that cannot learn can't.

A run that spends its budget without solving exits like one that solved unless something
says otherwise; these functions build that statement from the run's history and summary.
An unsolved run's line names what its history shows (a collapsed entropy, a fall from its
best window, a budget spent while still improving, little progress) and the one or two
changes most likely to help; the evidence is saved in the summary (``evidence``), so the
line is the same when rebuilt from a checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pgdeploy.training.callbacks import IterationStats
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.presets import preset_for

#: Iterations in a row that make a flat gradient or a collapsed entropy worth a warning.
STREAK = 20
#: Below this entropy (nats) the policy is practically deterministic.
COLLAPSED_ENTROPY = 1e-3
#: For the final line, a policy whose entropy stayed below this fraction of its first
#: iteration's (about the uniform policy's) is close enough to deterministic to say so
#: (slippery FrozenLake at lr 0.05 ended at 0.006 nats of a uniform 1.39).
NEAR_DETERMINISTIC = 0.02
#: Progress is measured from the run's first batch (about what random actions score), 0,
#: to the threshold, 1. A run whose best window came in the last quarter of its steps was
#: still improving; one whose final window lies this much progress below its best fell from
#: it; one whose best stayed below this much progress barely learned.
LATE = 0.75
FELL = 0.2
LITTLE = 0.2
#: What the line says when a summary has no evidence (checkpoints of older versions).
GENERIC_ADVICE = (
    "Most likely to help: a learning rate a fifth of this one with --entropy-coef 0.01, "
    "or a larger --total-timesteps."
)


def health_warnings(
    history: Sequence[IterationStats], *, solved: bool, flat_streak: int = 0
) -> list[str]:
    """Warnings about a run that ended unsolved with a policy gradient of exactly zero, or
    with an entropy near zero, over its last ``STREAK`` iterations (or all of them, if fewer).
    ``flat_streak``: iterations in a row whose advantages were all zero, counted by the loop
    (with an entropy bonus the gradient's norm is not zero, but the REINFORCE term's is).

    A solved run is left alone: zero advantages once every episode hits the time limit are
    how a solved policy stays solved. Iterations in which no episode finished (no update,
    NaN statistics) neither count nor break a streak.
    """
    history = _updated(history)
    if solved or not history:
        return []
    warnings = []
    flat = _flat(history, flat_streak)
    collapsed = _trailing(history, lambda s: s.entropy < COLLAPSED_ENTROPY)
    if collapsed >= min(STREAK, len(history)):
        # A deterministic policy plays the same episode again and again, so its returns are
        # equal too: the collapse is the cause, not a reward random actions never reach.
        warnings.append(
            f"the policy's entropy stayed below {COLLAPSED_ENTROPY:g} in "
            f"{_span(collapsed, len(history))}: it acts deterministically without solving; "
            "try a lower learning_rate or an entropy_coef above 0"
        )
    elif flat >= min(STREAK, len(history)):
        warnings.append(
            f"the policy gradient was exactly zero in {_span(flat, len(history))}: every "
            "episode of each batch had the same return, so REINFORCE had nothing to learn from "
            "(e.g. MountainCar-v0 never reaches the goal by chance); this run cannot improve"
        )
    return warnings


def run_evidence(
    config: TrainConfig, history: Sequence[IterationStats], *, flat_streak: int = 0
) -> dict[str, Any]:
    """The settings an unsolved run's line weighs, and what its history shows."""
    history = _updated(history)
    preset = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in preset_for(config.env_id).items()
        if k != "total_timesteps"
    }
    used = config.to_dict()
    streak = min(STREAK, len(history))
    low = max(COLLAPSED_ENTROPY, NEAR_DETERMINISTIC * history[0].entropy) if history else 0.0
    return {
        "learning_rate": config.learning_rate,
        "entropy_coef": config.entropy_coef,
        "baseline": config.baseline,
        "total_timesteps": config.total_timesteps,
        "preset": {k: v for k, v in preset.items() if used[k] != v},
        "first_batch_mean_return": history[0].batch_mean_return if history else None,
        "final_entropy": history[-1].entropy if history else None,
        "entropy_collapsed": bool(history)
        and _trailing(history, lambda s: s.entropy < low) >= streak,
        "gradient_flat": bool(history) and _flat(history, flat_streak) >= streak,
    }


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
    line = (
        f"NOT SOLVED: the mean return of {episodes} was {mean:.2f}, below the threshold "
        f"{threshold:g}"
    )
    evidence = summary.get("evidence")
    if not evidence:
        return f"{line}. {GENERIC_ADVICE}"
    finding, changes = diagnose(summary, evidence)
    changes = _not_in_preset(changes, evidence["preset"])
    return f"{line}: {finding}. Most likely to help: {' or '.join(changes[:2])}."


def diagnose(summary: Mapping[str, Any], evidence: Mapping[str, Any]) -> tuple[str, list[str]]:
    """What an unsolved run's history shows, and the changes most likely to help, best first."""
    lr, ent = evidence["learning_rate"], evidence["entropy_coef"]
    lower_lr = f"--learning-rate {lr / 5:g} (a fifth of {lr:g})"
    bonus = f"--entropy-coef {0.01 if ent == 0 else ent * 5:g}"
    preset = [_preset_change(summary["env_id"], evidence["preset"])] if evidence["preset"] else []
    budget = evidence["total_timesteps"]
    best, best_steps = summary.get("best_window_mean_return"), summary.get("best_env_steps")
    final, steps = summary["final_window_mean_return"], summary["env_steps"]
    start, threshold = evidence["first_batch_mean_return"], summary["reward_threshold"]
    if evidence["entropy_collapsed"]:  # first: it also makes every return equal
        finding = (
            f"the policy turned almost deterministic (entropy {evidence['final_entropy']:.1g}) "
            "before it solved"
        )
        return finding, [*preset, f"{lower_lr} with {bonus}"]
    if evidence["gradient_flat"]:
        return (
            "every episode of its last batches returned the same, so the gradient was zero",
            ["a reward shaped to tell episodes apart (a --wrapper), since REINFORCE learns "
             "nothing from equal returns"],
        )  # fmt: skip
    if best is None or best_steps is None or start is None or threshold <= start:
        return "its returns stayed below the threshold", [*preset, lower_lr, bonus]
    progress_best = (best - start) / (threshold - start)  # 0 where it began, 1 the threshold
    progress_final = (final - start) / (threshold - start)
    if progress_final <= -FELL:
        finding = f"it ended worse than its first batches ({start:.2f})"
        return finding, [*preset, lower_lr, bonus]
    if progress_best - progress_final >= FELL:
        finding = (
            f"it fell from its best window mean {best:.2f} (at {best_steps} env steps, "
            "kept in best.pt)"
        )
        return finding, [*preset, lower_lr, bonus]
    if best_steps >= LATE * steps and progress_best >= LITTLE:
        finding = f"it was still improving when the budget of {budget} env steps ran out"
        return finding, [*preset, f"--total-timesteps {2 * budget}"]
    baseline = ["--baseline value"] if evidence["baseline"] != "value" else []
    if progress_best < LITTLE:
        finding = f"it barely improved on its first batches ({start:.2f})"
        return finding, [*preset, *baseline, lower_lr]
    finding = f"it levelled off at a best window mean of {best:.2f} by {best_steps} env steps"
    return finding, [*preset, *baseline, lower_lr]


def _not_in_preset(changes: list[str], preset: Mapping[str, Any]) -> list[str]:
    """``changes`` less those of a flag the suggested preset already sets."""
    flags = {f"--{k.replace('_', '-')}" for k in preset}
    return [c for c in changes if c.split()[0] not in flags]


def _preset_change(env_id: str, preset: Mapping[str, Any]) -> str:
    """The values of the env's preset this run did not use."""
    values = ", ".join(f"--{k.replace('_', '-')} {_flag_value(v)}" for k, v in preset.items())
    return f"{env_id}'s preset ({values}; pgdeploy train applies it unless --no-preset)"


def _flag_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _updated(history: Sequence[IterationStats]) -> list[IterationStats]:
    """The iterations that made an update (the others have NaN statistics)."""
    return [s for s in history if not math.isnan(s.loss)]


def _flat(history: Sequence[IterationStats], flat_streak: int) -> int:
    """Trailing iterations with no learning signal: a zero gradient in the history (runs
    without an entropy bonus, resumed parts included) or the loop's own count."""
    return max(_trailing(history, lambda s: s.grad_norm == 0.0), min(flat_streak, len(history)))


def _trailing(history: Sequence[IterationStats], test: Any) -> int:
    count = 0
    for stats in reversed(history):
        if not test(stats):
            break
        count += 1
    return count


def _span(streak: int, total: int) -> str:
    return f"all {total} iterations" if streak == total else f"the last {streak} iterations"
