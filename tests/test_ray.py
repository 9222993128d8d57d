"""Rollouts on Ray: the collector seam, the optional extra, and a real two-node cluster.

The cluster tests share one :class:`ray.cluster_utils.Cluster` that lives in a
subprocess (tests/ray_scenarios.py) inside a loopback-only network and PID namespace
(``unshare -n -p -f``): Ray then cannot reach beyond the machine, and every process it
starts dies with the namespace, whatever happens to the test. The subprocess has a
timeout, so a hang fails the tests instead of eating CI's time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pgdeploy._optional import install_command
from pgdeploy.errors import ConfigError, MissingDependencyError, RolloutWorkerError
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.rollout import EpisodeBatch, concat_batches, split_envs

ROOT = Path(__file__).resolve().parent.parent
SCENARIO_TIMEOUT_S = 540
HERMETIC_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_enable_metrics_collection": "0",
    "RAY_AUTH_MODE": "disabled",  # one mode for every process of the cluster, no ~/.ray token
}
#: Run a command in a namespace that holds only loopback, and is its processes' only world.
NAMESPACE = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]


def batch(lengths: list[int], *, offset: float = 0.0) -> EpisodeBatch:
    """A hand-made batch: env n's episode lasts lengths[n] steps, obs = offset + t."""
    horizon, n = max(lengths), len(lengths)
    mask = np.arange(horizon)[:, None] < np.array(lengths)[None, :]
    obs = (offset + np.arange(horizon, dtype=np.float32))[:, None, None] * np.ones((1, n, 2))
    rewards = mask.astype(np.float32)
    return EpisodeBatch(
        obs=obs.astype(np.float32),
        actions=np.ones((horizon, n), dtype=np.int64),
        rewards=rewards,
        mask=mask,
        lengths=np.array(lengths, dtype=np.int64),
        episode_returns=rewards.sum(axis=0, dtype=np.float64),
    )


def test_concat_batches_pads_time_and_keeps_worker_order() -> None:
    joined = concat_batches([batch([2, 4], offset=10.0), batch([3], offset=20.0)])
    assert joined.obs.shape == (4, 3, 2)
    assert joined.lengths.tolist() == [2, 4, 3]
    assert joined.episode_returns.tolist() == [2.0, 4.0, 3.0]
    assert joined.mask[:, 2].tolist() == [True, True, True, False]
    assert joined.rewards[3, 2] == 0.0 and joined.actions[3, 2] == 0
    assert joined.obs[:3, 2, 0].tolist() == [20.0, 21.0, 22.0]
    assert joined.env_steps == 9


def test_split_envs_even_larger_shares_first() -> None:
    assert split_envs(16, 3) == [6, 5, 5]
    assert split_envs(16, 16) == [1] * 16
    assert split_envs(8, 1) == [8]


def test_config_refuses_more_workers_than_envs() -> None:
    with pytest.raises(ConfigError, match=r"'workers' must be <= num_envs \(4\)"):
        TrainConfig(num_envs=4, workers=5)
    with pytest.raises(ConfigError, match="'workers' must be >= 0"):
        TrainConfig(workers=-1)
    with pytest.raises(ConfigError, match="'worker_timeout' must be > 0"):
        TrainConfig(workers=1, worker_timeout=0)


def test_workers_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgdeploy.training.train import train

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.delitem(sys.modules, "pgdeploy.training.ray_collector", raising=False)
    with pytest.raises(MissingDependencyError, match=re.escape(install_command("ray"))):
        train(TrainConfig(env_id="tests.tiny_envs:Guess-v0", num_envs=2, workers=1))


def test_silent_worker_past_the_timeout_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The liveness check alone, with Ray's wait stubbed: a worker silent for longer than
    worker_timeout stops the run with what happened and what to do."""
    ray_collector = pytest.importorskip("pgdeploy.training.ray_collector")

    class NoAnswer:
        @staticmethod
        def wait(refs: list[Any], timeout: float = 0) -> tuple[list[Any], list[Any]]:
            return [], refs

    class Actor:
        ping = types.SimpleNamespace(remote=lambda: "ping-ref")

    monkeypatch.setattr(ray_collector, "ray", NoAnswer)
    collector = object.__new__(ray_collector.RayCollector)
    collector.timeout, collector.actors = 5.0, [Actor(), Actor()]
    silent_since = {1: time.monotonic() - 6.5}
    with pytest.raises(
        RolloutWorkerError,
        match=r"rollout worker 1 of 2 has been unreachable for \d+ s "
        r"\(worker_timeout=5 s; last error: no answer to pings\)",
    ):
        collector._check_alive({1: "collect-ref"}, {}, silent_since, {1: "no answer to pings"})


@pytest.mark.parametrize(
    ("env_id", "configured", "expected"),
    [
        ("Acrobot-v1", "auto", "sync"),  # local "auto" would have forked a process per core
        ("CartPole-v1", "auto", "native (CartPoleVectorEnv)"),
        ("CartPole-v1", "sync", "sync"),
    ],
)
def test_workers_step_their_envs_in_their_own_process(
    monkeypatch: pytest.MonkeyPatch, env_id: str, configured: str, expected: str
) -> None:
    """A worker is one process: ``auto`` never forks env processes inside it (8 workers on
    one machine would each take every core), while an explicit choice is honoured."""
    ray_collector = pytest.importorskip("pgdeploy.training.ray_collector")
    import pgdeploy.envs.making
    from pgdeploy.envs.making import policy_spec

    monkeypatch.setattr(pgdeploy.envs.making, "choose_vectorization", lambda *_: "subprocess")
    monkeypatch.setattr(ray_collector, "_reconstructed", lambda: False)
    worker = ray_collector.RolloutWorker(
        policy_spec(env_id),
        num_envs=4,
        env_seed=0,
        sampler_seed=np.random.SeedSequence(0),
        hidden_sizes=(8,),
        obs_clip=10.0,
        torch_threads=1,
        vectorization=ray_collector.worker_vectorization(configured),
    )
    try:
        assert worker.collector.vectorization == expected
    finally:
        worker.collector.close()


def test_local_training_never_imports_ray() -> None:
    code = (
        "import sys; from pgdeploy.training.config import TrainConfig;"
        "from pgdeploy.training.train import train;"
        "train(TrainConfig(env_id='tests.tiny_envs:Guess-v0', total_timesteps=100));"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_train_help_lists_the_worker_flags() -> None:
    from click.testing import CliRunner

    from pgdeploy.cli import main

    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0
    for flag in ("--workers", "--ray-address", "--worker-timeout"):
        assert flag in result.output


# --- On a real two-node cluster ------------------------------------------------------


def _namespace_problem() -> str | None:
    """Why the hermetic namespace cannot be made here, or None when it can."""
    if importlib.util.find_spec("ray") is None:
        return 'ray is not installed (pip install ".[ray]" from the clone)'
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "the unshare and ip commands (util-linux, iproute2) are needed"
    probe = subprocess.run(
        [*NAMESPACE, "ip", "link", "set", "lo", "up"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        return f"cannot make a loopback-only namespace ({probe.stderr.strip()}); run as root"
    return None


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The scenarios' facts, from one cluster per test session even under pytest-xdist:
    the first worker runs them, the others wait on a lock and read what it wrote."""
    problem = _namespace_problem()
    if problem is not None:
        pytest.skip(f"Ray cluster tests skipped: {problem}")
    import fcntl  # POSIX, as unshare is

    # Under xdist every worker's basetemp sits in this run's folder; without xdist the
    # basetemp itself is this run's (its parent is shared by every run: never cache there).
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with open(shared / "ray_facts.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = shared / "ray_facts.json"
        if not cached.exists():
            cached.write_text(json.dumps(run_scenarios()))
        found: dict[str, Any] = json.loads(cached.read_text())
    return found


def run_scenarios() -> dict[str, Any]:
    """Every scenario on one cluster, in a namespace, under a timeout."""
    with tempfile.TemporaryDirectory(prefix="pgr-", dir="/tmp") as tmp:  # short: socket paths
        out = Path(tmp) / "facts.json"
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env |= HERMETIC_ENV | {"RAY_TMPDIR": tmp, "PYTHONPATH": str(ROOT)}
        script = (
            "import sys; from pathlib import Path; from tests.ray_scenarios import main;"
            "main(Path(sys.argv[1]), [])"
        )
        inner = 'ip link set lo up && exec "$0" -c "$1" "$2"'
        cmd = [*NAMESPACE, "sh", "-c", inner, sys.executable, script, str(out)]
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            log, _ = proc.communicate(timeout=SCENARIO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the namespace's init dies: so does Ray
            log, _ = proc.communicate()
        found = json.loads(out.read_text()) if out.exists() else {}
    found["_log"] = log[-4000:]
    found["_returncode"] = proc.returncode
    return found


def scenario(facts: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in facts:
        pytest.fail(f"scenario {name} did not run (rc {facts['_returncode']}):\n{facts['_log']}")
    result: dict[str, Any] = facts[name]
    assert "exception" not in result, result.get("exception")
    return result


@pytest.mark.ray
@pytest.mark.slow
def test_workers_run_on_both_nodes(facts: dict[str, Any]) -> None:
    result = scenario(facts, "two_nodes")
    assert len(result["nodes"]) == 2
    assert sorted(result["worker_nodes"]) == result["nodes"]
    assert result["solved"]


@pytest.mark.ray
@pytest.mark.slow
def test_killed_worker_is_restarted_and_training_solves(facts: dict[str, Any]) -> None:
    result = scenario(facts, "kill_worker")
    before, after = result["pids_before"], result["pids_after"]
    assert len(after) == len(before) == 2
    assert after[0] != before[0], "worker 0 should run in a new process after the kill"
    assert after[1] == before[1]
    assert result["solved"]


@pytest.mark.ray
@pytest.mark.slow
def test_lost_node_workers_move_and_training_solves(facts: dict[str, Any]) -> None:
    result = scenario(facts, "kill_node")
    assert result["removed"] in result["nodes_before"]
    assert len(result["nodes_after"]) == 4
    assert result["removed"] not in result["nodes_after"]
    assert result["solved"]


@pytest.mark.ray
@pytest.mark.slow
def test_no_worker_for_worker_timeout_stops_with_clear_error(facts: dict[str, Any]) -> None:
    result = scenario(facts, "no_worker_left")
    assert result["node_removed"]
    assert result["error"] is not None
    assert result["error_type"] == "RolloutWorkerError"
    assert "unreachable" in result["error"] and "worker_timeout=3 s" in result["error"]
    assert result["seconds_after_removal"] >= 3.0


@pytest.mark.ray
@pytest.mark.slow
def test_same_seed_same_checkpoint_with_workers(facts: dict[str, Any]) -> None:
    result = scenario(facts, "same_seed")
    assert result["identical"]
    assert result["local_differs"]  # the comparison can fail: streams differ per worker


@pytest.mark.ray
@pytest.mark.slow
def test_one_worker_learns_exactly_like_the_local_collector(facts: dict[str, Any]) -> None:
    result = scenario(facts, "one_worker_cartpole")
    assert result["local"]["solved"] and result["workers_1"]["solved"]
    assert result["workers_1"]["steps_to_solve"] == result["local"]["steps_to_solve"]
    assert result["identical"]


@pytest.mark.ray
@pytest.mark.slow
def test_resume_with_and_without_workers(facts: dict[str, Any]) -> None:
    result = scenario(facts, "resume")
    first = result["first"]
    for resumed in result["resumed"].values():
        assert resumed["iterations"] > first["iterations"]
        assert resumed["env_steps"] >= 3_000 > first["env_steps"]


@pytest.mark.ray
@pytest.mark.slow
def test_workers_make_the_env_with_its_keywords_and_wrapper(facts: dict[str, Any]) -> None:
    result = scenario(facts, "env_recipe")
    assert result["wide"]["solved"] and result["mission"]["solved"]


@pytest.mark.ray
@pytest.mark.slow
def test_cli_joins_an_existing_cluster(facts: dict[str, Any]) -> None:
    result = scenario(facts, "cli_joins_cluster")
    assert result["returncode"] == 0, result["stderr"]
    assert result["solved"]
    assert "solved: mean of last" in result["stdout"]
