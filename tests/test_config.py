"""TrainConfig validates itself and survives a round trip through plain data."""

from __future__ import annotations

import pytest

from pgdeploy.errors import ConfigError
from pgdeploy.training.config import TrainConfig


def test_round_trip_through_dict() -> None:
    config = TrainConfig(env_id="Acrobot-v1", seed=3, hidden_sizes=(64, 64))
    data = config.to_dict()
    assert data["hidden_sizes"] == [64, 64]
    assert TrainConfig.from_dict(data) == config


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_envs", 0, r"'num_envs' must be in \[1, 65536\]"),
        ("gamma", 1.5, r"'gamma' must be in \(0, 1\]"),
        ("learning_rate", -1.0, r"'learning_rate' must be > 0"),
        ("baseline", "critic", r"'baseline' must be 'timestep', 'value' or 'none'"),
        ("hidden_sizes", (), r"'hidden_sizes' must be one or more positive widths"),
    ],
)
def test_bad_values_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_unknown_keys_are_listed() -> None:
    with pytest.raises(ConfigError, match=r"unknown config keys \['lr'\]"):
        TrainConfig.from_dict({"lr": 0.1})
