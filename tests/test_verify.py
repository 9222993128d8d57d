"""Export verification: never refuses a healthy model, always refuses a broken graph.

Healthy: freshly trained policies on envs with unbounded large observations (values up to
~1e5), many actions, structured observations and multi-discrete actions, with
normalisation on and off, several seeds; every one must export. Broken: the same graph
with ONE weight changed by 1e-3 must be refused, with nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tests.tiny_envs  # noqa: F401  (registers the envs)
from pgdeploy.errors import ExportVerificationError
from pgdeploy.export import export_checkpoint, source
from pgdeploy.export.source import checkpoint_source
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.train import train
from tests.helpers import perturbed_graph

HEALTHY = [
    ("tests.tiny_envs:Drift-v0", False, 0),
    ("tests.tiny_envs:Drift-v0", True, 1),
    ("tests.tiny_envs:Drift-v0", True, 2),
    ("tests.tiny_envs:ManyActions-v0", False, 0),
    ("tests.tiny_envs:ManyActions-v0", True, 1),
    ("tests.tiny_envs:TupleGuess-v0", True, 0),
    ("CartPole-v1", True, 0),
]


def _trained(folder: Path, env_id: str, normalize: bool, seed: int) -> Path:
    config = TrainConfig(env_id=env_id, seed=seed, normalize_obs=normalize, total_timesteps=6000)
    train(config, out_dir=folder)
    return folder / "model.pt"


@pytest.mark.parametrize(("env_id", "normalize", "seed"), HEALTHY)
def test_every_healthy_policy_exports(
    tmp_path: Path, env_id: str, normalize: bool, seed: int
) -> None:
    report = export_checkpoint(
        _trained(tmp_path, env_id, normalize, seed), n_random=512, n_on_policy=512
    )
    for check in (report.onnx, report.torchscript):
        assert check.passed and check.max_tolerance_ratio < 0.1  # far inside the bound


@pytest.mark.parametrize(
    ("env_id", "normalize"),
    [("CartPole-v1", True), ("tests.tiny_envs:Drift-v0", True), ("tests.tiny_envs:Pick-v0", False)],
)
@pytest.mark.parametrize("layer", [0, -1])
def test_one_weight_off_by_1e3_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env_id: str, normalize: bool, layer: int
) -> None:
    path = _trained(tmp_path, env_id, normalize, 0)
    unit, column = _live_weight(path, layer)
    monkeypatch.setattr(
        source, "network_from_policy", perturbed_graph(layer=layer, index=(unit, column))
    )
    with pytest.raises(ExportVerificationError, match=r"onnx export differs .*nothing was written"):
        export_checkpoint(path, n_random=512, n_on_policy=512)
    assert not list(tmp_path.glob("model.onnx")) and not list(tmp_path.glob("*.torchscript.pt"))


def _live_weight(path: Path, layer: int) -> tuple[int, int]:
    """A weight that matters: from the most active hidden unit (first layer: its weight on
    the most varied input feature; last layer: action 0's weight on that unit). A weight
    from a unit that never fires changes nothing, and no output comparison can see it."""
    policy = load_checkpoint(path).build_policy()
    obs = checkpoint_source(path, n_random=256, n_on_policy=0).observations(seed=0)
    with torch.no_grad():
        features = policy.features(torch.from_numpy(obs))
        hidden = policy.net[1](policy.net[0](features))
    unit = int(hidden.mean(dim=0).argmax())
    if layer == 0:
        return unit, int(features.std(dim=0).argmax())
    return 0, unit
