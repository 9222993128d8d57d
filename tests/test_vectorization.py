"""Vectorisation: the env's own vector env, in-process sync, or worker processes, chosen
automatically from one env's measured step cost; the worker envs behave like sync ones."""

from __future__ import annotations

import numpy as np
import pytest

import pgdeploy.envs as envs_module
from pgdeploy.envs import choose_vectorization, describe_vectorization, make_vector_env
from pgdeploy.errors import ConfigError, UnsupportedEnvError
from pgdeploy.training.config import TrainConfig

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
    monkeypatch.setattr(envs_module, "step_seconds", lambda env_id: step_us * 1e-6)
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
