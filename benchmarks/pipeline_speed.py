"""Pipeline speed: every goal of issue 13 as a ratio against a reference measured in the same run.

    PYTHONPATH=. python benchmarks/pipeline_speed.py [--seeds 0-4] [--solve-seeds 0-9]
        [--export-pairs 5] [--existing]

Whole processes are measured in pairs, reference first, run alternately (A B A B ...), so
load from other jobs on a shared machine hits both sides; each ratio is of medians.

- train: ``python -m pgdeploy train --seed S --quiet`` vs ``python -c "import torch"``,
  seeds ``--seeds``; seeds ``--solve-seeds`` must all solve, median env steps <= 100k.
- export: ``python -m pgdeploy export model.pt`` (progress on, stderr a pipe) vs the same.
- act: ``Agent.act`` vs the reference ``select_action`` (autograd on, as the tutorial runs
  it) in this process, in alternating blocks; p99 / p50 of ``act``.
- act_batch at 65,536: vs a bare ``InferenceSession.run`` of the same graph and batch (its
  sampled output, uniforms given) and vs PyTorch eager + ``Categorical``, each side in its
  own process (``benchmarks/batch_rate.py``), alternating.
- LunarLander-v3: the collector's valid env steps/s with the default vectorisation vs the
  collector of the commit the issue measured (``BASELINE_COMMIT``, extracted with ``git
  archive``), each in its own process, alternating; today's ``sync`` beside them.
- ``--existing`` also runs benchmarks/train_speed.py and runtime_speed.py (each against
  its own reference in its own run) and prints their summaries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
TORCH = [sys.executable, "-c", "import torch"]
#: The least a process importing torch can cost: no collection during the import and no
#: teardown at exit (what pgdeploy's own process does). Printed beside each goal, no goal.
TORCH_FLOOR = [sys.executable, "-c", "import gc; gc.disable(); import os, torch; os._exit(0)"]
PGDEPLOY = [sys.executable, "-m", "pgdeploy"]


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(s) for s in text.split(",") if s]


def row(name: str, value: float, reference: float, unit: str, goal: str, ok: bool) -> str:
    """One goal: the measured value, its reference, value/reference and the goal on it."""
    return (
        f"{name:<40} {value:>10.3f} {unit:<4} ref {reference:>10.3f} {unit:<4} "
        f"ratio {value / reference:>6.3f}  goal {goal:<9} {'met' if ok else 'NOT met'}"
    )


def bench_train(seeds: list[int], solve_seeds: list[int], out: Path) -> list[str]:
    from pgdeploy.training.checkpoint import load_checkpoint

    torch_s, floor_s, train_s, summaries = [], [], [], {}
    for seed in sorted(set(seeds) | set(solve_seeds)):
        folder = out / f"train{seed}"
        cmd = [*PGDEPLOY, "train", "--seed", str(seed), "--out", str(folder), "--quiet"]
        if seed in seeds:
            torch_s.append(wall(TORCH))
            train_s.append(wall(cmd))
            floor_s.append(wall(TORCH_FLOOR))
        else:
            wall(cmd)
        summaries[seed] = load_checkpoint(folder / "model.pt").training
    t, p = statistics.median(torch_s), statistics.median(train_s)
    solved = [s for s in solve_seeds if summaries[s]["solved"]]
    steps = statistics.median(summaries[s]["steps_to_solve"] or 10**9 for s in solve_seeds)
    vector = {summaries[s].get("vectorization", "?") for s in solve_seeds}
    return [
        "train pairs (seed: import torch / pgdeploy train, s): "
        + ", ".join(
            f"{s}: {a:.2f}/{b:.2f}" for s, a, b in zip(seeds, torch_s, train_s, strict=True)
        ),
        row(f"pgdeploy train, median of {len(seeds)}", p, t, "s", "<= 1.35", p / t <= 1.35),
        _floor_line(p, floor_s),
        f"{'  seeds solved, median env steps':<40} {len(solved)}/{len(solve_seeds)} solved, "
        f"median {steps:,.0f} steps (goal all solved, <= 100k: "
        f"{'met' if len(solved) == len(solve_seeds) and steps <= 100_000 else 'NOT met'}); "
        f"envs: {', '.join(sorted(vector))}",
    ]


def bench_export(checkpoint: Path, pairs: int, out: Path) -> list[str]:
    torch_s, floor_s, export_s = [], [], []
    for i in range(pairs):
        cmd = [*PGDEPLOY, "export", str(checkpoint), "--out-dir", str(out / f"export{i}")]
        torch_s.append(wall(TORCH))
        export_s.append(wall(cmd))
        floor_s.append(wall(TORCH_FLOOR))
    t, e = statistics.median(torch_s), statistics.median(export_s)
    return [
        "export pairs (import torch / pgdeploy export, s): "
        + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(torch_s, export_s, strict=True)),
        row(f"pgdeploy export, median of {pairs}", e, t, "s", "<= 2", e / t <= 2.0),
        _floor_line(e, floor_s),
    ]


def _floor_line(value: float, floor_s: list[float]) -> str:
    floor = statistics.median(floor_s)
    return (
        f"{'  vs the floor (no goal)':<40} {value:.3f} s against {floor:.3f} s for "
        f"{TORCH_FLOOR[-1]!r}: {value / floor:.3f}x"
    )


def alternate(a: Callable[[], float], b: Callable[[], float], rounds: int) -> tuple[float, float]:
    """Medians of ``a()`` and ``b()`` called alternately ``rounds`` times each."""
    xs, ys = [], []
    for _ in range(rounds):
        xs.append(a())
        ys.append(b())
    return statistics.median(xs), statistics.median(ys)


def bench_act(model: Path, blocks: int, calls: int) -> list[str]:
    import gc

    import torch

    sys.path.insert(0, str(HERE))
    from runtime_speed import ReferencePolicy, select_action

    from pgdeploy.runtime import Agent
    from pgdeploy.runtime.bench import call_times_ns, observations

    torch.set_num_threads(1)
    agent = Agent.load(model, seed=0)
    rows = list(observations(agent, 1024))
    reference = ReferencePolicy(agent.spec.obs_dim, agent.spec.n_actions)
    act_times: list[int] = []

    def block(fn: Callable[[np.ndarray], Any], n: int, keep: list[int] | None) -> float:
        times = call_times_ns(fn, rows, n)
        if keep is not None:
            keep.extend(times.tolist())
        return float(np.median(times)) / 1e3

    block(agent.act, 1000, None)
    block(lambda obs: select_action(reference, obs), 200, None)
    gc.disable()  # both sides alike: a collection inside one timed call is not the agent's cost
    try:
        ref_us, act_us = alternate(
            lambda: block(lambda obs: select_action(reference, obs), calls // 10, None),
            lambda: block(agent.act, calls, act_times),
            blocks,
        )
    finally:
        gc.enable()
    p50, p99 = np.percentile(act_times, [50, 99]) / 1e3
    cpu = _thread_cpu_percentiles(agent.act, rows, calls)
    speedup = ref_us / act_us
    return [
        row("Agent.act p50 vs select_action p50", act_us, ref_us, "us", "<= 0.05", speedup >= 20)
        + f"  ({speedup:.1f}x faster)",
        row("Agent.act p99 vs its p50", p99, p50, "us", "<= 3", p99 / p50 <= 3),
        f"{'  (thread CPU time, no preemption)':<40} p50 {cpu[0]:.3f} us, p99 {cpu[1]:.3f} us, "
        f"p99/p50 {cpu[1] / cpu[0]:.2f}",
    ]


def _thread_cpu_percentiles(
    fn: Callable[[np.ndarray], Any], rows: list[np.ndarray], calls: int
) -> tuple[float, float]:
    """p50/p99 of ``fn``'s own CPU time: what is left of the tail when preemption by other
    processes (wall-clock p99 on a loaded machine) is taken out."""
    from pgdeploy.runtime.bench import call_times_ns

    times = call_times_ns(fn, rows, calls, clock=time.thread_time_ns)
    p50, p99 = np.percentile(times, [50, 99]) / 1e3
    return float(p50), float(p99)


def bench_batch(model: Path, checkpoint: Path, rounds: int, n: int = 65_536) -> list[str]:
    """act_batch against a bare session and against PyTorch eager, each side a process of
    its own (benchmarks/batch_rate.py says why), alternating; medians of the processes'
    medians over ``BATCH_CALLS`` calls each."""

    def side(name: str) -> Callable[[], float]:
        cmd = [sys.executable, str(HERE / "batch_rate.py"), name, str(model), str(checkpoint)]
        cmd += [str(n), str(BATCH_CALLS)]
        return lambda: float(subprocess.run(cmd, check=True, capture_output=True).stdout)

    bare_s, agent_s = alternate(side("bare"), side("agent"), rounds)
    eager_s, agent2_s = alternate(side("eager"), side("agent"), rounds)
    eager_x = eager_s / agent2_s
    return [
        row(
            f"act_batch({n:,}) vs bare session.run",
            agent_s * 1e3,
            bare_s * 1e3,
            "ms",
            "<= 1.15",
            agent_s / bare_s <= 1.15,
        ),
        row(
            f"act_batch({n:,}) vs PyTorch eager",
            agent2_s * 1e3,
            eager_s * 1e3,
            "ms",
            "<= 0.2",
            eager_x >= 5,
        )
        + f"  ({eager_x:.1f}x faster; {n / agent2_s / 1e6:.1f}M obs/s)",
    ]


#: Timed calls per batch_rate.py process (after 3 untimed ones).
BATCH_CALLS = 15


#: The commit issue 13's "today" figures were measured on: its collector is the reference.
BASELINE_COMMIT = "d5dbbf2"


def bench_vector(env_id: str, rounds: int, collects: int = 8) -> list[str]:
    """Valid env steps/s of the collector with the default vectorisation against the
    collector of ``BASELINE_COMMIT``, each a fresh process (benchmarks/collector_rate.py),
    alternating; today's ``sync`` is measured beside them to show what the choice adds."""
    try:
        import gymnasium

        gymnasium.make(env_id).close()
    except Exception as exc:  # e.g. LunarLander without Box2D: say so, keep the other rows
        return [f"{env_id}: cannot be made here ({exc}); skipped (make bench-pipeline installs it)"]
    with tempfile.TemporaryDirectory(prefix="pipeline_speed.baseline.") as tree:
        archive = subprocess.run(
            ["git", "-C", str(HERE.parent), "archive", BASELINE_COMMIT, "pgdeploy"],
            capture_output=True,
        )
        if archive.returncode != 0:
            return [f"{env_id}: reference tree {BASELINE_COMMIT} not in this clone; skipped"]
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)

        def rate(path: str, mode: str) -> Callable[[], float]:
            cmd = [sys.executable, str(HERE / "collector_rate.py"), env_id, mode, str(collects)]
            env = {**os.environ, "PYTHONPATH": path}

            def run() -> float:
                out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                value, _, chosen[mode] = out.stdout.strip().partition(" ")
                return float(value)

            return run

        chosen: dict[str, str] = {}
        here = str(HERE.parent)
        old, auto = alternate(rate(tree, "default"), rate(here, "auto"), rounds)
        old_again, sync = alternate(rate(tree, "default"), rate(here, "sync"), rounds)
    return [
        row(
            f"{env_id} steps/s, auto: {chosen['auto']}",
            auto,
            old,
            "/s",
            ">= 1.6",
            auto / old >= 1.6,
        )
        + f"  (ref: the collector at {BASELINE_COMMIT})",
        f"  today's sync (no goal): {sync:,.0f} /s against {old_again:,.0f} /s, "
        f"ratio {sync / old_again:.3f}",
    ]


def run_existing(out: Path) -> list[str]:
    lines = []
    model = out / "export0" / "model.onnx"
    for cmd in (
        [
            sys.executable,
            str(HERE / "train_speed.py"),
            "--seeds",
            "0-4",
            "--reference-seeds",
            "0",
            "--play-seeds",
            "none",
        ],
        [
            sys.executable,
            str(HERE / "runtime_speed.py"),
            str(model),
            "--calls",
            "20000",
            "--torch-calls",
            "5000",
            "--episodes",
            "10",
        ],
    ):
        lines.append("$ " + " ".join(Path(c).name if c.endswith(".py") else c for c in cmd[1:]))
        result = subprocess.run(cmd, check=True, capture_output=True, text=True)
        lines.extend(result.stdout.rstrip().splitlines())
    return lines


def _ml_dtypes_import() -> str:
    """onnx imports ml_dtypes, and its 0.7.0 took 0.47 s to import here (constraints.txt)."""
    code = "import time, numpy; t = time.perf_counter(); import ml_dtypes; "
    code += "print(ml_dtypes.__version__, round(time.perf_counter() - t, 3))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    version, _, seconds = out.stdout.strip().partition(" ")
    return f"ml_dtypes {version or '?'} imports in {seconds or '?'} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-4", help="Timed train seeds.  [default: 0-4]")
    parser.add_argument("--solve-seeds", default="0-9", help="Must all solve.  [default: 0-9]")
    parser.add_argument("--export-pairs", type=int, default=5)
    parser.add_argument("--act-blocks", type=int, default=10)
    parser.add_argument("--act-calls", type=int, default=5000, help="act calls per block")
    parser.add_argument("--batch-rounds", type=int, default=5, help="process pairs")
    parser.add_argument("--vector-env", default="LunarLander-v3")
    parser.add_argument("--vector-rounds", type=int, default=8)
    parser.add_argument("--existing", action="store_true", help="also run the old benchmarks")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONPATH", str(HERE.parent))
    # torch's OpenMP threads spin on the second core after each eager call; act_batch
    # measured right after one ran 14.1 ms instead of 10.9 ms, while eager itself was not
    # faster for it (61.9 ms spinning, 58.8 ms passive). Set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Bytecode for pgdeploy, as an install writes it (this machine sets PYTHONDONTWRITEBYTECODE,
    # which would otherwise make every child compile pgdeploy's modules again).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "pgdeploy")])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"cores: {os.cpu_count()}, load average at start: {load:.2f}, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, {_ml_dtypes_import()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="pipeline_speed.") as tmp:
        out = Path(tmp)
        sections = [
            lambda: bench_train(parse_seeds(args.seeds), parse_seeds(args.solve_seeds), out),
            lambda: bench_export(out / "train0" / "model.pt", args.export_pairs, out),
            lambda: bench_act(out / "export0" / "model.onnx", args.act_blocks, args.act_calls),
            lambda: bench_batch(
                out / "export0" / "model.onnx", out / "train0" / "model.pt", args.batch_rounds
            ),
            lambda: bench_vector(args.vector_env, args.vector_rounds),
        ]
        if args.existing:
            sections.append(lambda: run_existing(out))
        for section in sections:
            for line in section():
                print(line, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at end: {load:.2f}")


if __name__ == "__main__":
    main()
