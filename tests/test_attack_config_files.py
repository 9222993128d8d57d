"""Attack 7: config files are type-checked field by field, with one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.errors import ConfigError
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.config_files import build_config, load_config_file


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        (
            "c.json",
            '{"normalize_obs": "false"}',
            r"'normalize_obs' must be true or false, got 'false'",
        ),
        (
            "c.json",
            '{"hidden_sizes": "128"}',
            r"'hidden_sizes' must be one or more positive widths",
        ),
        (
            "c.json",
            '{"hidden_sizes": [128.9, 3.99]}',
            r"'hidden_sizes' must be one or more positive",
        ),
        ("c.json", '{"hidden_sizes": [true]}', r"'hidden_sizes' must be one or more positive"),
        ("c.json", '{"seed": 1.5}', r"'seed' must be an integer, got 1.5 \(float\)"),
        ("c.json", '{"num_envs": true}', r"'num_envs' must be an integer, got True \(bool\)"),
        ("c.json", '{"env_id": 5}', r"'env_id' must be a string"),
        ("c.json", '{"baseline": ["none"]}', r"'baseline' must be 'timestep', 'value' or 'none'"),
        ("c.toml", "learning_rate = inf", r"'learning_rate' must be a finite number, got inf"),
        ("c.toml", "solve_threshold = nan", r"'solve_threshold' must be a finite number or null"),
        ("c.yaml", "gamma: .nan", r"'gamma' must be a finite number, got nan"),
        ("c.yaml", "total_timesteps: 1.0e5", r"'total_timesteps' must be an integer"),
    ],
)
def test_misread_values_are_refused(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        build_config(load_config_file(path))


def test_the_cli_says_it_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"normalize_obs": "false"}')
    result = CliRunner().invoke(main, ["train", "--config", str(path), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: config field 'normalize_obs' must be true or false, got 'false' (str)"
    ]


def test_good_values_still_load_and_ints_become_floats() -> None:
    config = TrainConfig.from_dict({"learning_rate": 1, "hidden_sizes": [64, 64], "seed": 3})
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.hidden_sizes == (64, 64)
    assert TrainConfig.from_dict(config.to_dict()) == config
