"""Export verification of int8 C: how often it acts as the float policy does, and how well.

An int8 policy cannot equal the float one, so it is held to a rate instead: on the same
random and on-policy observations as every export, the compiled C's greedy action
(every head), under every verified build, must equal the source's float policy's (a
trained policy's PyTorch forward pass, or an imported file's actor rebuilt in PyTorch)
on at least ``min_agreement`` of each set.
The report adds max |dp| and, where the env can be made, the mean return of the compiled
int8 C playing greedily (through ctypes) next to the float network's, on the same seeds.
"""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import ExportVerificationError, InvalidArgumentError
from pgdeploy.export.c.compile import BUILD_FLAGS, compile_c
from pgdeploy.export.verify import Reference, actions_from_probs
from pgdeploy.spec import PolicySpec

DEFAULT_MIN_AGREEMENT = 0.995


@dataclass(frozen=True)
class QuantizationCheck:
    """How the int8 C compared with the float network."""

    mode: str
    agreement_random: float  #: greedy actions equal (all heads), random observations
    agreement_on_policy: float | None  #: the same on on-policy ones (None: none were used)
    n_random: int
    n_on_policy: int
    max_abs_dp: float  #: largest |p_int8 - p_float| (int8-integer: one-hot vs softmax)
    min_agreement: float
    episodes: int  #: greedy episodes played per policy (0: the env could not be made)
    mean_return_float: float | None
    mean_return_quantized: float | None

    @property
    def agreement(self) -> float:
        rates = [self.agreement_random * self.n_random]
        if self.agreement_on_policy is not None:
            rates.append(self.agreement_on_policy * self.n_on_policy)
        return sum(rates) / max(self.n_random + self.n_on_policy, 1)

    def describe(self) -> str:
        on_policy = (
            "n/a" if self.agreement_on_policy is None else f"{100 * self.agreement_on_policy:.2f} %"
        )
        text = (
            f"{self.mode}: greedy agreement with the float policy "
            f"{100 * self.agreement_random:.2f} % random, {on_policy} on-policy "
            f"(threshold {100 * self.min_agreement:.2f} %), "
            f"max |dp| = {self.max_abs_dp:.3g}"
        )
        if self.mean_return_float is not None and self.mean_return_quantized is not None:
            text += (
                f"; mean return over {self.episodes} greedy episodes: float "
                f"{self.mean_return_float:.1f}, {self.mode} C {self.mean_return_quantized:.1f}"
            )
        return text


def check_min_agreement(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"min_agreement must be a number in [0, 1], got {value!r}")
    if not (0.0 <= float(value) <= 1.0):
        raise InvalidArgumentError(f"min_agreement must be in [0, 1], got {value!r}")
    return float(value)


def agreement_check(
    mode: str,
    probs: npt.NDArray[np.float32],
    greedy: npt.NDArray[np.int64],
    reference: Reference,
    n_random: int,
    min_agreement: float,
) -> QuantizationCheck:
    """How the int8 C's outputs on the reference's observations (the first ``n_random``
    random) compare with the float policy's: greedy agreement per set, max |dp|."""
    n = len(reference.obs)
    ref_probs, ref_greedy, _ = reference.outputs
    same = (greedy.reshape(n, -1) == np.asarray(ref_greedy).reshape(n, -1)).all(axis=1)
    n_on = n - n_random
    return QuantizationCheck(
        mode=mode,
        agreement_random=float(same[:n_random].mean()) if n_random else 1.0,
        agreement_on_policy=float(same[n_random:].mean()) if n_on else None,
        n_random=n_random,
        n_on_policy=n_on,
        max_abs_dp=float(np.abs(probs.astype(np.float64) - ref_probs).max()),
        min_agreement=min_agreement,
        episodes=0,
        mean_return_float=None,
        mean_return_quantized=None,
    )


def require_agreement(check: QuantizationCheck, build: str, folder: Path) -> QuantizationCheck:
    """``check`` when both sets reach its threshold, else the refusal."""
    on_policy = 1.0 if check.agreement_on_policy is None else check.agreement_on_policy
    if min(check.agreement_random, on_policy) >= check.min_agreement:
        return check
    raise ExportVerificationError(
        f"the {check.mode} C ({build}) agrees with the float policy's greedy action on "
        f"{100 * check.agreement_random:.2f} % of {check.n_random} random and "
        f"{100 * on_policy:.2f} % of {check.n_on_policy} on-policy observations, below the "
        f"required {100 * check.min_agreement:.2f} %; nothing was written ({folder} was left "
        "as it was; export with --quantize float32, or lower --min-agreement)"
    )


def with_returns(
    check: QuantizationCheck,
    cc: str,
    staging: Path,
    spec: PolicySpec,
    float_probs: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
    env_factory: Callable[[], Any],
    episodes: int,
    seed: int,
) -> QuantizationCheck:
    """``check`` with the mean returns of ``episodes`` greedy episodes of the compiled C
    (through ctypes) and of the float policy, on the same seeds."""
    library = compile_c(
        cc, [staging / "policy.c"], staging / "policy.so", flags=(*BUILD_FLAGS, "-shared", "-fPIC")
    )
    c_returns = play(env_factory, spec, _c_greedy(library, spec), episodes, seed)
    float_returns = play(env_factory, spec, _float_greedy(float_probs, spec), episodes, seed)
    return dataclasses.replace(
        check,
        episodes=episodes,
        mean_return_float=float(np.mean(float_returns)),
        mean_return_quantized=float(np.mean(c_returns)),
    )


#: (rows: float32 (n, obs_dim)) -> (n, heads) int64 env actions
Greedy = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.int64]]


def _c_greedy(library: Path, spec: PolicySpec) -> Greedy:
    lib = ctypes.CDLL(str(library))
    fn = lib.pgdeploy_greedy_heads
    heads = spec.action_layout.n_branches
    out = (ctypes.c_int * heads)()
    float_p = ctypes.POINTER(ctypes.c_float)

    def act(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        actions = np.empty((len(rows), heads), np.int64)
        for i, row in enumerate(rows):
            fn(row.ctypes.data_as(float_p), out)
            actions[i] = list(out)
        return actions

    act.library = lib  # type: ignore[attr-defined]  # keeps the handle alive
    return act


def _float_greedy(
    float_probs: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]], spec: PolicySpec
) -> Greedy:
    def act(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        probs = float_probs(rows)
        zeros = np.zeros((len(rows), spec.action_layout.n_branches), np.float32)
        return actions_from_probs(spec, probs, zeros)[1].reshape(len(rows), -1)

    return act


def play(
    env_factory: Callable[[], Any], spec: PolicySpec, greedy: Greedy, episodes: int, seed: int
) -> list[float]:
    """Returns of ``episodes`` greedy episodes played in lockstep (one ``greedy`` call per
    step for all that are still running), episode ``e`` reset with ``seed + e``."""
    layout = spec.obs_layout
    limit = spec.max_episode_steps or 1000
    envs = [env_factory() for _ in range(episodes)]
    try:
        current = [env.reset(seed=seed + e)[0] for e, env in enumerate(envs)]
        returns = [0.0] * episodes
        running = list(range(episodes))
        for _ in range(limit):
            if not running:
                break
            rows = np.stack(
                [
                    np.asarray(current[e], np.float32).reshape(-1)
                    if layout.plain
                    else layout.flatten(current[e])
                    for e in running
                ]
            )
            actions = greedy(rows)
            still = []
            for e, action in zip(running, actions, strict=True):
                move = int(action[0]) if spec.action_layout.n_branches == 1 else action
                current[e], reward, terminated, truncated, _ = envs[e].step(move)
                returns[e] += float(reward)
                if not (terminated or truncated):
                    still.append(e)
            running = still
    finally:
        for env in envs:
            env.close()
    return returns
