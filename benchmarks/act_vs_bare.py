"""Agent.act against a bare ``InferenceSession.run`` of the same file, in one process.

Alternating blocks of single-observation calls on CartPole-like observations: the agent's
``act`` (sampled, and greedy), and ``session.run(None, {obs, uniform})`` on a session of
the same file with the default options. Prints the median per-call time of each and the
ratio act / bare. ``--variant`` also times ``act`` on a session of the graph built with
only the outputs ``act`` reads (``build_model(..., outputs=...)``), the A/B that decides
whether such a variant pays (it must save >= 25 %).

    python benchmarks/act_vs_bare.py models/CartPole-v1/model.onnx [--variant]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pgdeploy.runtime import Agent


def block(fn: Callable[[Any], Any], rows: np.ndarray) -> float:
    start = time.perf_counter()
    for row in rows:
        fn(row)
    return (time.perf_counter() - start) / len(rows) * 1e6


def variant_act(path: Path, deterministic: bool) -> Callable[[Any], Any]:
    """``act`` of an agent whose single-step binding runs the cut-down canonical graph."""
    from pgdeploy.runtime import agent as agent_module
    from pgdeploy.runtime.model_file import session_options
    from pgdeploy.runtime.policy_graph import build_model
    from pgdeploy.spec import GREEDY_OUTPUT, PROBS_OUTPUT, SAMPLED_OUTPUT

    agent = Agent.load(path, seed=0, deterministic=deterministic)
    model = agent.model
    action = GREEDY_OUTPUT if deterministic else SAMPLED_OUTPUT
    metadata = {k: v for k, v in model.session.get_modelmeta().custom_metadata_map.items()}
    data = build_model(model.metadata.spec, model.network, metadata, outputs=(PROBS_OUTPUT, action))
    session = ort.InferenceSession(data, session_options(1), providers=["CPUExecutionProvider"])
    bound = agent_module._BoundSingleStep(session, agent.spec, action)  # type: ignore[attr-defined]
    return agent_module._single_step_act(agent, bound)  # type: ignore[attr-defined,no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--variant", action="store_true")
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    bare = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
    rows = np.random.default_rng(0).uniform(-0.05, 0.05, (args.calls, 4)).astype(np.float32)
    uniform = np.zeros((1, 1), np.float32)

    def bare_run(row: np.ndarray) -> Any:
        return bare.run(None, {"obs": row[np.newaxis], "uniform": uniform})

    sides: dict[str, Callable[[Any], Any]] = {
        "bare session.run": bare_run,
        "act (sampled)": Agent.load(args.model, seed=0).act,
        "act (greedy)": Agent.load(args.model, seed=0, deterministic=True).act,
    }
    if args.variant:
        sides["act (sampled), variant graph"] = variant_act(args.model, False)
        sides["act (greedy), variant graph"] = variant_act(args.model, True)
    times: dict[str, list[float]] = {name: [] for name in sides}
    for fn in sides.values():
        block(fn, rows[:200])
    for _ in range(args.blocks):
        for name, fn in sides.items():
            times[name].append(block(fn, rows))
    base = statistics.median(times["bare session.run"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:32s} {median:7.2f} us   {median / base:5.3f}x bare")


if __name__ == "__main__":
    main()
