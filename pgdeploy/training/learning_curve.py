"""The learning-curve picture written beside every checkpoint."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from pgdeploy._io import atomic_write_bytes
from pgdeploy._optional import require
from pgdeploy.training.callbacks import IterationStats


def learning_curve_png(
    history: Sequence[IterationStats], *, title: str, threshold: float | None
) -> bytes:
    """Mean return (batch and rolling window) against env steps, as PNG bytes."""
    matplotlib = require("matplotlib", extra="train", feature="the learning-curve picture")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s.env_steps for s in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        ax.plot(steps, [s.batch_mean_return for s in history], alpha=0.4, label="batch mean return")
        ax.plot(steps, [s.window_mean_return for s in history], label="mean of last episodes")
        if threshold is not None:
            ax.axhline(threshold, color="grey", linestyle="--", label=f"threshold {threshold:g}")
        ax.set(xlabel="env steps", ylabel="episode return", title=title)
        ax.legend(loc="lower right")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def plot_learning_curve(
    history: Sequence[IterationStats], path: str | Path, *, title: str, threshold: float | None
) -> Path:
    """Write :func:`learning_curve_png` to ``path`` atomically."""
    return atomic_write_bytes(path, learning_curve_png(history, title=title, threshold=threshold))
