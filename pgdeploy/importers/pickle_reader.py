"""Read a pickle's opcodes into inert values, never executing anything.

Stable-Baselines3 stores its spaces and ``policy_kwargs`` as cloudpickles, and a
VecNormalize file is a whole pickled object. ``pickle.loads`` on either runs whatever the
file names. :func:`read_pickle` instead walks the opcodes (the ones :mod:`pickletools`
documents) on a stack of plain values: a reference to a global becomes a :class:`Global`
(its module is never imported), a call becomes a :class:`Call` record (never made), a
``BUILD`` stores its state on that record. Callers then interpret the records they know
(:mod:`pgdeploy.importers.inert`) and refuse every other name.
"""

from __future__ import annotations

import io
import pickletools
from dataclasses import dataclass, field
from typing import Any

from pgdeploy.errors import ModelLoadError

#: Largest pickle read (SB3's fields are a few KB; a VecNormalize file holds obs statistics).
MAX_PICKLE_BYTES = 64 << 20
#: Most opcodes and memo entries in one pickle.
MAX_OPCODES = 200_000


@dataclass(frozen=True)
class Global:
    """``module.name`` as the pickle spells it; nothing is imported."""

    module: str
    name: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Call:
    """``func(*args)`` that the pickle asks for (REDUCE, NEWOBJ), plus any BUILD state."""

    func: Any
    args: tuple[Any, ...]
    state: Any = None
    built: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Persistent:
    """A persistent id (torch's tensor storages); the payload is kept as read."""

    pid: Any


_ORDERED_DICT = Global("collections", "OrderedDict")


def read_pickle(data: bytes, *, source: str) -> Any:
    """The value tree of ``data``: dicts, lists, tuples, str, bytes, numbers, None,
    :class:`Global`, :class:`Call`, :class:`Persistent`. Raises ModelLoadError on any
    opcode outside the inert subset, a malformed stream, or a pickle over the limits."""
    if len(data) > MAX_PICKLE_BYTES:
        raise ModelLoadError(f"{source} is a pickle of {len(data)} bytes, over {MAX_PICKLE_BYTES}")
    try:
        return _Machine(source).run(data)
    except ModelLoadError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, EOFError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{source} is not a readable pickle ({type(exc).__name__})") from exc


class _Machine:
    def __init__(self, source: str) -> None:
        self.source = source
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}

    def refuse(self, what: str) -> ModelLoadError:
        return ModelLoadError(f"{self.source}: {what}; pgdeploy reads pickles without running them")

    def pop_mark(self) -> list[Any]:
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def run(self, data: bytes) -> Any:
        for count, (opcode, arg, _) in enumerate(pickletools.genops(io.BytesIO(data))):
            if count > MAX_OPCODES:
                raise self.refuse(f"more than {MAX_OPCODES} opcodes")
            name = opcode.name
            if name == "STOP":
                if len(self.stack) != 1 or self.marks:
                    raise self.refuse("the pickle ends with an unbalanced stack")
                return self.stack[0]
            handler = getattr(self, "op_" + name, None)
            if handler is None:
                raise self.refuse(f"pickle opcode {name} is not supported")
            handler(arg)
        raise self.refuse("the pickle has no STOP opcode")

    # --- framing and memo -------------------------------------------------------------
    def op_PROTO(self, arg: Any) -> None:
        pass

    def op_FRAME(self, arg: Any) -> None:
        pass

    def op_MEMOIZE(self, arg: Any) -> None:
        self.memo[len(self.memo)] = self.stack[-1]

    def op_BINPUT(self, arg: Any) -> None:
        if len(self.memo) > MAX_OPCODES:
            raise self.refuse("too many memo entries")
        self.memo[int(arg)] = self.stack[-1]

    op_LONG_BINPUT = op_BINPUT

    def op_BINGET(self, arg: Any) -> None:
        self.stack.append(self.memo[int(arg)])

    op_LONG_BINGET = op_BINGET

    def op_MARK(self, arg: Any) -> None:
        self.marks.append(len(self.stack))

    def op_POP(self, arg: Any) -> None:
        self.stack.pop()

    def op_POP_MARK(self, arg: Any) -> None:
        self.pop_mark()

    def op_DUP(self, arg: Any) -> None:
        self.stack.append(self.stack[-1])

    # --- constants ----------------------------------------------------------------------
    def _push(self, arg: Any) -> None:
        self.stack.append(arg)

    op_BININT = op_BININT1 = op_BININT2 = op_LONG1 = op_LONG4 = op_BINFLOAT = _push
    op_SHORT_BINUNICODE = op_BINUNICODE = op_BINUNICODE8 = op_UNICODE = _push
    op_SHORT_BINBYTES = op_BINBYTES = op_BINBYTES8 = op_BYTEARRAY8 = _push

    def op_SHORT_BINSTRING(self, arg: Any) -> None:  # protocol-2 str (numpy dtype names)
        self.stack.append(arg if isinstance(arg, str) else str(arg))

    op_BINSTRING = op_SHORT_BINSTRING

    def op_NONE(self, arg: Any) -> None:
        self.stack.append(None)

    def op_NEWTRUE(self, arg: Any) -> None:
        self.stack.append(True)

    def op_NEWFALSE(self, arg: Any) -> None:
        self.stack.append(False)

    # --- containers ---------------------------------------------------------------------
    def op_EMPTY_DICT(self, arg: Any) -> None:
        self.stack.append({})

    def op_EMPTY_LIST(self, arg: Any) -> None:
        self.stack.append([])

    def op_EMPTY_TUPLE(self, arg: Any) -> None:
        self.stack.append(())

    def op_TUPLE(self, arg: Any) -> None:
        self.stack.append(tuple(self.pop_mark()))

    def _tuple_n(self, n: int) -> None:
        items = tuple(self.stack[len(self.stack) - n :])
        if len(items) != n:
            raise IndexError("stack underflow")
        del self.stack[len(self.stack) - n :]
        self.stack.append(items)

    def op_TUPLE1(self, arg: Any) -> None:
        self._tuple_n(1)

    def op_TUPLE2(self, arg: Any) -> None:
        self._tuple_n(2)

    def op_TUPLE3(self, arg: Any) -> None:
        self._tuple_n(3)

    def op_LIST(self, arg: Any) -> None:
        self.stack.append(self.pop_mark())

    def op_DICT(self, arg: Any) -> None:
        items = self.pop_mark()
        self.stack.append(self._pairs({}, items))

    def _pairs(self, target: Any, items: list[Any]) -> Any:
        if not isinstance(target, dict) or len(items) % 2:
            raise self.refuse("SETITEMS on something that is not a dict")
        for key, value in zip(items[::2], items[1::2], strict=True):
            if not isinstance(key, (str, int, bytes, float, bool, tuple)) and key is not None:
                raise self.refuse(f"a dict key of type {type(key).__name__}")
            target[key] = value
        return target

    def op_SETITEM(self, arg: Any) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._pairs(self.stack[-1], [key, value])

    def op_SETITEMS(self, arg: Any) -> None:
        items = self.pop_mark()
        self._pairs(self.stack[-1], items)

    def op_APPEND(self, arg: Any) -> None:
        value = self.stack.pop()
        if not isinstance(self.stack[-1], list):
            raise self.refuse("APPEND on something that is not a list")
        self.stack[-1].append(value)

    def op_APPENDS(self, arg: Any) -> None:
        items = self.pop_mark()
        if not isinstance(self.stack[-1], list):
            raise self.refuse("APPENDS on something that is not a list")
        self.stack[-1].extend(items)

    def op_EMPTY_SET(self, arg: Any) -> None:
        self.stack.append([])  # kept as a list: sets are never used by callers

    op_ADDITEMS = op_APPENDS

    def op_FROZENSET(self, arg: Any) -> None:
        self.stack.append(self.pop_mark())

    # --- references and calls: recorded, never made ---------------------------------
    def op_GLOBAL(self, arg: Any) -> None:
        module, _, name = str(arg).partition(" ")
        self.stack.append(Global(module, name))

    def op_STACK_GLOBAL(self, arg: Any) -> None:
        name = self.stack.pop()
        module = self.stack.pop()
        if not isinstance(module, str) or not isinstance(name, str):
            raise self.refuse("STACK_GLOBAL with names that are not strings")
        self.stack.append(Global(module, name))

    def op_REDUCE(self, arg: Any) -> None:
        args = self.stack.pop()
        func = self.stack.pop()
        if not isinstance(args, tuple):
            raise self.refuse("REDUCE with arguments that are not a tuple")
        if func == _ORDERED_DICT and not args:
            self.stack.append({})  # an OrderedDict is a dict; its items follow as SETITEMS
            return
        self.stack.append(Call(func, args))

    def op_NEWOBJ(self, arg: Any) -> None:
        self.op_REDUCE(arg)

    def op_NEWOBJ_EX(self, arg: Any) -> None:
        kwargs = self.stack.pop()
        self.op_REDUCE(arg)
        if not isinstance(kwargs, dict):
            raise self.refuse("NEWOBJ_EX with keyword arguments that are not a dict")
        self.stack[-1].kwargs = kwargs

    def op_BUILD(self, arg: Any) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, dict):  # an OrderedDict's attributes (torch's _metadata)
            return
        if not isinstance(target, Call) or target.built:
            raise self.refuse("BUILD on something that is not a fresh object")
        target.state, target.built = state, True

    def op_BINPERSID(self, arg: Any) -> None:
        self.stack.append(Persistent(self.stack.pop()))
