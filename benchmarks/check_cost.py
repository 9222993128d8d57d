"""What the load-time and run-time checks cost: ``Agent.load`` and ``Agent.act`` timings.

    PYTHONPATH=<tree> python benchmarks/check_cost.py models/CartPole-v1/model.onnx

Run it alternately from two trees (before/after a change) on the same machine. ``act`` is
timed between two runs of the reference ``select_action`` (benchmarks/runtime_speed.py),
so the ratio uses the reference measured around it, in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runtime_speed import ReferencePolicy, latency, select_action

from pgdeploy.runtime import Agent
from pgdeploy.runtime.bench import act_latency, observations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--loads", type=int, default=40)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    Agent.load(args.model)
    times = []
    for _ in range(args.loads):
        start = time.perf_counter()
        Agent.load(args.model)
        times.append(time.perf_counter() - start)
    agent = Agent.load(args.model, seed=0)
    torch.set_num_threads(1)
    reference = ReferencePolicy(agent.spec.obs_dim, agent.spec.n_actions)
    rows = observations(agent, 1024)

    def no_grad(row: object) -> int:
        with torch.no_grad():
            return select_action(reference, row)[0]  # type: ignore[arg-type]

    before = latency(no_grad, rows, 2000)["p50_us"]
    act = act_latency(agent, calls=args.calls).p50_us
    after = latency(no_grad, rows, 2000)["p50_us"]
    ref = (before + after) / 2
    print(
        f"load_ms={statistics.median(times) * 1e3:.2f} act_p50_us={act:.2f} "
        f"ref_p50_us={ref:.1f} ratio={ref / act:.1f}"
    )


if __name__ == "__main__":
    main()
