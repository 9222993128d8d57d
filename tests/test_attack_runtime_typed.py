"""Attack 6: every refusal of the runtime API and of checkpoints is a typed pgdeploy error."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgdeploy.errors import (
    CheckpointError,
    InvalidArgumentError,
    ModelLoadError,
    ObservationError,
)
from pgdeploy.runtime import Agent
from pgdeploy.training.checkpoint import load_checkpoint
from tests.attack_files import (
    checkpoint_dict,
    load_onnx,
    save_checkpoint_dict,
    save_onnx,
    set_meta,
    set_spec,
)


def test_invalid_utf8_in_metadata(exported_model: Path, tmp_path: Path) -> None:
    data = load_onnx(exported_model).SerializeToString()
    at = data.rfind(b"CartPole-v1")
    path = tmp_path / "model.onnx"
    path.write_bytes(data[:at] + b"\xff" + data[at + 1 :])
    with pytest.raises(
        ModelLoadError, match=r"has metadata 'pgdeploy\.\w+' that is not valid UTF-8"
    ):
        Agent.load(path)


def test_metadata_json_nested_1000_deep(exported_model: Path, tmp_path: Path) -> None:
    model = load_onnx(exported_model)
    set_meta(model, "training", "[" * 1000 + "]" * 1000)
    with pytest.raises(ModelLoadError, match=r"malformed pgdeploy metadata.*nested deeper than 32"):
        Agent.load(save_onnx(model, tmp_path / "model.onnx"))


@pytest.mark.parametrize("bound", [float("nan"), "nan", "0.1", True])
def test_a_bound_that_is_not_a_number(exported_model: Path, tmp_path: Path, bound: Any) -> None:
    model = load_onnx(exported_model)
    set_spec(model, obs_low=[bound, None, None, None])
    with pytest.raises(ModelLoadError, match="malformed pgdeploy metadata"):
        Agent.load(save_onnx(model, tmp_path / "model.onnx"))


@pytest.fixture(scope="module")
def box_agent(exported_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Agent:
    """The CartPole graph, described as a float64 ``Box(-0.1, 0.1)`` env's policy."""
    model = load_onnx(exported_model)
    set_spec(model, obs_low=[-0.1] * 4, obs_high=[0.1] * 4)
    return Agent.load(save_onnx(model, tmp_path_factory.mktemp("box") / "model.onnx"), seed=0)


def test_float64_box_bounds_are_float32_consistent(box_agent: Agent) -> None:
    space = gym.spaces.Box(-0.1, 0.1, (4,), np.float64, seed=0)
    rows = [np.array([-0.1, 0.1, -0.1, 0.1]), *(space.sample() for _ in range(50))]
    for obs in rows:
        assert box_agent.act(obs) in (0, 1)
        assert box_agent.act_batch(obs[np.newaxis]).shape == (1,)
        assert box_agent.probs(obs).shape == (2,)
    outside = np.full(4, np.nextafter(np.float32(0.1), np.float32(1)), np.float32)
    for call in (box_agent.act, box_agent.probs, lambda o: box_agent.act_batch(o[np.newaxis])):
        with pytest.raises(ObservationError, match=r"outside the observation space"):
            call(outside)


def test_act_and_act_batch_agree_near_the_bounds(box_agent: Agent) -> None:
    rng = np.random.default_rng(0)
    for value in rng.uniform(-0.1000001, 0.1000001, 400):
        obs = np.full(4, value)
        verdicts = []
        for call in (box_agent.act, lambda o: box_agent.act_batch(o[np.newaxis])):
            try:
                call(obs)
                verdicts.append(True)
            except ObservationError:
                verdicts.append(False)
        assert verdicts[0] == verdicts[1], value


@pytest.fixture(scope="module")
def agent(exported_model: Path) -> Agent:
    return Agent.load(exported_model / "model.onnx", seed=0)


def test_masked_arrays_are_refused(agent: Agent) -> None:
    obs = np.ma.array(np.zeros(4), mask=[True, False, False, False])
    for call in (agent.act, agent.probs):
        with pytest.raises(ObservationError, match=r"masked array; fill the masked values"):
            call(obs)


def test_a_tensor_that_requires_grad(agent: Agent) -> None:
    obs = torch.zeros(4, requires_grad=True)
    with pytest.raises(ObservationError, match=r"not a numeric array \(Tensor: RuntimeError"):
        agent.act(obs)
    assert agent.act(torch.zeros(4)) in (0, 1)  # a plain tensor converts


def test_ragged_lists(agent: Agent) -> None:
    for call in (agent.probs, agent.act, agent.act_batch):
        with pytest.raises(ObservationError, match="not a numeric array"):
            call([[0.1, 0.2], [0.3]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": -1}, "seed must be None, a non-negative integer"),
        ({"seed": 1.5}, "seed must be None, a non-negative integer"),
        ({"seed": True}, "seed must be None, a non-negative integer"),
        ({"expected_sha256": 123}, "expected_sha256 must be 64 hexadecimal characters"),
        ({"expected_sha256": "abc"}, "expected_sha256 must be 64 hexadecimal characters"),
        ({"batch_threads": 0}, "batch_threads must be an integer from 1 to 1024"),
        ({"batch_threads": 2.0}, "batch_threads must be an integer from 1 to 1024"),
        ({"out_of_bounds": "wrap"}, "out_of_bounds must be 'reject' or 'clip', got 'wrap'"),
        ({"threads": 0}, "threads must be an integer from 1 to 1024"),
        ({"threads": "2"}, "threads must be an integer from 1 to 1024"),
        ({"deterministic": "yes"}, "deterministic must be True or False"),
        ({"max_bytes": 0}, "max_bytes must be a positive integer"),
    ],
)
def test_every_load_argument_is_validated(
    exported_model: Path, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        Agent.load(exported_model / "model.onnx", **kwargs)


def test_reseed_is_validated(agent: Agent) -> None:
    with pytest.raises(InvalidArgumentError, match="seed must be"):
        agent.reseed(-5)


def test_checkpoint_nested_10000_deep(tmp_path: Path) -> None:
    # torch.save cannot write this (its pickler recurses), so the pickle is written by hand:
    # 10,000 empty lists, each appended into the one below it.
    depth = 10_000
    deep_pickle = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    path = tmp_path / "model.pt"
    save_checkpoint_dict({}, path)
    with zipfile.ZipFile(path) as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records.items():
            archive.writestr(name, deep_pickle if name.endswith("data.pkl") else data)
    with pytest.raises(CheckpointError, match="nested more than 32 levels deep"):
        load_checkpoint(path)


def test_checkpoint_state_dict_keys_must_be_strings(exported_model: Path, tmp_path: Path) -> None:
    data = checkpoint_dict(exported_model)
    data["state_dict"][("net", 0)] = data["state_dict"].pop("net.0.weight")
    path = save_checkpoint_dict(data, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"state_dict key \('net', 0\) is a tuple"):
        load_checkpoint(path)
