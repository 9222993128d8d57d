"""pgdeploy's trainer against the reference loop, on the same seeds, in one invocation.

Each pgdeploy run is a whole process, timed from start to exit (interpreter start-up,
imports, training, checkpoint, metrics and learning-curve PNG):
``python -m pgdeploy train --seed S --out TMP --quiet``. The reference loop
(``benchmarks/seed_loop.py``, ../shared/SEED-LOOP.md) runs in a subprocess too, with its
1000-episode budget, reporting when it first solved and whether it was still solved at
the end. Optionally the exported ONNX policy of some seeds plays 100 episodes with the
runtime agent.

    python benchmarks/train_speed.py                       # pgdeploy 0-9, reference 0-2
    python benchmarks/train_speed.py --reference-seeds 0-9 # the full comparison (~15 min)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def parse_seeds(text: str) -> list[int]:
    """``0-9``, ``0,3,5`` or a mix (``0-2,7``); empty for ``none``."""
    if text.strip().lower() in ("", "none"):
        return []
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += range(int(lo), int(hi or lo) + 1)
    return seeds


def run_pgdeploy(seed: int, out: Path) -> dict[str, Any]:
    from pgdeploy.training.checkpoint import load_checkpoint

    cmd = [sys.executable, "-m", "pgdeploy", "train", "--seed", str(seed), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run([*cmd, "--quiet"], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = load_checkpoint(out / "model.pt").training
    return {
        "solved": bool(summary["solved"]),
        "steps": summary["steps_to_solve"],
        "wall": wall,
        "train_s": summary["wall_seconds"],
        "final": summary["final_window_mean_return"],
    }


def run_reference(seed: int, episodes: int) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "seed_loop.py"), "--seed", str(seed)]
    start = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "--episodes", str(episodes)], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def play_exported(out: Path, episodes: int, seed: int) -> float:
    """Export ``out/model.pt`` (verified) and play it with the runtime agent: mean return."""
    from pgdeploy.envs.making import make_env_from_file
    from pgdeploy.export import export_checkpoint
    from pgdeploy.runtime import Agent, play

    export_checkpoint(out / "model.pt")
    agent = Agent.load(out / "model.onnx", seed=seed)
    env = make_env_from_file(agent.spec.env_id, source=str(out / "model.onnx"))
    try:
        return play(agent, env, episodes=episodes, seed=seed).mean_return
    finally:
        env.close()


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="pgdeploy seeds.  [default: 0-9]")
    parser.add_argument(
        "--reference-seeds",
        default="0-2",
        help="Reference-loop seeds (~80 s each on 2 cores; 'none' skips).  [default: 0-2]",
    )
    parser.add_argument("--reference-episodes", type=int, default=1000)
    parser.add_argument(
        "--play-seeds",
        default="0-2",
        help="Seeds whose exported ONNX policy plays --play-episodes episodes.  [default: 0-2]",
    )
    parser.add_argument("--play-episodes", type=int, default=100)
    args = parser.parse_args()
    seeds, ref_seeds = parse_seeds(args.seeds), parse_seeds(args.reference_seeds)
    play_seeds = set(parse_seeds(args.play_seeds))
    os.environ.setdefault("PYTHONPATH", str(HERE.parent))

    print(f"{'seed':>4} | {'pgdeploy':^29} | {'reference loop (SEED-LOOP.md)':^44}")
    print(
        f"{'':>4} | {'solved':>6} {'steps':>8} {'wall s':>6} {'play':>5} | "
        f"{'solved':>6} {'steps':>8} {'to solve s':>10} {'at end':>6} {'wall s':>7}"
    )
    ours: dict[int, dict[str, Any]] = {}
    refs: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in sorted(set(seeds) | set(ref_seeds)):
            row = f"{seed:>4} | "
            if seed in seeds:
                out = Path(tmp) / f"seed{seed}"
                r = ours[seed] = run_pgdeploy(seed, out)
                played = (
                    play_exported(out, args.play_episodes, seed) if seed in play_seeds else None
                )
                row += (
                    f"{r['solved']!s:>6} {fmt(r['steps'], 'd'):>8} {r['wall']:>6.2f} "
                    f"{fmt(played, '.1f'):>5} | "
                )
            else:
                row += f"{'':>29} | "
            if seed in ref_seeds:
                q = refs[seed] = run_reference(seed, args.reference_episodes)
                at = q["solved_at"] or {}
                row += (
                    f"{q['solved']!s:>6} {fmt(at.get('env_steps'), 'd'):>8} "
                    f"{fmt(at.get('seconds'), '.1f'):>10} {q['solved_at_end']!s:>6} "
                    f"{q['wall']:>7.1f}"
                )
            print(row, flush=True)

    solved = [r for r in ours.values() if r["solved"]]
    ours_wall = median([r["wall"] for r in ours.values()])
    ours_steps = median([r["steps"] for r in solved])
    ref_solved = [q["solved_at"] for q in refs.values() if q["solved"]]
    ref_secs = median([a["seconds"] for a in ref_solved])
    ref_steps = median([a["env_steps"] for a in ref_solved])
    print()
    print(
        f"pgdeploy: solved {len(solved)}/{len(ours)}; median whole-process wall "
        f"{fmt(ours_wall, '.2f')} s; median env steps to solve {fmt(ours_steps, '.0f')}"
    )
    if refs:
        at_end = sum(q["solved_at_end"] for q in refs.values())
        print(
            f"reference: solved {len(ref_solved)}/{len(refs)} within "
            f"{args.reference_episodes} episodes ({at_end} still solved at the end); median "
            f"time to solve {fmt(ref_secs, '.1f')} s, env steps {fmt(ref_steps, '.0f')} "
            "(over solved seeds)"
        )
    if ours_wall and ref_secs:
        print(
            f"ratio: reference time-to-solve / pgdeploy whole-process wall = "
            f"{ref_secs / ours_wall:.1f}x; env steps reference / pgdeploy = "
            f"{fmt(ref_steps / ours_steps if ours_steps else None, '.2f')}x"
        )


if __name__ == "__main__":
    main()
