"""A run cannot be destroyed by its own arithmetic: a non-finite loss, gradient or weight
stops it in one line, keeps its last finite state on disk, and exits with a failure."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.errors import TrainingDivergedError
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.train import train

EXPLODE = "pgdeploy-test/Explode-v0"


class ExplodeEnv(gym.Env[np.ndarray, int]):
    """4-step episodes paying 1 a step, until its 6th episode, which pays infinity."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.episodes = 0

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.episodes += 1
        self._t = 0
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self._t += 1
        reward = math.inf if self.episodes >= 6 else float(int(action))
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), reward, self._t >= 4, False, {}


gym.register(EXPLODE, entry_point=ExplodeEnv, reward_threshold=3.0)
CONFIG = TrainConfig(
    env_id=EXPLODE, num_envs=2, hidden_sizes=(8,), total_timesteps=10_000,
    solve_window=4, stop_on_solve=False, vectorization="sync", checkpoint_seconds=0,
)  # fmt: skip


def finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state.values())


def test_a_non_finite_loss_stops_the_run_and_keeps_its_last_finite_state(tmp_path: Path) -> None:
    with pytest.raises(
        TrainingDivergedError,
        match=r"^training stopped after iteration 5: a return was not finite .*its last finite "
        r"state \(iteration 5\) is saved in .*model.pt; try a smaller learning_rate",
    ):
        train(CONFIG, out_dir=tmp_path)
    saved = load_checkpoint(tmp_path / "model.pt")
    assert saved.training["iterations"] == 5 and saved.training["diverged"]
    assert finite(dict(saved.state_dict)) and not saved.training["solved"]
    moments = saved.resume["optimizer"]["exp_avg"] + saved.resume["optimizer"]["exp_avg_sq"]
    assert all(bool(torch.isfinite(m).all()) for m in moments)
    best = load_checkpoint(tmp_path / "best.pt")
    assert finite(dict(best.state_dict)) and math.isfinite(best.training["best_window_mean_return"])


def test_a_non_finite_gradient_never_reaches_the_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgdeploy.training.reinforce import ReinforceLearner

    loss = ReinforceLearner.loss

    def poisoned(self: ReinforceLearner, batch: Any, advantages: Any) -> Any:
        value, entropy = loss(self, batch, advantages)
        return value * math.nan, entropy

    monkeypatch.setattr(ReinforceLearner, "loss", poisoned)
    config = TrainConfig(env_id=EXPLODE, num_envs=2, hidden_sizes=(8,), vectorization="sync")
    with pytest.raises(TrainingDivergedError, match="after iteration 0: the loss was nan"):
        train(config)


def test_a_step_that_makes_a_weight_non_finite_is_undone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pgdeploy.training.optim import Adam

    step = Adam.step

    def poisoned(self: Adam) -> None:
        step(self)
        if self.step_count == 3:
            with torch.no_grad():
                self.params[0][0, 0] = math.nan

    monkeypatch.setattr(Adam, "step", poisoned)
    config = TrainConfig(env_id=EXPLODE, num_envs=2, hidden_sizes=(8,), vectorization="sync")
    with pytest.raises(
        TrainingDivergedError, match="after iteration 2: the step made a weight or optimiser"
    ):
        train(config, out_dir=tmp_path)
    assert finite(dict(load_checkpoint(tmp_path / "model.pt").state_dict))


def test_the_cli_fails_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        ["train", "--env", EXPLODE, "--num-envs", "2", "--hidden-sizes", "8",
         "--no-stop-on-solve", "--vectorization", "sync", "--out", str(out), "-q"],
        prog_name="pgdeploy",
    )  # fmt: skip
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: training stopped after iteration 5")
    assert finite(dict(load_checkpoint(out / "model.pt").state_dict))
