"""The model shipped in models/CartPole-v1 loads with the runtime alone and plays well."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym

from pgdeploy.runtime import Agent, play

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "CartPole-v1"


def test_shipped_files_exist_with_a_card() -> None:
    for name in ("model.pt", "model.onnx", "model.torchscript.pt", "README.md"):
        assert (MODEL_DIR / name).is_file(), name


def test_shipped_onnx_policy_plays_cartpole() -> None:
    agent = Agent.load(MODEL_DIR / "model.onnx", seed=0)
    assert agent.spec.env_id == "CartPole-v1"
    assert agent.metadata.training["solved"] is True
    report = play(agent, gym.make("CartPole-v1"), episodes=5, seed=0)
    assert report.mean_return >= 475
