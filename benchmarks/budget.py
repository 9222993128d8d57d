"""Budgets that hold: overshoot of ``--total-timesteps`` and Ctrl-C latency on a long-episode env.

    PYTHONPATH=. python benchmarks/budget.py [--total 50000] [--num-envs 16]

Trains on ``tests.tiny_envs:Long-v0`` (episodes of 1,500 steps, no time limit) and reports
the env steps run against the budget (bound: ``num_envs - 1`` over), the largest iteration
(bound: ``num_envs * iteration_steps``), and how long a stop request takes to be answered
(``should_stop`` turning true mid-iteration until ``train`` returns, nothing saved).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import tests.tiny_envs  # noqa: F401 - registers Long-v0
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.train import train

LONG = "tests.tiny_envs:Long-v0"


class StopAfter:
    """A should_stop that turns true ``delay`` seconds after it is made, noting when."""

    def __init__(self, delay: float) -> None:
        self.deadline = time.perf_counter() + delay
        self.asked = 0.0

    def __call__(self) -> str | None:
        if time.perf_counter() < self.deadline:
            return None
        self.asked = self.asked or time.perf_counter()
        return "SIGINT"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=50_000)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--stops", type=int, default=5, help="stop requests to time")
    args = parser.parse_args()
    config = TrainConfig(
        env_id=LONG, num_envs=args.num_envs, total_timesteps=args.total, vectorization="sync"
    )
    result = train(config)
    steps = [s.env_steps for s in result.history]
    print(
        f"budget {args.total}: ran {steps[-1]} env steps (over by {steps[-1] - args.total}, "
        f"bound {config.num_envs - 1}); {len(steps)} iterations, largest "
        f"{max(np.diff([0, *steps]))} steps (bound {config.num_envs * config.iteration_steps})"
    )
    latencies = []
    for i in range(args.stops):
        should_stop = StopAfter(0.5 + 0.37 * i)
        train(
            TrainConfig(env_id=LONG, num_envs=args.num_envs, total_timesteps=10**7,
                        vectorization="sync", seed=i),
            should_stop=should_stop,
        )  # fmt: skip
        latencies.append(time.perf_counter() - should_stop.asked)
    print(
        f"stop request answered in median {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} requests"
    )


if __name__ == "__main__":
    main()
