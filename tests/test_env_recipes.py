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


@pytest.mark.slow
def test_the_users_own_env_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "reach_env.py").write_text(doc_file("# reach_env.py"))
    commands = doc_commands("reach_env:Reach1D-v0")
    assert [c[0] for c in commands] == ["train", "export", "export", "run", "bench"]
    train, export, export_c, run, bench = commands
    pgdeploy(tmp_path, *train, "--total-timesteps", "2000", "-q")
    config = json.loads((tmp_path / "runs/reach/config.json").read_text())
    assert config["env_id"] == "reach_env:Reach1D-v0"
    assert config["env_kwargs"] == {"step_size": 0.2}
    assert "verified on" in pgdeploy(tmp_path, *export).stdout
    if shutil.which("cc"):
        assert "compiled with" in pgdeploy(tmp_path, *export_c).stdout
    assert "mean return" in pgdeploy(tmp_path, *run, "--episodes", "3").stdout
    assert "act: p50" in pgdeploy(tmp_path, *bench, "--calls", "50", "--batch-sizes", "4").stdout
    # an env id from the file alone is never imported: say what is needed, in one line
    refused = pgdeploy(tmp_path, "run", "runs/reach/model.onnx", ok=False)
    assert refused.returncode == 1
    assert "--env reach_env:Reach1D-v0" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_recorded_wrapper_runs_only_when_confirmed(tmp_path: Path) -> None:
    (tmp_path / "reach_env.py").write_text(doc_file("# reach_env.py"))
    env, wrapper = ["--env", "reach_env:Reach1D-v0"], ["--wrapper", "reach_env:short_episodes"]
    pgdeploy(tmp_path, "train", *env, *wrapper, "--total-timesteps", "500", "--out", "r", "-q")
    assert json.loads((tmp_path / "r/config.json").read_text())["wrapper"] == wrapper[1]
    pgdeploy(tmp_path, "export", "r/model.pt", *env)
    refused = pgdeploy(tmp_path, "run", "r/model.onnx", *env, ok=False)
    assert refused.returncode == 1 and "pass --wrapper reach_env:short_episodes" in refused.stderr
    assert "mean return" in pgdeploy(tmp_path, "run", "r/model.onnx", *env, *wrapper).stdout


@pytest.mark.slow
def test_minigrid_recipe(tmp_path: Path) -> None:
    pytest.importorskip("minigrid", reason='MiniGrid recipe: pip install ".[test-envs]"')
    (tmp_path / "grid_wrappers.py").write_text(doc_file("# grid_wrappers.py"))
    (line,) = [c for c in doc_commands("MiniGrid-Empty") if "MiniGrid-Empty-5x5-v0" in c]
    pgdeploy(tmp_path, *line, "--total-timesteps", "3000", "-q")
    pgdeploy(tmp_path, "export", "runs/grid/model.pt", "--env", "MiniGrid-Empty-5x5-v0")
    wrap = ["--wrapper", "grid_wrappers:without_mission"]
    assert "mean return" in pgdeploy(tmp_path, "run", "runs/grid/model.onnx", *wrap).stdout


@pytest.mark.slow
def test_ale_ram_recipe(tmp_path: Path) -> None:
    pytest.importorskip("ale_py", reason='ALE RAM recipe: pip install ".[test-envs]"')
    (line,) = [c for c in doc_commands("MiniGrid-Empty") if "ALE/Breakout-v5" in c]
    pgdeploy(tmp_path, *line, "--total-timesteps", "2000", "-q")
    assert json.loads((tmp_path / "runs/breakout/config.json").read_text())["env_kwargs"] == {
        "obs_type": "ram"
    }
    pgdeploy(tmp_path, "export", "runs/breakout/model.pt")
    assert "mean return" in pgdeploy(tmp_path, "run", "runs/breakout/model.onnx").stdout
