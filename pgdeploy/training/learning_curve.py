"""The learning-curve picture written beside every checkpoint.

Drawn with Pillow (in the train extra) rather than matplotlib: importing matplotlib and
drawing this one chart was a large part of a short ``pgdeploy train`` (docs/performance.md).
The chart is simple
enough to lay out by hand: two return curves against env steps, the solve threshold dashed,
ticks, labels and a legend. Lines are drawn at twice the size and downsampled, which
antialiases them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pgdeploy._io import atomic_write_bytes
from pgdeploy._optional import require
from pgdeploy.training.callbacks import IterationStats

Color = tuple[int, int, int]

WIDTH, HEIGHT = 700, 400  #: final picture, pixels
_SCALE = 2  #: drawn at this multiple, then downsampled (antialiasing)
_MARGIN = {"left": 64, "right": 16, "top": 30, "bottom": 44}  #: plot area inset, final px
_BATCH: Color = (158, 202, 225)  #: light blue: noisy per-batch mean
_WINDOW: Color = (31, 119, 180)  #: blue: mean of the solve window
_THRESHOLD: Color = (128, 128, 128)
_INK: Color = (40, 40, 40)
_GRID: Color = (232, 232, 232)


def learning_curve_png(
    history: Sequence[IterationStats], *, title: str, threshold: float | None
) -> bytes:
    """Mean return (batch and rolling window) against env steps, as PNG bytes."""
    require("PIL", extra="train", feature="the learning-curve picture")
    from PIL import Image, ImageDraw, ImageFont

    steps = [float(s.env_steps) for s in history]
    series = [
        ("batch mean return", _BATCH, [s.batch_mean_return for s in history]),
        ("mean of last episodes", _WINDOW, [s.window_mean_return for s in history]),
    ]
    values = [v for _, _, ys in series for v in ys if math.isfinite(v)]
    if threshold is not None:
        values.append(threshold)
    chart = _Chart(
        x_range=(0.0, max(steps, default=1.0) or 1.0),
        y_range=(min(values, default=0.0), max(values, default=1.0)),
    )
    image = Image.new("RGB", (WIDTH * _SCALE, HEIGHT * _SCALE), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11 * _SCALE)
    chart.draw_axes(draw, font)
    for _, color, ys in series:
        chart.draw_line(draw, steps, ys, color, width=2 * _SCALE)
    legend: list[tuple[str, Color, bool]] = [(label, color, False) for label, color, _ in series]
    if threshold is not None:
        chart.draw_hline(draw, threshold, _THRESHOLD)
        legend.append((f"threshold {threshold:g}", _THRESHOLD, True))
    chart.draw_legend(draw, font, legend)
    s = _SCALE
    draw.text((WIDTH * s // 2, 6 * s), title, fill=_INK, font=font, anchor="ma")
    draw.text((WIDTH * s // 2, (HEIGHT - 6) * s), "env steps", fill=_INK, font=font, anchor="md")
    label = Image.new("RGB", (160 * s, 16 * s), "white")
    ImageDraw.Draw(label).text((80 * s, 8 * s), "episode return", fill=_INK, font=font, anchor="mm")
    rotated = label.rotate(90, expand=True)
    top = (_MARGIN["top"] + (HEIGHT - _MARGIN["top"] - _MARGIN["bottom"]) // 2 - 80) * s
    image.paste(rotated, (2 * s, top))
    buffer = io.BytesIO()
    image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS).save(buffer, format="PNG")
    return buffer.getvalue()


def plot_learning_curve(
    history: Sequence[IterationStats], path: str | Path, *, title: str, threshold: float | None
) -> Path:
    """Write :func:`learning_curve_png` to ``path`` atomically."""
    return atomic_write_bytes(path, learning_curve_png(history, title=title, threshold=threshold))


class _Chart:
    """Maps data to pixels (at the drawing scale) and draws the chart's parts."""

    def __init__(self, *, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        s = _SCALE
        self.left, self.top = _MARGIN["left"] * s, _MARGIN["top"] * s
        self.right = (WIDTH - _MARGIN["right"]) * s
        self.bottom = (HEIGHT - _MARGIN["bottom"]) * s
        self.x_ticks = nice_ticks(*x_range)
        self.y_ticks = nice_ticks(*y_range)
        self.x0, self.x1 = self.x_ticks[0], self.x_ticks[-1]
        pad = 0.03 * (self.y_ticks[-1] - self.y_ticks[0])  # curves clear of the frame
        self.y0, self.y1 = self.y_ticks[0] - pad, self.y_ticks[-1] + pad

    def px(self, x: float, y: float) -> tuple[float, float]:
        fx = (x - self.x0) / (self.x1 - self.x0)
        fy = (y - self.y0) / (self.y1 - self.y0)
        return self.left + fx * (self.right - self.left), self.bottom - fy * (
            self.bottom - self.top
        )

    def draw_axes(self, draw: Any, font: Any) -> None:
        s = _SCALE
        for x in self.x_ticks:
            px, _ = self.px(x, self.y0)
            draw.line([(px, self.top), (px, self.bottom)], fill=_GRID, width=s)
            draw.text((px, self.bottom + 4 * s), _tick_label(x), fill=_INK, font=font, anchor="ma")
        for y in self.y_ticks:
            _, py = self.px(self.x0, y)
            draw.line([(self.left, py), (self.right, py)], fill=_GRID, width=s)
            draw.text((self.left - 4 * s, py), _tick_label(y), fill=_INK, font=font, anchor="rm")
        draw.rectangle([self.left, self.top, self.right, self.bottom], outline=_INK, width=s)

    def draw_line(
        self, draw: Any, xs: Sequence[float], ys: Sequence[float], color: Color, *, width: int
    ) -> None:
        points = [self.px(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)]
        if len(points) == 1:
            (cx, cy), r = points[0], width
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
        elif points:
            draw.line(points, fill=color, width=width, joint="curve")

    def draw_hline(self, draw: Any, y: float, color: Color) -> None:
        _, py = self.px(self.x0, y)
        dash, x = 8 * _SCALE, float(self.left)
        while x < self.right:
            draw.line([(x, py), (min(x + dash, self.right), py)], fill=color, width=2 * _SCALE)
            x += 2 * dash

    def draw_legend(self, draw: Any, font: Any, entries: list[tuple[str, Color, bool]]) -> None:
        s = _SCALE
        row, swatch = 16 * s, 22 * s
        width = swatch + 12 * s + max(int(draw.textlength(t, font=font)) for t, _, _ in entries)
        x1, y1 = self.right - 8 * s, self.bottom - 8 * s
        x0, y0 = x1 - width - 8 * s, y1 - row * len(entries) - 6 * s
        draw.rectangle([x0, y0, x1, y1], fill="white", outline=_GRID, width=s)
        for i, (text, color, dashed) in enumerate(entries):
            y = y0 + 3 * s + row * i + row // 2
            if dashed:
                for start in (0, swatch * 2 // 3):
                    seg = [(x0 + 6 * s + start, y), (x0 + 6 * s + start + swatch // 3, y)]
                    draw.line(seg, fill=color, width=2 * s)
            else:
                draw.line([(x0 + 6 * s, y), (x0 + 6 * s + swatch, y)], fill=color, width=2 * s)
            draw.text((x0 + 12 * s + swatch, y), text, fill=_INK, font=font, anchor="lm")


def nice_ticks(low: float, high: float, *, target: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    if high <= low:
        low, high = low - 1.0, high + 1.0
    raw = (high - low) / target
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    count = math.ceil(round((high - first) / step, 9))
    return [first + i * step for i in range(count + 1)]


def _tick_label(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k"
    return f"{round(value, 6):g}"
