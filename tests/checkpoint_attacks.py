"""A family of hostile ``model.pt`` resume states, built from a real checkpoint's dict.

Every member changes what a resume trusts (the ``resume`` section, the weights and
statistics, the config) into something no run writes: numbers that are NaN, infinite,
negative, 2**300 or 10**400; tensors that are zero-stride views asking for 2**25 rows,
transposed, non-finite, of another dtype or shape; RNG JSON with bad words or nested
thousands deep; keys removed; containers nested past any limit. Each must be refused with
a typed error and never train. Shared by tests/test_attack_resume.py (every member) and
benchmarks/fuzz.py (random members and combinations).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import torch

Mutation = tuple[str, Callable[[dict[str, Any]], None]]

#: Numbers no counter, return, moment or time of a run can be.
BAD_NUMBERS: tuple[Any, ...] = (
    float("nan"),
    float("inf"),
    float("-inf"),
    -1,
    2**300,
    10**400,
    1e308,
    True,
    "12",
    None,
    [1],
)
#: Numbers that a counter cannot be but a float field could: checked for counters only.
BAD_COUNTS: tuple[Any, ...] = (2**53, 1.5, 12.0)
#: Strings no RNG state or policy-defining config field can hold.
BAD_STRINGS: tuple[str, ...] = (
    "",
    "\x1b]0;owned\x07\x1b[2J",
    "evilmod:Evil-v0",
    'CartPole-v1 *\\\n/ int x = system("id"); /*',
    "[" * 200_000,
    '{"envs": ' + "[" * 200_000,
    "A" * (2 << 20),
    "\udcff",
)
#: Resume-section numbers, by path.
COUNTERS = ("env_steps", "episodes", "iterations")
POLICY_STRINGS = ("env_id", "baseline", "lr_schedule", "vectorization")


def _get(data: dict[str, Any], path: tuple[Any, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        _get(data, path[:-1])[path[-1]] = value() if callable(value) else value

    return apply


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def apply(data: dict[str, Any]) -> None:
        del _get(data, path[:-1])[path[-1]]

    return apply


def _tensor_payloads(tensor: torch.Tensor) -> Iterator[tuple[str, Callable[[], Any]]]:
    shape = tuple(tensor.shape)
    width = shape[-1] if shape else 1
    yield "zero-stride 2**25 rows", lambda: torch.zeros(width).expand(2**25, width)
    yield "zero-stride scalar view", lambda: torch.zeros(1).expand(*(shape or (1,)), 2**20)
    yield "nan", lambda: torch.full(shape, float("nan"), dtype=tensor.dtype)
    yield "inf", lambda: torch.full(shape, float("inf"), dtype=tensor.dtype)
    yield "negative", lambda: torch.full(shape, -1.0, dtype=tensor.dtype)
    yield "int64", lambda: torch.zeros(shape, dtype=torch.int64)
    yield "complex", lambda: torch.zeros(shape, dtype=torch.complex64)
    yield "wrong shape", lambda: torch.zeros((*shape, 3), dtype=tensor.dtype)
    if len(shape) == 2 and shape[0] > 1 and shape[1] > 1:
        yield "transposed", lambda: torch.zeros(shape[::-1], dtype=tensor.dtype).T
    yield "not a tensor", lambda: tensor.tolist()


def _rng_mutations(rng_json: str) -> Iterator[Mutation]:
    data = json.loads(rng_json)

    def words(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
        def apply(checkpoint: dict[str, Any]) -> None:
            state = copy.deepcopy(data)
            _get(state, path[:-1])[path[-1]] = value
            checkpoint["resume"]["rng"] = json.dumps(state)

        return apply

    leaves = [("envs", 0, "state", "state"), ("envs", 0, "state", "inc"),
              ("envs", 0, "has_uint32"), ("envs", 0, "uinteger"),
              ("uniforms", "rng", "state", "state"), ("uniforms", "rng", "bit_generator"),
              ("envs", 0, "bit_generator")]  # fmt: skip
    for path in leaves:
        for value in (2**300, -1, 2**128, "x", None, 1.5, [0] * 3, "MT19937"):
            yield f"rng {'/'.join(map(str, path))} = {_short(value)}", words(path, value)
    yield "rng buffer of 10**6", words(("uniforms", "buffer"), [0.5] * 10**6)
    yield "rng buffer value 7", words(("uniforms", "buffer"), [7.0])
    yield "rng buffer nan", words(("uniforms", "buffer"), [float("nan")])
    yield "rng with 3 extra envs", words(("envs",), data["envs"] * 3 + data["envs"][:1])
    for value in BAD_STRINGS:
        yield f"rng = {_short(value)}", _set(("resume", "rng"), value)
    yield "rng = 12", _set(("resume", "rng"), 12)


def _nest(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def mutations(base: dict[str, Any]) -> Iterator[Mutation]:
    """Every member of the family, for a base checkpoint dict with a resume section."""
    resume = base["resume"]
    for name in (*COUNTERS, "steps_to_solve"):
        for value in (*BAD_NUMBERS, *BAD_COUNTS):
            if value is None and name == "steps_to_solve":
                continue  # not solved yet
            yield f"resume {name} = {_short(value)}", _set(("resume", name), value)
    for value in BAD_NUMBERS:
        if value is not None:
            yield f"wall_seconds = {_short(value)}", _set(("resume", "wall_seconds"), value)
        yield f"optimizer step = {_short(value)}", _set(("resume", "optimizer", "step"), value)
        for i in range(min(2, len(resume["window"]))):
            if value == -1:
                continue  # a return may be negative
            yield f"window[{i}] = {_short(value)}", _set(("resume", "window", i), value)
    yield "window of 5 x inf", _set(("resume", "window"), [float("inf")] * 5)
    yield "window of 5 x nan", _set(("resume", "window"), [float("nan")] * 5)
    yield "window of 10**6", _set(("resume", "window"), [1.0] * 10**6)
    yield "wall_seconds = 1e200", _set(("resume", "wall_seconds"), 1e200)
    for moment in ("exp_avg", "exp_avg_sq"):
        for i, tensor in enumerate(resume["optimizer"][moment]):
            for label, payload in _tensor_payloads(tensor):
                if moment == "exp_avg" and label == "negative":
                    continue  # a first moment may be negative
                yield f"{moment}[{i}] {label}", _set(("resume", "optimizer", moment, i), payload)
        yield (
            f"{moment} one short",
            _set(("resume", "optimizer", moment), resume["optimizer"][moment][:-1]),
        )
    rows = resume["history"]["rows"]
    for label, payload in _tensor_payloads(rows):
        if label != "negative":
            yield f"history rows {label}", _set(("resume", "history", "rows"), payload)
    for column in range(3):
        for value in (-1.0, float("inf"), float("nan"), 2.0**60, 0.5):

            def poke(data: dict[str, Any], c: int = column, v: float = value) -> None:
                rows = data["resume"]["history"]["rows"].clone()
                rows[0, c] = v
                data["resume"]["history"]["rows"] = rows

            yield f"history column {column} = {value}", poke
    width = rows.shape[1]
    long_history = _set(
        ("resume", "history", "rows"), lambda: torch.zeros(2**16, width, dtype=torch.float64)
    )
    yield "history of 2**16 rows", long_history
    yield (
        "history fields payload",
        _set(("resume", "history", "fields"), ["\x1b[2J"] * rows.shape[1]),
    )
    for name, tensor in base["state_dict"].items():
        for label, payload in _tensor_payloads(tensor):
            if label == "negative" and not name.endswith(("obs_var", "obs_count")):
                continue  # negative weights are weights
            if label == "not a tensor" or (label == "wrong shape" and not tensor.shape):
                continue
            yield f"state_dict {name} {label}", _set(("state_dict", name), payload)
    yield from _rng_mutations(resume["rng"])
    for field in POLICY_STRINGS:
        for value in BAD_STRINGS:
            yield f"config {field} = {_short(value)}", _set(("config", field), value)
    for field in ("num_envs", "solve_window", "learning_rate", "total_timesteps", "seed",
                  "torch_threads", "value_epochs", "iteration_steps"):  # fmt: skip
        for value in BAD_NUMBERS:
            if field == "learning_rate" and value in (2**300, 1e308):
                continue  # a silly but finite step size: the run diverges and says so
            yield f"config {field} = {_short(value)}", _set(("config", field), value)
    for key in (*COUNTERS, "window", "optimizer"):
        yield f"resume without {key}", _delete(("resume", key))
    yield "resume nested 5,000 deep", _set(("resume", "window"), lambda: _nest(5_000))
    yield "optimizer nested 40 deep", _set(("resume", "optimizer"), lambda: _nest(40))
    yield "resume is a list", _set(("resume",), [1, 2, 3])
    yield "value baseline payload", _set(("resume", "value"), {"net": {1: torch.zeros(2)}})


def random_mutation(
    base: dict[str, Any], rng: random.Random, family: list[Mutation]
) -> tuple[str, dict[str, Any]]:
    """One to three members of the family applied to a copy of ``base``."""
    chosen = rng.sample(family, k=rng.choice((1, 1, 2, 3)))
    data = copy.deepcopy(base)
    names = []
    for name, apply in chosen:
        try:
            apply(data)
        except (KeyError, IndexError, TypeError, AttributeError, RuntimeError):
            continue  # an earlier member removed what this one edits
        names.append(name)
    return " + ".join(names), data


def apply(base: dict[str, Any], mutation: Mutation) -> dict[str, Any]:
    data = copy.deepcopy(base)
    mutation[1](data)
    return data


def _short(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**64:
        return f"<{value.bit_length()}-bit int>"
    text = repr(value)
    return ascii(text[:24])
