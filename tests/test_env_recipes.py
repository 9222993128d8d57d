"""docs/envs.md's recipes, run as written: the user's own env module in the current folder
(train, export, --target c, run, bench through the console command, which does not put the
current folder on sys.path), env keywords and wrappers recorded in the run, MiniGrid and
ALE RAM (skipped, saying why, when their packages are absent)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pgdeploy.training.command import Kwargs
from pgdeploy.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "envs.md").read_text()
#: The console script's view: ``-P`` keeps the current folder off sys.path, as the
#: installed ``pgdeploy`` script does (``python -m pgdeploy`` would add it).
PGDEPLOY = [sys.executable, "-P", "-c", "from pgdeploy.cli import console_main; console_main()"]


def doc_file(first_line: str) -> str:
    """The ```python block of docs/envs.md whose first line is ``first_line``."""
    blocks = re.findall(r"```python\n(.*?)```", DOC, re.S)
    return next(b for b in blocks if b.startswith(first_line))


def doc_commands(marker: str) -> list[list[str]]:
    """The ``pgdeploy`` lines of the ```bash block that mentions ``marker``."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC, re.S)
    block = next(b for b in blocks if marker in b)
    lines = [line.split("  #")[0] for line in block.splitlines() if line.startswith("pgdeploy ")]
    return [shlex.split(line)[1:] for line in lines]


def pgdeploy(folder: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [*PGDEPLOY, *args], capture_output=True, text=True, cwd=folder, env=env, timeout=300
    )
    assert "Traceback" not in done.stderr, done.stderr
    if ok:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def test_env_kwargs_parse_as_json_or_key_value_and_round_trip() -> None:
    parse = Kwargs().convert
    assert parse('{"obs_type": "ram", "frameskip": 4}', None, None) == {
        "obs_type": "ram",
        "frameskip": 4,
    }
    assert parse("obs_type=ram, frameskip=4, full=true", None, None) == {
        "obs_type": "ram",
        "frameskip": 4,
        "full": True,
    }
    config = TrainConfig(env_kwargs={"step_size": 0.2}, wrapper="reach_env:short_episodes")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def play_recipe(folder: Path, marker: str, *budget: str) -> dict[str, str]:
    """Run the docs' five commands for ``marker`` (train, export, export --target c, run,
    bench) as written, ``budget`` flags added to train; each command's stdout by name."""
    commands = doc_commands(marker)
    assert [c[0] for c in commands] == ["train", "export", "export", "run", "bench"]
    assert commands[2][-2:] == ["--target", "c"]
    train, export, export_c, run, bench = commands
    out = {"train": pgdeploy(folder, *train, *budget, "-q").stdout}
    out["export"] = pgdeploy(folder, *export).stdout
    # the run's env as recorded (keywords, wrapper) played for the on-policy observations
    assert "(4096 random, 4096 on-policy)" in out["export"], out["export"]
    if shutil.which("cc"):
        out["c"] = pgdeploy(folder, *export_c).stdout
        assert "compiled with" in out["c"] and "4096 on-policy" in out["c"], out["c"]
    out["run"] = pgdeploy(folder, *run, "--episodes", "3").stdout
    assert "mean return" in out["run"], out["run"]
    out["bench"] = pgdeploy(folder, *bench, "--calls", "50", "--batch-sizes", "4").stdout
    assert "act: p50" in out["bench"], out["bench"]
    return out


@pytest.mark.slow
def test_the_users_own_env_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "reach_env.py").write_text(doc_file("# reach_env.py"))
    out = play_recipe(tmp_path, "reach_env:Reach1D-v0")  # trained as written: it solves
    assert "SOLVED" in out["train"], out["train"]
    config = json.loads((tmp_path / "runs/reach/config.json").read_text())
    assert config["env_id"] == "reach_env:Reach1D-v0"
    assert config["env_kwargs"] == {"step_size": 0.2}
    # an env id from the file alone is never imported: say what is needed, in one line
    refused = pgdeploy(tmp_path, "run", "runs/reach/model.onnx", ok=False)
    assert refused.returncode == 1
    assert "--env reach_env:Reach1D-v0" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    notice = pgdeploy(tmp_path, "export", "runs/reach/model.pt").stderr
    assert "random observations used instead" in notice and "--env reach_env:Reach1D-v0" in notice


@pytest.mark.slow
def test_a_recorded_wrapper_runs_once_its_module_is_confirmed(tmp_path: Path) -> None:
    """A wrapper from the env's own module is confirmed by --env; one from another module
    needs --wrapper again (export falls back to random rows and says so, run refuses)."""
    (tmp_path / "reach_env.py").write_text(doc_file("# reach_env.py"))
    (tmp_path / "cut.py").write_text(
        "import gymnasium as gym\n\n\ndef short(env):\n"
        "    return gym.wrappers.TimeLimit(env, max_episode_steps=7)\n"
    )
    env = ["--env", "reach_env:Reach1D-v0"]
    same, other = ["--wrapper", "reach_env:short_episodes"], ["--wrapper", "cut:short"]
    for folder, wrapper in (("same", same), ("other", other)):
        pgdeploy(tmp_path, "train", *env, *wrapper, "--total-timesteps", "500", "--out", folder)
        assert json.loads((tmp_path / folder / "config.json").read_text())["wrapper"] == wrapper[1]
    assert "4096 on-policy" in pgdeploy(tmp_path, "export", "same/model.pt", *env).stdout
    assert "mean return" in pgdeploy(tmp_path, "run", "same/model.onnx", *env).stdout
    refused = pgdeploy(tmp_path, "export", "other/model.pt", *env, ok=False)
    assert "pass --wrapper cut:short to confirm it" in refused.stderr
    assert "4096 on-policy" in pgdeploy(tmp_path, "export", "other/model.pt", *env, *other).stdout
    refused = pgdeploy(tmp_path, "run", "other/model.onnx", *env, ok=False)
    assert refused.returncode == 1 and "pass --wrapper cut:short" in refused.stderr
    played = pgdeploy(tmp_path, "run", "other/model.onnx", *env, *other).stdout
    assert "(7 steps)" in played or "return 1 (" in played  # cut at 7 steps unless reached


@pytest.mark.slow
def test_minigrid_recipe(tmp_path: Path) -> None:
    pytest.importorskip("minigrid", reason='MiniGrid recipe: pip install ".[test-envs]"')
    out = play_recipe(tmp_path, "minigrid:MiniGrid-Empty-5x5-v0")  # as written: it solves
    assert "SOLVED" in out["train"], out["train"]
    config = json.loads((tmp_path / "runs/grid/config.json").read_text())
    assert config["wrapper"] == "pgdeploy.envs.wrappers:without_text"


@pytest.mark.slow
def test_ale_ram_recipe(tmp_path: Path) -> None:
    pytest.importorskip("ale_py", reason='ALE RAM recipe: pip install ".[test-envs]"')
    out = play_recipe(tmp_path, "ale_py:ALE/Breakout-v5", "--total-timesteps", "3000")
    assert "budget of 3000 env steps spent after" in out["train"]
    config = json.loads((tmp_path / "runs/breakout/config.json").read_text())
    assert config["env_kwargs"] == {"obs_type": "ram"}
    # normalised RAM bytes: the policy presses FIRE, so no episode runs to ALE's 27,000 steps
    assert "(27000 steps)" not in out["run"], out["run"]
