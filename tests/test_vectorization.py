"""Vectorisation: the env's own vector env, in-process sync, or worker processes, chosen
automatically from one env's measured step cost; the worker envs behave like sync ones."""

from __future__ import annotations

import numpy as np
import pytest

import pgdeploy.envs.making as envs_module
from pgdeploy.envs.making import (
    choose_vectorization,
    describe_vectorization,
    make_vector_env,
    policy_spec,
)
from pgdeploy.envs.worker_vector_env import step_alive
from pgdeploy.errors import ConfigError, UnsupportedEnvError
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.policy import SoftmaxPolicy
from pgdeploy.training.rollout import RolloutCollector
from tests.tiny_envs import Varying

GUESS = "tests.tiny_envs:Guess-v0"


def _run(envs: object, steps: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    obs, _ = envs.reset(seed=seed)  # type: ignore[attr-defined]
    out = [obs]
    for _ in range(steps):
        actions = rng.integers(0, 2, size=5)
        out.extend(envs.step(actions)[:4])  # type: ignore[attr-defined]
    return out


def test_worker_processes_step_like_one_sync_vector_env() -> None:
    sync = make_vector_env(GUESS, 5, vectorization="sync")
    workers = make_vector_env(GUESS, 5, vectorization="subprocess")
    try:
        assert describe_vectorization(sync) == "sync"
        assert describe_vectorization(workers) == "subprocess (1 worker + this process)"
        for a, b in zip(_run(sync, 20, seed=3), _run(workers, 20, seed=3), strict=True):
            np.testing.assert_array_equal(a, b)
    finally:
        sync.close()
        workers.close()


VARYING = "tests.tiny_envs:Varying-v0"


def _collector(vectorization: str, iteration_steps: int | None = None) -> RolloutCollector:
    spec = policy_spec(VARYING)
    return RolloutCollector(
        spec,
        num_envs=6,
        seed=4,
        hidden_sizes=(8,),
        obs_clip=10.0,
        vectorization=vectorization,  # type: ignore[arg-type]
        iteration_steps=iteration_steps,
    )


def test_collector_steps_only_the_envs_still_in_their_episode() -> None:
    """One episode per env: an env whose episode ended is not stepped again while the
    batch waits for the longest (those steps would be thrown away)."""
    collector = _collector("sync")
    weights = SoftmaxPolicy(collector.policy.spec, hidden_sizes=(8,)).state_dict()
    try:
        for _ in range(3):
            before = Varying.steps_taken
            batch = collector.collect(weights)
            assert len(set(batch.lengths.tolist())) > 1  # the episodes differ in length
            assert Varying.steps_taken - before == batch.lengths.sum()
            assert Varying.steps_taken - before < batch.mask.size
    finally:
        collector.close()


@pytest.mark.parametrize("iteration_steps", [None, 4])
def test_worker_processes_collect_the_same_batches_as_sync(iteration_steps: int | None) -> None:
    """Also when iterations cut episodes (1-12 steps long, 4 steps an iteration): both
    carry them over, resetting only the envs whose episode ended."""
    sync = _collector("sync", iteration_steps)
    workers = _collector("subprocess", iteration_steps)
    weights = SoftmaxPolicy(sync.policy.spec, hidden_sizes=(8,)).state_dict()
    carried = 0
    try:
        for _ in range(6):
            a, b = sync.collect(weights), workers.collect(weights)
            assert a is not None and b is not None
            carried += int(sync._carried.sum())
            for field in ("obs", "actions", "rewards", "mask", "lengths", "episode_returns"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            assert a.env_steps == b.env_steps
        assert (carried > 0) == (iteration_steps is not None)
    finally:
        sync.close()
        workers.close()


def test_step_alive_leaves_finished_envs_alone() -> None:
    envs = make_vector_env(VARYING, 3, vectorization="sync")
    try:
        envs.reset(seed=0)
        alive = np.array([True, False, True])
        obs, rewards, terminated, truncated = step_alive(envs, np.ones(3, np.int64), alive)
        assert obs.shape == (3, 2) and not obs[1].any()
        assert rewards[1] == 0 and terminated[1] and not truncated[1]
        assert [env.unwrapped._t for env in envs.envs] == [1, 0, 1]  # type: ignore[attr-defined]
    finally:
        envs.close()


def test_a_dead_worker_is_a_typed_error() -> None:
    envs = make_vector_env(GUESS, 2, vectorization="subprocess")
    try:
        envs.reset(seed=0)
        envs._processes[0].kill()  # type: ignore[attr-defined]
        envs._processes[0].join()  # type: ignore[attr-defined]
        with pytest.raises(UnsupportedEnvError, match=r"env worker .* exited"):
            envs.step(np.zeros(2, np.int64))
    finally:
        envs.close()


def test_auto_prefers_the_native_vector_env() -> None:
    assert choose_vectorization("CartPole-v1", 16) == "native"
    envs = make_vector_env("CartPole-v1", 4)
    assert describe_vectorization(envs) == "native (CartPoleVectorEnv)"
    envs.close()


@pytest.mark.parametrize(("step_us", "expected"), [(5.0, "sync"), (300.0, "subprocess")])
def test_auto_uses_workers_only_when_a_step_is_slow(
    monkeypatch: pytest.MonkeyPatch, step_us: float, expected: str
) -> None:
    monkeypatch.setattr(envs_module, "step_seconds", lambda env_id, **kw: step_us * 1e-6)
    monkeypatch.setattr(envs_module, "_processes", lambda n, count_load=True: 2)
    assert choose_vectorization(GUESS, 16) == expected


def test_no_workers_on_a_saturated_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envs_module, "step_seconds", lambda env_id: 1e-3)
    monkeypatch.setattr(envs_module.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert choose_vectorization(GUESS, 16) == "sync"


def test_bad_vectorization_is_refused() -> None:
    with pytest.raises(UnsupportedEnvError, match=r"vectorization must be 'auto'.*got 'threads'"):
        make_vector_env(GUESS, 2, vectorization="threads")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedEnvError, match=r"'subprocess' needs num_envs >= 2"):
        make_vector_env(GUESS, 1, vectorization="subprocess")
    with pytest.raises(
        ConfigError, match=r"'vectorization' must be 'auto', 'native'.*got 'threads'"
    ):
        TrainConfig(vectorization="threads")  # type: ignore[arg-type]
