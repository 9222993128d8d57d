"""The sampling contract shared by every form of a policy.

An action is drawn by inverse CDF from one float32 uniform ``u`` in [0, 1) per observation:
``action = #{k < n_actions - 1 : cumsum(probs)[k] <= u}``. The count runs over all but the
last cumulative sum, so it is always a valid action even when float rounding leaves
``cumsum(probs)[-1]`` below ``u``. Uniforms come from a seeded ``numpy.random.Generator``
(``random(dtype=float32)``), so the same seed gives the same actions in PyTorch,
TorchScript, ONNX and any other language that is handed the same uniforms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

SeedLike = int | np.random.SeedSequence | None

_BLOCK = 4096


def as_seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    """A SeedSequence for ``seed`` (fresh OS entropy for ``None``), so streams can be spawned."""
    return seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)


def inverse_cdf(probs: npt.ArrayLike, uniforms: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Reference implementation of the contract for ``probs`` (n, A) and ``uniforms`` (n,).

    The graph and the torch policy compute the same thing; this one documents it and
    checks them in tests.
    """
    p = np.asarray(probs, dtype=np.float32)
    u = np.asarray(uniforms, dtype=np.float32).reshape(-1, 1)
    cdf = np.cumsum(p[:, :-1], axis=1, dtype=np.float32)
    return np.count_nonzero(cdf <= u, axis=1).astype(np.int64)  # type: ignore[no-any-return]


class UniformStream:
    """Seeded float32 uniforms in [0, 1), drawn in blocks.

    The values are exactly ``numpy.random.default_rng(seed).random(k, dtype=np.float32)``
    however they are consumed (one at a time or in batches), so a run is reproducible
    whatever mix of ``act`` and ``act_batch`` produced it. Not thread-safe: the agent
    gives every thread its own stream.
    """

    def __init__(self, seed: SeedLike = None) -> None:
        self._rng = np.random.default_rng(seed)
        self._buffer: list[float] = []
        self._pos = 0

    def get_state(self) -> dict[str, Any]:
        """Plain data (JSON-safe) from which :meth:`set_state` continues the same stream."""
        return {"rng": self._rng.bit_generator.state, "buffer": self._buffer[self._pos :]}

    def set_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._buffer = [float(v) for v in state["buffer"]]
        self._pos = 0

    def next(self) -> float:
        """One uniform; a list lookup on the hot path, a block draw every 4096 calls."""
        if self._pos == len(self._buffer):
            self._buffer = self._rng.random(_BLOCK, dtype=np.float32).tolist()
            self._pos = 0
        value = self._buffer[self._pos]
        self._pos += 1
        return value

    def take(self, n: int) -> npt.NDArray[np.float32]:
        """The next ``n`` uniforms as a float32 array."""
        left = len(self._buffer) - self._pos
        if left == 0:
            return self._rng.random(n, dtype=np.float32)
        head = np.asarray(self._buffer[self._pos : self._pos + n], dtype=np.float32)
        self._pos += len(head)
        if len(head) == n:
            return head
        return np.concatenate([head, self._rng.random(n - len(head), dtype=np.float32)])
