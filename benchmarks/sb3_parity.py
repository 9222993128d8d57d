"""Imported SB3 policies against SB3's own outputs, for every supported combination.

    python benchmarks/sb3_parity.py [--n 4096]

For each algorithm x observation space x action space x net_arch x activation, SB3 makes
a model (weights redrawn so the policy is far from uniform, see tests/sb3_models.py) and
saves it; pgdeploy imports the zip; on ``--n`` observations sampled from the space, the
table gives max |dp| of the imported PolicyNetwork (numpy, network.py's formula) against
``policy.get_distribution(obs).distribution.probs`` (PPO, A2C), or the number of greedy
actions that differ from ``q_net(obs).argmax`` (DQN). Rows group the activations.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgdeploy.importers import load_foreign
from pgdeploy.importers.network_numpy import network_probs
from tests.sb3_models import (
    ACTIVATIONS,
    OBS_SPACES,
    make_model,
    sample_batch,
    save,
    sb3_greedy,
    sb3_probs,
)


def measure(case: tuple[str, str, str, str, str], n: int, folder: Path) -> float:
    algo = case[0]
    model = make_model(*case)
    imported = load_foreign(save(model, folder, "-".join(case) + ".zip"))
    batch = sample_batch(model.observation_space, n, seed=1)
    rows = imported.spec.obs_layout.flatten_batch(batch)
    ours = network_probs(imported.spec, imported.network, rows)
    if algo == "DQN":
        return float((ours.argmax(axis=1) != sb3_greedy(model, batch)).sum())
    return float(np.abs(ours - sb3_probs(model, batch)).max())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4096)
    args = parser.parse_args()
    activations = list(ACTIVATIONS)
    print(
        f"{'algo':<4} {'observations':<14} {'actions':<14} {'net_arch':<9} "
        + " ".join(f"{a:>10}" for a in activations)
    )
    worst = {"PPO": 0.0, "A2C": 0.0, "DQN": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for algo in ("PPO", "A2C", "DQN"):
            for obs in OBS_SPACES:
                for action in ("discrete", "multidiscrete"):
                    if algo == "DQN" and action == "multidiscrete":
                        continue
                    for arch in ("shared", "separate"):
                        values = [
                            measure((algo, obs, action, arch, a), args.n, Path(tmp))
                            for a in activations
                        ]
                        worst[algo] = max(worst[algo], *values)
                        cells = " ".join(
                            f"{int(v):>10d}" if algo == "DQN" else f"{v:>10.1e}" for v in values
                        )
                        print(f"{algo:<4} {obs:<14} {action:<14} {arch:<9} {cells}", flush=True)
    print(
        f"worst: PPO max |dp| {worst['PPO']:.1e}, A2C max |dp| {worst['A2C']:.1e}, "
        f"DQN greedy mismatches {int(worst['DQN'])} (per {args.n} observations)"
    )


if __name__ == "__main__":
    main()
