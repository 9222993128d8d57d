"""Scaling rollouts out with Ray workers: env steps/s, wall time to solve, Ray's overhead.

One invocation measures throughput and trains, with the local collector and with 1, 2, 4
and 8 Ray workers (``TrainConfig.workers``):

- Throughput on ``SlowCartPole-v1`` (below) with the same envs on every worker
  (``--envs-per-worker``, 16), for ``--iterations`` batches: env steps/s against one worker
  (the >= 0.8 x N goal). Each worker steps its envs one after another, as one process
  calling a simulator would, so N workers wait on N simulators at once.
- Training to the solved threshold with the run's 16 envs split among the workers, so
  every configuration learns from the same batch (the learning curve and wall time):

- ``SlowCartPole-v1``: CartPole with a fixed 1 ms ``time.sleep`` in every env step, a
  stand-in for a simulator or a robot behind a socket. Envs in one vector env step one
  after another (as sequential socket calls would), so 16 envs cost 16 ms per vector step
  in one process, and 2 ms on each of 8 workers. Seed 0.
- ``CartPole-v1`` itself, seeds 0-4: the learning curve (env steps to solve) with workers
  against the local trainer, and Ray's fixed cost per iteration.

Ray's per-iteration overhead is measured inside the run (``RayCollector.timings``): the
driver's wall time for one ``collect`` (one ``ray.put`` of the weights, N calls, N
batches back, the join) minus the slowest worker's own time inside ``collect``.

Ray runs hermetically (the script re-executes itself in a loopback-only network and PID
namespace, ``unshare``, as root; see docs/scaling-out.md) on this machine, started once
with ``num_cpus`` = the largest worker count (workers reserve no CPU while they run).

    python benchmarks/scale_out.py                      # the full run (~10 min on 2 cores)
    python benchmarks/scale_out.py --quick              # a smoke run: 1-2 workers, seed 0
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

HERE = Path(__file__).resolve().parent
SLOW_ENV = "benchmarks.scale_out:SlowCartPole-v1"
LATENCY_S = 0.001


class StepLatency(gym.Wrapper[Any, Any, Any, Any]):
    """Adds a fixed wall-clock latency to every step (``time.sleep``): a remote simulator."""

    def __init__(self, env: gym.Env[Any, Any], latency_s: float) -> None:
        super().__init__(env)
        self.latency_s = latency_s

    def step(self, action: Any) -> Any:
        time.sleep(self.latency_s)
        return self.env.step(action)


def make_slow_cartpole() -> gym.Env[Any, Any]:
    from gymnasium.envs.classic_control import CartPoleEnv

    return StepLatency(CartPoleEnv(), LATENCY_S)


if "SlowCartPole-v1" not in gym.registry:  # run as __main__ and imported by gym.make
    gym.register(
        "SlowCartPole-v1",
        entry_point=make_slow_cartpole,
        max_episode_steps=500,
        reward_threshold=475.0,
    )


def run(
    env_id: str, seed: int, workers: int, budget: int, *, num_envs: int = 16, solve: bool = True
) -> dict[str, Any]:
    """One training run (to the solved threshold unless ``solve`` is off); its figures."""
    from pgdeploy.envs.making import policy_spec
    from pgdeploy.training.config import TrainConfig
    from pgdeploy.training.train import train

    config = TrainConfig(
        env_id=env_id,
        seed=seed,
        workers=workers,
        num_envs=num_envs,
        total_timesteps=budget,
        stop_on_solve=solve,
    )
    collector = None
    if workers:
        from pgdeploy.training.ray_collector import RayCollector

        collector = RayCollector(config, policy_spec(env_id), seed=seed)
    start = time.perf_counter()
    result = train(config, collector=collector)
    wall = time.perf_counter() - start
    history = result.history
    first, last = history[0], history[-1]
    # Steady-state throughput: from the end of the first iteration (workers started).
    rate = (last.env_steps - first.env_steps) / (last.wall_seconds - first.wall_seconds)
    row: dict[str, Any] = {
        "workers": workers,
        "seed": seed,
        "solved": result.summary["solved"],
        "steps_to_solve": result.summary["steps_to_solve"],
        "env_steps": last.env_steps,
        "iterations": last.iteration,
        "wall": wall,
        "first_iteration": first.wall_seconds,
        "steps_per_s": rate,
    }
    if collector is not None:
        timings = collector.timings[1:]
        row["overhead_ms"] = 1e3 * statistics.median(t.overhead for t in timings)
        row["collect_ms"] = 1e3 * statistics.median(t.wall for t in timings)
        walls = np.diff([s.wall_seconds for s in history])
        row["learner_ms"] = 1e3 * float(np.median(walls - [t.wall for t in timings]))
    return row


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(
        f"{'collector':>10} {'seed':>4} {'solved':>6} {'steps':>7} {'wall s':>7} "
        f"{'start s':>7} {'steps/s':>8} {'collect ms':>10} {'Ray ms':>7} {'learn ms':>8}"
    )
    for r in rows:
        name = f"{r['workers']} workers" if r["workers"] else "local"
        print(
            f"{name:>10} {r['seed']:>4} {r['solved']!s:>6} {fmt(r['steps_to_solve'], 'd'):>7} "
            f"{r['wall']:>7.1f} {r['first_iteration']:>7.2f} {r['steps_per_s']:>8.0f} "
            f"{fmt(r.get('collect_ms'), '.1f'):>10} {fmt(r.get('overhead_ms'), '.1f'):>7} "
            f"{fmt(r.get('learner_ms'), '.1f'):>8}"
        )


def scaling_summary(rows: list[dict[str, Any]], what: str) -> None:
    one = next(r for r in rows if r["workers"] == 1)["steps_per_s"]
    local = next((r for r in rows if r["workers"] == 0), None)
    print(f"\nslow env, {what}: steady-state env steps/s against 1 worker (goal: >= 0.8 x N):")
    for r in rows:
        if r["workers"]:
            ratio = r["steps_per_s"] / one
            verdict = "ok" if ratio >= 0.8 * r["workers"] else "BELOW 0.8 x N"
            print(
                f"  {r['workers']} workers: {ratio:.2f}x ({ratio / r['workers']:.2f} x N) {verdict}"
            )
    if local is not None:
        print(f"  local trainer: {local['steps_per_s'] / one:.2f}x of 1 worker")


def curve_summary(rows: list[dict[str, Any]], worker_counts: list[int]) -> None:
    print("\nCartPole-v1 env steps to solve (median over seeds; all seeds must solve):")
    for workers in [0, *worker_counts]:
        mine = [r for r in rows if r["workers"] == workers]
        steps = [r["steps_to_solve"] for r in mine if r["solved"]]
        name = f"{workers} workers" if workers else "local"
        median = statistics.median(steps) if steps else None
        overhead = [r["overhead_ms"] for r in mine if "overhead_ms" in r]
        extra = f"; Ray overhead {statistics.median(overhead):.1f} ms/iteration" if overhead else ""
        print(f"  {name:>10}: solved {len(steps)}/{len(mine)}, median {fmt(median, '.0f')}{extra}")


def model(slow: list[dict[str, Any]], cartpole: list[dict[str, Any]]) -> None:
    """What 10 and 100 machines would give: a model from the measured figures.

    ``slow`` are the throughput rows (fixed envs per worker). Each machine runs as many
    workers as the largest count measured here, each worker keeps its envs (so
    ``num_envs`` grows with the cluster), and one iteration costs the
    slowest worker's collect (measured, unchanged by more machines) + Ray's overhead
    (fitted a + b x workers) + the learner's update (measured per env step of the batch,
    growing with the batch) + moving the batch to the driver over the network (assumed).
    """
    ray_rows = [r for r in [*slow, *cartpole] if r["workers"]]
    xs = np.array([r["workers"] for r in ray_rows], dtype=float)
    slope, base = np.polyfit(xs, np.array([r["overhead_ms"] for r in ray_rows]), 1)
    slope, base = max(slope, 0.0), max(base, 0.0)
    top = max(slow, key=lambda r: r["workers"])
    batch_steps = top["env_steps"] / top["iterations"]  # mean env steps per iteration
    work_s = (top["collect_ms"] - top["overhead_ms"]) / 1e3
    learn_s_per_step = statistics.median(
        r["learner_ms"] / 1e3 / (r["env_steps"] / r["iterations"]) for r in ray_rows
    )
    bytes_per_step = 4 * 4 + 8 + 4 + 1  # obs (4 x float32), action, reward, mask
    network_bytes_per_s = 1.25e9  # an assumption: 10 Gbit/s into the driver
    print(
        f"\nmodel (an extrapolation, not a measurement): {top['workers']} workers per machine; "
        f"slowest-worker collect {work_s * 1e3:.0f} ms and {batch_steps:.0f} env steps per "
        f"machine per iteration (slow env, measured); Ray overhead {base:.1f} + {slope:.2f} ms "
        f"x workers (fit, one machine, loopback); learner {learn_s_per_step * 1e6:.2f} us per "
        f"batch env step (measured); batches cross a 10 Gbit/s link (assumed)"
    )
    for machines in (1, 10, 100):
        workers = top["workers"] * machines
        steps = batch_steps * machines
        overhead_s = (base + slope * workers) / 1e3
        network_s = steps * bytes_per_step / network_bytes_per_s if machines > 1 else 0.0
        iteration_s = work_s + overhead_s + learn_s_per_step * steps + network_s
        rate = steps / iteration_s
        print(
            f"  {machines:>3} machines ({workers} workers): {rate:>9,.0f} env steps/s = "
            f"{rate / top['steps_per_s']:.1f}x one machine; per iteration: collect "
            f"{work_s * 1e3:.0f} ms, Ray {overhead_s * 1e3:.0f} ms, learner "
            f"{learn_s_per_step * steps * 1e3:.0f} ms, network {network_s * 1e3:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4,8", help="Ray worker counts.")
    parser.add_argument("--seeds", default="0-4", help="CartPole-v1 seeds, e.g. 0-4.")
    parser.add_argument("--budget", type=int, default=400_000, help="Env steps per run at most.")
    parser.add_argument(
        "--envs-per-worker", type=int, default=16, help="Throughput runs: envs on each worker."
    )
    parser.add_argument(
        "--iterations", type=int, default=10, help="Throughput runs: about this many batches."
    )
    parser.add_argument(
        "--quick", action="store_true", help="Smoke run: workers 1,2, seed 0, 15k steps."
    )
    args = parser.parse_args()
    if os.environ.get("PGDEPLOY_SCALE_OUT_INSIDE") != "1":
        sys.exit(reexec_hermetic())
    budget = 15_000 if args.quick else args.budget
    counts = [1, 2] if args.quick else [int(w) for w in args.workers.split(",")]
    lo, _, hi = ("0" if args.quick else args.seeds).partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))

    import ray

    ray.init(
        address="local",
        num_cpus=max(counts),
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        logging_level="WARNING",
    )
    try:
        print(
            f"machine: {os.cpu_count()} cores (shared with other jobs), load average "
            f"{os.getloadavg()[0]:.1f} at start; Ray {ray.__version__}"
        )
        per = args.envs_per_worker
        rows = [
            run(SLOW_ENV, 0, w, per * w * args.iterations * 20, num_envs=per * w, solve=False)
            for w in counts
        ]
        print_rows(f"{SLOW_ENV}: {per} envs per worker, ~{args.iterations} iterations", rows)
        scaling_summary(rows, f"{per} envs per worker (throughput)")
        slow = [run(SLOW_ENV, 0, w, budget) for w in [0, *counts]]
        print_rows(f"{SLOW_ENV} (+{LATENCY_S * 1e3:g} ms per env step), seed 0", slow)
        print(f"load average {os.getloadavg()[0]:.1f}")
        scaling_summary(slow, "16 envs split among the workers (to solve)")
        cartpole = [run("CartPole-v1", s, w, budget) for s in seeds for w in [0, *counts]]
        print_rows("CartPole-v1", cartpole)
        print(f"load average {os.getloadavg()[0]:.1f}")
        curve_summary(cartpole, counts)
        model(rows, cartpole)
    finally:
        ray.shutdown()


def reexec_hermetic() -> int:
    """Run this script again inside a loopback-only network and PID namespace."""
    if shutil.which("unshare") is None:
        raise SystemExit("needs unshare (util-linux) and root: Ray must not reach the network")
    with tempfile.TemporaryDirectory(prefix="pgr-", dir="/tmp") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env |= {
            "PGDEPLOY_SCALE_OUT_INSIDE": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_enable_metrics_collection": "0",
            "RAY_AUTH_MODE": "disabled",
            "RAY_TMPDIR": tmp,
            "PYTHONPATH": str(HERE.parent),
        }
        inner = 'ip link set lo up && exec "$0" "$@"'
        cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", inner]
        return subprocess.run([*cmd, sys.executable, __file__, *sys.argv[1:]], env=env).returncode


if __name__ == "__main__":
    main()
