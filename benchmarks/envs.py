"""Which envs pgdeploy solves, end to end: train, export, play with the runtime agent.

For every env and seed: train (the env's preset applied, as ``pgdeploy train`` does;
``--compare-defaults`` also trains without it), export the best policy (``best.pt`` when
the run kept one, else ``model.pt``) with verification, and play 100 episodes with the
runtime ``Agent`` (sampled and greedy). Prints a Markdown table and writes JSON rows.

    python benchmarks/envs.py --seeds 0 1 --out runs/bench-envs
    python benchmarks/envs.py --envs CartPole-v1 Acrobot-v1 --compare-defaults
    python benchmarks/envs.py --envs LunarLander-v3 --from-runs /tmp/ll/s0 /tmp/ll/s1

``--from-runs`` exports and plays runs trained elsewhere (e.g. long LunarLander runs in
the background), reading their steps and wall time from the checkpoint; the "preset"
column then says whether the run's config holds every value of its env's preset.

The defaults sweep (issue 23) trains configurations that differ from the defaults with
``--set KEY=VALUE`` (a JSON value, else a string), names them with ``--label``, skips the
preset with ``--no-preset`` and the export and play with ``--train-only``:

    python benchmarks/envs.py --envs Acrobot-v1 --seeds 0 1 --no-preset --train-only \
        --set learning_rate=0.01 entropy_coef=0.01 --label "lr 0.01, ent 0.01"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tests.tiny_envs  # noqa: F401  (registers the tiny envs)
from pgdeploy.envs.making import make_env
from pgdeploy.export import export_checkpoint
from pgdeploy.runtime import Agent, play
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.launch import resolve_config
from pgdeploy.training.presets import preset_for
from pgdeploy.training.train import BEST_CHECKPOINT, train

#: Env ids benchmarked, with overrides of the benchmark (not presets): budgets that fit a
#: shared 2-core machine, an episode cap where the env has no time limit, MiniGrid's
#: wrapper and a threshold (it registers none: 0.9 is a path of at most 11 steps).
ENVS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {},
    "Acrobot-v1": {},
    "LunarLander-v3": {},
    "tests.tiny_envs:Reach-v0": {"total_timesteps": 100_000},
    "minigrid:MiniGrid-Empty-5x5-v0": {
        "wrapper": "tests.tiny_envs:without_mission",
        "solve_threshold": 0.9,
        "total_timesteps": 100_000,
    },
    "MountainCar-v0": {"total_timesteps": 100_000},
    "FrozenLake-v1": {"total_timesteps": 200_000},
    "tests.tiny_envs:FrozenLakeNoSlip-v1": {"total_timesteps": 100_000},
    "Taxi-v4": {"total_timesteps": 300_000},
    "CliffWalking-v1": {"total_timesteps": 100_000, "max_episode_steps": 100},
    "tests.tiny_envs:MultiGuess-v0": {},
    "tests.tiny_envs:TupleGuess-v0": {},
}
EPISODES = 100


def run_one(
    env_id: str,
    seed: int,
    out: Path,
    *,
    use_preset: bool,
    settings: dict[str, Any] | None = None,
    label: str = "",
    play_it: bool = True,
) -> dict[str, Any]:
    overrides = {"env_id": env_id, "seed": seed, **ENVS.get(env_id, {}), **(settings or {})}
    config = resolve_config(overrides, use_preset=use_preset).config
    start = time.perf_counter()
    result = train(config, out_dir=out)
    wall = time.perf_counter() - start
    row = summary_row(result.summary, wall, preset=use_preset and bool(preset_for(env_id)))
    row["config"] = label or ("preset" if row["preset"] else "defaults")
    return {**row, **evaluate(out, config)} if play_it else row


def summary_row(summary: dict[str, Any], wall: float, *, preset: bool) -> dict[str, Any]:
    """What training alone says about a run."""
    return {
        "env_id": summary["env_id"],
        "seed": summary["seed"],
        "preset": preset,
        "solved": summary["solved"],
        "steps_to_solve": summary["steps_to_solve"],
        "env_steps": summary["env_steps"],
        "wall_seconds": round(wall, 1),
        "final_window_mean": summary.get("final_window_mean_return"),
        "best_window_mean": summary.get("best_window_mean_return"),
        "stop_reason": summary["stop_reason"],
    }


def evaluate(out: Path, config: TrainConfig) -> dict[str, Any]:
    """Export the run's best policy and play it with the runtime agent."""
    chosen = out / BEST_CHECKPOINT if (out / BEST_CHECKPOINT).exists() else out / "model.pt"
    report = export_checkpoint(chosen, out_dir=out / "export")
    row: dict[str, Any] = {
        "exported": chosen.name,
        "max_abs_dp": max(report.onnx.max_abs_diff, report.torchscript.max_abs_diff),
        "max_tolerance_ratio": max(
            report.onnx.max_tolerance_ratio, report.torchscript.max_tolerance_ratio
        ),
    }
    for mode, deterministic in (("sampled", False), ("greedy", True)):
        agent = Agent.load(out / "export" / "model.onnx", seed=0, deterministic=deterministic)
        env = make_env(config.env_id, wrapper=config.wrapper, **dict(config.env_kwargs))
        limit = ENVS.get(config.env_id, {}).get("max_episode_steps")
        played = play(agent, env, episodes=EPISODES, seed=1000, max_steps=limit or 10_000)
        env.close()
        row[f"return_{mode}"] = round(played.mean_return, 3)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    if not all("exported" in r for r in rows):
        return sweep_table(rows)
    lines = [
        "| env | seed | preset | solved | steps to solve | env steps | wall s | best window "
        "mean | exported | return (100 ep, sampled / greedy) | worst export abs(dp) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env_id'].split(':')[-1]} | {r['seed']} | {'yes' if r['preset'] else 'no'} "
            f"| {'yes' if r['solved'] else 'no'} | {r['steps_to_solve'] or '-'} "
            f"| {r['env_steps']} | {r['wall_seconds']} | {_fmt(r['best_window_mean'])} "
            f"| {r['exported']} | {r['return_sampled']:g} / {r['return_greedy']:g} "
            f"| {r['max_abs_dp']:.2g} |"
        )
    return "\n".join(lines)


def sweep_table(rows: list[dict[str, Any]]) -> str:
    """Training only: solved, steps to solve (or the final and best window means), wall s."""
    lines = [
        "| env | config | seed | solved | steps to solve | final / best window mean | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env_id'].split(':')[-1]} | {r['config']} | {r['seed']} "
            f"| {'yes' if r['solved'] else 'no'} | {r['steps_to_solve'] or '-'} "
            f"| {_fmt(r['final_window_mean'])} / {_fmt(r['best_window_mean'])} "
            f"| {r['wall_seconds']} |"
        )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _setting(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with a JSON value (``0.01``, ``[64, 64]``, ``"value"``), else a string."""
    key, _, text = item.partition("=")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        return key, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="*", default=list(ENVS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-envs"))
    parser.add_argument("--compare-defaults", action="store_true")
    parser.add_argument("--no-preset", action="store_true", help="Train without the preset.")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--label", default="", help="The config column of the rows.")
    parser.add_argument("--train-only", action="store_true", help="No export, no play.")
    parser.add_argument("--from-runs", nargs="*", type=Path, default=[])
    parser.add_argument("--json", type=Path, default=None, help="Append rows here (JSON lines).")
    args = parser.parse_args()
    settings = dict(_setting(item) for item in args.set)
    rows = []
    for run in args.from_runs:
        checkpoint = load_checkpoint(run / "model.pt")
        summary = checkpoint.training
        preset = preset_for(checkpoint.config.env_id)
        used = checkpoint.config.to_dict()
        applied = bool(preset) and all(
            used[k] == (list(v) if isinstance(v, tuple) else v) for k, v in preset.items()
        )
        row = summary_row(summary, summary["wall_seconds"], preset=applied)
        rows.append({**row, "config": args.label, **evaluate(run, checkpoint.config)})
        print(json.dumps(rows[-1]), flush=True)
    for env_id in args.envs if not args.from_runs else []:
        for seed in args.seeds:
            modes = (True, False) if args.compare_defaults else (not args.no_preset,)
            for use_preset in modes:
                name = args.label.replace(" ", "").replace(",", "-") or (
                    "preset" if use_preset else "defaults"
                )
                tag = f"{env_id.split(':')[-1]}-s{seed}-{name}"
                row = run_one(
                    env_id,
                    seed,
                    args.out / tag,
                    use_preset=use_preset,
                    settings=settings,
                    label=args.label,
                    play_it=not args.train_only,
                )
                rows.append(row)
                print(json.dumps(rows[-1]), flush=True)
    if args.json is not None:
        with args.json.open("a") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    print(table(rows))
    ratios = [r["max_abs_dp"] for r in rows if "max_abs_dp" in r]
    if ratios:
        print(
            f"worst export abs(dp) over {len(ratios)} runs: min {min(ratios):.2g}, "
            f"median {float(np.median(ratios)):.2g}, max {max(ratios):.2g}"
        )


if __name__ == "__main__":
    main()
