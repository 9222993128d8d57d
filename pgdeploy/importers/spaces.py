"""Gymnasium spaces read from pickle records -> pgdeploy layouts, as SB3 preprocesses them.

SB3 flattens a Box (no clipping, no scaling unless it is an image), one-hot encodes
Discrete and MultiDiscrete values (ignoring the space's ``start``), passes MultiBinary
values as floats, and for a Dict concatenates its members in the space's key order.
pgdeploy's graph puts all continuous columns first and all one-hot features after
(:mod:`pgdeploy.layout`), so :func:`sb3_feature_order` gives the permutation that maps
SB3's feature columns onto pgdeploy's; the importer applies it to the first layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgdeploy.errors import ModelLoadError
from pgdeploy.importers.inert import Record
from pgdeploy.layout import ActionLayout, ObsLayout
from pgdeploy.spec import ACTION_NAME_PATTERN

_SPACES = "gymnasium.spaces."
BOX, DISCRETE = _SPACES + "box.Box", _SPACES + "discrete.Discrete"
MULTI_DISCRETE = _SPACES + "multi_discrete.MultiDiscrete"
MULTI_BINARY = _SPACES + "multi_binary.MultiBinary"
DICT = _SPACES + "dict.Dict"
#: Largest flat observation accepted.
MAX_OBS_DIM = 1 << 20


class UnsupportedSpace(ModelLoadError):
    """A space SB3 handles differently from anything pgdeploy exports."""


@dataclass(frozen=True)
class Observations:
    tree: dict[str, Any]
    low: tuple[float, ...]
    high: tuple[float, ...]

    @property
    def layout(self) -> ObsLayout:
        return ObsLayout(self.tree)


def _state(space: Any, what: str) -> dict[str, Any]:
    if not isinstance(space, Record) or not isinstance(space.state, dict):
        raise ModelLoadError(f"the {what} is not a gymnasium space record")
    return space.state


def _ints(value: Any, what: str) -> list[int]:
    array = np.asarray(value)
    if array.dtype.kind not in "iu" or array.size > MAX_OBS_DIM:
        raise ModelLoadError(f"{what} must be integers, got dtype {array.dtype}")
    return [int(v) for v in array.reshape(-1)]


def _shape(value: Any, what: str) -> list[int]:
    if not isinstance(value, tuple) or not all(isinstance(v, int) and v >= 1 for v in value):
        raise ModelLoadError(f"{what} has shape {ascii(value)[:60]}, expected positive sizes")
    if math.prod(value) > MAX_OBS_DIM:
        raise ModelLoadError(f"{what} has {math.prod(value)} values, more than {MAX_OBS_DIM}")
    return list(value)


def observations(space: Any, *, top: bool = True) -> Observations:
    """The layout tree and bounds of an SB3 observation space; refuses what SB3 treats
    differently (images, non-zero ``start``, nested dicts)."""
    what = "observation space"
    cls = space.cls if isinstance(space, Record) else type(space).__name__
    state = _state(space, what)
    if cls == BOX:
        shape = _shape(state.get("_shape"), what)
        lows = np.asarray(state.get("low"), dtype=np.float64).reshape(-1)
        highs = np.asarray(state.get("high"), dtype=np.float64).reshape(-1)
        dtype = state.get("dtype")
        if len(shape) == 3 and dtype == np.uint8 and (lows == 0).all() and (highs == 255).all():
            raise UnsupportedSpace(
                f"image observations (Box{tuple(shape)} uint8) are not supported: SB3 feeds them "
                "to a CNN (CnnPolicy) or scales them by 1/255; export the MLP policy of a "
                "vector-observation model"
            )
        if lows.size != math.prod(shape) or highs.size != lows.size:
            raise ModelLoadError(f"{what}: Box bounds do not match its shape {shape}")
        return Observations(
            {"type": "box", "shape": shape}, tuple(map(float, lows)), tuple(map(float, highs))
        )
    if cls == DISCRETE:
        n, start = _ints(state.get("n"), what), _ints(state.get("start", 0), what)
        if start != [0]:
            raise UnsupportedSpace(
                f"Discrete observations with start={start[0]} are not supported: SB3 one-hot "
                "encodes the raw value and ignores start"
            )
        return Observations({"type": "discrete", "n": n[0], "start": 0}, (0.0,), (n[0] - 1.0,))
    if cls == MULTI_DISCRETE:
        nvec = _ints(state.get("nvec"), what)
        shape = _shape(state.get("_shape"), what)
        start = _ints(state.get("start", np.zeros(len(nvec), np.int64)), what)
        if any(start) or len(shape) != 1:
            raise UnsupportedSpace(
                "MultiDiscrete observations with a start or more than one dimension are not "
                "supported (SB3 one-hot encodes a flat vector from 0)"
            )
        return Observations(
            {"type": "multi_discrete", "shape": shape, "nvec": nvec, "start": [0] * len(nvec)},
            (0.0,) * len(nvec),
            tuple(n - 1.0 for n in nvec),
        )
    if cls == MULTI_BINARY:
        shape = _shape(state.get("_shape"), what)
        size = math.prod(shape)
        return Observations({"type": "multi_binary", "shape": shape}, (0.0,) * size, (1.0,) * size)
    if cls == DICT and top:
        spaces = state.get("spaces")
        if not isinstance(spaces, dict) or not spaces:
            raise ModelLoadError(f"{what}: a Dict space without members")
        tree: dict[str, Any] = {"type": "dict", "spaces": {}}
        low: tuple[float, ...] = ()
        high: tuple[float, ...] = ()
        for key, sub in spaces.items():
            if not isinstance(key, str) or ACTION_NAME_PATTERN.fullmatch(key) is None:
                raise ModelLoadError(f"{what}: Dict key {ascii(key)[:60]} is not a plain name")
            member = observations(sub, top=False)
            tree["spaces"][key] = member.tree
            low, high = low + member.low, high + member.high
        return Observations(tree, low, high)
    raise UnsupportedSpace(
        f"observation space {ascii(cls)[1:-1]} is not supported (expected Box, Discrete, "
        "MultiDiscrete, MultiBinary, or a Dict of them)"
    )


def actions(space: Any) -> ActionLayout:
    """Discrete or MultiDiscrete action heads; continuous actions are refused."""
    cls = space.cls if isinstance(space, Record) else type(space).__name__
    state = _state(space, "action space")
    if cls == DISCRETE:
        n, start = _ints(state.get("n"), "action space"), _ints(state.get("start", 0), "start")
        if start != [0]:
            raise UnsupportedSpace(
                f"Discrete actions with start={start[0]} are not supported: SB3 predicts 0..n-1"
            )
        return ActionLayout.discrete(n[0])
    if cls == MULTI_DISCRETE:
        nvec = _ints(state.get("nvec"), "action space")
        start = _ints(state.get("start", np.zeros(len(nvec), np.int64)), "start")
        if any(start) or np.asarray(state.get("nvec")).ndim != 1:
            raise UnsupportedSpace("MultiDiscrete actions must be 1-D and start at 0")
        return ActionLayout("multi_discrete", tuple(nvec), (0,) * len(nvec))
    if cls == BOX:
        raise UnsupportedSpace(
            "continuous (Box) actions are not supported: pgdeploy exports discrete policies "
            "(softmax or greedy heads); SAC, TD3 and PPO/A2C on Box actions cannot be exported"
        )
    raise UnsupportedSpace(
        f"action space {ascii(cls)[1:-1]} is not supported (expected Discrete or MultiDiscrete)"
    )


def sb3_feature_order(layout: ObsLayout) -> list[int]:
    """For each pgdeploy feature column, the SB3 feature column it is (SB3 concatenates
    each leaf's features in leaf order; pgdeploy puts continuous columns first)."""
    continuous: list[int] = []
    onehot: list[int] = []
    position = 0
    for leaf in layout.leaves:
        if leaf.kind in ("discrete", "multi_discrete"):
            width = sum(leaf.nvec)
            onehot += range(position, position + width)
        else:
            width = leaf.size
            continuous += range(position, position + width)
        position += width
    return continuous + onehot
