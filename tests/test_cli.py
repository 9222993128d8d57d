"""The CLI: generated flags, config files, artefacts, help and docs for every command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdeploy import __version__
from pgdeploy.cli import main
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.config_files import config_fields

ROOT = Path(__file__).resolve().parents[1]
GUESS = "tests.tiny_envs:Guess-v0"


def invoke(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(main, list(args), prog_name="pgdeploy")
    if ok and result.exit_code != 0:
        raise AssertionError(f"exit {result.exit_code}: {result.output}") from result.exception
    if not ok:  # a clean ClickException: exit 1, no exception escaping the command
        assert result.exit_code in (1, 2), result.output
        assert isinstance(result.exception, SystemExit), result.exception
    return result.output


def test_every_command_has_help_and_is_documented() -> None:
    docs = (ROOT / "docs" / "cli.md").read_text()
    for name, command in main.commands.items():
        assert command.help, name
        assert "Usage: pgdeploy " + name in invoke(name, "--help")
        assert f"pgdeploy {name}" in docs, f"docs/cli.md does not document {name}"
        for param in command.params:
            for flag in param.opts:
                if flag.startswith("--") and flag != "--help":
                    assert flag in docs, f"docs/cli.md lacks {name} {flag}"


def test_every_config_field_is_a_train_flag_with_its_default() -> None:
    text = " ".join(invoke("train", "--help").split())
    for field in config_fields():
        assert field.flag in text
    default_lr = TrainConfig().learning_rate
    assert re.search(rf"--learning-rate FLOAT Adam step size\..*\[default: {default_lr}\]", text)
    assert "--no-normalize-obs" in text


def test_version_and_python_dash_m() -> None:
    assert invoke("--version").strip() == f"pgdeploy, version {__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "pgdeploy", "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert done.stdout.strip() == f"pgdeploy, version {__version__}"


@pytest.mark.parametrize("suffix", ["toml", "yaml"])
def test_config_file_then_flags_and_saved_config_reruns(tmp_path: Path, suffix: str) -> None:
    text = {
        "toml": 'env_id = "tests.tiny_envs:Guess-v0"\nnum_envs = 2\nhidden_sizes = [8, 8]\n'
        "learning_rate = 0.02\ntotal_timesteps = 200\n",
        "yaml": "env_id: tests.tiny_envs:Guess-v0\nnum_envs: 2\nhidden_sizes: [8, 8]\n"
        "learning_rate: 0.02\ntotal_timesteps: 200\n",
    }[suffix]
    config_path = tmp_path / f"run.{suffix}"
    config_path.write_text(text)
    out = tmp_path / "out"
    confirm = ["--env", GUESS]  # a file's module:EnvId imports only what the user confirms
    invoke(
        "train", "--config", str(config_path), *confirm, "--num-envs", "3", "--out", str(out), "-q"
    )
    saved = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert saved.num_envs == 3  # the flag beat the file
    assert saved.hidden_sizes == (8, 8) and saved.learning_rate == 0.02
    assert saved.env_id == GUESS
    rerun = tmp_path / "rerun"
    invoke("train", "--config", str(out / "config.json"), *confirm, "--out", str(rerun), "-q")
    assert json.loads((rerun / "config.json").read_text()) == saved.to_dict()


def test_config_file_with_unknown_key_fails(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("learning_rat = 0.1\n")
    output = invoke("train", "--config", str(path), ok=False)
    assert "unknown keys ['learning_rat']" in output


def test_bad_flag_value_is_a_clean_error() -> None:
    output = invoke("train", "--env", GUESS, "--gamma", "1.5", ok=False)
    assert "Error: config field 'gamma' must be in (0, 1]" in output


def test_train_writes_artefacts_and_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--env", GUESS, "--num-envs", "2", "--total-timesteps", "100", "--out", str(out)]
    invoke("train", *args, "--metrics-format", "jsonl", "-q")
    for name in ("model.pt", "config.json", "metrics.jsonl", "learning_curve.png"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["env_steps"] >= 100 and "window_mean_return" in rows[-1]
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_tensorboard_logs_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    logs = tmp_path / "tb"
    args = ["--env", GUESS, "--num-envs", "2", "--total-timesteps", "50", "--out", str(tmp_path)]
    invoke("train", *args, "--tensorboard", str(logs), "-q")
    assert list(logs.glob("events.out.tfevents.*"))


def test_tensorboard_missing_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    args = ["--env", GUESS, "--total-timesteps", "50", "--out", str(tmp_path)]
    output = invoke("train", *args, "--tensorboard", str(tmp_path / "tb"), ok=False)
    assert 'pip install "pgdeploy-rl[tensorboard]"' in output


def test_preset_applies_and_flags_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgdeploy.training import presets

    monkeypatch.setattr(presets, "PRESETS", {GUESS: {"num_envs": 5, "learning_rate": 0.05}})
    out = tmp_path / "out"
    args = ["--env", GUESS, "--total-timesteps", "20", "--out", str(out), "-q"]
    invoke("train", *args, "--learning-rate", "0.03")
    saved = json.loads((out / "config.json").read_text())
    assert (saved["num_envs"], saved["learning_rate"]) == (5, 0.03)
    invoke("train", *args, "--no-preset", "--overwrite")
    assert json.loads((out / "config.json").read_text())["num_envs"] == TrainConfig().num_envs


def test_unsupported_env_fails_fast_naming_what_is_supported(tmp_path: Path) -> None:
    output = invoke("train", "--env", "tests.tiny_envs:GuessContinuous-v0", ok=False)
    assert "actions: Discrete (>= 2 actions, any start) or 1-D MultiDiscrete" in output
    assert "Traceback" not in output


def test_run_render_without_display_is_a_clear_error(
    exported_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    output = invoke("run", str(exported_model / "model.onnx"), "--render", ok=False)
    assert "rendering to a window needs a display" in output and "record video" in output


@pytest.mark.parametrize(
    "module, what", [("moviepy", "recording videos"), ("pygame", "rendering CartPole-v1")]
)
def test_record_video_without_its_extra_names_the_extra(
    exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, what: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    args = [str(exported_model / "model.onnx"), "--record-video", str(tmp_path / "v")]
    output = invoke("run", *args, ok=False)
    assert what in output and 'pip install "pgdeploy-rl[video]"' in output


def test_record_video_writes_one_mp4_per_episode(exported_model: Path, tmp_path: Path) -> None:
    args = [str(exported_model / "model.onnx"), "--episodes", "2", "--record-video"]
    invoke("run", *args, str(tmp_path / "v"))
    videos = sorted(p.name for p in (tmp_path / "v").glob("*.mp4"))
    assert videos == ["rl-video-episode-0.mp4", "rl-video-episode-1.mp4"]
    assert all((tmp_path / "v" / name).stat().st_size > 1000 for name in videos)


@pytest.mark.parametrize("name", ["model.pt", "model.onnx", "model.torchscript.pt"])
def test_inspect_every_file_kind(exported_model: Path, name: str) -> None:
    info = json.loads(invoke("inspect", str(exported_model / name), "--json"))
    spec = info.get("spec") or info["metadata"]["spec"]
    assert (spec["env_id"], spec["n_actions"]) == ("CartPole-v1", 2)
    assert len(info["sha256"]) == 64 and info["size_bytes"] > 0
    assert "env CartPole-v1: obs_dim 4, 2 actions" in invoke("inspect", str(exported_model / name))
