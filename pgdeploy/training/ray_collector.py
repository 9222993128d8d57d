"""Rollouts on Ray actors, across the machines of a cluster (``workers > 0``).

Each worker is a Ray actor holding a :class:`~pgdeploy.training.rollout.RolloutCollector`
for its share of the run's ``num_envs`` envs. Per iteration the driver puts the weights in
the object store once (one ``ray.put``, whatever the number of workers), every worker plays
one episode per env with them, and the numpy batches come back and are joined in worker
order, so a fixed seed gives the same run twice. Env ``j`` of the run gets seed
``seed + j`` wherever it runs, and worker ``i`` samples actions from stream ``i`` of
``SeedSequence(seed)``: with one worker that is exactly the local collector's run.

Faults: actors restart on their own (``max_restarts=-1``) and the call in flight is
retried on the restarted actor (``max_task_retries=-1``); Ray places a restarted actor on
any live node, so losing a machine costs its workers a restart, not the run. An actor that
is dead for good is replaced. While a worker's batch is late, the driver pings it (actors
run two threads, so a ping is answered mid-episode); the run stops with
:class:`~pgdeploy.errors.RolloutWorkerError` only when a worker has neither answered nor
been restarted for ``worker_timeout`` seconds. A restarted worker reseeds from fresh
entropy: the run goes on, but is no longer bit-reproducible from the seed.

Env keywords and a wrapper travel to the workers with the other settings; a ``module:``
env id or wrapper must be importable on every node (the driver's folder is, on its own
machine).

This is the only module that imports ``ray`` (the ``pgdeploy-rl[ray]`` extra).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy._optional import require
from pgdeploy.envs.making import Vectorization
from pgdeploy.errors import RolloutWorkerError
from pgdeploy.spec import PolicySpec
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.rollout import EpisodeBatch, RolloutCollector, concat_batches, split_envs

require("ray", extra="ray", feature="training with workers (--workers)")
import ray  # noqa: E402  (after the check, so a missing extra is a typed error)
from ray.exceptions import RayActorError  # noqa: E402
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # noqa: E402

#: Object store per node when pgdeploy starts Ray itself: weights and batches are small.
OBJECT_STORE_BYTES = 256 * 2**20
#: How often the driver checks on workers whose batch is late.
POLL_SECONDS = 0.5

Weights = dict[str, npt.NDArray[Any]]


class RolloutWorker:
    """The actor: one :class:`RolloutCollector` over envs ``first_env ..`` of the run."""

    def __init__(
        self,
        spec: PolicySpec,
        *,
        num_envs: int,
        env_seed: int,
        sampler_seed: np.random.SeedSequence,
        hidden_sizes: tuple[int, ...],
        obs_clip: float,
        torch_threads: int,
        vectorization: Vectorization,
        max_episode_steps: int | None = None,
        iteration_steps: int | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
        wrapper: str = "",
    ) -> None:
        torch.set_num_threads(torch_threads)
        if _reconstructed():
            # Restarted after a crash: replaying the first episodes' seeds would repeat them.
            sampler_seed = np.random.SeedSequence()
            env_seed = int(sampler_seed.generate_state(1)[0])
        self.collector = RolloutCollector(
            spec,
            num_envs=num_envs,
            seed=env_seed,
            sampler_seed=sampler_seed,
            hidden_sizes=hidden_sizes,
            obs_clip=obs_clip,
            vectorization=vectorization,
            max_episode_steps=max_episode_steps,
            iteration_steps=iteration_steps,
            env_kwargs=env_kwargs,
            wrapper=wrapper,
        )

    def collect(
        self, weights: Weights, max_steps: int | None = None
    ) -> tuple[EpisodeBatch, float, str, int]:
        """The batch, the seconds it took here, and where it ran (node id, pid)."""
        start = time.perf_counter()
        state = {name: torch.tensor(value) for name, value in weights.items()}
        batch = self.collector.collect(state, max_steps=max_steps)
        assert batch is not None  # no should_stop here: the driver decides
        return batch, time.perf_counter() - start, _node_id(), os.getpid()

    def ping(self) -> tuple[str, int]:
        return _node_id(), os.getpid()


def worker_vectorization(vectorization: Vectorization) -> Vectorization:
    """How a worker steps its envs: as configured, except that ``auto`` means the env's
    native vector env or ``sync``. Workers are the run's parallelism (one process each,
    placed by Ray); a worker that also forked a process per core it thinks is free would
    oversubscribe the machine as soon as two workers share it."""
    return "native" if vectorization == "auto" else vectorization


def _reconstructed() -> bool:
    """Whether this actor is a restart (Ray's property warns about an API it uses inside)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


def _node_id() -> str:
    return str(ray.get_runtime_context().get_node_id())


@dataclass(frozen=True)
class IterationTiming:
    """Where one :meth:`RayCollector.collect` spent its time, in seconds."""

    wall: float
    """Driver side: from the weights' ``ray.put`` to the joined batch."""
    slowest_worker: float
    """The longest time a worker spent inside its own ``collect``."""

    @property
    def overhead(self) -> float:
        """What Ray added on top of the slowest worker: put, calls, transfers, join."""
        return self.wall - self.slowest_worker


class RayCollector:
    """``config.workers`` Ray actors behind the :class:`~pgdeploy.training.collector.Collector`
    interface. Joins the cluster at ``config.ray_address``, or starts Ray on this machine
    when it is empty; a Ray already initialised by the caller is used as it is.

    ``actor_options`` are passed to every actor (e.g. ``{"num_cpus": 1}`` or a custom
    resource that only simulator machines have). Unless they name a
    ``scheduling_strategy``, worker ``i`` goes to the ``i``-th live node that can host it,
    round robin (Ray's own ``SPREAD`` is best effort and put two workers on one of two nodes
    here); a worker does not reserve a CPU, so a latency-bound env can have more workers
    than cores.
    """

    def __init__(
        self,
        config: TrainConfig,
        spec: PolicySpec,
        *,
        seed: int,
        actor_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.timeout = config.worker_timeout
        self._owns_ray = connect(config.ray_address)
        options: dict[str, Any] = {
            "max_restarts": -1,
            "max_task_retries": -1,
            "max_concurrency": 2,
            **(actor_options or {}),
        }
        # Any: Ray's stubs cannot type an actor's .remote() methods.
        self._actor_class: Any = ray.remote(RolloutWorker)
        self._options = options
        shares = split_envs(config.num_envs, config.workers)
        offsets = np.cumsum([0, *shares[:-1]])
        streams = np.random.SeedSequence(seed).spawn(config.workers)
        self._worker_args = [
            {
                "spec": spec,
                "num_envs": share,
                "env_seed": seed + int(offset),
                "sampler_seed": stream,
                "hidden_sizes": config.hidden_sizes,
                "obs_clip": config.obs_clip,
                "torch_threads": config.torch_threads,
                "vectorization": worker_vectorization(config.vectorization),
                "max_episode_steps": config.max_episode_steps,
                "iteration_steps": config.iteration_steps,
                "env_kwargs": dict(config.env_kwargs),
                "wrapper": config.wrapper,
            }
            for share, offset, stream in zip(shares, offsets, streams, strict=True)
        ]
        self._nodes = [] if "scheduling_strategy" in options else worker_nodes(options)
        self.actors: list[Any] = [self._start(i) for i in range(config.workers)]
        self.placements: list[tuple[str, int]] = [("", 0)] * config.workers
        """(node id, pid) of each worker's last batch."""
        self.replacements = 0
        """Workers that were dead for good and replaced by a new actor."""
        self.timings: list[IterationTiming] = []

    def _start(self, i: int) -> Any:
        """Worker ``i``'s actor; with the default placement, on node ``i mod nodes``.

        The affinity is soft: a worker whose node is gone restarts on another one.
        """
        options = dict(self._options)
        if self._nodes:
            node = self._nodes[i % len(self._nodes)]
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        return self._actor_class.options(**options).remote(**self._worker_args[i])

    def collect(
        self,
        policy_state: Mapping[str, torch.Tensor],
        *,
        max_steps: int | None = None,
        should_stop: Callable[[], object] | None = None,
    ) -> EpisodeBatch | None:
        """Every worker's batch, joined; None once ``should_stop`` answers truthy (checked
        every ``POLL_SECONDS``; the workers' calls are abandoned, :meth:`close` kills them)."""
        start = time.perf_counter()
        weights = ray.put({k: v.detach().cpu().numpy() for k, v in policy_state.items()})
        results = self._gather(weights, max_steps, should_stop)
        if results is None:
            return None
        batch = concat_batches([result[0] for result in results])
        self.placements = [(result[2], result[3]) for result in results]
        slowest = max(result[1] for result in results)
        self.timings.append(IterationTiming(time.perf_counter() - start, slowest))
        return batch

    def _gather(
        self, weights: Any, max_steps: int | None, should_stop: Callable[[], object] | None
    ) -> list[tuple[EpisodeBatch, float, str, int]] | None:
        """Every worker's result, in worker order; restarts and replacements on the way."""
        n = len(self.actors)
        pending = {i: self.actors[i].collect.remote(weights, max_steps) for i in range(n)}
        results: dict[int, tuple[EpisodeBatch, float, str, int]] = {}
        last_seen = dict.fromkeys(range(n), time.monotonic())
        pings: dict[int, Any] = {}
        last_error = dict.fromkeys(range(n), "no answer to pings")
        while pending:
            if should_stop is not None and should_stop():
                return None
            ready, _ = ray.wait(
                list(pending.values()), num_returns=len(pending), timeout=POLL_SECONDS
            )
            for i, ref in list(pending.items()):
                if ref not in ready:
                    continue
                try:
                    results[i] = ray.get(ref)
                    del pending[i]
                except RayActorError as exc:  # dead for good: replace it
                    if exc.actor_init_failed:
                        raise RolloutWorkerError(
                            f"rollout worker {i} failed to start: {exc}; expected every Ray "
                            "node to import pgdeploy and make the env"
                        ) from exc
                    last_error[i] = str(exc).splitlines()[0]
                    self.actors[i] = self._start(i)
                    self.replacements += 1
                    pending[i] = self.actors[i].collect.remote(weights, max_steps)
                    pings.pop(i, None)
            self._check_alive(pending, pings, last_seen, last_error)
        return [results[i] for i in range(n)]

    def _check_alive(
        self,
        pending: Mapping[int, Any],
        pings: dict[int, Any],
        last_seen: dict[int, float],
        last_error: Mapping[int, str],
    ) -> None:
        """Ping workers whose batch is late; fail one that has been silent too long."""
        now = time.monotonic()
        for i in pending:
            ping = pings.get(i)
            if ping is not None and ray.wait([ping], timeout=0)[0]:
                try:
                    ray.get(ping)
                    last_seen[i] = now
                except RayActorError:
                    pass  # the collect call reports it
                ping = None
            if ping is None:
                pings[i] = self.actors[i].ping.remote()
            silent = now - last_seen[i]
            if silent > self.timeout:
                raise RolloutWorkerError(
                    f"rollout worker {i} of {len(self.actors)} has been unreachable for "
                    f"{silent:.0f} s (worker_timeout={self.timeout:g} s; last error: "
                    f"{last_error[i]}); expected Ray to restart it on a live node: check that "
                    "the cluster has nodes left ('ray status') or raise --worker-timeout"
                )

    def close(self) -> None:
        """Kill the actors; shut Ray down if this collector started it."""
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self._owns_ray:
            ray.shutdown()


def worker_nodes(options: Mapping[str, Any]) -> list[str]:
    """Ids of the live nodes that can host a worker with these actor options, in the
    cluster's order: a CPU (or ``num_cpus``) and every custom resource they ask for."""
    need = {"CPU": float(options.get("num_cpus", 1)), **dict(options.get("resources") or {})}
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [
        str(node["NodeID"])
        for node in nodes
        if node.get("Alive")
        and all(node.get("Resources", {}).get(k, 0) >= v for k, v in need.items())
    ]


def connect(address: str) -> bool:
    """Join the cluster at ``address`` or start Ray here; True when this call started it.

    Without an address Ray starts on this machine with no dashboard, no usage report
    (``RAY_USAGE_STATS_ENABLED=0`` unless set) and a small object store.
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    common: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(
                address="local",
                include_dashboard=False,
                object_store_memory=OBJECT_STORE_BYTES,
                **common,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise RolloutWorkerError(
            f"cannot connect to {where}: {exc}; expected a head started with "
            "'ray start --head' and its address as HEAD_IP:PORT"
        ) from exc
    return True
