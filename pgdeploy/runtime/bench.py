"""Measure an agent: single-observation act latency and batch throughput (numpy + onnxruntime)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import InvalidArgumentError
from pgdeploy.layout import ObsLayout
from pgdeploy.runtime.agent import Agent


@dataclass(frozen=True)
class LatencyResult:
    calls: int
    p50_us: float
    p99_us: float
    mean_us: float


@dataclass(frozen=True)
class ThroughputResult:
    batch_size: int
    repeats: int
    median_seconds: float
    obs_per_second: float


def observations(agent: Agent, n: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """``n`` raw rows inside the model's space: uniform within bounded Box columns (N(0, 1)
    clipped to [-1, 1] where unbounded), whole numbers for categorical and 0/1 columns."""
    spec = agent.spec
    rng = np.random.default_rng(seed)
    low = np.clip(np.asarray(spec.obs_low), -1.0, None)
    high = np.clip(np.asarray(spec.obs_high), None, 1.0)
    rows = rng.uniform(low, np.maximum(low, high), size=(n, spec.obs_dim))
    for leaf in spec.obs_layout.leaves:
        columns = slice(leaf.offset, leaf.offset + leaf.size)
        if leaf.kind == "multi_binary":
            rows[:, columns] = rng.integers(0, 2, size=(n, leaf.size))
        elif leaf.kind in ("discrete", "multi_discrete"):
            first, count = np.asarray(leaf.start), np.asarray(leaf.nvec)
            rows[:, columns] = first + rng.integers(0, count, size=(n, leaf.size))
    return rows.astype(np.float32)


def as_env_observations(layout: ObsLayout, rows: npt.NDArray[np.float32]) -> list[Any]:
    """Each raw row as the env would return it (Box arrays of their shape, Discrete ints,
    Dict/Tuple structures): what ``act`` takes, for any layout."""
    if layout.plain:
        return list(rows)
    return [_rebuild(layout.tree, row, iter(layout.leaves)) for row in rows]


def _rebuild(node: Any, row: npt.NDArray[np.float32], leaves: Any) -> Any:
    kind = node["type"]
    if kind == "dict":
        return {key: _rebuild(sub, row, leaves) for key, sub in dict(node["spaces"]).items()}
    if kind == "tuple":
        return tuple(_rebuild(sub, row, leaves) for sub in node["spaces"])
    leaf = next(leaves)
    values = row[leaf.offset : leaf.offset + leaf.size]
    if kind == "discrete":
        return int(values[0])
    if kind == "box":
        return values.reshape(leaf.shape).copy()
    return values.astype(np.int64).reshape(leaf.shape)


def batch_of(layout: ObsLayout, rows: npt.NDArray[np.float32]) -> Any:
    """A batch of raw rows as a gymnasium vector env would return it, for ``act_batch``."""
    if layout.plain:
        return rows
    singles = as_env_observations(layout, rows)
    return _stack(layout.tree, singles)


def _stack(node: Any, items: list[Any]) -> Any:
    kind = node["type"]
    if kind == "dict":
        return {key: _stack(sub, [i[key] for i in items]) for key, sub in node["spaces"].items()}
    if kind == "tuple":
        return tuple(_stack(sub, [i[k] for i in items]) for k, sub in enumerate(node["spaces"]))
    return np.stack([np.asarray(i) for i in items])


def call_times_ns(
    fn: Callable[[Any], Any],
    rows: Sequence[Any],
    calls: int,
    *,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> npt.NDArray[np.int64]:
    """Nanoseconds of each of ``calls`` calls ``fn(row)``, cycling through ``rows``."""
    times = np.empty(calls, np.int64)
    for i in range(calls):
        row = rows[i % len(rows)]
        start = clock()
        fn(row)
        times[i] = clock() - start
    return times


def act_latency(agent: Agent, *, calls: int = 20_000, warmup: int = 1_000) -> LatencyResult:
    """Per-call ``act`` time, validation and sampling included, over varied observations."""
    rows = as_env_observations(agent.spec.obs_layout, observations(agent, 1024))
    call_times_ns(agent.act, rows, warmup)
    times = call_times_ns(agent.act, rows, calls)
    return LatencyResult(
        calls=calls,
        p50_us=float(np.percentile(times, 50)) / 1e3,
        p99_us=float(np.percentile(times, 99)) / 1e3,
        mean_us=float(times.mean()) / 1e3,
    )


def batch_throughput(agent: Agent, batch_size: int, *, repeats: int = 20) -> ThroughputResult:
    """Median wall time of ``act_batch`` on one batch, as observations per second."""
    obs = batch_of(agent.spec.obs_layout, observations(agent, batch_size))
    agent.act_batch(obs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        agent.act_batch(obs)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return ThroughputResult(batch_size, repeats, median, batch_size / median)


@dataclass(frozen=True)
class BenchReport:
    """What ``pgdeploy bench`` prints: act latency and act_batch throughput of one model."""

    model: str
    fast_path: bool
    batch_threads: int
    act: LatencyResult
    act_batch: list[ThroughputResult]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        a = self.act
        lines = [
            f"act: p50 {a.p50_us:.2f} us, p99 {a.p99_us:.2f} us ({a.calls} calls, fast path: "
            f"{self.fast_path}, batch threads: "
            f"{self.batch_threads})"
        ]
        lines += [
            f"act_batch n={row.batch_size}: {row.median_seconds * 1e3:.3f} ms median, "
            f"{row.obs_per_second / 1e6:.2f} M obs/s"
            for row in self.act_batch
        ]
        return "\n".join(lines)


def run_bench(
    agent: Agent, *, batch_sizes: tuple[int, ...] = (1, 64, 4096, 65536), calls: int = 20_000
) -> BenchReport:
    """Act latency over ``calls`` calls and act_batch throughput at each batch size."""
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise InvalidArgumentError(f"calls must be an integer >= 1, got {calls!r}")
    bad = [n for n in batch_sizes if isinstance(n, bool) or not isinstance(n, int) or n < 1]
    if bad or not batch_sizes:
        raise InvalidArgumentError(
            f"batch sizes must be one or more integers >= 1, got {list(batch_sizes)}"
        )
    return BenchReport(
        model=str(agent.path),
        fast_path=agent.uses_fast_path,
        batch_threads=agent.batch_threads,
        act=act_latency(agent, calls=calls),
        act_batch=[batch_throughput(agent, n) for n in batch_sizes],
    )


def bench_model(
    path: str | Path,
    *,
    threads: int = 1,
    batch_threads: int | None = None,
    batch_sizes: tuple[int, ...] = (1, 64, 4096, 65536),
    calls: int = 20_000,
    out_of_bounds: str = "raise",
) -> BenchReport:
    """Load ``path`` and :func:`run_bench` it (what ``pgdeploy bench`` prints).
    ``out_of_bounds``: ``raise`` (the runtime's ``reject``) or ``clip``, as the agent will run."""
    mode = {"raise": "reject", "reject": "reject", "clip": "clip"}.get(out_of_bounds)
    if mode is None:
        raise InvalidArgumentError(
            f"out_of_bounds must be 'raise' or 'clip', got {out_of_bounds!a}"
        )
    agent = Agent.load(
        path,
        seed=0,
        threads=threads,
        batch_threads=batch_threads,
        out_of_bounds=mode,  # type: ignore[arg-type]
    )
    return run_bench(agent, batch_sizes=batch_sizes, calls=calls)
