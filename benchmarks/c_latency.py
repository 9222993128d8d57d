"""Per-decision latency: the generated C policy vs ``Agent.act`` vs the reference ``select_action``.

One invocation measures all three on the same observations, alternately (C, Agent,
reference, C, Agent, reference, ...), and reports medians, so a busy machine distorts
the ratios less:

    PYTHONPATH=. python benchmarks/c_latency.py [models/CartPole-v1/model.pt] [--rounds 7]

- C: ``policy.c`` exported (and verified) by :func:`pgdeploy.export.export_c`, compiled
  at -O2 -ffp-contract=off with a harness that times blocks of calls with
  ``clock_gettime``; one decision is ``pgdeploy_obs_finite`` + ``pgdeploy_sample``
  (the check the Python runtime also makes), on varied observations and uniforms.
- Agent.act: ``pgdeploy.runtime.Agent`` on the ONNX file beside the checkpoint (validation,
  sampling and onnxruntime included), timed from Python with ``perf_counter_ns``.
- select_action: the reference loop's acting step (benchmarks/seed_loop.py: tensor
  plumbing, Categorical, autograd on, 1 torch thread) on the same network shape and weights.

Each round times blocks of calls; the figure per contender is the median over all its
blocks of (block time / calls), in microseconds, and the ratios are of those medians. The
fastest block is shown too: on a shared machine it is the least disturbed one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_loop import Policy, select_action

from pgdeploy.export import export_c
from pgdeploy.export.c.compile import BUILD_FLAGS, compile_c, find_compiler
from pgdeploy.runtime import Agent
from pgdeploy.runtime.bench import observations
from pgdeploy.training.checkpoint import load_checkpoint

BENCH_C = r"""/* bench IN N CALLS BLOCK: prints the ns per decision of each block of BLOCK calls. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "policy.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    long n, calls, block, i, done;
    float *obs, *uniforms;
    FILE *in;
    volatile int sink = 0;
    if (argc != 5) {
        return 2;
    }
    n = atol(argv[2]);
    calls = atol(argv[3]);
    block = atol(argv[4]);
    obs = malloc(sizeof(float) * (size_t)(n * PGDEPLOY_OBS_DIM));
    uniforms = malloc(sizeof(float) * (size_t)n);
    in = fopen(argv[1], "rb");
    if (!obs || !uniforms || !in
        || fread(obs, sizeof(float), (size_t)(n * PGDEPLOY_OBS_DIM), in)
               != (size_t)(n * PGDEPLOY_OBS_DIM)
        || fread(uniforms, sizeof(float), (size_t)n, in) != (size_t)n) {
        return 1;
    }
    fclose(in);
    for (i = 0; i < calls / 10; ++i) { /* warm-up */
        sink += pgdeploy_sample(obs + (i % n) * PGDEPLOY_OBS_DIM, uniforms[i % n]);
    }
    for (done = 0; done < calls; done += block) {
        const double t0 = now_ns();
        for (i = done; i < done + block; ++i) {
            const float *row = obs + (i % n) * PGDEPLOY_OBS_DIM;
            if (pgdeploy_obs_finite(row)) {
                sink += pgdeploy_sample(row, uniforms[i % n]);
            }
        }
        printf("%.3f\n", (now_ns() - t0) / (double)block);
    }
    free(obs);
    free(uniforms);
    return sink == -1;
}
"""


def time_blocks(fn: Callable[[int], Any], calls: int, block: int) -> list[float]:
    """Microseconds per call of ``fn(i)`` for each block of ``block`` calls, after a warm-up."""
    for i in range(min(calls // 10, 1000)):
        fn(i)
    clock = time.perf_counter_ns
    per_call = []
    for start in range(0, calls, block):
        t0 = clock()
        for i in range(start, start + block):
            fn(i)
        per_call.append((clock() - t0) / block / 1e3)
    return per_call


def build_c(checkpoint: Path, folder: Path) -> Path:
    export_c(checkpoint, folder, n_random=1024, n_on_policy=1024)
    (folder / "bench.c").write_text(BENCH_C, encoding="utf-8")
    sources = [folder / "policy.c", folder / "bench.c"]
    return compile_c(find_compiler(), sources, folder / "bench", flags=BUILD_FLAGS)


def reference_policy(checkpoint: Path) -> Policy:
    """The seed loop's network with the checkpoint's weights (shape 4-128-2 for CartPole)."""
    loaded = load_checkpoint(checkpoint)
    trained = loaded.build_policy()
    policy = Policy(trained.spec.obs_dim, trained.spec.n_actions)
    if tuple(loaded.config.hidden_sizes) == (128,):  # else: same shape as the seed loop's
        policy.net[0].load_state_dict(trained.net[0].state_dict())
        policy.net[2].load_state_dict(trained.net[2].state_dict())
    return policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="models/CartPole-v1/model.pt")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--c-calls", type=int, default=200_000, help="per round")
    parser.add_argument("--agent-calls", type=int, default=20_000, help="per round")
    parser.add_argument("--reference-calls", type=int, default=2_000, help="per round")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint = Path(args.checkpoint)
    agent = Agent.load(checkpoint.with_name("model.onnx"), seed=0)
    rows = observations(agent, 1024)
    uniforms = np.random.default_rng(0).random(len(rows), dtype=np.float32)
    row_list = [rows[i] for i in range(len(rows))]
    policy = reference_policy(checkpoint)
    samples: dict[str, list[float]] = {"c": [], "agent": [], "reference": []}
    with tempfile.TemporaryDirectory(prefix="pgdeploy-c-bench-") as tmp:
        exe = build_c(checkpoint, Path(tmp))
        data = Path(tmp) / "in.bin"
        data.write_bytes(rows.tobytes() + uniforms.tobytes())
        for _ in range(args.rounds):
            out = subprocess.run(
                [str(exe), str(data), str(len(rows)), str(args.c_calls), "10000"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            samples["c"] += [float(v) / 1e3 for v in out.split()]
            samples["agent"] += time_blocks(
                lambda i: agent.act(row_list[i % 1024]), args.agent_calls, 1000
            )
            samples["reference"] += time_blocks(
                lambda i: select_action(policy, row_list[i % 1024]), args.reference_calls, 100
            )
    report(samples, args)


def report(samples: dict[str, list[float]], args: argparse.Namespace) -> None:
    med = {name: statistics.median(values) for name, values in samples.items()}
    names = {
        "c": "C pgdeploy_sample (+ obs check)",
        "agent": "Agent.act (onnxruntime)",
        "reference": "select_action (reference)",
    }
    print(f"per-decision latency, {args.checkpoint}, {args.rounds} alternating rounds")
    best = {name: min(values) for name, values in samples.items()}
    print(f"{'':34} {'median us':>10} {'fastest block':>14} {'blocks':>7} {'C faster by':>12}")
    for name, label in names.items():
        ratio = med[name] / med["c"]
        print(
            f"{label:34} {med[name]:10.3f} {best[name]:14.3f} {len(samples[name]):7d} "
            f"{ratio:11.1f}x"
        )
    goals = {
        "C >= 100x faster than select_action": med["reference"] / med["c"] >= 100,
        "C >= 4x faster than Agent.act": med["agent"] / med["c"] >= 4,
    }
    for goal, met in goals.items():
        print(f"goal {goal}: {'met' if met else 'NOT met'}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"median_us": med, "fastest_block_us": best, "goals": goals, "rounds": args.rounds},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
