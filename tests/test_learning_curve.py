"""The learning-curve PNG: drawn with Pillow, readable, and robust to odd histories."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pgdeploy.training.callbacks import IterationStats
from pgdeploy.training.learning_curve import HEIGHT, WIDTH, nice_ticks, plot_learning_curve


def _stats(step: int, batch: float, window: float) -> IterationStats:
    return IterationStats(step, step * 100, step, batch, window, 20.0, 0.1, 0.6, 1.0, 0.1, 1e3)


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
        return np.asarray(image.convert("RGB"))


def test_curves_threshold_and_text_are_drawn(tmp_path: Path) -> None:
    history = [_stats(i, 20.0 + 30 * i, 20.0 + 20 * i) for i in range(1, 21)]
    path = plot_learning_curve(history, tmp_path / "lc.png", title="REINFORCE", threshold=475.0)
    pixels = _pixels(path).astype(int)
    blue = (np.abs(pixels - (31, 119, 180)).sum(axis=2) < 40).sum()
    light = (np.abs(pixels - (158, 202, 225)).sum(axis=2) < 30).sum()
    dark_text = (pixels.sum(axis=2) < 200).sum()
    assert blue > 500 and light > 500 and dark_text > 500


def test_empty_and_non_finite_histories_still_give_a_picture(tmp_path: Path) -> None:
    one = [_stats(1, math.nan, math.nan)]
    for name, history in (("empty", []), ("nan", one), ("single", [_stats(1, 5.0, 5.0)])):
        path = plot_learning_curve(history, tmp_path / f"{name}.png", title=name, threshold=None)
        assert _pixels(path).min() < 100  # axes and labels at least


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0.0, 500.0, [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]),
        (0.0, 68551.0, [0.0, 20000.0, 40000.0, 60000.0, 80000.0]),
        (-500.0, -80.0, [-500.0, -400.0, -300.0, -200.0, -100.0, 0.0]),
        (3.0, 3.0, [2.0, 2.5, 3.0, 3.5, 4.0]),
    ],
)
def test_nice_ticks_cover_the_range_with_round_steps(
    low: float, high: float, expected: list[float]
) -> None:
    ticks = nice_ticks(low, high)
    assert ticks == pytest.approx(expected)
    assert ticks[0] <= low and ticks[-1] >= high
