"""Budget and Ctrl-C of ``pgdeploy train`` as a user meets them, on any env the CLI takes.

    python benchmarks/cli_budget.py --total 50000 --stops 5 -- \\
        --env ale_py:ALE/Breakout-v5 --env-kwargs obs_type=ram

Runs ``pgdeploy train ARGS --total-timesteps TOTAL`` to its end and reports the env steps
it ran against the budget (bound: ``num_envs - 1`` over, see ``TrainConfig.iteration_steps``).
Then starts the same training with a budget it will not reach, sends SIGINT once the run's
first save has shown that training is under way, and times how long the process takes
to exit (the last iteration's save included), checking that it saved.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PGDEPLOY = [sys.executable, "-c", "from pgdeploy.cli import console_main; console_main()"]
SPENT = re.compile(r"budget of (\d+) env steps spent after (\d+) env steps")


def budget_run(args: list[str], total: int, folder: Path) -> str:
    """One run to its budget: its steps against the budget, and its wall time."""
    start = time.perf_counter()
    done = subprocess.run(
        [*PGDEPLOY, "train", *args, "--total-timesteps", str(total), "--out", str(folder), "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    match = SPENT.search(done.stdout)
    if match is None:
        return f"no budget line (exit {done.returncode}): {done.stdout}{done.stderr}"
    ran = int(match.group(2))
    return f"budget {total}: ran {ran} env steps (over by {ran - total}) in {wall:.1f} s"


def stop_latency(args: list[str], folder: Path, delay: float) -> float:
    """Seconds from SIGINT to exit for a run signalled ``delay`` s after its first save."""
    command = [*PGDEPLOY, "train", *args, "--total-timesteps", str(10**8), "--out", str(folder)]
    command += ["-q", "--checkpoint-seconds", "1"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        while not (folder / "model.pt").exists():  # training is under way
            if proc.poll() is not None:
                raise SystemExit(f"training ended before it saved: {proc.communicate()}")
            time.sleep(0.05)
        time.sleep(delay)
        saved = (folder / "model.pt").stat().st_mtime_ns
        asked = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        latency = time.perf_counter() - asked
    if proc.returncode != 128 + signal.SIGINT or (folder / "model.pt").stat().st_mtime_ns == saved:
        raise SystemExit(f"no save after SIGINT (exit {proc.returncode}): {out!r} {err!r}")
    return latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=50_000)
    parser.add_argument("--stops", type=int, default=5, help="SIGINTs to time")
    parser.add_argument("train_args", nargs="*", help="pgdeploy train arguments, after --")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pgdeploy-budget-"))
    try:
        print(budget_run(args.train_args, args.total, root / "budget"))
        latencies = []
        for i in range(args.stops):
            folder = root / f"stop{i}"
            latencies.append(stop_latency(args.train_args, folder, 0.5 + 0.37 * i))
        print(
            f"SIGINT to exit (saved): median {statistics.median(latencies):.2f} s, max "
            f"{max(latencies):.2f} s over {len(latencies)} runs"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
