"""Validation of ``Agent.load`` / ``Agent`` arguments: one typed error per bad argument.

Without these checks a bad argument surfaces far from its cause: ``seed=-1`` as numpy's
ValueError, ``batch_threads=0`` at the first large batch, ``expected_sha256=123`` as an
AttributeError, ``out_of_bounds="wrap"`` silently. bool is refused wherever an int is
meant (``True`` is an int in Python, never a thread count).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from pgdeploy.errors import InvalidArgumentError

#: onnxruntime threads beyond this are a typo, not a machine (it would spawn them all).
MAX_THREADS = 1024
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def check_seed(seed: Any) -> None:
    """``None``, a non-negative int, or a ``numpy.random.SeedSequence``."""
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return
    if _is_int(seed) and seed >= 0:
        return
    raise InvalidArgumentError(
        f"seed must be None, a non-negative integer or a numpy.random.SeedSequence, got {seed!r}"
    )


def check_count(name: str, value: Any, *, allow_none: bool = False) -> None:
    """A thread count: an int in 1..MAX_THREADS (``None`` where a default exists)."""
    if value is None and allow_none:
        return
    if not _is_int(value) or not 1 <= value <= MAX_THREADS:
        raise InvalidArgumentError(
            f"{name} must be an integer from 1 to {MAX_THREADS}"
            + (" or None" if allow_none else "")
            + f", got {value!r}"
        )


def check_flag(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")


def check_load_arguments(
    *,
    seed: Any,
    deterministic: Any,
    out_of_bounds: Any,
    threads: Any,
    fast_path: Any,
    batch_threads: Any,
    expected_sha256: Any,
    max_bytes: Any,
) -> None:
    """Every ``Agent.load`` argument, checked before the file is opened."""
    check_seed(seed)
    check_flag("deterministic", deterministic)
    check_flag("fast_path", fast_path)
    if out_of_bounds not in ("reject", "clip") or not isinstance(out_of_bounds, str):
        raise InvalidArgumentError(
            f"out_of_bounds must be 'reject' or 'clip', got {out_of_bounds!r}"
        )
    check_count("threads", threads)
    check_count("batch_threads", batch_threads, allow_none=True)
    if expected_sha256 is not None and (
        not isinstance(expected_sha256, str) or not _SHA256.fullmatch(expected_sha256)
    ):
        raise InvalidArgumentError(
            f"expected_sha256 must be 64 hexadecimal characters (sha256sum's output), "
            f"got {expected_sha256!r}"
        )
    if not _is_int(max_bytes) or max_bytes < 1:
        raise InvalidArgumentError(f"max_bytes must be a positive integer, got {max_bytes!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
