"""The Ray scenarios of tests/test_ray.py, run in one process on one two-node cluster.

Ray must run hermetically (a loopback-only network namespace, see docs/scaling-out.md),
so test_ray.py re-executes this module under ``unshare`` and asserts on the facts it
writes: ``python -m tests.ray_scenarios OUT.json``. Each scenario's facts are written as
soon as it ends, so a timeout still leaves the finished ones to report.

One :class:`ray.cluster_utils.Cluster` (Ray's own multi-node test harness: a head and a
second raylet on this machine) serves every scenario; starting one costs seconds and
about a gigabyte, so it is never started per scenario.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import ray
import torch
from ray.cluster_utils import Cluster

from pgdeploy.envs.making import policy_spec
from pgdeploy.errors import RolloutWorkerError
from pgdeploy.training.callbacks import IterationStats
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.launch import resolve_config
from pgdeploy.training.ray_collector import RayCollector
from pgdeploy.training.train import TrainResult, train
from tests.tiny_envs import Guess

GUESS = "tests.tiny_envs:Guess-v0"
SLOW_GUESS = "tests.ray_scenarios:SlowGuess-v0"
NODE_ARGS: dict[str, Any] = {"num_cpus": 2, "object_store_memory": 100 * 2**20}
Facts = dict[str, Any]
SECOND_NODE: list[Any] = []  # the non-head node, removed by the last scenario


class SlowGuess(Guess):
    """Guess with 4 ms per step, so a kill lands in the middle of a worker's episodes."""

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        time.sleep(0.004)
        return super().step(action)


gym.register("SlowGuess-v0", entry_point=SlowGuess, reward_threshold=7.0)


def guess_config(**overrides: Any) -> TrainConfig:
    fields: dict[str, Any] = {"env_id": GUESS, "seed": 0, "num_envs": 8, "workers": 2}
    return TrainConfig(**{**fields, "total_timesteps": 20_000, **overrides})


def ray_train(config: TrainConfig, **kwargs: Any) -> tuple[TrainResult, RayCollector]:
    """Train with a RayCollector we keep, to read where its workers ran."""
    collector = RayCollector(config, policy_spec(config.env_id), seed=config.seed)
    return train(config, collector=collector, **kwargs), collector


def same_weights(a: TrainResult, b: TrainResult) -> bool:
    sa, sb = a.checkpoint.state_dict, b.checkpoint.state_dict
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def two_nodes(cluster: Cluster) -> Facts:
    """Two workers, default placement (round robin over the nodes): one on each node."""
    result, collector = ray_train(guess_config())
    walls = sorted(t.wall for t in collector.timings)
    return {
        "nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
        "worker_nodes": [n for n, _ in collector.placements],
        "solved": result.summary["solved"],
        "first_iteration_s": collector.timings[0].wall,
        "median_iteration_s": walls[len(walls) // 2],
        "iterations": len(walls),
    }


def kill_worker(cluster: Cluster) -> Facts:
    """SIGKILL worker 0's process in the middle of an iteration's episodes."""
    config = guess_config(env_id=SLOW_GUESS)
    collector = RayCollector(config, policy_spec(SLOW_GUESS), seed=0)
    before: list[int] = []

    def kill_soon(stats: IterationStats) -> None:
        if stats.iteration == 3:
            before.extend(pid for _, pid in collector.placements)
            threading.Timer(0.05, os.kill, (before[0], signal.SIGKILL)).start()

    result = train(config, collector=collector, callbacks=(kill_soon,))
    return {
        "pids_before": before,
        "pids_after": [pid for _, pid in collector.placements],
        "solved": result.summary["solved"],
        "iterations": result.summary["iterations"],
    }


def same_seed(cluster: Cluster) -> Facts:
    """Two runs, three workers (an uneven 8-env split), one seed; and the local run's seed."""
    config = TrainConfig(seed=5, workers=3, num_envs=8, total_timesteps=6_000)
    first, second = train(config), train(config)
    local = train(dataclasses.replace(config, workers=0))
    return {
        "identical": same_weights(first, second)
        and same_tree(timeless(first.checkpoint.resume), timeless(second.checkpoint.resume)),
        "local_differs": not same_weights(first, local),
        "env_steps": [first.summary["env_steps"], second.summary["env_steps"]],
    }


def timeless(resume: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's resume section without its clock readings (training time, steps/s)."""
    clock = ("wall_seconds", "steps_per_second")
    history = resume["history"]
    keep = [i for i, name in enumerate(history["fields"]) if name not in clock]
    return {
        **{k: v for k, v in resume.items() if k not in clock},
        "history": {
            "fields": [history["fields"][i] for i in keep],
            "rows": history["rows"][:, keep],
        },
    }


def same_tree(a: Any, b: Any) -> bool:
    """Equal nested dicts/lists of tensors and plain values (NaN equal to NaN: an iteration in
    which no episode finished records NaN means)."""
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and bool(torch.isclose(a, b, rtol=0, atol=0, equal_nan=True).all())
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(same_tree(a[k], b[k]) for k in a)
        )
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(same_tree, a, b))
    return bool(a == b)


def one_worker_cartpole(cluster: Cluster) -> Facts:
    """--workers 1 on CartPole to the solved threshold, next to the local collector (with
    CartPole's preset, as pgdeploy train runs it)."""
    local = train(resolve_config({"seed": 0}).config)
    remote = train(resolve_config({"seed": 0, "workers": 1}).config)
    return {
        "local": {k: local.summary[k] for k in ("solved", "steps_to_solve")},
        "workers_1": {k: remote.summary[k] for k in ("solved", "steps_to_solve")},
        "identical": same_weights(local, remote),
    }


def resume(cluster: Cluster) -> Facts:
    """A budget-limited run with workers, its model.pt continued with workers and without."""
    with tempfile.TemporaryDirectory() as tmp:
        first = train(guess_config(total_timesteps=600, solve_window=1000), out_dir=tmp)
        saved = load_checkpoint(Path(tmp) / "model.pt")
        runs = {}
        for workers in (2, 0):
            given = {"env_id": GUESS, "total_timesteps": 3_000, "workers": workers}
            config = resolve_config(given, resume=saved).config
            runs[workers] = train(config, resume_from=saved).summary
    return {
        "first": {k: first.summary[k] for k in ("env_steps", "iterations")},
        "resumed": {w: {k: s[k] for k in ("env_steps", "iterations")} for w, s in runs.items()},
    }


def cli_joins_cluster(cluster: Cluster) -> Facts:
    """``pgdeploy train --workers 2 --ray-address HEAD`` from a second driver process."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pgdeploy", "train", "--env", GUESS, "--num-envs", "8"]
        cmd += ["--workers", "2", "--ray-address", cluster.address, "--out", tmp, "--quiet"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        summary = load_checkpoint(Path(tmp) / "model.pt").training if proc.returncode == 0 else {}
    return {
        "returncode": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr[-2000:],
        "solved": summary.get("solved"),
    }


def env_recipe(cluster: Cluster) -> Facts:
    """Workers make the run's env with its keywords and wrapper: WideGuess with 3 columns
    (2 without the keyword: the policy's input would not fit) and Mission without its text
    (unsupported without the wrapper)."""
    wide = guess_config(env_id="tests.tiny_envs:WideGuess-v0", env_kwargs={"width": 3})
    mission = guess_config(
        env_id="tests.tiny_envs:Mission-v0", wrapper="pgdeploy.envs.wrappers:without_text"
    )
    return {
        name: {k: train(config).summary[k] for k in ("solved", "env_steps")}
        for name, config in (("wide", wide), ("mission", mission))
    }


def no_worker_left(cluster: Cluster) -> Facts:
    """Workers that only one node can host; that node goes: a clear error, in bounded time."""
    node = cluster.add_node(num_cpus=2, resources={"doomed": 1}, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    config = guess_config(env_id=SLOW_GUESS, worker_timeout=3.0)
    options = {"resources": {"doomed": 0.5}}
    collector = RayCollector(config, policy_spec(SLOW_GUESS), seed=0, actor_options=options)
    # Started before the clock matters: on a loaded machine an actor's start alone can
    # take longer than this scenario's 3 s timeout.
    ray.get([actor.ping.remote() for actor in collector.actors], timeout=120)
    removed_at: list[float] = []

    def remove_node(stats: IterationStats) -> None:
        if stats.iteration == 2:
            cluster.remove_node(node, allow_graceful=False)
            removed_at.append(time.monotonic())

    try:
        train(config, collector=collector, callbacks=(remove_node,))
    except RolloutWorkerError as exc:
        return {
            "error": str(exc),
            "error_type": type(exc).__name__,
            "node_removed": bool(removed_at),
            "seconds_after_removal": time.monotonic() - removed_at[0] if removed_at else None,
        }
    return {"error": None, "node_removed": bool(removed_at)}


def kill_node(cluster: Cluster) -> Facts:
    """Remove the second node mid-run: its workers restart on the head and training goes on."""
    config = guess_config(env_id=SLOW_GUESS, workers=4)
    collector = RayCollector(config, policy_spec(SLOW_GUESS), seed=0)
    second = SECOND_NODE[0]
    before: list[str] = []

    def remove_node(stats: IterationStats) -> None:
        if stats.iteration == 3:
            before.extend(node for node, _ in collector.placements)
            cluster.remove_node(second, allow_graceful=False)

    result = train(config, collector=collector, callbacks=(remove_node,))
    return {
        "removed": second.node_id,
        "nodes_before": before,
        "nodes_after": [node for node, _ in collector.placements],
        "solved": result.summary["solved"],
    }


SCENARIOS: list[tuple[str, Callable[[Cluster], Facts]]] = [
    ("two_nodes", two_nodes),
    ("kill_worker", kill_worker),
    ("same_seed", same_seed),
    ("one_worker_cartpole", one_worker_cartpole),
    ("resume", resume),
    ("cli_joins_cluster", cli_joins_cluster),
    ("env_recipe", env_recipe),
    ("no_worker_left", no_worker_left),
    ("kill_node", kill_node),  # last: the cluster has one node afterwards
]


def main(out: Path, only: list[str]) -> None:
    facts: dict[str, Facts] = {}
    start = time.monotonic()
    head = {**NODE_ARGS, "include_dashboard": False}
    # Fast failure detection, so a removed node's actors restart within seconds.
    head["_system_config"] = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
    cluster = Cluster(initialize_head=True, connect=True, head_node_args=head)
    try:
        SECOND_NODE.append(cluster.add_node(**NODE_ARGS))
        cluster.wait_for_nodes()
        facts["cluster"] = {"seconds": time.monotonic() - start}
        for name, scenario in SCENARIOS:
            if only and name not in only:
                continue
            began = time.monotonic()
            try:
                facts[name] = scenario(cluster)
            except Exception:
                facts[name] = {"exception": traceback.format_exc()}
            facts[name]["seconds"] = time.monotonic() - began
            out.write_text(json.dumps(facts, indent=1))
    finally:
        ray.shutdown()
        cluster.shutdown()
    facts["total_seconds"] = {"seconds": time.monotonic() - start}
    out.write_text(json.dumps(facts, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
