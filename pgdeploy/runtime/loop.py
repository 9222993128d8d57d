"""A control loop that plays episodes with any object that speaks gymnasium's reset/step.

The runtime does not import gymnasium: pass any env with ``reset(seed=...) -> (obs, info)``
and ``step(action) -> (obs, reward, terminated, truncated, info)``. Timings are split into
the agent's ``act``, the env's ``step`` and the loop's own overhead, so an embedding
application can see where a control step's time goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import InvalidArgumentError


class Env(Protocol):
    def reset(self, *, seed: int | None = None) -> tuple[Any, dict[str, Any]]: ...

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]: ...


class Actor(Protocol):
    def act(self, obs: Any) -> int: ...


@dataclass(frozen=True)
class EpisodeResult:
    total_reward: float
    length: int
    terminated: bool
    truncated: bool


@dataclass
class PlayReport:
    """Episodes played and per-step timings (nanoseconds)."""

    episodes: list[EpisodeResult] = field(default_factory=list)
    act_ns: list[int] = field(default_factory=list)
    step_ns: list[int] = field(default_factory=list)
    loop_ns: int = 0

    @property
    def returns(self) -> npt.NDArray[np.float64]:
        return np.array([e.total_reward for e in self.episodes], dtype=np.float64)

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean()) if self.episodes else float("nan")

    @property
    def std_return(self) -> float:
        """Population standard deviation of the returns (0 for one episode)."""
        return float(self.returns.std()) if self.episodes else float("nan")

    def act_latency_us(self, percentile: float) -> float:
        return float(np.percentile(self.act_ns, percentile)) / 1e3 if self.act_ns else float("nan")

    def overhead_fraction(self) -> float:
        """Share of the loop's wall time spent outside ``act`` and ``step``."""
        inside = sum(self.act_ns) + sum(self.step_ns)
        return (self.loop_ns - inside) / self.loop_ns if self.loop_ns else 0.0


def play(
    agent: Actor,
    env: Env,
    *,
    episodes: int,
    seed: int | None = None,
    max_steps: int | None = None,
    on_step: Callable[[Any, int, float], None] | None = None,
    on_episode: Callable[[int, EpisodeResult], None] | None = None,
) -> PlayReport:
    """Play ``episodes`` episodes; ``seed`` seeds the first ``reset`` (gymnasium's convention).

    ``on_step(obs, action, reward)`` is called after every step (e.g. to render or log);
    ``on_episode(index, result)`` as each episode finishes.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise InvalidArgumentError(f"episodes must be an integer >= 1, got {episodes!r}")
    report = PlayReport()
    clock = time.perf_counter_ns
    loop_start = clock()
    for index in range(episodes):
        obs, _ = env.reset(seed=seed if index == 0 else None)
        total, length, terminated, truncated = 0.0, 0, False, False
        while not (terminated or truncated):
            t0 = clock()
            action = agent.act(obs)
            t1 = clock()
            obs, reward, terminated, truncated, _ = env.step(action)
            t2 = clock()
            report.act_ns.append(t1 - t0)
            report.step_ns.append(t2 - t1)
            total += float(reward)
            length += 1
            if on_step is not None:
                on_step(obs, action, float(reward))
            if max_steps is not None and length >= max_steps:
                truncated = True
        result = EpisodeResult(total, length, bool(terminated), bool(truncated))
        report.episodes.append(result)
        if on_episode is not None:
            on_episode(index, result)
    report.loop_ns = clock() - loop_start
    return report
