"""Turn a pickle's value tree into inert data: an allow-list of names, nothing called.

Recognised (by the exact global the pickle names, in numpy 1.x and 2.x spellings):

- numpy arrays (``_frombuffer`` for protocol 5, ``_reconstruct`` + state for older
  protocols), dtypes and scalars: rebuilt here from their bytes with numpy's own
  ``frombuffer``, only for plain numeric dtypes;
- *record* classes (:data:`RECORD_CLASSES`: VecNormalize, RunningMeanStd, gymnasium
  spaces): never instantiated; they become a :class:`Record` of their name and state;
- numpy random generator state (inside spaces): kept as an opaque :class:`Record`.

Any other global anywhere in the tree is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pgdeploy.errors import ModelLoadError
from pgdeploy.importers.pickle_reader import Call, Global

#: Deepest nesting accepted (a cyclic or hostile tree stops here, without recursing on).
MAX_DEPTH = 40
#: Plain numeric dtypes an array or scalar may have.
DTYPES = frozenset(
    f"{kind}{size}"
    for kind, sizes in (("f", "248"), ("i", "1248"), ("u", "1248"))
    for size in sizes
) | {"b1"}

_NUMPY = ("numpy._core", "numpy.core")
FROMBUFFER = {f"{m}.numeric._frombuffer" for m in _NUMPY}
RECONSTRUCT = {f"{m}.multiarray._reconstruct" for m in _NUMPY}
SCALAR = {f"{m}.multiarray.scalar" for m in _NUMPY}
DTYPE = {"numpy.dtype"}
NDARRAY = {"numpy.ndarray"}
#: Classes whose pickled state is read as data; the class itself is never touched.
RECORD_CLASSES = frozenset(
    {
        "stable_baselines3.common.vec_env.vec_normalize.VecNormalize",
        "stable_baselines3.common.running_mean_std.RunningMeanStd",
        "gymnasium.spaces.box.Box",
        "gymnasium.spaces.discrete.Discrete",
        "gymnasium.spaces.multi_discrete.MultiDiscrete",
        "gymnasium.spaces.multi_binary.MultiBinary",
        "gymnasium.spaces.dict.Dict",
        "gymnasium.spaces.tuple.Tuple",
    }
)
#: Random-generator state inside spaces: kept opaque, never read.
OPAQUE = frozenset(
    {
        "numpy.random._pickle.__generator_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pcg64.PCG64",
        "numpy.random._mt19937.MT19937",
        "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64",
    }
)
_CONSTRUCT = {"copyreg._reconstructor", "copyreg.__newobj__"}


@dataclass(frozen=True)
class Record:
    """An object the pickle describes: its class name and its state (inert values)."""

    cls: str
    state: Any


def inert(value: Any, *, source: str, depth: int = 0) -> Any:
    """``value`` (from :func:`~pgdeploy.importers.pickle_reader.read_pickle`) as plain data."""
    if depth > MAX_DEPTH:
        raise ModelLoadError(f"{source}: pickle nested deeper than {MAX_DEPTH} levels")
    down = depth + 1
    if value is None or isinstance(value, (bool, int, float, str, bytes, bytearray)):
        return value
    if isinstance(value, list):
        return [inert(v, source=source, depth=down) for v in value]
    if isinstance(value, tuple):
        return tuple(inert(v, source=source, depth=down) for v in value)
    if isinstance(value, dict):
        return {k: inert(v, source=source, depth=down) for k, v in value.items()}
    if isinstance(value, Global):
        raise refused(value, source)
    if isinstance(value, Call):
        return _call(value, source, down)
    raise ModelLoadError(f"{source}: pickle holds a {type(value).__name__}, which is not data")


def refused(ref: Global, source: str) -> ModelLoadError:
    return ModelLoadError(
        f"{source}: the pickle refers to {ascii(ref.qualname)[1:-1]}, which is not an inert "
        "type (expected numpy arrays, numbers, strings, lists, dicts, spaces, statistics); "
        "pgdeploy never unpickles"
    )


def _name(func: Any) -> str:
    return func.qualname if isinstance(func, Global) else ""


def _call(call: Call, source: str, depth: int) -> Any:
    name = _name(call.func)
    if name in FROMBUFFER:
        buf, dtype, shape, order = (inert(a, source=source, depth=depth) for a in call.args)
        return _array(bytes(buf), dtype, shape, order == "F", source)
    if name in DTYPE:
        return _dtype(call, source)
    if name in SCALAR:
        dtype = inert(call.args[0], source=source, depth=depth)
        raw = inert(call.args[1], source=source, depth=depth)
        return _array(raw, dtype, (), False, source)[()]
    if name in RECONSTRUCT:
        if not (call.args and _name(call.args[0]) in NDARRAY and call.built):
            raise ModelLoadError(f"{source}: malformed numpy array in the pickle")
        _, shape, dtype, fortran, raw = inert(call.state, source=source, depth=depth)
        if not isinstance(raw, (bytes, bytearray)):
            raise ModelLoadError(f"{source}: numpy array of objects in the pickle")
        return _array(bytes(raw), dtype, shape, bool(fortran), source)
    if name in _CONSTRUCT or name in RECORD_CLASSES:
        cls = _name(call.args[0]) if name in _CONSTRUCT and call.args else name
        if cls not in RECORD_CLASSES:
            raise refused(call.args[0] if call.args else call.func, source)
        return Record(cls, inert(call.state, source=source, depth=depth))
    if name in OPAQUE:
        return Record(name, None)
    if name == "_codecs.encode" and len(call.args) == 2 and call.args[1] == "latin1":
        text = call.args[0]  # protocol 2's spelling of bytes: str -> latin-1 bytes
        if isinstance(text, str):
            return text.encode("latin1")
    raise refused(call.func if isinstance(call.func, Global) else Global("?", "?"), source)


def _dtype(call: Call, source: str) -> np.dtype[Any]:
    code = call.args[0] if call.args else None
    if not isinstance(code, str) or code not in DTYPES:
        raise ModelLoadError(f"{source}: numpy dtype {code!a} is not a plain number type")
    order = "<"
    if isinstance(call.state, tuple) and len(call.state) > 1 and call.state[1] in "<>|=":
        order = call.state[1] if call.state[1] in "<>" else "<"
    return np.dtype(order + code if code != "b1" else code)


def _array(raw: Any, dtype: Any, shape: Any, fortran: bool, source: str) -> Any:
    if not isinstance(dtype, np.dtype) or not isinstance(raw, (bytes, bytearray)):
        raise ModelLoadError(f"{source}: malformed numpy value in the pickle")
    if not isinstance(shape, tuple) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise ModelLoadError(f"{source}: numpy shape {shape!a} is not a tuple of sizes")
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if size * dtype.itemsize != len(raw):
        raise ModelLoadError(
            f"{source}: numpy array of shape {list(shape)} {dtype} needs "
            f"{size * dtype.itemsize} bytes, the pickle holds {len(raw)}"
        )
    flat = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=True)
    return flat.reshape(shape, order="F" if fortran else "C")
