"""Resume is a resume: a run split into parts is the same run, in the same folder."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import tests.tiny_envs  # noqa: F401 - registers Guess-v0
from pgdeploy.cli import main
from pgdeploy.envs.making import policy_spec
from pgdeploy.errors import CheckpointError
from pgdeploy.training.checkpoint import Checkpoint, load_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.launch import resolve_config
from pgdeploy.training.resume import decode_history, encode_history, resume_state
from pgdeploy.training.train import IterationStats, train


def resumed(checkpoint: Checkpoint, **overrides: Any) -> TrainConfig:
    """The config that continues ``checkpoint``'s run (the one resume API)."""
    return resolve_config(overrides, resume=checkpoint).config


def state(checkpoint: Checkpoint) -> Any:
    config = dataclasses.replace(checkpoint.config, total_timesteps=10**9)
    return resume_state(checkpoint, config, policy_spec(config.env_id))


GUESS = "Guess-v0"  # registered by tests.tiny_envs: an id with no module to import
CONFIG = TrainConfig(
    seed=3, num_envs=4, hidden_sizes=(16,), total_timesteps=600, stop_on_solve=False
)
#: Time-dependent fields: the only ones a split run cannot reproduce.
CLOCK = {"wall_seconds", "steps_per_second"}
SUMMARY_CLOCK = {"wall_seconds", "seconds_this_process", "steps_per_second"}
SUMMARY_PER_PROCESS = {"env_steps_this_process"}


def timeless(history: list[IterationStats]) -> list[dict[str, Any]]:
    return [{k: v for k, v in dataclasses.asdict(s).items() if k not in CLOCK} for s in history]


def keys(tree: Any, prefix: str = "") -> set[str]:
    if isinstance(tree, dict):
        return set().union(*(keys(v, f"{prefix}/{k}") for k, v in tree.items())) | {prefix}
    return {prefix}


def stop_after(iterations: int) -> tuple[Any, Any]:
    """A callback and a should_stop that stop a run after this many of its iterations (a
    Ctrl-C between iterations)."""
    seen: list[IterationStats] = []
    return seen.append, lambda: "SIGINT" if len(seen) >= iterations else None


@pytest.mark.parametrize("env_id", ["CartPole-v1", GUESS])
def test_three_resumed_parts_equal_one_run(tmp_path: Path, env_id: str) -> None:
    # CartPole-v1 uses gymnasium's numpy vector env (one RNG), Guess a SyncVectorEnv (one each).
    config = dataclasses.replace(CONFIG, env_id=env_id, total_timesteps=1800)
    whole = train(config, out_dir=tmp_path / "one")
    callback, stop = stop_after(3)
    part = train(config, out_dir=tmp_path / "split", callbacks=(callback,), should_stop=stop)
    for last in (False, True):
        checkpoint = load_checkpoint(tmp_path / "split" / "model.pt")
        callback, stop = stop_after(10**9 if last else 4)
        part = train(
            resumed(checkpoint),
            out_dir=tmp_path / "split",
            resume_from=checkpoint,
            callbacks=(callback,),
            should_stop=stop,
        )
    assert 0 < part.new_iterations < len(part.history) - 4
    a, b = whole.checkpoint, load_checkpoint(tmp_path / "split" / "model.pt")
    for counter in ("env_steps", "episodes", "iterations", "steps_to_solve", "solved"):
        assert a.training[counter] == b.training[counter], counter
    assert timeless(whole.history) == timeless(part.history)
    assert keys(a.to_dict()) == keys(b.to_dict())
    for name, value in a.state_dict.items():  # bit-identical weights
        assert torch.equal(value, b.state_dict[name]), name
    for mine, theirs in zip(
        state(a).optimizer["exp_avg_sq"],
        state(b).optimizer["exp_avg_sq"],
        strict=True,
    ):
        assert torch.equal(mine, theirs)
    same = {k for k in a.training if k not in SUMMARY_CLOCK | SUMMARY_PER_PROCESS}
    assert {k: a.training[k] for k in same} == {k: b.training[k] for k in same}
    rows = [metrics_rows(tmp_path / d / "metrics.csv") for d in ("one", "split")]
    assert [{k: r[k] for k in r if k not in CLOCK} for r in rows[0]] == [
        {k: r[k] for k in r if k not in CLOCK} for r in rows[1]
    ]


def metrics_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["train", *args, "-q"], prog_name="pgdeploy")


def test_cli_resume_continues_in_the_runs_own_folder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = run_cli(
        "--env",
        GUESS,
        "--num-envs",
        "4",
        "--total-timesteps",
        "320",
        "--no-stop-on-solve",
        "--out",
        str(run),
    )
    assert first.exit_code == 0, first.output
    before = load_checkpoint(run / "model.pt").training
    second = run_cli("--resume", str(run), "--total-timesteps", "640")
    assert second.exit_code == 0, second.output
    after = load_checkpoint(run / "model.pt")
    # The run's counters, not this invocation's; this invocation's steps reported apart.
    assert after.training["env_steps"] == 640 and before["env_steps"] == 320
    assert after.training["iterations"] == 2 * before["iterations"]
    assert after.training["env_steps_this_process"] == 320
    assert "after 640 env steps" in second.output and "(320 steps in" in second.output
    rows = metrics_rows(run / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(1, after.training["iterations"] + 1))
    assert int(rows[-1]["env_steps"]) == 640
    assert (run / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in run.iterdir()) == [
        "config.json",
        "learning_curve.png",
        "metrics.csv",
        "model.pt",
    ]
    # The budget is spent now: a resume without a larger one is refused, nothing written.
    stamp = (run / "model.pt").stat().st_mtime_ns
    third = run_cli("--resume", str(run / "model.pt"))
    assert third.exit_code == 1
    assert "already spent its budget (640 env steps of total_timesteps=640)" in third.output
    assert (run / "model.pt").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--env", "Acrobot-v1"],
            "env_id differs (the run has 'CartPole-v1', the new config 'Acrobot-v1')",
        ),
        (["--hidden-sizes", "32"], "hidden_sizes differs (the run has [16], the new config [32])"),
        (["--normalize-obs"], "normalize_obs differs (the run has False, the new config True)"),
    ],
)
def test_incompatible_resume_is_refused_up_front(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    train(CONFIG, out_dir=tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = run_cli("--resume", str(tmp_path), "--total-timesteps", "5000", *flags)
    assert result.exit_code == 1
    assert f"Error: cannot resume: {message}" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_checkpoint_without_resume_section_is_refused(tmp_path: Path) -> None:
    train(CONFIG, out_dir=tmp_path)
    checkpoint = load_checkpoint(tmp_path / "model.pt")
    checkpoint.resume = {}
    with pytest.raises(CheckpointError, match=r"cannot be resumed: .*lacks \['env_steps'"):
        train(dataclasses.replace(checkpoint.config, total_timesteps=1200), resume_from=checkpoint)


def test_env_with_other_spaces_is_refused(tmp_path: Path) -> None:
    train(CONFIG, out_dir=tmp_path)
    checkpoint = load_checkpoint(tmp_path / "model.pt")
    checkpoint.spec = dataclasses.replace(
        checkpoint.spec,
        obs_dim=5,
        obs_low=(-1.0,) * 5,
        obs_high=(1.0,) * 5,
        observation_space=None,
    )
    with pytest.raises(
        CheckpointError,
        match="CartPole-v1 now has obs_dim 4 and 2 actions, the "
        "run was trained with obs_dim 5 and 2",
    ):
        train(dataclasses.replace(checkpoint.config, total_timesteps=1200), resume_from=checkpoint)


def test_history_from_another_version_decodes_by_field_name() -> None:
    stats = IterationStats(3, 96, 12, 5.0, 4.5, 8.0, 0.2, 0.6, 0.3, 1.5, 64.0)
    encoded = encode_history([stats])
    keep = [i for i, name in enumerate(encoded["fields"]) if name != "entropy"]
    older = {
        "fields": [*(encoded["fields"][i] for i in keep), "a_future_field"],
        "rows": torch.cat([encoded["rows"][:, keep], torch.ones(1, 1, dtype=torch.float64)], 1),
    }
    (decoded,) = decode_history(older)
    assert math.isnan(decoded.entropy)
    assert dataclasses.replace(decoded, entropy=0.6) == stats
    older["fields"] = [name for name in older["fields"] if name != "episodes"] + ["x"]
    with pytest.raises(CheckpointError, match=r"history lacks \['episodes'\]"):
        decode_history(older)
