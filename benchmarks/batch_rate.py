"""Median seconds of one batch call, for one side of pipeline_speed's act_batch comparison.

    python benchmarks/batch_rate.py SIDE MODEL.onnx MODEL.pt ROWS CALLS

SIDE is ``agent`` (``Agent.act_batch``), ``bare`` (a default ``InferenceSession.run`` of the
same graph: its sampled output, uniforms given) or ``eager`` (the checkpoint's PyTorch
policy, no_grad, ``Categorical`` sampling, 2 torch threads). Each side runs in a process of
its own: onnxruntime's default session spins its pool threads after a call, and in one
process those spinning threads took the second core from the next ``act_batch`` (8.6 ms
against 5.0 ms alone), which measured the neighbour instead of either side.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def batch_call(side: str, model: str, checkpoint: str, rows: int) -> Callable[[], Any]:
    from pgdeploy.runtime import Agent
    from pgdeploy.runtime.bench import observations

    agent = Agent.load(model, seed=0)
    obs = observations(agent, rows)
    if side == "agent":
        return lambda: agent.act_batch(obs)
    if side == "bare":
        import onnxruntime as ort

        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        uniforms = np.random.default_rng(0).random((rows, 1), dtype=np.float32)
        return lambda: session.run(["sampled_action"], {"obs": obs, "uniform": uniforms})
    if side == "eager":
        import torch
        from torch.distributions import Categorical

        from pgdeploy.training.checkpoint import load_checkpoint

        policy = load_checkpoint(checkpoint).build_policy()
        torch.set_num_threads(2)
        x = torch.from_numpy(obs)

        def eager() -> Any:
            with torch.no_grad():
                return Categorical(policy.probs(x)).sample().numpy()

        return eager
    raise SystemExit(f"unknown side {side!r}: expected agent, bare or eager")


def main() -> None:
    side, model, checkpoint, rows, calls = sys.argv[1:6]
    call = batch_call(side, model, checkpoint, int(rows))
    for _ in range(3):
        call()
    times = []
    for _ in range(int(calls)):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    print(f"{statistics.median(times):.6f}")


if __name__ == "__main__":
    main()
