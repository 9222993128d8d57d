"""Observation validation: cheap on the happy path, precise when it refuses.

Policy for values outside the observation space (chosen at load):
- ``"reject"`` (default): raise :class:`ObservationError`.
- ``"clip"``: accept; the graph clips every observation into the space's bounds.
Non-finite values (NaN, +-inf) are always refused: a clipped NaN would become a silently
wrong action. Safe casts: lists, tuples, ints and float64 become float32 (values beyond
float32's range become inf and are refused as non-finite); bool, complex, str and object
arrays are refused.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import InvalidArgumentError, ObservationError
from pgdeploy.spec import FLOAT32_MAX, PolicySpec

OutOfBounds = Literal["reject", "clip"]
#: Values per row of the wide view ``check_batch`` reduces (see there).
_WIDE_BLOCK = 256


class ObservationChecker:
    """Validates and converts observations for one policy spec."""

    def __init__(self, spec: PolicySpec, out_of_bounds: OutOfBounds = "reject") -> None:
        if out_of_bounds not in ("reject", "clip"):
            raise InvalidArgumentError(
                f"out_of_bounds must be 'reject' or 'clip', got {out_of_bounds!r}"
            )
        self.spec = spec
        self.out_of_bounds = out_of_bounds
        if out_of_bounds == "reject":
            low_array, high_array = float32_bounds(spec)
        else:
            low_array = np.full(spec.obs_dim, -FLOAT32_MAX, np.float32)
            high_array = np.full(spec.obs_dim, FLOAT32_MAX, np.float32)
        # The same float32 values for every path: Python floats (exactly the float32
        # values) for the single-observation loop, arrays for batches.
        self._low_array, self._high_array = low_array, high_array
        low, high = low_array.tolist(), high_array.tolist()
        self.low, self.high = low, high
        self._same_bounds = len(set(low)) == 1 and len(set(high)) == 1
        self._rows_per_block = max(1, _WIDE_BLOCK // spec.obs_dim)
        self._wide_low = np.tile(self._low_array, self._rows_per_block)
        self._wide_high = np.tile(self._high_array, self._rows_per_block)

    def check_row(self, row: npt.NDArray[np.float32]) -> None:
        """Raise unless every value of one float32 row is finite and allowed.

        A zip loop over Python floats: for the few dimensions of a control observation
        this is several times cheaper than numpy ufunc calls. NaN fails every comparison.
        """
        for value, low, high in zip(row.tolist(), self.low, self.high):  # noqa: B905 (hot path; lengths fixed at load)
            if not low <= value <= high:
                self._raise_for(row[np.newaxis, :])

    def check_batch(self, batch: npt.NDArray[np.float32]) -> None:
        """Raise unless every row is finite and allowed.

        Min/max reductions, NaN-propagating so one comparison also catches non-finite
        values. numpy reduces a tall (n, 4) array over axis 0 slowly, so rows are viewed
        as wide (n / k, k * obs_dim) blocks against tiled bounds, or the whole batch is
        reduced flat when every dimension has the same bounds (docs/performance.md).
        """
        with np.errstate(invalid="ignore"):
            if self._same_bounds:
                ok = bool(batch.min() >= self.low[0] and batch.max() <= self.high[0])
            elif len(batch) < 8 * self._rows_per_block:  # small: two reductions are cheapest
                ok = bool(
                    (batch.min(axis=0) >= self._low_array).all()
                    and (batch.max(axis=0) <= self._high_array).all()
                )
            else:
                whole = len(batch) - len(batch) % self._rows_per_block
                wide = batch[:whole].reshape(-1, self._wide_low.size)
                rest = batch[whole:]
                ok = bool(
                    (wide.min(axis=0, initial=np.inf) >= self._wide_low).all()
                    and (wide.max(axis=0, initial=-np.inf) <= self._wide_high).all()
                    and (rest >= self._low_array).all()
                    and (rest <= self._high_array).all()
                )
        if not ok:
            self._raise_for(batch)

    def as_row(self, obs: object) -> npt.NDArray[np.float32]:
        """Convert anything array-like to a validated float32 array of shape (obs_dim,)."""
        array = self._as_float32(obs, "observation")
        if array.shape != self.spec.obs_shape:
            hint = " (use act_batch for a batch)" if array.ndim == 2 else ""
            raise ObservationError(
                f"observation must have shape {self.spec.obs_shape}, got {array.shape}{hint}"
            )
        self.check_row(array)
        return array

    def as_batch(self, obs: object) -> npt.NDArray[np.float32]:
        """Convert to a validated, C-contiguous float32 array of shape (n, obs_dim), n >= 1."""
        array = self._as_float32(obs, "observation batch")
        if array.ndim != 2 or array.shape[1] != self.spec.obs_dim:
            raise ObservationError(
                f"observation batch must have shape (n, {self.spec.obs_dim}), got {array.shape}"
            )
        if array.shape[0] == 0:
            raise ObservationError("observation batch is empty, expected at least one row")
        array = np.ascontiguousarray(array)
        self.check_batch(array)
        return array

    def as_array(self, obs: object, what: str = "observation") -> npt.NDArray[np.float32]:
        """Any array-like as float32, unchecked in shape and values (typed errors only)."""
        return self._as_float32(obs, what)

    def _as_float32(self, obs: object, what: str) -> npt.NDArray[np.float32]:
        if type(obs) is not np.ndarray:
            obs = _plain_array(obs, what)
        kind = obs.dtype.kind
        if kind not in "fiu":
            raise ObservationError(
                f"{what} must be real numbers (float or int), got dtype {obs.dtype}"
            )
        with np.errstate(over="ignore"):  # float64 beyond float32 range -> inf -> refused
            return obs.astype(np.float32, copy=False)

    def _raise_for(self, batch: npt.NDArray[np.float32]) -> None:
        """Raise the ObservationError naming the first bad value (both paths end here)."""
        finite = np.isfinite(batch)
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            where = f"observation[{col}]" if len(batch) == 1 else f"observation[{row}, {col}]"
            raise ObservationError(
                f"{where} is {batch[row, col]}, expected a finite number (NaN and inf are "
                "never turned into actions)"
            )
        low, high = self._low_array, self._high_array
        outside = np.argwhere((batch < low) | (batch > high))
        if not len(outside):  # unreachable while both paths compare the same float32 bounds
            raise ObservationError("observation is outside the observation space")
        row, col = outside[0]
        where = f"observation[{col}]" if len(batch) == 1 else f"observation[{row}, {col}]"
        raise ObservationError(
            f"{where} = {batch[row, col]} is outside the observation space "
            f"[{low[col]}, {high[col]}]; load the agent with out_of_bounds='clip' to clip instead"
        )


def float32_bounds(spec: PolicySpec) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The spec's bounds as float32, the precision observations are checked in.

    A float64 ``Box(-0.1, 0.1)`` has bounds float32 cannot represent exactly; rounding
    each bound to the nearest float32 is what the graph's own clip does, and makes
    ``act``, ``act_batch`` and ``probs`` accept and refuse exactly the same values.
    Infinite bounds become float32's largest finite value (inf is refused as non-finite).
    """
    with np.errstate(over="ignore"):
        low = np.asarray(spec.obs_low, np.float64).astype(np.float32)
        high = np.asarray(spec.obs_high, np.float64).astype(np.float32)
    return (
        np.clip(low, -FLOAT32_MAX, FLOAT32_MAX).astype(np.float32),
        np.clip(high, -FLOAT32_MAX, FLOAT32_MAX).astype(np.float32),
    )


def _plain_array(obs: object, what: str) -> npt.NDArray[Any]:
    """``np.asarray`` for anything that is not a plain ndarray, with typed refusals.

    Masked arrays are refused (``np.asarray`` would silently drop the mask and act on the
    hidden values); objects with ``__array__`` that refuse conversion (a torch tensor
    that requires grad, a CUDA tensor) and ragged nested lists become ObservationErrors.
    """
    if isinstance(obs, np.ma.MaskedArray):
        raise ObservationError(
            f"{what} is a masked array; fill the masked values first (obs.filled(value))"
        )
    try:
        array = np.asarray(obs)
    except Exception as exc:  # whatever __array__ or a nested sequence raises
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ObservationError(
            f"{what} is not a numeric array ({type(obs).__name__}: {type(exc).__name__}: {first})"
        ) from exc
    if type(array) is not np.ndarray:  # a subclass handed back by __array__
        array = np.array(array, copy=True, subok=False)
    return array
