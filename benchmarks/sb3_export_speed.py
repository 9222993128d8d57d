"""``pgdeploy export MODEL.zip`` (an SB3 zip) against ``python -c "import torch"``.

    python benchmarks/sb3_export_speed.py [--pairs 7]

Whole processes, in alternating pairs (import torch, then export), so load from other
jobs hits both sides; the ratio is of the medians. The zip is SB3's default PPO MlpPolicy
on CartPole-v1 (64x64 Tanh), saved once before timing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        zip_path = Path(tmp) / "ppo.zip"
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from stable_baselines3 import PPO; "
                f"PPO('MlpPolicy', 'CartPole-v1', seed=0, device='cpu').save({str(zip_path)!r})",
            ],
            check=True,
        )
        torch_cmd = [sys.executable, "-c", "import torch"]
        export_cmd = [
            sys.executable,
            "-m",
            "pgdeploy",
            "export",
            str(zip_path),
            "--env",
            "CartPole-v1",
            "--out-dir",
            tmp,
        ]
        wall(export_cmd)  # warm the file cache once
        torch_s, export_s = [], []
        for _ in range(args.pairs):
            torch_s.append(wall(torch_cmd))
            export_s.append(wall(export_cmd))
    t, e = statistics.median(torch_s), statistics.median(export_s)
    print(
        "pairs (import torch / pgdeploy export ppo.zip, s): "
        + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(torch_s, export_s, strict=True))
    )
    print(f"median import torch {t:.2f} s, median export {e:.2f} s, ratio {e / t:.2f}x (goal <= 2)")


if __name__ == "__main__":
    main()
