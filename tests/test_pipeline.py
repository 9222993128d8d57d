"""train -> export -> run through the CLI, as a user would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.training.checkpoint import load_checkpoint


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def mean_return(output: str) -> float:
    match = re.search(r"return ([\d.]+) ± [\d.]+ \(mean ± std", output)
    assert match, output
    return float(match.group(1))


def episode_returns(output: str, episodes: int) -> list[int]:
    """The per-episode lines of ``pgdeploy run``; CartPole pays 1 per step, so return == steps."""
    found = re.findall(r"episode \d+: return (\d+) \((\d+) steps\)", output)
    assert len(found) == episodes, output
    assert all(ret == steps for ret, steps in found), output
    return [int(ret) for ret, _ in found]


def test_short_train_export_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    text = invoke("train", "--seed", "1", "--out", str(out), "--total-timesteps", "3000", "--quiet")
    assert "budget of 3000 env steps spent" in text
    assert (out / "metrics.csv").read_text().count("\n") >= 2
    assert (out / "learning_curve.png").read_bytes().startswith(b"\x89PNG")
    checkpoint = load_checkpoint(out / "model.pt")
    assert checkpoint.config.seed == 1
    assert checkpoint.training["env_steps"] >= 3000

    text = invoke("export", str(out / "model.pt"))
    assert re.search(r"onnx: .*model\.onnx verified on \d+ observations", text)
    assert "torchscript: " in text

    text = invoke("run", str(out / "model.onnx"), "--episodes", "3", "--seed", "0")
    returns = episode_returns(text, 3)
    assert min(returns) >= 8  # CartPole cannot fall sooner
    assert mean_return(text) == pytest.approx(sum(returns) / 3, abs=0.005)
    assert re.search(r"act latency p50 [\d.]+ us, p99 [\d.]+ us", text), text


def test_run_is_reproducible_for_a_seed(exported_model: Path) -> None:
    model = str(exported_model / "model.onnx")
    first = invoke("run", model, "--episodes", "2", "--seed", "5")
    second = invoke("run", model, "--episodes", "2", "--seed", "5")
    assert episode_returns(first, 2) == episode_returns(second, 2)
    # A different seed plays different episodes, so the equality above has teeth.
    other = invoke("run", model, "--episodes", "2", "--seed", "6")
    assert episode_returns(other, 2) != episode_returns(first, 2)


@pytest.mark.slow
def test_default_training_solves_cartpole_and_the_export_plays_it(tmp_path: Path) -> None:
    """The main job of the README: train (defaults), export, play 20 episodes >= 475."""
    out = tmp_path / "run"
    assert "solved" in invoke("train", "--seed", "0", "--out", str(out), "--quiet")
    invoke("export", str(out / "model.pt"))
    assert mean_return(invoke("run", str(out / "model.onnx"), "--episodes", "20")) >= 475
