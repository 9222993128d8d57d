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

from typing import Literal

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
            low = [max(v, -FLOAT32_MAX) for v in spec.obs_low]
            high = [min(v, FLOAT32_MAX) for v in spec.obs_high]
        else:
            low = [-FLOAT32_MAX] * spec.obs_dim
            high = [FLOAT32_MAX] * spec.obs_dim
        # Python floats for the single-observation loop, arrays for batches.
        self.low, self.high = low, high
        self._low_array = np.asarray(low, np.float32)
        self._high_array = np.asarray(high, np.float32)
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
        values. numpy reduces a tall (n, 4) array over axis 0 slowly (~7 ms at n=65,536), so
        rows are viewed as wide (n / k, k * obs_dim) blocks against tiled bounds (~0.2 ms),
        or the whole batch is reduced flat when every dimension has the same bounds.
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

    def _as_float32(self, obs: object, what: str) -> npt.NDArray[np.float32]:
        if isinstance(obs, np.ndarray):
            kind = obs.dtype.kind
        else:
            try:
                obs = np.asarray(obs)
            except (ValueError, TypeError) as exc:  # ragged nested lists and the like
                raise ObservationError(f"{what} is not a numeric array: {exc}") from exc
            kind = obs.dtype.kind
        if kind not in "fiu":
            raise ObservationError(
                f"{what} must be real numbers (float or int), got dtype {obs.dtype}"
            )
        with np.errstate(over="ignore"):  # float64 beyond float32 range -> inf -> refused
            return obs.astype(np.float32, copy=False)

    def _raise_for(self, batch: npt.NDArray[np.float32]) -> None:
        finite = np.isfinite(batch)
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            where = f"observation[{col}]" if len(batch) == 1 else f"observation[{row}, {col}]"
            raise ObservationError(
                f"{where} is {batch[row, col]}, expected a finite number (NaN and inf are "
                "never turned into actions)"
            )
        low, high = self._low_array, self._high_array
        row, col = np.argwhere((batch < low) | (batch > high))[0]
        where = f"observation[{col}]" if len(batch) == 1 else f"observation[{row}, {col}]"
        raise ObservationError(
            f"{where} = {batch[row, col]} is outside the observation space "
            f"[{low[col]}, {high[col]}]; load the agent with out_of_bounds='clip' to clip instead"
        )
