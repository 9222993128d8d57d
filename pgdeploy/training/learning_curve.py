"""The learning-curve picture written beside every checkpoint."""

from __future__ import annotations

from pathlib import Path

from pgdeploy._optional import require
from pgdeploy.training.callbacks import IterationStats


def plot_learning_curve(
    history: list[IterationStats], path: str | Path, *, title: str, threshold: float | None
) -> Path:
    """Mean return (batch and rolling window) against env steps, saved as PNG."""
    matplotlib = require("matplotlib", extra="train", feature="the learning-curve picture")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s.env_steps for s in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, [s.batch_mean_return for s in history], alpha=0.4, label="batch mean return")
    ax.plot(steps, [s.window_mean_return for s in history], label="mean of last episodes")
    if threshold is not None:
        ax.axhline(threshold, color="grey", linestyle="--", label=f"threshold {threshold:g}")
    ax.set(xlabel="env steps", ylabel="episode return", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
