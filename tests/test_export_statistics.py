"""Export never refuses a healthy model: normalisation is exact for any statistics a run
can produce (issue 23, item 1).

Checkpoints are built here with the statistics that broke the folded graph -- a column
constant at a non-zero value (variance 0, std = sqrt(1e-8)), tiny and huge variances,
large means -- over every observation layout (Box, a Dict of Box, Discrete and
MultiBinary, a Tuple of Box and MultiDiscrete). Each exports, and both the ONNX and the
TorchScript file stay within a tenth of the grounded float32 tolerance.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pgdeploy.export import export_checkpoint
from pgdeploy.spec import PolicySpec
from pgdeploy.training.checkpoint import Checkpoint, save_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.policy import SoftmaxPolicy

#: (mean, variance) pairs a run can produce; the first is the issue's constant column.
STATISTICS = {
    "constant at 5": (5.0, 0.0),
    "large mean": (1e6, 1.0),
    "tiny variance": (0.0, 1e-12),
    "huge variance": (3.0, 1e12),
    "constant at -2000": (-2000.0, 0.0),
    "unit": (0.0, 1.0),
}
INF = math.inf

LAYOUTS: dict[str, dict[str, Any]] = {
    "box-2": {"obs_dim": 2, "observation_space": None},
    "box-6": {"obs_dim": 6, "observation_space": None},
    "dict": {
        "obs_dim": 5,
        "observation_space": {
            "type": "dict",
            "spaces": {
                "pos": {"type": "box", "shape": [3]},
                "room": {"type": "discrete", "n": 3, "start": 0},
                "flag": {"type": "multi_binary", "shape": [1]},
            },
        },
    },
    "tuple": {
        "obs_dim": 5,
        "observation_space": {
            "type": "tuple",
            "spaces": [
                {"type": "box", "shape": [3]},
                {"type": "multi_discrete", "shape": [2], "nvec": [2, 3], "start": [0, 0]},
            ],
        },
    },
}


def checkpoint(folder: Path, layout: str, seed: int) -> Path:
    kind = LAYOUTS[layout]
    obs_dim = kind["obs_dim"]
    low, high = [-INF] * obs_dim, [INF] * obs_dim
    space = kind["observation_space"]
    spec = PolicySpec("Stats-v0", obs_dim, 3, tuple(low), tuple(high), observation_space=space)
    for column, (first, last) in spec.obs_layout.categorical_bounds().items():
        low[column], high[column] = first, last
    flag_columns = [leaf.offset for leaf in spec.obs_layout.leaves if leaf.kind == "multi_binary"]
    for column in flag_columns:
        low[column], high[column] = 0.0, 1.0
    spec = PolicySpec("Stats-v0", obs_dim, 3, tuple(low), tuple(high), observation_space=space)
    config = TrainConfig(env_id="Stats-v0", hidden_sizes=(64,), normalize_obs=True)
    torch.manual_seed(seed)
    policy = SoftmaxPolicy(spec, hidden_sizes=config.hidden_sizes, obs_clip=config.obs_clip)
    rng = np.random.default_rng(seed)
    stats = list(STATISTICS.values())
    n_cont = len(spec.obs_layout.continuous_columns)
    chosen = [stats[(seed + i) % len(stats)] for i in range(n_cont)]
    if flag_columns:  # a MultiBinary column's statistics are those of 0/1 values
        flag_index = spec.obs_layout.continuous_columns.index(flag_columns[0])
        chosen[flag_index] = (0.5, 0.25)
    with torch.no_grad():
        policy.obs_mean.copy_(torch.tensor([m for m, _ in chosen]))
        policy.obs_var.copy_(torch.tensor([v for _, v in chosen]))
        policy.obs_count.fill_(1e4)
        for module in policy.net:
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.from_numpy(rng.normal(0, 1, module.weight.shape)))
    path = folder / "model.pt"
    save_checkpoint(path, Checkpoint(config=config, spec=spec, state_dict=policy.state_dict()))
    return path


CASES = [(layout, seed) for layout in LAYOUTS for seed in range(len(STATISTICS))]


@pytest.mark.slow
@pytest.mark.parametrize(("layout", "seed"), CASES, ids=[f"{lay}-{s}" for lay, s in CASES])
def test_every_statistic_and_layout_exports_within_a_tenth_of_the_tolerance(
    tmp_path: Path, layout: str, seed: int
) -> None:
    report = export_checkpoint(checkpoint(tmp_path, layout, seed), n_random=1024, n_on_policy=0)
    for check in (report.onnx, report.torchscript):
        assert check.max_tolerance_ratio <= 0.1, (check.format, check.max_tolerance_ratio)
        assert check.passed_actions


def test_the_issues_constant_column_exports(tmp_path: Path) -> None:
    """A 2-column Box with one column fixed at 5.0 (the fast suite's member of the family)."""
    report = export_checkpoint(checkpoint(tmp_path, "box-2", 0), n_random=1024, n_on_policy=0)
    assert report.onnx.max_tolerance_ratio <= 0.1
    assert report.torchscript.max_tolerance_ratio <= 0.1
