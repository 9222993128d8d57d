"""Resuming a run: the ``resume`` section of ``model.pt``, written and read back.

The section carries what the weights alone do not: the optimiser's moments and step
count, the env-step, episode and iteration counters, the window of recent returns the
solved check averages, the run's metrics history, and the RNG states of the envs and the
action sampler. Every iteration that starts with no episode in progress resets all envs,
so restoring those RNG states continues a run exactly where it stopped.

It is read from a file, so :func:`resume_state` is the one place it is trusted: every
value is checked by type and range (counters are integers in ``[0, 2**53)``, returns and
moments finite, ``exp_avg_sq >= 0``, RNG states the PCG64 words numpy writes, history rows
within the checkpoint's own counters) and every failure is one :class:`CheckpointError`
line. Sizes and tensor layouts were bounded when the file was loaded
(:mod:`pgdeploy.training.checkpoint_safety`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pgdeploy.errors import CheckpointError
from pgdeploy.spec import PolicySpec
from pgdeploy.training.callbacks import FIELDS, IterationStats
from pgdeploy.training.checkpoint import Checkpoint, load_policy_state
from pgdeploy.training.checkpoint_safety import non_finite_weights, shown
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.optim import Adam

#: Config fields that define the policy's function; a resume may not change them.
POLICY_FIELDS = ("env_id", "hidden_sizes", "normalize_obs", "obs_clip")
#: Counters are exact in a float64 history row below this.
MAX_COUNT = 2**53
#: Longest RNG JSON accepted: about 200 bytes per env, for up to 4096 envs, plus the sampler.
MAX_RNG_CHARS = 1 << 20
#: Uniforms a sampler holds between blocks (``runtime.sampling``'s block size).
MAX_BUFFERED_UNIFORMS = 4096
_COUNTERS = ("env_steps", "episodes", "iterations")
_INT_FIELDS = {"iteration", "env_steps", "episodes"}


@dataclass(frozen=True)
class ResumeState:
    """Where a run stopped, every value checked; built by :func:`resume_state`."""

    env_steps: int
    episodes: int
    iterations: int
    window: tuple[float, ...]
    optimizer: dict[str, Any]
    history: tuple[IterationStats, ...] = ()
    steps_to_solve: int | None = None
    wall_seconds: float = 0.0
    rng: str | None = None
    value: dict[str, Any] | None = None

    def collector_seed(self, seed: int) -> int:
        """A seed for the envs and sampler of the resumed run, distinct per resume point."""
        return int(np.random.SeedSequence([seed, self.iterations]).generate_state(1)[0])

    def restore(self, checkpoint: Checkpoint, policy: Any, optimizer: Adam) -> None:
        """Load the weights, observation statistics and optimiser state into a fresh run."""
        load_policy_state(policy, checkpoint.state_dict, source="checkpoint")
        try:
            optimizer.load_state_dict(self.optimizer)
        except CheckpointError as exc:
            raise CheckpointError(f"cannot restore the optimiser: {exc}") from exc


def resume_payload(
    optimizer: Adam,
    *,
    env_steps: int,
    episodes: int,
    iterations: int,
    window: list[float],
    history: list[IterationStats] | tuple[IterationStats, ...] = (),
    steps_to_solve: int | None = None,
    wall_seconds: float = 0.0,
    rng: str | None = None,
) -> dict[str, Any]:
    """The ``resume`` section every checkpoint of a run carries."""
    return {
        "optimizer": optimizer.state_dict(),
        "env_steps": env_steps,
        "episodes": episodes,
        "iterations": iterations,
        "window": list(window),
        "history": encode_history(history),
        "steps_to_solve": steps_to_solve,
        "wall_seconds": wall_seconds,
        "rng": rng,
    }


def resume_state(checkpoint: Checkpoint, config: TrainConfig, spec: PolicySpec) -> ResumeState:
    """The one compatibility check and reading of a run to continue; a CheckpointError if
    ``config`` cannot continue it (policy changed, budget spent, other spaces) or if any
    saved value is malformed, out of range or not finite."""
    _check_compatible(checkpoint, config, spec)
    bad = non_finite_weights(checkpoint.state_dict)
    if bad:
        raise CheckpointError(
            f"checkpoint cannot be resumed: weights {bad} hold NaN or infinity (the run "
            "diverged); start a new run, e.g. with a smaller learning_rate"
        )
    saved = checkpoint.resume
    missing = [key for key in (*_COUNTERS, "window", "optimizer") if key not in saved]
    if missing:
        raise CheckpointError(
            f"checkpoint cannot be resumed: its 'resume' section lacks {missing} (it was written "
            "by an older pgdeploy or not by 'pgdeploy train'); start a new run instead"
        )
    counters = {key: _count(saved[key], key) for key in _COUNTERS}
    if counters["env_steps"] >= config.total_timesteps:
        raise CheckpointError(
            f"cannot resume: the run has already spent its budget ({counters['env_steps']} env "
            f"steps of total_timesteps={config.total_timesteps}); raise total_timesteps to "
            "train further"
        )
    solve = saved.get("steps_to_solve")
    optimizer = saved["optimizer"]
    if not isinstance(optimizer, dict):
        raise CheckpointError(f"checkpoint's resume 'optimizer' is {shown(optimizer)}, not a dict")
    value = saved.get("value")
    if value is not None:
        _value_state(value)
    _statistics(checkpoint)
    return ResumeState(
        **counters,
        window=_window(saved["window"], checkpoint.config.solve_window),
        optimizer=optimizer,
        history=decode_history(saved.get("history"), iterations=counters["iterations"]),
        steps_to_solve=None if solve is None else _count(solve, "steps_to_solve"),
        wall_seconds=_seconds(saved.get("wall_seconds", 0.0)),
        rng=_rng(saved.get("rng"), num_envs=checkpoint.config.num_envs),
        value=value,
    )


def _value_state(value: Any) -> None:
    """The value baseline's saved net: string names to finite tensors (shapes are checked
    against the net when it is loaded)."""
    net: Any = value.get("net") if isinstance(value, dict) else None
    ok = isinstance(net, dict) and isinstance(value.get("optimizer"), dict)
    ok = ok and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in net.items())
    if not ok or non_finite_weights(net):
        raise CheckpointError(
            "checkpoint's resume 'value' must hold 'net' (names to finite tensors) and 'optimizer'"
        )


def _statistics(checkpoint: Checkpoint) -> None:
    """Observation statistics a run can have: variance and count >= 0."""
    for name, tensor in checkpoint.state_dict.items():
        if name.endswith(("obs_var", "obs_count")) and bool((tensor < 0).any()):
            raise CheckpointError(f"checkpoint's {name} must be >= 0 (a variance or a count)")


def _check_compatible(checkpoint: Checkpoint, config: TrainConfig, spec: PolicySpec) -> None:
    for name in POLICY_FIELDS:
        was, now = getattr(checkpoint.config, name), getattr(config, name)
        if was != now:
            raise CheckpointError(
                f"cannot resume: {name} differs (the run has {_show(was)}, the new config "
                f"{_show(now)}); a resumed run keeps its policy, so start a new run instead"
            )
    was_spec = checkpoint.spec
    if (was_spec.obs_dim, was_spec.n_actions) != (spec.obs_dim, spec.n_actions):
        raise CheckpointError(
            f"cannot resume: {spec.env_id} now has obs_dim {spec.obs_dim} and {spec.n_actions} "
            f"actions, the run was trained with obs_dim {was_spec.obs_dim} and "
            f"{was_spec.n_actions}"
        )


# --- the values, one checker per kind -------------------------------------------------


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_COUNT:
        raise CheckpointError(
            f"checkpoint's resume {name!r} must be an integer in [0, 2**53), got {shown(value)}"
        )
    return value


def _finite(value: Any, name: str) -> float:
    """A float as pgdeploy writes one (not an int, which could be 10**400), finite."""
    if not isinstance(value, float) or not math.isfinite(value) or abs(value) > 1e300:
        raise CheckpointError(
            f"checkpoint's resume {name} must be a finite number, got {shown(value)}"
        )
    return float(value)


def _seconds(value: Any) -> float:
    seconds = _finite(value, "'wall_seconds'")
    if not 0 <= seconds <= 1e12:
        raise CheckpointError(
            f"checkpoint's resume 'wall_seconds' must be in [0, 1e12], got {seconds!r}"
        )
    return seconds


def _window(value: Any, solve_window: int) -> tuple[float, ...]:
    """The returns the solved check averages: finite, at most ``solve_window`` of them
    (an infinite return would make any policy count as solved)."""
    if not isinstance(value, (list, tuple)) or len(value) > solve_window:
        raise CheckpointError(
            f"checkpoint's resume 'window' must be a list of at most {solve_window} returns, "
            f"got {shown(value)}"
        )
    return tuple(_finite(v, f"window[{i}]") for i, v in enumerate(value))


def _rng(value: Any, *, num_envs: int) -> str | None:
    """The RNG JSON, parsed once here to check its shape: ``{"envs": [PCG64 state] * (1 or
    num_envs), "uniforms": {"rng": PCG64 state, "buffer": [uniforms]}}``."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_RNG_CHARS:
        raise CheckpointError(
            f"checkpoint's resume 'rng' must be a JSON string of at most {MAX_RNG_CHARS} "
            f"characters, got {shown(value)}"
        )
    try:
        data = json.loads(value)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting thousands deep
        raise CheckpointError(
            f"checkpoint's resume 'rng' is not valid JSON: {type(exc).__name__}"
        ) from exc
    if not isinstance(data, dict) or set(data) != {"envs", "uniforms"}:
        raise CheckpointError("checkpoint's resume 'rng' must hold exactly 'envs' and 'uniforms'")
    envs, uniforms = data["envs"], data["uniforms"]
    if not isinstance(envs, list) or len(envs) not in (1, num_envs):
        raise CheckpointError(
            f"checkpoint's resume 'rng' must hold 1 or {num_envs} env states (one per env, or "
            f"one for a numpy vector env), got {shown(envs)}"
        )
    for i, state in enumerate(envs):
        _pcg64(state, f"envs[{i}]")
    if not isinstance(uniforms, dict) or set(uniforms) != {"rng", "buffer"}:
        raise CheckpointError("checkpoint's resume 'rng' uniforms must hold 'rng' and 'buffer'")
    _pcg64(uniforms["rng"], "uniforms")
    buffer = uniforms["buffer"]
    if not isinstance(buffer, list) or len(buffer) > MAX_BUFFERED_UNIFORMS:
        raise CheckpointError(
            f"checkpoint's resume 'rng' buffer must be a list of at most "
            f"{MAX_BUFFERED_UNIFORMS} uniforms, got {shown(buffer)}"
        )
    for v in buffer:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
            raise CheckpointError(
                f"checkpoint's resume 'rng' buffer must hold uniforms in [0, 1), got {shown(v)}"
            )
    return value


def _pcg64(state: Any, where: str) -> None:
    """A numpy PCG64 state: 128-bit ``state`` and ``inc``, ``has_uint32`` 0/1, 32-bit
    ``uinteger``; anything else (other generators, 2**300) is refused before numpy sees it."""
    ok = (
        isinstance(state, dict)
        and set(state) == {"bit_generator", "state", "has_uint32", "uinteger"}
        and state["bit_generator"] == "PCG64"
        and isinstance(state["state"], dict)
        and set(state["state"]) == {"state", "inc"}
        and all(_word(v, 128) for v in state["state"].values())
        and state["has_uint32"] in (0, 1)
        and _word(state["has_uint32"], 1)
        and _word(state["uinteger"], 32)
    )
    if not ok:
        raise CheckpointError(
            f"checkpoint's resume 'rng' {where} is not a PCG64 state as numpy writes it "
            "(128-bit state and inc, has_uint32 0 or 1, 32-bit uinteger)"
        )


def _word(value: Any, bits: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**bits


# --- the metrics history --------------------------------------------------------------


def encode_history(history: list[IterationStats] | tuple[IterationStats, ...]) -> dict[str, Any]:
    """One float64 row per iteration (exact for the counters, which stay below 2**53)."""
    rows = [[float(getattr(stats, name)) for name in FIELDS] for stats in history]
    tensor = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), len(FIELDS))
    return {"fields": list(FIELDS), "rows": tensor}


def decode_history(data: Any, *, iterations: int | None = None) -> tuple[IterationStats, ...]:
    """Rows back to IterationStats by field name: a field this version lacks is dropped, one
    the checkpoint lacks is NaN (the counters must be there). Counters must be integers in
    ``[0, 2**53)``, other values finite or NaN (no value), and there must be no more rows
    than ``iterations`` (the tensor's layout was bounded at load)."""
    if data is None:
        return ()
    if not isinstance(data, dict) or set(data) != {"fields", "rows"}:
        raise CheckpointError("checkpoint's resume 'history' must hold 'fields' and 'rows'")
    fields, rows = data["fields"], data["rows"]
    if not isinstance(fields, list) or not 1 <= len(fields) <= 4 * len(FIELDS):
        raise CheckpointError(f"checkpoint's resume history fields are {shown(fields)}")
    if not all(isinstance(f, str) and len(f) <= 64 for f in fields) or len(set(fields)) != len(
        fields
    ):
        raise CheckpointError("checkpoint's resume history fields must be distinct short names")
    if (
        not isinstance(rows, torch.Tensor)
        or rows.dtype != torch.float64
        or rows.ndim != 2
        or rows.shape[1] != len(fields)
    ):
        raise CheckpointError(
            f"checkpoint's resume history rows must be a float64 (rows, {len(fields)}) tensor"
        )
    limit = MAX_COUNT if iterations is None else iterations
    if rows.shape[0] > limit:
        raise CheckpointError(
            f"checkpoint's resume history has {rows.shape[0]} rows for {limit} iterations"
        )
    missing = sorted(_INT_FIELDS - set(fields))
    if missing:
        raise CheckpointError(f"checkpoint's resume history lacks {missing}")
    columns = [fields.index(name) for name in sorted(_INT_FIELDS)]
    counts = rows[:, columns]
    if not bool(((counts >= 0) & (counts < MAX_COUNT) & (counts == counts.floor())).all()) or bool(
        rows.isinf().any()
    ):
        raise CheckpointError(
            "checkpoint's resume history holds a counter that is not an integer in [0, 2**53) "
            "or an infinite value"
        )
    decoded = []
    for row in rows.tolist():
        values = dict(zip(fields, row, strict=True))
        decoded.append(
            IterationStats(
                **{
                    name: int(values[name]) if name in _INT_FIELDS else values.get(name, math.nan)
                    for name in FIELDS
                }
            )
        )
    return tuple(decoded)


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)
