"""Runtime speed: the reference loop's select_action vs TorchScript vs pgdeploy's Agent.

One invocation measures everything in the same process (plus two child processes for
start-up), so ratios are fair on a noisy machine:

    PYTHONPATH=. python benchmarks/runtime_speed.py runs/latest/model.onnx [--json out.json]

The reference ``select_action`` is a faithful copy of the tutorial loop's (see
../shared/SEED-LOOP.md): Linear-ReLU-Linear-Softmax, ``Categorical`` sample, ``.item()``,
with 1 torch thread; its weights are random (time does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

from pgdeploy.runtime import Agent, play
from pgdeploy.runtime.bench import act_latency, batch_throughput, call_times_ns, observations

BATCH_SIZES = (1, 64, 4096, 65_536)


class ReferencePolicy(nn.Module):
    """The tutorial's network: Linear(obs, 128) -> ReLU -> Linear(128, A) -> Softmax."""

    def __init__(self, obs_dim: int, n_actions: int) -> None:
        super().__init__()
        self.affine1 = nn.Linear(obs_dim, 128)
        self.affine2 = nn.Linear(128, n_actions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.affine2(torch.relu(self.affine1(x))), dim=1)


def select_action(policy: ReferencePolicy, state: np.ndarray) -> tuple[int, torch.Tensor]:
    """The reference loop's acting step: action and its log-prob."""
    state_t = torch.from_numpy(state).float().unsqueeze(0)
    probs = policy(state_t)
    m = Categorical(probs)
    action = m.sample()
    return action.item(), m.log_prob(action)


def latency(fn: Callable[[np.ndarray], Any], rows: np.ndarray, calls: int) -> dict[str, float]:
    """p50/p99/mean microseconds of ``fn(row)`` over varied rows, after a warm-up."""
    call_times_ns(fn, rows, min(calls, 500))
    times = call_times_ns(fn, rows, calls)
    return {
        "p50_us": float(np.percentile(times, 50)) / 1e3,
        "p99_us": float(np.percentile(times, 99)) / 1e3,
        "mean_us": float(times.mean()) / 1e3,
    }


def torch_batch(policy: ReferencePolicy, obs: np.ndarray, repeats: int) -> float:
    """Observations/s of PyTorch eager forward + Categorical sampling on one batch."""
    x = torch.from_numpy(obs)

    def once() -> None:
        with torch.no_grad():
            Categorical(policy(x)).sample().numpy()

    once()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return len(obs) / float(np.median(times))


_CHILD = """
import time, resource
t0 = time.perf_counter()
import numpy as np
from pgdeploy.runtime import Agent
agent = Agent.load({path!r}, seed=0)
agent.act(np.zeros(agent.spec.obs_dim, np.float32))
t1 = time.perf_counter()
# VmHWM is this process's own peak (ru_maxrss would include the forking parent's pages).
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
kib = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(t1 - t0, kib)
"""


def runtime_process(path: Path) -> dict[str, float]:
    """Start-up (wall, from exec to first action) and peak RSS of a runtime-only process."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(path=str(path))],
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    seconds, peak_kib = out.stdout.split()
    check = subprocess.run(
        [sys.executable, "-c", "import sys, pgdeploy.runtime; print('torch' in sys.modules)"],
        check=True,
        capture_output=True,
        text=True,
    )
    return {
        "process_wall_s": wall,
        "import_load_first_action_s": float(seconds),
        "peak_rss_mib": int(peak_kib) / 1024,
        "imports_torch": check.stdout.strip() == "True",
    }


def control_loop(agent: Agent, episodes: int) -> dict[str, float]:
    """Where a control step's time goes in ``pgdeploy.runtime.play`` on CartPole."""
    from pgdeploy.envs.making import make_env_from_file

    env = make_env_from_file(agent.spec.env_id, source=str(agent.path))
    try:
        report = play(agent, env, episodes=episodes, seed=0)
    finally:
        env.close()
    steps = len(report.act_ns)
    return {
        "steps": steps,
        "act_us_per_step": sum(report.act_ns) / steps / 1e3,
        "env_step_us_per_step": sum(report.step_ns) / steps / 1e3,
        "loop_overhead_us_per_step": (report.loop_ns - sum(report.act_ns) - sum(report.step_ns))
        / steps
        / 1e3,
        "overhead_fraction": report.overhead_fraction(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model.onnx (model.torchscript.pt beside it)")
    parser.add_argument("--calls", type=int, default=20_000, help="act() calls per latency row")
    parser.add_argument("--torch-calls", type=int, default=3_000, help="select_action calls")
    parser.add_argument("--batch-threads", type=int, default=2, help="Agent and torch threads")
    parser.add_argument("--episodes", type=int, default=20, help="control-loop episodes")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    results: dict[str, Any] = {"runtime_process": runtime_process(args.model)}
    agent = Agent.load(args.model, seed=0, batch_threads=args.batch_threads)
    public = Agent.load(args.model, seed=0, fast_path=False)
    spec = agent.spec
    rows = observations(agent, 1024)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    reference = ReferencePolicy(spec.obs_dim, spec.n_actions)
    scripted = torch.jit.load(str(args.model.with_name("model.torchscript.pt")))
    uniform = torch.zeros(1, 1)

    def select_no_grad(row: np.ndarray) -> int:
        with torch.no_grad():
            return select_action(reference, row)[0]

    def torchscript_act(row: np.ndarray) -> int:
        with torch.no_grad():
            return int(scripted(torch.from_numpy(row).unsqueeze(0), uniform)[2].item())

    lat = {
        "select_action (autograd on)": latency(
            lambda r: select_action(reference, r), rows, args.torch_calls
        ),
        "select_action (no_grad)": latency(select_no_grad, rows, args.torch_calls),
        "TorchScript module": latency(torchscript_act, rows, args.torch_calls),
        "Agent.act (public API)": latency(public.act, rows, args.calls),
        "Agent.act (fast path)": vars(act_latency(agent, calls=args.calls)),
    }
    results["act"] = lat
    torch.set_num_threads(args.batch_threads)
    batch = []
    for n in BATCH_SIZES:
        obs = observations(agent, n)
        repeats = 200 if n <= 4096 else 20
        ours = batch_throughput(agent, n, repeats=repeats).obs_per_second
        theirs = torch_batch(reference, obs, repeats)
        batch.append({"batch_size": n, "agent_obs_s": ours, "torch_obs_s": theirs})
    results["act_batch"] = batch
    results["control_loop"] = control_loop(agent, args.episodes)
    results["settings"] = {
        "batch_threads": args.batch_threads,
        "torch_threads_act": 1,
        "torch_threads_batch": args.batch_threads,
        "fast_path": agent.uses_fast_path,
    }
    print(format_markdown(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


def format_markdown(results: dict[str, Any]) -> str:
    act = results["act"]
    base = act["select_action (no_grad)"]["p50_us"]
    lines = [
        "| one observation | p50 (us) | p99 (us) | select_action (no_grad) / this, p50 |",
        "|---|---:|---:|---:|",
    ]
    for name, row in act.items():
        lines.append(
            f"| {name} | {row['p50_us']:.1f} | {row['p99_us']:.1f} | {base / row['p50_us']:.1f}x |"
        )
    lines += [
        "",
        "| batch | Agent.act_batch (M obs/s) | PyTorch eager + Categorical (M obs/s) | ratio |",
        "|---:|---:|---:|---:|",
    ]
    for row in results["act_batch"]:
        lines.append(
            f"| {row['batch_size']:,} | {row['agent_obs_s'] / 1e6:.2f} | "
            f"{row['torch_obs_s'] / 1e6:.2f} | {row['agent_obs_s'] / row['torch_obs_s']:.1f}x |"
        )
    proc, loop = results["runtime_process"], results["control_loop"]
    lines += [
        "",
        f"Runtime-only process: {proc['process_wall_s']:.3f} s wall from exec to first action "
        f"({proc['import_load_first_action_s']:.3f} s import + load + first act inside it), "
        f"peak RSS {proc['peak_rss_mib']:.1f} MiB, imports torch: {proc['imports_torch']}.",
        f"Control loop ({loop['steps']} CartPole steps): act {loop['act_us_per_step']:.2f} us, "
        f"env.step {loop['env_step_us_per_step']:.2f} us, loop overhead "
        f"{loop['loop_overhead_us_per_step']:.2f} us per step "
        f"({100 * loop['overhead_fraction']:.1f}% of wall time).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
