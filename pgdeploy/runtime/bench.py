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


def observations(agent: Agent, n: int, seed: int = 0) -> np.ndarray:
    """Observations inside the model's space (unbounded dimensions drawn from N(0, 1))."""
    spec = agent.spec
    rng = np.random.default_rng(seed)
    low = np.clip(np.asarray(spec.obs_low), -1.0, None)
    high = np.clip(np.asarray(spec.obs_high), None, 1.0)
    return rng.uniform(low, high, size=(n, spec.obs_dim)).astype(np.float32)


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
    obs = observations(agent, 1024)
    rows = [obs[i] for i in range(len(obs))]
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
    obs = observations(agent, batch_size)
    agent.act_batch(obs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        agent.act_batch(obs)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return ThroughputResult(batch_size, repeats, median, batch_size / median)


def run_bench(
    agent: Agent, *, batch_sizes: tuple[int, ...] = (1, 64, 4096, 65536), calls: int = 20_000
) -> dict[str, Any]:
    """Act latency over ``calls`` calls and act_batch throughput at each batch size."""
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise InvalidArgumentError(f"calls must be an integer >= 1, got {calls!r}")
    bad = [n for n in batch_sizes if isinstance(n, bool) or not isinstance(n, int) or n < 1]
    if bad or not batch_sizes:
        raise InvalidArgumentError(
            f"batch sizes must be one or more integers >= 1, got {list(batch_sizes)}"
        )
    return {
        "model": str(agent.path),
        "fast_path": agent.uses_fast_path,
        # Graphs are no longer pruned (one canonical session); the key stays until the
        # CLI's bench line stops printing it.
        "pruned_graph": False,
        "batch_threads": agent.batch_threads,
        "act": asdict(act_latency(agent, calls=calls)),
        "act_batch": [asdict(batch_throughput(agent, n)) for n in batch_sizes],
    }


def bench_model(
    path: str | Path,
    *,
    threads: int = 1,
    batch_threads: int | None = None,
    batch_sizes: tuple[int, ...] = (1, 64, 4096, 65536),
    calls: int = 20_000,
) -> dict[str, Any]:
    """Load ``path`` and :func:`run_bench` it (what ``pgdeploy bench`` prints)."""
    agent = Agent.load(path, seed=0, threads=threads, batch_threads=batch_threads)
    return run_bench(agent, batch_sizes=batch_sizes, calls=calls)
