"""The runtime agent: an ONNX policy file in, actions out, with numpy and onnxruntime only."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from pgdeploy.errors import InvalidArgumentError, ObservationError
from pgdeploy.runtime.arguments import check_count, check_flag, check_load_arguments, check_seed
from pgdeploy.runtime.model_file import MAX_MODEL_BYTES, LoadedModel, greedy_session, load_model
from pgdeploy.runtime.observations import ObservationChecker, OutOfBounds
from pgdeploy.runtime.output_checks import (
    action_heads,
    bad_action_error,
    check_batch_outputs,
    check_probs,
    engine_error,
)
from pgdeploy.runtime.sampling import SeedLike, UniformStream, as_seed_sequence
from pgdeploy.spec import (
    GREEDY_OUTPUT,
    OBS_INPUT,
    OUTPUT_NAMES,
    PROBS_OUTPUT,
    SAMPLED_OUTPUT,
    UNIFORM_INPUT,
    ModelMetadata,
    PolicySpec,
)

#: Rows per onnxruntime call in ``act_batch``: 4096 x 128 float32 hidden activations
#: (2 MiB) stay in cache, where one call on 65,536 rows streams 32 MiB through memory.
BATCH_CHUNK = 4096


class _BoundSingleStep:
    """Pre-bound I/O for one observation through onnxruntime's IOBinding.

    The public ``InferenceSession.run_with_iobinding`` synchronises every bound value on
    each call, which costs more than the graph itself, so the fast path calls the private
    ``_sess.run_with_iobinding`` and :meth:`available` says whether this onnxruntime has
    it; otherwise the agent falls back to the public ``run``. Both are tested. The buffers
    are also exposed as flat memoryviews, cheaper to copy into and read than numpy item
    access (figures: docs/performance.md).
    """

    def __init__(self, session: ort.InferenceSession, spec: PolicySpec, action_output: str) -> None:
        self.obs = np.zeros((1, spec.obs_dim), np.float32)
        self.uniform = np.zeros((1, 1), np.float32)
        self.probs = np.zeros((1, spec.n_actions), np.float32)
        self.action = np.zeros(1, np.int64)
        self.row = self.obs[0]
        self.probs_view = self.probs.reshape(-1).data
        self.obs_view = self.row.data
        self.uniform_view = self.uniform.reshape(-1).data
        self.action_view = self.action.data
        binding = session.io_binding()
        inputs = {i.name for i in session.get_inputs()}
        for name, array in ((OBS_INPUT, self.obs), (UNIFORM_INPUT, self.uniform)):
            if name in inputs:  # a graph built without sampled_action has no uniform
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
        outputs: dict[str, npt.NDArray[Any]] = {PROBS_OUTPUT: self.probs}
        outputs[action_output] = self.action
        for name, array in outputs.items():
            binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array))
        #: One call runs the graph on the bound buffers (a partial: no lookups per call).
        self.run = partial(session._sess.run_with_iobinding, binding._iobinding, ort.RunOptions())
        self.binding = binding  # keeps the OrtValues bound above alive

    @staticmethod
    def available(session: ort.InferenceSession) -> bool:
        return hasattr(session, "_sess") and hasattr(session._sess, "run_with_iobinding")


class _ThreadState(threading.local):
    stream: UniformStream | None = None


class Agent:
    """Picks actions for observations with a policy exported by ``pgdeploy export``.

    Thread safety: one ``Agent`` may be shared by many threads. The onnxruntime session is
    shared (its ``run`` is thread-safe); the RNG is per thread: the thread that created the
    agent draws from ``seed``, every other thread from its own child stream of
    ``numpy.random.SeedSequence(seed)``, numbered in the order threads first sample. The
    pre-bound single-observation buffers belong to the creating thread; other threads use
    the public ``run`` path. Greedy results are the same from any thread.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        seed: SeedLike = None,
        deterministic: bool = False,
        out_of_bounds: OutOfBounds = "reject",
        fast_path: bool = True,
        batch_threads: int | None = None,
    ) -> None:
        check_seed(seed)
        check_flag("deterministic", deterministic)
        check_flag("fast_path", fast_path)
        check_count("batch_threads", batch_threads, allow_none=True)
        if batch_threads is None:
            batch_threads = min(2, os.cpu_count() or 1)
        self.batch_threads = int(batch_threads)
        self._pool: ThreadPoolExecutor | None = None
        self._model = model
        self._deterministic = deterministic
        self._checker = ObservationChecker(model.metadata.spec, out_of_bounds)
        self._session = model.session
        self._owner = threading.get_ident()
        self._seed_sequence = as_seed_sequence(seed)
        self._stream = UniformStream(self._seed_sequence)
        self._child_lock = threading.Lock()
        self._thread_state = _ThreadState()
        layout, actions = self.spec.obs_layout, self.spec.action_layout
        #: Structured observations (Discrete, Dict, multi-dim Box ...) are converted to the
        #: graph's row by the layout; plain 1-D Box observations go straight in.
        self._flatten = None if layout.plain else layout
        self._heads = actions.n_branches
        self._multi = actions.multi
        use_binding = fast_path and _BoundSingleStep.available(self._session)
        use_binding = use_binding and layout.plain and not actions.multi
        self._action_output = GREEDY_OUTPUT if deterministic else SAMPLED_OUTPUT
        self._bound: _BoundSingleStep | None = None
        if use_binding:
            # Greedy single steps run the graph built without the sampling nodes (the one
            # variant that pays, see greedy_session); sampled ones the file's own graph.
            session = greedy_session(model) if deterministic else self._session
            self._bound = _BoundSingleStep(session, self.spec, self._action_output)
        self._batch_outputs = [self._action_output, PROBS_OUTPUT]
        self._action_heads = action_heads(self.spec)
        self._fast_act = None if self._bound is None else _single_step_act(self, self._bound)
        if self._fast_act is not None and type(self).act is Agent.act:
            # The closure itself, not a method calling it: one call level is ~1 % of act.
            # (Not where a subclass overrides act; its super().act() still takes the closure.)
            self.act = self._fast_act  # type: ignore[method-assign,assignment]

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        seed: SeedLike = None,
        deterministic: bool = False,
        out_of_bounds: OutOfBounds = "reject",
        threads: int = 1,
        fast_path: bool = True,
        batch_threads: int | None = None,
        expected_sha256: str | None = None,
        max_bytes: int = MAX_MODEL_BYTES,
    ) -> Agent:
        """Load ``path``; every problem with the file is a ``ModelLoadError`` raised here.

        ``threads`` is onnxruntime's intra-op thread count: 1 is fastest for single
        observations. ``batch_threads`` splits large ``act_batch`` calls over that many
        threads (default: up to 2 CPU cores). ``fast_path=False`` forces the public
        onnxruntime API (the private IOBinding call is the default where it exists).
        ``max_bytes`` caps the file's size. Every argument is checked first
        (:mod:`pgdeploy.runtime.arguments`), then the file must be pgdeploy's own graph
        for its metadata, byte for byte, before onnxruntime sees it
        (:mod:`pgdeploy.runtime.model_file`).
        """
        check_load_arguments(
            seed=seed,
            deterministic=deterministic,
            out_of_bounds=out_of_bounds,
            threads=threads,
            fast_path=fast_path,
            batch_threads=batch_threads,
            expected_sha256=expected_sha256,
            max_bytes=max_bytes,
        )
        model = load_model(
            path,
            threads=threads,
            expected_sha256=expected_sha256,
            max_bytes=max_bytes,
        )
        return cls(
            model,
            seed=seed,
            deterministic=deterministic,
            out_of_bounds=out_of_bounds,
            fast_path=fast_path,
            batch_threads=batch_threads,
        )

    @property
    def model(self) -> LoadedModel:
        """The loaded file (session, metadata, sha256); fixed, like everything set at load."""
        return self._model

    @property
    def checker(self) -> ObservationChecker:
        """Validates observations for this agent's ``out_of_bounds`` mode."""
        return self._checker

    @property
    def spec(self) -> PolicySpec:
        return self._model.metadata.spec

    @property
    def metadata(self) -> ModelMetadata:
        return self._model.metadata

    @property
    def path(self) -> Path:
        return self._model.path

    @property
    def deterministic(self) -> bool:
        """Greedy actions; fixed at load, because the single-step binding reads that output."""
        return self._deterministic

    @property
    def uses_fast_path(self) -> bool:
        return self._bound is not None

    def reseed(self, seed: SeedLike) -> None:
        """Restart every thread's RNG from ``seed`` (as if the agent were loaded anew)."""
        check_seed(seed)
        self._seed_sequence = as_seed_sequence(seed)
        self._stream = UniformStream(self._seed_sequence)
        self._thread_state = _ThreadState()

    def act(self, obs: Any) -> Any:
        """The env's action for one observation, exactly as the env returned it.

        An ``int`` for a Discrete action space (its ``start`` included), an int64 array of
        shape ``(heads,)`` for MultiDiscrete. The happy path (a float32 ndarray of shape
        ``(obs_dim,)``, from the creating thread) is a memoryview copy, a Python-float
        bounds check, one uniform and one bound run, then the output check: the action is
        in range and no probability is NaN: :func:`_single_step_act`, which replaces this
        method on agents that can use it. Other observation kinds (see
        :mod:`pgdeploy.layout`) and other threads take :meth:`_act_one`; every path
        refuses the same observations and outputs with the same error types.
        """
        fast = self._fast_act
        return self._act_one(obs) if fast is None else fast(obs)

    def _act_one(self, obs: Any) -> Any:
        """One observation of any supported kind, through the batch path."""
        row = self._flatten.flatten(obs) if self._flatten is not None else obs
        actions = self._act_rows(self._checker.as_row(row)[np.newaxis, :])
        return actions[0] if self._multi else int(actions[0])

    def act_batch(self, obs_batch: Any) -> npt.NDArray[np.int64]:
        """Actions for a batch, as int64 ``(n,)`` (Discrete) or ``(n, heads)`` (MultiDiscrete).

        The batch is ``(n, obs_dim)`` rows for a 1-D Box, else what a gymnasium vector env
        returns for the observation space (``(n,)`` ints for Discrete, ``(n, *shape)`` for
        Box, a dict of such arrays for Dict ...).

        Large batches run in chunks of ``BATCH_CHUNK`` rows, so the hidden layer's
        activations stay in cache, spread over ``batch_threads`` threads (onnxruntime
        releases the GIL while it runs). Uniforms are drawn before the split, in row
        order, so the actions do not depend on the thread count.
        """
        if self._flatten is not None:
            obs_batch = self._flatten.flatten_batch(obs_batch)
        return self._act_rows(self._checker.as_batch(obs_batch))

    def _act_rows(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        """Actions for validated graph rows (n, obs_dim)."""
        n = len(batch)
        uniforms = self._uniforms(n * self._heads).reshape(n, self._heads)
        if n <= BATCH_CHUNK:
            return self._checked_actions(batch, uniforms)
        out = np.empty((n, self._heads) if self._multi else n, np.int64)
        starts = range(0, n, BATCH_CHUNK)

        def run_chunk(start: int) -> None:
            stop = start + BATCH_CHUNK
            out[start:stop] = self._checked_actions(batch[start:stop], uniforms[start:stop])

        groups = [starts[i :: self.batch_threads] for i in range(self.batch_threads)]
        pool = self._batch_pool() if len(groups) > 1 else None
        futures = [pool.submit(_run_all, run_chunk, g) for g in groups[1:]] if pool else []
        _run_all(run_chunk, groups[0] if pool else starts)
        for future in futures:
            future.result()
        return out

    def _checked_actions(
        self, batch: npt.NDArray[np.float32], uniforms: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.int64]:
        """One onnxruntime call; actions checked in range and probabilities for NaN."""
        actions, probs = self._run(self._batch_outputs, batch, uniforms)
        check_batch_outputs(actions, probs, self._action_heads)
        return actions  # type: ignore[no-any-return]

    def _run(
        self, names: list[str], batch: npt.NDArray[np.float32], uniforms: npt.NDArray[np.float32]
    ) -> list[Any]:
        try:
            return self._session.run(names, {OBS_INPUT: batch, UNIFORM_INPUT: uniforms})  # type: ignore[no-any-return]
        except Exception as exc:  # onnxruntime's untyped errors (e.g. out of memory)
            raise engine_error(exc, len(batch)) from exc

    def probs(self, obs: Any) -> npt.NDArray[np.float32]:
        """Probabilities: ``(n_actions,)`` for one observation, ``(n, n_actions)`` for a batch
        (for MultiDiscrete, every head's probabilities concatenated).

        Batches run in chunks of ``BATCH_CHUNK`` rows, so memory beyond the result stays
        bounded however many rows are given.
        """
        if self._flatten is not None:
            single, obs = self._structured_rows(obs)
        else:
            obs = self._checker.as_array(obs)
            single = obs.ndim == 1
        batch = self._checker.as_row(obs)[np.newaxis, :] if single else self._checker.as_batch(obs)
        out = np.empty((len(batch), self.spec.n_actions), np.float32)
        zeros = np.zeros((min(len(batch), BATCH_CHUNK), self._heads), np.float32)
        for start in range(0, len(batch), BATCH_CHUNK):
            rows = batch[start : start + BATCH_CHUNK]
            out[start : start + len(rows)] = self._run([PROBS_OUTPUT], rows, zeros[: len(rows)])[0]
        check_probs(out, self._action_heads)
        return out[0] if single else out

    def _structured_rows(self, obs: Any) -> tuple[bool, npt.NDArray[np.float32]]:
        """(single, rows): one structured observation if it converts as one, else a batch."""
        assert self._flatten is not None
        try:
            return True, self._flatten.flatten(obs)
        except ObservationError:
            return False, self._flatten.flatten_batch(obs)

    def run_graph(self, obs_batch: Any, uniforms: npt.ArrayLike) -> dict[str, npt.NDArray[Any]]:
        """All graph outputs for validated graph rows (n, obs_dim) and caller-given uniforms,
        (n,) or (n, heads)."""
        batch = self._checker.as_batch(obs_batch)
        u = np.asarray(uniforms, np.float32)
        if u.size != len(batch) * self._heads:
            raise InvalidArgumentError(
                f"expected {len(batch) * self._heads} uniforms, one per observation and action "
                f"head, got {u.size}"
            )
        u = u.reshape(len(batch), self._heads)
        values = self._run(list(OUTPUT_NAMES), batch, u)
        return dict(zip(OUTPUT_NAMES, values, strict=True))

    def _batch_pool(self) -> ThreadPoolExecutor:
        with self._child_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.batch_threads - 1, thread_name_prefix="pgdeploy-batch"
                )
            return self._pool

    def _uniforms(self, n: int) -> npt.NDArray[np.float32]:
        if self._deterministic:
            return np.zeros(n, np.float32)
        return self._thread_stream().take(n)

    def _thread_stream(self) -> UniformStream:
        if threading.get_ident() == self._owner:
            return self._stream
        state = self._thread_state
        if state.stream is None:
            with self._child_lock:
                (child,) = self._seed_sequence.spawn(1)
            state.stream = UniformStream(child)
        return state.stream

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[npt.NDArray[np.int64], None]:
        """Stable-Baselines3's calling convention, so its ``evaluate_policy`` and RL Zoo-style
        loops run a deployed file unchanged: ``(actions, None)``, batch-shaped as SB3
        returns them (a batch of observations gives ``(n,)`` or ``(n, heads)``, one
        observation a 0-d or ``(heads,)`` array). ``state`` and ``episode_start`` exist for
        recurrent policies and are ignored. ``deterministic`` picks per call: greedy, or
        sampled with this agent's seeded uniforms (whatever it was loaded with).
        """
        del state, episode_start
        if self._flatten is not None:
            single, rows = self._structured_rows(observation)
        else:
            rows = self._checker.as_array(observation)
            single = rows.ndim == 1
        batch = rows[np.newaxis, :] if single else rows
        n = len(batch)
        uniforms = (
            np.zeros(n * self._heads, np.float32)
            if deterministic
            else self._thread_stream().take(n * self._heads)
        )
        outputs = self.run_graph(batch, uniforms)
        actions = outputs[GREEDY_OUTPUT if deterministic else SAMPLED_OUTPUT]
        check_batch_outputs(actions, outputs[PROBS_OUTPUT], self._action_heads)
        return (actions[0] if single else actions), None


def _single_step_act(agent: Agent, bound: _BoundSingleStep) -> Callable[[Any], Any]:
    """``agent.act`` for a plain Box policy with a bound single-step graph.

    The same checks as every other path, written for one row: only a plain ndarray is
    copied straight in (a masked array or any other type takes ``checker.as_row``, which
    converts or refuses exactly as ``act_batch`` and ``probs`` do); the memoryview copy
    then takes exactly a float32 buffer of the row's shape and raises for anything else
    (again ``as_row``). The bounds loop is ``ObservationChecker.check_row`` inlined, over
    the same float32 bounds, and ends in its error. After the run, ``action in actions``
    is :func:`check_batch_outputs`'s range test and ``total == total`` its NaN test (the
    sum of a row is NaN when any probability is); a failure raises
    :func:`bad_action_error`, and an onnxruntime exception :func:`engine_error`, as on
    the batch path. A closure saves the dozen attribute lookups of a method.
    """
    owner, act_one, checker = agent._owner, agent._act_one, agent._checker
    get_ident, ndarray = threading.get_ident, np.ndarray
    obs_view, row = bound.obs_view, bound.row
    bounds = list(zip(checker.low, checker.high, strict=True))
    uniform_view, action_view, probs_view, run = (
        bound.uniform_view,
        bound.action_view,
        bound.probs_view,
        bound.run,
    )
    heads = agent._action_heads
    actions = range(heads[0][0], sum(heads[0]))
    sampled = not agent.deterministic

    def act(obs: Any) -> Any:
        if get_ident() != owner:
            return act_one(obs)
        try:  # a plain float32 ndarray of shape (obs_dim,); anything else takes as_row
            if type(obs) is not ndarray:
                raise TypeError
            obs_view[:] = obs
        except (TypeError, ValueError):
            row[:] = checker.as_row(obs)  # converts and checks, or raises the typed error
        else:
            values = iter(obs_view)  # obs_dim Python floats; NaN fails both comparisons
            for low, high in bounds:  # ObservationChecker.check_row inlined: its call is ~0.2 us
                if not low <= next(values) <= high:
                    checker.check_row(row)  # raises the typed error
        if sampled:
            uniform_view[0] = agent._stream.next()  # type: ignore[call-overload]
        try:
            run()
        except Exception as exc:  # onnxruntime's untyped errors
            raise engine_error(exc, 1) from exc
        action = action_view[0]
        if action in actions and (total := sum(probs_view)) == total:
            return action
        raise bad_action_error(action, bound.probs[0], heads)

    act.__doc__ = Agent.act.__doc__
    return act


def _run_all(run: Callable[[int], None], starts: range) -> None:
    for start in starts:
        run(start)
