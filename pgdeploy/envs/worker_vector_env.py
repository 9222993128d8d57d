"""Vectorised envs stepped in worker processes, a few envs per worker.

For envs whose step is slow Python (LunarLander's Box2D wrapper, Acrobot's integrator) and
which have no numpy vector implementation, one process cannot use a second core. gymnasium's
``AsyncVectorEnv`` runs one process per env, which on a 2-core machine costs more in pipe
round trips and context switches than it gains (16 LunarLander envs: ~900 steps/s against
~3,100 in one process, measured under load). Here this process and each of ``workers``
spawned processes own a ``SyncVectorEnv`` over a contiguous slice of the envs and step
their slices at the same time: a vector step is one pipe round trip per worker.

Semantics match one ``SyncVectorEnv`` over all the envs: env ``j`` is seeded ``seed + j``,
autoreset is NEXT_STEP, arrays are concatenated in env order. Per-env ``info`` dicts are
not forwarded (the step returns ``{}``); pgdeploy's collectors do not read them.

:func:`step_alive` (and :meth:`WorkerVectorEnv.step_alive`) step only the envs whose episode
is still running. The collector plays one episode per env and waits for the longest, so a
vector env stepping every env would spend the rest of that wait on steps that are thrown
away: with a random LunarLander policy, about half of them.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing as mp
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from pgdeploy.envs.wrapping import sync_vector_env
from pgdeploy.errors import UnsupportedEnvError

_JOIN_SECONDS = 5.0


class WorkerVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` copies of ``env_id``: a slice stepped here, the rest by ``workers``
    spawned processes (each a ``SyncVectorEnv``), all at the same time.

    This process steps the first slice while the workers step theirs, instead of waiting
    idle: on 2 cores one worker and this process step half the envs each.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        *,
        workers: int,
        env_kwargs: Mapping[str, Any] | None = None,
        wrapper: str = "",
    ) -> None:
        if not 1 <= workers < num_envs:
            raise ValueError(f"workers must be in [1, num_envs={num_envs}), got {workers}")
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
        bounds = np.linspace(0, num_envs, workers + 2).round().astype(int)
        local, *remote = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self._local_slice, self._slices = local, remote
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        self._closed = False
        context = mp.get_context("spawn")  # no fork of a process that may hold torch threads
        with _signals_ignored():  # inherited through exec: workers never see a Ctrl-C
            for part in remote:  # started first: they import while this process makes its envs
                parent, child = context.Pipe()
                process = context.Process(
                    target=_worker,
                    args=(child, env_id, part.stop - part.start, dict(env_kwargs or {}), wrapper),
                    name=f"pgdeploy-env-{part.start}",
                    daemon=True,
                )
                process.start()
                child.close()
                self._pipes.append(parent)
                self._processes.append(process)
        self._local: Any = sync_vector_env(
            env_id, local.stop - local.start, env_kwargs=env_kwargs, wrapper=wrapper
        )
        self.single_observation_space = self._local.single_observation_space
        self.single_action_space = self._local.single_action_space
        self.spec = self._local.spec
        self.num_envs = num_envs
        self.workers = workers
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[Any], dict[str, Any]]:
        mask = (options or {}).get("reset_mask")
        for index, part in enumerate(self._slices):
            self._send(index, ("reset", (_seeds(seed, part), _part_options(options, mask, part))))
        part = self._local_slice
        local, _ = _reset(self._local, _seeds(seed, part), _part_options(options, mask, part))
        results = self._receive()
        return np.concatenate([local, *(obs for obs, _ in results)]), {}

    def step(self, actions: npt.ArrayLike) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        actions = np.asarray(actions)
        for index, part in enumerate(self._slices):
            self._send(index, ("step", actions[part]))
        local = self._local.step(actions[self._local_slice])[:4]
        return (*_joined([local, *self._receive()]), {})

    def step_alive(self, actions: npt.ArrayLike, alive: npt.NDArray[np.bool_]) -> StepArrays:
        """:func:`step_alive` over every slice at the same time."""
        actions = np.asarray(actions)
        for index, part in enumerate(self._slices):
            self._send(index, ("step_alive", (actions[part], alive[part])))
        part = self._local_slice
        local = step_alive(self._local, actions[part], alive[part])
        return _joined([local, *self._receive()])

    def close_extras(self, **kwargs: Any) -> None:
        if self._closed:
            return
        self._closed = True
        for pipe in self._pipes:
            with contextlib.suppress(BrokenPipeError, OSError):
                pipe.send(("close", None))
        self._local.close()
        for process in self._processes:
            process.join(_JOIN_SECONDS)
            if process.is_alive():
                process.kill()  # workers ignore SIGINT and SIGTERM
                process.join()
        for pipe in self._pipes:
            pipe.close()

    def _send(self, index: int, message: tuple[str, Any]) -> None:
        try:
            self._pipes[index].send(message)
        except (BrokenPipeError, OSError) as exc:
            raise self._exited(self._processes[index]) from exc

    def _receive(self) -> list[Any]:
        results = []
        for pipe, process in zip(self._pipes, self._processes, strict=True):
            try:
                status, payload = pipe.recv()
            except (EOFError, OSError) as exc:  # OSError: ConnectionResetError and kin
                raise self._exited(process) from exc
            if status == "error":
                raise UnsupportedEnvError(f"env worker {process.name} failed:\n{payload}")
            results.append(payload)
        return results

    @staticmethod
    def _exited(process: Any) -> UnsupportedEnvError:
        process.join(_JOIN_SECONDS)
        return UnsupportedEnvError(
            f"env worker {process.name} exited (code {process.exitcode}); "
            "use vectorization='sync' to step the envs in this process"
        )

    def __repr__(self) -> str:
        env_id = self.spec.id if self.spec else "?"
        return f"WorkerVectorEnv({env_id}, {self.num_envs} envs, {self.workers} workers)"


StepArrays = tuple[Any, npt.NDArray[Any], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]
"""(observations, rewards, terminated, truncated) of a vector step."""


def step_alive(
    envs: gym.vector.SyncVectorEnv, actions: npt.ArrayLike, alive: npt.NDArray[np.bool_]
) -> StepArrays:
    """Step the envs of ``envs`` where ``alive`` is set; the others are not touched.

    An env that is not stepped reports reward 0, terminated, and a zero observation (the
    caller masks those rows out). ``envs``' own autoreset bookkeeping is bypassed, so the
    caller must ``reset`` it before stepping it with ``step`` again; the collector resets
    every env at the start of each batch.
    """
    n = envs.num_envs
    rewards = np.zeros(n, np.float64)
    terminated, truncated = ~np.asarray(alive, bool), np.zeros(n, bool)
    zero = next(iter(iterate(envs.observation_space, _zeros(envs, n))))
    observations = [zero] * n
    env_actions = list(iterate(envs.action_space, actions))
    for i in np.flatnonzero(alive):
        observations[i], rewards[i], terminated[i], truncated[i], _ = envs.envs[i].step(
            env_actions[i]
        )
    obs = concatenate(envs.single_observation_space, observations, _zeros(envs, n))
    return obs, rewards, terminated, truncated


def alive_stepper(
    envs: gym.vector.VectorEnv[Any, Any, Any],
) -> Callable[[npt.NDArray[Any], npt.NDArray[np.bool_]], StepArrays]:
    """``step(actions, alive)`` for ``envs``: only the running envs where stepping one at a
    time is how they are stepped anyway (``sync`` and worker processes); every env for a
    native vector env, whose one numpy step costs the same however many are running."""
    if isinstance(envs, WorkerVectorEnv):
        return envs.step_alive
    if isinstance(envs, gym.vector.SyncVectorEnv):
        return functools.partial(step_alive, envs)
    return lambda actions, alive: envs.step(actions)[:4]


def _zeros(envs: gym.vector.SyncVectorEnv, n: int) -> Any:
    return create_empty_array(envs.single_observation_space, n=n, fn=np.zeros)


def _joined(results: list[Any]) -> StepArrays:
    """The slices' (obs, rewards, terminated, truncated), concatenated in env order."""
    obs, rewards, terminated, truncated = (
        np.concatenate([r[i] for r in results]) for i in range(4)
    )
    return obs, rewards, terminated, truncated


def _seeds(seed: int | None, part: slice) -> list[int] | None:
    """Env ``j`` is seeded ``seed + j``, as one ``SyncVectorEnv`` over all envs seeds it."""
    return None if seed is None else [seed + j for j in range(part.start, part.stop)]


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored while workers start (main thread only; elsewhere a no-op).

    A terminal's Ctrl-C goes to the whole process group and a service manager's SIGTERM
    often to every process of the run: a worker that died of it would take its envs with
    it before the parent could save. An ignored signal stays ignored across ``exec``, and
    Python keeps it so, hence the parent alone decides when a run stops; workers end when
    told to or when the parent's end of their pipe closes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _PARENT_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_PARENT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _part_options(
    options: dict[str, Any] | None, mask: npt.NDArray[np.bool_] | None, part: slice
) -> dict[str, Any] | None:
    """A slice's reset options: the caller's, with its share of ``reset_mask``."""
    if mask is None:
        return options
    return {**(options or {}), "reset_mask": np.asarray(mask[part], dtype=bool)}


def _reset(envs: Any, seeds: list[int] | None, options: dict[str, Any] | None) -> Any:
    """``envs.reset``, except that a ``reset_mask`` with no env set resets nothing (gymnasium
    refuses it) and returns zeros, which the caller replaces with its carried rows."""
    mask = (options or {}).get("reset_mask")
    if mask is not None and not mask.any():
        return _zeros(envs, envs.num_envs), {}
    return envs.reset(seed=seeds, options=None if options is None else dict(options))


def _worker(
    pipe: Connection, env_id: str, num_envs: int, env_kwargs: dict[str, Any], wrapper: str
) -> None:
    """A worker's loop: a ``SyncVectorEnv`` over its slice, driven by (command, data) pairs."""
    for sig in _PARENT_SIGNALS:  # already ignored from the start (kept so if started otherwise)
        signal.signal(sig, signal.SIG_IGN)
    envs: Any = None
    try:
        envs = sync_vector_env(env_id, num_envs, env_kwargs=env_kwargs, wrapper=wrapper)
        while True:
            command, data = pipe.recv()
            if command == "step":
                obs, rewards, terminated, truncated, _ = envs.step(data)
                pipe.send(("ok", (obs, rewards, terminated, truncated)))
            elif command == "step_alive":
                pipe.send(("ok", step_alive(envs, *data)))
            elif command == "reset":
                seeds, options = data
                obs, _ = _reset(envs, seeds, options)
                pipe.send(("ok", (obs, None)))
            else:
                break
    except (KeyboardInterrupt, EOFError):
        pass
    except Exception:  # sent to the parent, which raises it as a typed error
        pipe.send(("error", traceback.format_exc()))
    finally:
        if envs is not None:
            envs.close()
        pipe.close()
