"""Export verification of int8 C: how often it acts as the float policy does, and how well.

An int8 policy cannot equal the float one, so it is held to a rate instead: on the same
random and on-policy observations as every export, the compiled C's greedy action
(every head) must equal the float network's on at least ``min_agreement`` of each set.
The report adds max |dp| and, where the env can be made, the mean return of the compiled
int8 C playing greedily (through ctypes) next to the float network's, on the same seeds.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy.errors import ExportVerificationError, InvalidArgumentError
from pgdeploy.export.c.compile import BUILD_FLAGS, CHarness, compile_c
from pgdeploy.export.c.quantized import (
    QuantizedNetwork,
    float_logits,
    greedy_indices,
    head_probs,
)
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


def verify_quantized(
    folder: Path,
    cc: str,
    qnet: QuantizedNetwork,
    spec: PolicySpec,
    obs: npt.NDArray[np.float32],
    n_random: int,
    *,
    min_agreement: float,
    episodes: int,
    env_factory: Callable[[], Any] | None,
    seed: int,
) -> QuantizationCheck:
    """Compile ``folder/policy.c``, compare it on ``obs`` (the first ``n_random`` random),
    play ``episodes`` in envs from ``env_factory`` when given, refuse below ``min_agreement``.
    """
    heads = spec.action_layout.n_branches
    harness = CHarness.build(cc, folder, spec.obs_dim, spec.n_actions, heads)
    uniforms = np.random.default_rng(seed).random((len(obs), heads), dtype=np.float32)
    probs_t, greedy_t, _ = harness(torch.from_numpy(obs), torch.from_numpy(uniforms))
    probs = probs_t.numpy()
    greedy = greedy_t.numpy().reshape(len(obs), heads) - np.asarray(spec.action_layout.start)
    reference = head_probs(float_logits(qnet.network, spec, obs), spec, qnet.network.head)
    same = (greedy == greedy_indices(reference, spec)).all(axis=1)
    n_on = len(obs) - n_random
    check = QuantizationCheck(
        mode=qnet.mode,
        agreement_random=float(same[:n_random].mean()) if n_random else 1.0,
        agreement_on_policy=float(same[n_random:].mean()) if n_on else None,
        n_random=n_random,
        n_on_policy=n_on,
        max_abs_dp=float(np.abs(probs - reference).max()),
        min_agreement=min_agreement,
        episodes=episodes if env_factory is not None else 0,
        mean_return_float=None,
        mean_return_quantized=None,
    )
    on_policy = 1.0 if check.agreement_on_policy is None else check.agreement_on_policy
    if not min(check.agreement_random, on_policy) >= min_agreement:
        raise ExportVerificationError(
            f"the {qnet.mode} C agrees with the float policy's greedy action on "
            f"{100 * check.agreement_random:.2f} % of {n_random} random and "
            f"{100 * on_policy:.2f} % of {n_on} on-policy observations, below the required "
            f"{100 * min_agreement:.2f} %; nothing was written (export with --quantize float32, "
            "or lower --min-agreement)"
        )
    if env_factory is None or episodes == 0:
        return check
    library = compile_c(
        cc, [folder / "policy.c"], folder / "policy.so", flags=(*BUILD_FLAGS, "-shared", "-fPIC")
    )
    c_returns = play(env_factory, spec, _c_greedy(library, spec), episodes, seed)
    float_returns = play(env_factory, spec, _float_greedy(qnet, spec), episodes, seed)
    return QuantizationCheck(
        **{
            **check.__dict__,
            "mean_return_float": float(np.mean(float_returns)),
            "mean_return_quantized": float(np.mean(c_returns)),
        }
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


def _float_greedy(qnet: QuantizedNetwork, spec: PolicySpec) -> Greedy:
    start = np.asarray(spec.action_layout.start, np.int64)

    def act(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        logits = float_logits(qnet.network, spec, rows)
        return greedy_indices(head_probs(logits, spec, qnet.network.head), spec) + start

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
