"""Observation and action layouts: how an env's own values map onto the graph's tensors.

The exported graph takes one float32 row per observation (``obs``, shape ``(batch,
obs_dim)``), the *raw flat* form of whatever the env returns, and does the encoding
itself. The layout says how to build that row, with numpy only (the runtime uses it; it
never imports gymnasium):

- ``box`` of any shape: its values, flattened in C order (row-major); clipped and
  normalised inside the graph.
- ``discrete`` (n, start): one value, the env's integer itself; one-hot encoded inside the
  graph over ``start .. start + n - 1``.
- ``multi_binary``: its 0/1 values, flattened in C order.
- ``multi_discrete`` (nvec, start): its integers, flattened in C order; each one-hot
  encoded inside the graph over its own range.
- ``dict`` / ``tuple``: the rows of their members concatenated, in the order gymnasium's
  ``flatten_space`` uses (a Dict's keys in the space's own order, which gymnasium sorts).

Actions: ``discrete`` (one softmax head, the action is an ``int``) or ``multi_discrete``
(one softmax head per component, the action an int64 array); both carry the env's own
``start`` values, which the graph adds to its outputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import ObservationError

#: Leaf kinds whose values are integers one-hot encoded inside the graph.
CATEGORICAL = ("discrete", "multi_discrete")
LEAF_KINDS = ("box", "discrete", "multi_binary", "multi_discrete")


@dataclass(frozen=True)
class Leaf:
    """One space of the tree, placed at columns ``offset .. offset + size`` of the raw row."""

    kind: str
    path: str  #: where it sits, e.g. ``obs["position"][1]``, for error messages
    shape: tuple[int, ...]
    offset: int
    nvec: tuple[int, ...] = ()  #: categories per value (categorical leaves), C order
    start: tuple[int, ...] = ()  #: first category per value (categorical leaves)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class ObsLayout:
    """The parsed ``observation_space`` description of a spec (see the module docstring)."""

    def __init__(self, tree: Mapping[str, Any]) -> None:
        self.tree = dict(tree)
        self.leaves: list[Leaf] = []
        self._parse(self.tree, "obs")
        self.obs_dim = sum(leaf.size for leaf in self.leaves)
        if self.obs_dim < 1:
            raise ValueError("observation space has no values")
        #: A single 1-D Box: the env's observation is already the graph's row.
        self.plain = self.tree["type"] == "box" and len(self.leaves[0].shape) == 1
        cont: list[int] = []
        cat_index: list[int] = []
        cat_values: list[int] = []
        for leaf in self.leaves:
            columns = range(leaf.offset, leaf.offset + leaf.size)
            if leaf.kind in CATEGORICAL:
                for column, n, first in zip(columns, leaf.nvec, leaf.start, strict=True):
                    cat_index += [column] * n
                    cat_values += range(first, first + n)
            else:
                cont += columns
        #: Raw columns fed through clip (+ normalisation): Box and MultiBinary values.
        self.continuous_columns = tuple(cont)
        #: For each one-hot feature: the raw column it reads and the value it stands for.
        self.onehot_columns = tuple(cat_index)
        self.onehot_values = tuple(cat_values)
        self.n_features = len(cont) + len(cat_index)
        integer = [c for c, _ in self.categorical_bounds().items()]
        self._integer_columns = np.asarray(integer, dtype=np.intp)

    @classmethod
    def box(cls, obs_dim: int) -> ObsLayout:
        return cls({"type": "box", "shape": [obs_dim]})

    def probe_row(self, low: Sequence[float], high: Sequence[float]) -> npt.NDArray[np.float32]:
        """A valid raw row: 0 clipped into each column's bounds (categorical: their first value)."""
        row = np.clip(np.zeros(self.obs_dim), np.asarray(low), np.asarray(high))
        for column, (first, _) in self.categorical_bounds().items():
            row[column] = first
        return row.astype(np.float32)

    def categorical_bounds(self) -> dict[int, tuple[int, int]]:
        """Raw column -> (lowest, highest) integer it may hold, for categorical leaves."""
        bounds: dict[int, tuple[int, int]] = {}
        for leaf in self.leaves:
            if leaf.kind in CATEGORICAL:
                for i, (n, first) in enumerate(zip(leaf.nvec, leaf.start, strict=True)):
                    bounds[leaf.offset + i] = (first, first + n - 1)
        return bounds

    def _parse(self, node: Mapping[str, Any], path: str) -> None:
        if not isinstance(node, Mapping) or "type" not in node:
            raise ValueError(f"observation layout node {path} must be a dict with a 'type'")
        kind = node["type"]
        offset = sum(leaf.size for leaf in self.leaves)
        if kind == "dict":
            for key, sub in dict(node["spaces"]).items():
                self._parse(sub, f"{path}[{str(key)!r}]")
        elif kind == "tuple":
            for index, sub in enumerate(list(node["spaces"])):
                self._parse(sub, f"{path}[{index}]")
        elif kind in ("box", "multi_binary"):
            self.leaves.append(Leaf(kind, path, _shape(node["shape"]), offset))
        elif kind == "discrete":
            n, first = _int(node["n"]), _int(node.get("start", 0))
            if n < 1:
                raise ValueError(f"{path}: discrete n must be >= 1, got {n}")
            self.leaves.append(Leaf(kind, path, (), offset, (n,), (first,)))
        elif kind == "multi_discrete":
            shape = _shape(node["shape"])
            nvec = tuple(_int(v) for v in node["nvec"])
            start = tuple(_int(v) for v in node.get("start") or [0] * len(nvec))
            if len(nvec) != math.prod(shape) or len(start) != len(nvec) or min(nvec) < 1:
                raise ValueError(f"{path}: multi_discrete nvec/start do not fit shape {shape}")
            self.leaves.append(Leaf(kind, path, shape, offset, nvec, start))
        else:
            raise ValueError(f"{path}: unknown observation space type {kind!r}")

    # --- numpy conversion (the runtime's path for structured observations) -------------

    def flatten(self, obs: Any) -> npt.NDArray[np.float32]:
        """One observation as the env returns it -> the graph's row, float32 (obs_dim,)."""
        row: npt.NDArray[np.float32] = self.flatten_batch(obs, batched=False)[0]
        return row

    def flatten_batch(self, obs: Any, *, batched: bool = True) -> npt.NDArray[np.float32]:
        """A batch as a gymnasium vector env returns it (Dict of arrays, (n,) ints for
        Discrete, (n, *shape) for Box ...) -> float32 (n, obs_dim)."""
        parts: list[npt.NDArray[np.float32]] = []
        self._collect(self.tree, obs, "obs", parts, batched)
        n = {len(p) for p in parts}
        if len(n) != 1:
            raise ObservationError(
                f"observation parts disagree on the batch size: got sizes {sorted(n)}"
            )
        row = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        if len(self._integer_columns):
            ints = row[:, self._integer_columns]
            if not np.array_equal(ints, np.floor(ints)):
                at, index = np.argwhere(ints != np.floor(ints))[0]
                self._raise_not_integer(int(self._integer_columns[index]), float(ints[at, index]))
        return np.ascontiguousarray(row)

    def _raise_not_integer(self, column: int, value: float) -> None:
        leaf = next(x for x in self.leaves if x.offset <= column < x.offset + x.size)
        raise ObservationError(
            f"{leaf.path} holds the non-integer value {value:g}; a {leaf.kind} observation "
            "must be one of the env's integers"
        )

    def _collect(
        self,
        node: Mapping[str, Any],
        obs: Any,
        path: str,
        parts: list[npt.NDArray[np.float32]],
        batched: bool,
    ) -> None:
        kind = node["type"]
        if kind == "dict":
            if not isinstance(obs, Mapping):
                raise ObservationError(
                    f"{path} must be a dict with keys {list(node['spaces'])}, "
                    f"got {type(obs).__name__}"
                )
            for key, sub in dict(node["spaces"]).items():
                if key not in obs:
                    raise ObservationError(
                        f"{path} is missing key {key!r}; expected keys {list(node['spaces'])}"
                    )
                self._collect(sub, obs[key], f"{path}[{key!r}]", parts, batched)
            return
        if kind == "tuple":
            subs = list(node["spaces"])
            if not isinstance(obs, (tuple, list)) or len(obs) != len(subs):
                got = type(obs).__name__
                if isinstance(obs, (tuple, list)):
                    got += f" of length {len(obs)}"
                raise ObservationError(f"{path} must be a tuple of {len(subs)} parts, got {got}")
            for index, (sub, value) in enumerate(zip(subs, obs, strict=True)):
                self._collect(sub, value, f"{path}[{index}]", parts, batched)
            return
        shape = () if kind == "discrete" else _shape(node["shape"])
        array = _numeric(obs, path)
        want = shape if not batched else None
        if batched:
            if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape:
                want_batch = ("n", *shape)
                raise ObservationError(
                    f"{path} batch must have shape ({', '.join(map(str, want_batch))}"
                    f"{',' if not shape else ''}), got {array.shape}"
                )
            parts.append(array.reshape(len(array), -1))
        else:
            if array.shape != want:
                raise ObservationError(f"{path} must have shape {want}, got {array.shape}")
            parts.append(array.reshape(1, -1))


def _numeric(obs: Any, path: str) -> npt.NDArray[np.float32]:
    try:
        array = np.asarray(obs)
    except (ValueError, TypeError) as exc:
        raise ObservationError(f"{path} is not a numeric array: {exc}") from exc
    if array.dtype.kind not in "fiub":
        raise ObservationError(f"{path} must be numbers, got dtype {array.dtype}")
    with np.errstate(over="ignore"):
        return array.astype(np.float32, copy=False)


@dataclass(frozen=True)
class ActionLayout:
    """Discrete (one head) or MultiDiscrete (one head per component) actions."""

    kind: str
    nvec: tuple[int, ...]
    start: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in ("discrete", "multi_discrete"):
            raise ValueError(f"unknown action space type {self.kind!r}")
        if not self.nvec or len(self.start) != len(self.nvec):
            raise ValueError("action nvec and start must be non-empty and of equal length")
        if self.kind == "discrete" and len(self.nvec) != 1:
            raise ValueError("a discrete action space has exactly one head")
        if min(self.nvec) < 2:
            raise ValueError(f"every action head needs >= 2 choices, got nvec {list(self.nvec)}")

    @property
    def n_logits(self) -> int:
        return sum(self.nvec)

    @property
    def n_branches(self) -> int:
        return len(self.nvec)

    @property
    def multi(self) -> bool:
        return self.kind == "multi_discrete"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "nvec": list(self.nvec), "start": list(self.start)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActionLayout:
        return cls(
            kind=str(data["type"]),
            nvec=tuple(_int(v) for v in data["nvec"]),
            start=tuple(_int(v) for v in data["start"]),
        )

    @classmethod
    def discrete(cls, n: int, start: int = 0) -> ActionLayout:
        return cls("discrete", (n,), (start,))


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _shape(value: Sequence[Any]) -> tuple[int, ...]:
    shape = tuple(_int(v) for v in value)
    if any(v < 1 for v in shape):
        raise ValueError(f"shape {list(shape)} has an empty dimension")
    return shape
