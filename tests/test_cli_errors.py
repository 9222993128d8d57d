"""The error contract: every bad input to every command is one or two lines, never a traceback.

Each case runs a real command and asserts exit status 1 (a PgdeployError) or 2 (click's
usage error), at most two non-empty lines on stderr, no "Traceback", the expected words
in the message, and, for commands that write, that nothing was written.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import pytest
from click.testing import CliRunner

import tests.tiny_envs
from pgdeploy._optional import install_command
from pgdeploy.cli import main

ROOT = Path(__file__).resolve().parents[1]
GUESS = "tests.tiny_envs:Guess-v0"
NO_THRESHOLD = "pgdeploy-test/NoThreshold-v0"
if NO_THRESHOLD not in gym.registry:
    gym.register(NO_THRESHOLD, entry_point=tests.tiny_envs.Guess)
TINY = ["--env", GUESS, "--num-envs", "2", "--total-timesteps", "32", "-q"]

BROKEN_MODULES = {
    "raises_at_import": "raise RuntimeError('the simulator licence server is down')\n",
    "syntax_error": "def broken(:\n    pass\n",
    "needs_argument": (
        "import gymnasium as gym\n"
        "from tests.tiny_envs import Guess\n"
        "class Needs(Guess):\n"
        "    def __init__(self, level):\n"
        "        super().__init__()\n"
        "gym.register('NeedsArgument-v0', entry_point=Needs)\n"
    ),
}


@dataclass
class Ctx:
    """Paths a case can use: a scratch folder and the session's trained, exported model."""

    tmp: Path
    model: Path
    monkeypatch: pytest.MonkeyPatch

    def file(self, name: str = "file.txt", text: str = "not a model\n") -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def run_with(self, *names: str) -> Path:
        """A folder holding a run (model.pt, config.json) whose ``names`` are folders."""
        folder = self.tmp / "run"
        folder.mkdir(exist_ok=True)
        for name in ("model.pt", "config.json"):
            (folder / name).write_bytes((self.model / name).read_bytes())
        for name in names:
            path = folder / name
            if path.is_file():
                path.unlink()
            path.mkdir()
        return folder


Args = Callable[[Ctx], list[str]]


@dataclass
class Case:
    args: Args
    expect: str
    code: int = 1
    setup: Callable[[Ctx], None] = field(default=lambda ctx: None)


def disk_full(ctx: Ctx) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    ctx.monkeypatch.setattr(os, "fsync", fsync)


def read_only(ctx: Ctx) -> None:
    def replace(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    ctx.monkeypatch.setattr(os, "replace", replace)


def no_display(ctx: Ctx) -> None:
    ctx.monkeypatch.setattr(sys, "platform", "linux")
    ctx.monkeypatch.delenv("DISPLAY", raising=False)
    ctx.monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def broken_modules(ctx: Ctx) -> None:
    folder = ctx.tmp / "user_envs"
    folder.mkdir()
    for name, text in BROKEN_MODULES.items():
        (folder / f"{name}.py").write_text(text)
    ctx.monkeypatch.syspath_prepend(str(folder))
    for name in BROKEN_MODULES:
        ctx.monkeypatch.delitem(sys.modules, name, raising=False)


def no_tensorboard(ctx: Ctx) -> None:
    ctx.monkeypatch.setitem(sys.modules, "tensorboard", None)


def config_file(text: str, suffix: str = "toml") -> Args:
    return lambda c: ["train", "--config", str(c.file(f"c.{suffix}", text)), *TINY]


def train(*extra: str) -> Args:
    return lambda c: ["train", *TINY, "--out", str(c.tmp / "out"), *extra]


def out(where: Callable[[Ctx], Path]) -> Args:
    return lambda c: ["train", *TINY, "--out", str(where(c))]


def resume(*extra: str) -> Args:
    return lambda c: ["train", "--resume", str(c.run_with()), "-q", *extra]


def onnx(command: str, *extra: str) -> Args:
    return lambda c: [command, str(c.model / "model.onnx"), *extra]


def export(*extra: str) -> Args:
    return lambda c: ["export", str(c.run_with() / "model.pt"), *extra]


CASES: dict[str, Case] = {
    # train: every config flag with a bad value (exit 2: click's type, 1: the config's range)
    "train seed -1": Case(train("--seed", "-1"), "'seed' must be >= 0"),
    "train seed text": Case(train("--seed", "abc"), "'abc' is not a valid integer", 2),
    "train num-envs 0": Case(train("--num-envs", "0"), "'num_envs' must be in [1, 65536]"),
    "train num-envs 2.5": Case(train("--num-envs", "2.5"), "'2.5' is not a valid integer", 2),
    "train hidden-sizes a,b": Case(train("--hidden-sizes", "a,b"), "comma-separated integers", 2),
    "train hidden-sizes 0": Case(train("--hidden-sizes", "0"), "every value must be >= 1", 2),
    "train hidden-sizes empty": Case(train("--hidden-sizes", ""), "comma-separated integers", 2),
    "train learning-rate text": Case(train("--learning-rate", "fast"), "not a valid float", 2),
    "train learning-rate 0": Case(train("--learning-rate", "0"), "'learning_rate' must be > 0"),
    "train gamma 1.5": Case(train("--gamma", "1.5"), "'gamma' must be in (0, 1]"),
    "train gamma 0": Case(train("--gamma", "0"), "'gamma' must be in (0, 1]"),
    "train baseline": Case(train("--baseline", "critic"), "'critic' is not one of", 2),
    "train obs-clip 0": Case(train("--obs-clip", "0"), "'obs_clip' must be > 0"),
    "train entropy-coef -1": Case(train("--entropy-coef", "-1"), "'entropy_coef' must be >= 0"),
    "train max-grad-norm -1": Case(train("--max-grad-norm", "-1"), "'max_grad_norm' must be"),
    "train total-timesteps 0": Case(train("--total-timesteps", "0"), "'total_timesteps' must"),
    "train total-timesteps 2e3": Case(train("--total-timesteps", "2e3"), "valid integer", 2),
    "train solve-threshold": Case(train("--solve-threshold", "high"), "not a valid float", 2),
    "train solve-window 0": Case(train("--solve-window", "0"), "'solve_window' must be >= 1"),
    "train torch-threads 0": Case(train("--torch-threads", "0"), "'torch_threads' must be"),
    "train checkpoint-every -1": Case(train("--checkpoint-every", "-1"), "'checkpoint_every'"),
    "train checkpoint-seconds -5": Case(
        train("--checkpoint-seconds", "-5"), "'checkpoint_seconds' must be >= 0"
    ),
    "train metrics-format": Case(train("--metrics-format", "xml"), "'xml' is not one of", 2),
    "train unknown flag": Case(train("--learning-rat", "0.1"), "No such option", 2),
    "unknown command": Case(lambda c: ["trian"], "No such command 'trian'", 2),
    # config files
    "config missing": Case(
        lambda c: ["train", "--config", str(c.tmp / "nope.toml"), *TINY], "does not exist"
    ),
    "config unknown key": Case(config_file("learning_rat = 0.1\n"), "unknown keys"),
    "config unparsable": Case(config_file("learning_rate = = 1\n"), "cannot parse config"),
    "config suffix": Case(config_file("{}", "ini"), "expected .toml, .yaml, .yml or .json"),
    "config not a mapping": Case(config_file("[1, 2]", "json"), "must hold a mapping"),
    "config wrong type": Case(config_file('learning_rate = "fast"\n'), "config"),
    # output folders
    "out under a file": Case(out(lambda c: c.file() / "sub"), "cannot write into folder"),
    "out in /proc": Case(out(lambda c: Path("/proc/nope")), "cannot write into folder /proc/nope"),
    "out model.pt is a folder": Case(
        lambda c: ["train", *TINY, "--overwrite", "--out", str(c.run_with("model.pt"))],
        "model.pt is a folder",
    ),
    "out metrics.csv is a folder": Case(
        lambda c: ["train", *TINY, "--overwrite", "--out", str(c.run_with("metrics.csv"))],
        "metrics.csv is a folder",
    ),
    "out holds a run": Case(out(lambda c: c.run_with()), "already holds a run (config.json"),
    "disk full while saving": Case(train(), "No space left on device", setup=disk_full),
    "read-only while saving": Case(train(), "Read-only file system", setup=read_only),
    # extras and envs
    "tensorboard missing": Case(
        train("--tensorboard", "tb"), install_command("tensorboard"), setup=no_tensorboard
    ),
    "tensorboard dir under a file": Case(
        lambda c: [*train()(c), "--tensorboard", str(c.file() / "tb")], "cannot write into"
    ),
    "env unknown": Case(train("--env", "Nope-v0"), "cannot make environment 'Nope-v0'"),
    "env module missing": Case(train("--env", "nomodule:X-v0"), "No module named 'nomodule'"),
    "env unsupported spaces": Case(
        train("--env", "tests.tiny_envs:GuessContinuous-v0"), "pgdeploy supports observations"
    ),
    "env module raises at import": Case(
        train("--env", "raises_at_import:X-v0"),
        "RuntimeError: the simulator licence server is down",
        setup=broken_modules,
    ),
    "env module syntax error": Case(
        train("--env", "syntax_error:X-v0"), "SyntaxError", setup=broken_modules
    ),
    "env constructor needs argument": Case(
        train("--env", "needs_argument:NeedsArgument-v0"),
        "missing 1 required positional argument: 'level'",
        setup=broken_modules,
    ),
    "require-solved without threshold": Case(
        train("--env", NO_THRESHOLD, "--require-solved"), "has no reward threshold"
    ),
    # resume
    "resume missing": Case(
        lambda c: ["train", "--resume", str(c.tmp / "gone" / "model.pt")], "does not exist"
    ),
    "resume not a checkpoint": Case(
        lambda c: ["train", "--resume", str(c.file("model.pt"))], "is not a PyTorch checkpoint"
    ),
    "resume other env": Case(
        resume("--env", "Acrobot-v1", "--total-timesteps", "99999"), "env_id differs"
    ),
    "resume other network": Case(
        resume("--hidden-sizes", "32", "--total-timesteps", "99999"), "hidden_sizes differs"
    ),
    "resume budget spent": Case(resume(), "already spent its budget"),
    # export
    "export missing": Case(lambda c: ["export", str(c.tmp / "model.pt")], "does not exist"),
    "export a folder": Case(lambda c: ["export", str(c.tmp)], "is a directory"),
    "export not a checkpoint": Case(
        lambda c: ["export", str(c.file("model.pt"))], "is not a PyTorch checkpoint"
    ),
    "export atol 0": Case(export("--atol", "0"), "is not in the range x>0", 2),
    "export atol -1": Case(export("--atol", "-1"), "is not in the range x>0", 2),
    "export atol text": Case(export("--atol", "tiny"), "is not a valid float", 2),
    "export out-dir under a file": Case(
        lambda c: [*export()(c), "--out-dir", str(c.file() / "x")], "cannot write into folder"
    ),
    "export out-dir in /proc": Case(export("--out-dir", "/proc/nope"), "cannot write into"),
    "export model.onnx is a folder": Case(
        lambda c: ["export", str(c.run_with("model.onnx") / "model.pt")], "model.onnx is a folder"
    ),
    "export disk full": Case(export(), "No space left on device", setup=disk_full),
    # run
    "run episodes 0": Case(onnx("run", "--episodes", "0"), "0 is not in the range x>=1", 2),
    "run episodes -1": Case(onnx("run", "--episodes", "-1"), "is not in the range x>=1", 2),
    "run episodes text": Case(onnx("run", "--episodes", "ten"), "is not a valid integer", 2),
    "run seed -5": Case(onnx("run", "--seed", "-5"), "-5 is not in the range x>=0", 2),
    "run missing model": Case(lambda c: ["run", str(c.tmp / "m.onnx")], "m.onnx"),
    "run not onnx": Case(lambda c: ["run", str(c.file("m.onnx"))], "m.onnx"),
    "run env other": Case(onnx("run", "--env", "Nope-v0"), "was trained on CartPole-v1, not"),
    "run env unknown": Case(
        onnx("run", "--env", "Nope-v0", "--allow-env-mismatch"), "cannot make environment"
    ),
    "run env other spaces": Case(
        onnx("run", "--env", "Acrobot-v1", "--allow-env-mismatch"), "play it on an env with"
    ),
    "run video under a file": Case(
        lambda c: [*onnx("run")(c), "--record-video", str(c.file() / "v")], "cannot write into"
    ),
    "run render without display": Case(
        onnx("run", "--render"), "needs a display", setup=no_display
    ),
    "run render and video": Case(
        lambda c: [*onnx("run", "--render")(c), "--record-video", str(c.tmp / "v")],
        "cannot be combined",
    ),
    # bench
    "bench batch-sizes a,b": Case(onnx("bench", "--batch-sizes", "a,b"), "comma-separated", 2),
    "bench batch-sizes 0": Case(onnx("bench", "--batch-sizes", "0"), "must be >= 1", 2),
    "bench batch-sizes empty": Case(onnx("bench", "--batch-sizes", ""), "comma-separated", 2),
    "bench calls 0": Case(onnx("bench", "--calls", "0"), "0 is not in the range x>=1", 2),
    "bench threads 0": Case(onnx("bench", "--threads", "0"), "is not in the range x>=1", 2),
    "bench batch-threads 0": Case(onnx("bench", "--batch-threads", "0"), "x>=1", 2),
    "bench missing model": Case(lambda c: ["bench", str(c.tmp / "m.onnx")], "m.onnx"),
    # inspect
    "inspect missing": Case(lambda c: ["inspect", str(c.tmp / "m.onnx")], "m.onnx"),
    "inspect a folder": Case(lambda c: ["inspect", str(c.tmp)], "is a directory"),
    "inspect garbage": Case(lambda c: ["inspect", str(c.file("m.onnx", "garbage"))], "m.onnx"),
}


#: Export's progress lines (one per stage, on stderr, before any error): not error output.
PROGRESS_LINE = re.compile(r"^export \[\s*[\d.]+ s\] ")


def check_clean(code: int, stderr: str, expected_code: int, expect: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not PROGRESS_LINE.match(line)]
    assert "Traceback" not in stderr, stderr
    assert code == expected_code, (code, stderr)
    assert 1 <= len(lines) <= 2, stderr
    assert lines[0].startswith("Error: "), stderr
    assert expect in stderr, stderr


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clean_line(
    name: str, exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[name]
    monkeypatch.chdir(tmp_path)
    ctx = Ctx(tmp=tmp_path, model=exported_model, monkeypatch=monkeypatch)
    args = case.args(ctx)
    case.setup(ctx)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, args, prog_name="pgdeploy")
    monkeypatch.undo()
    assert isinstance(result.exception, SystemExit), result.exception
    check_clean(result.exit_code, result.stderr, case.code, case.expect)
    written = snapshot(tmp_path) - before
    allowed = {"out", "tb", "run", "v"}  # folders a check may have created, empty or not
    assert {p for p in written if p.split("/")[0] not in allowed} == set(), written
    assert not any(p.endswith(".tmp") for p in written), written


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


RUNTIME_ONLY = {
    "train": (["train", "-q"], "training needs the 'torch' package"),
    "export": (["export", "MODEL/model.pt"], "export needs the 'torch' package"),
    "export --target c": (
        ["export", "MODEL/model.pt", "--target", "c"],
        "export needs the 'torch' package",
    ),
    "resume": (["train", "--resume", "MODEL"], "training needs the 'torch' package"),
    "inspect model.pt": (["inspect", "MODEL/model.pt"], "inspecting a checkpoint needs"),
}


def run_without_torch(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``pgdeploy ARGS`` where ``import torch`` fails, as on an install without ``[train]``."""
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-m", "pgdeploy", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("name", list(RUNTIME_ONLY))
def test_runtime_only_install_names_the_extra(
    name: str, exported_model: Path, tmp_path: Path
) -> None:
    args, expect = RUNTIME_ONLY[name]
    done = run_without_torch(tmp_path, [a.replace("MODEL", str(exported_model)) for a in args])
    check_clean(done.returncode, done.stderr, 1, expect)
    assert install_command("train") in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("target", ["onnx", "c"])
def test_a_wrong_checkpoint_path_fails_before_torch_is_imported(
    tmp_path: Path, target: str
) -> None:
    """One line at once: no progress line and no second spent importing torch first (with
    torch blocked, importing it would have given the 'install the train extra' error)."""
    missing = tmp_path / "runs" / "model.pt"
    for path, what in ((missing, "does not exist"), (tmp_path, "is a directory")):
        done = run_without_torch(tmp_path, ["export", str(path), "--target", target])
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"Error: checkpoint {str(path)!r} {what}, expected a model.pt file"
        ]


def test_the_contract_covers_enough_cases() -> None:
    assert len(CASES) + len(RUNTIME_ONLY) >= 50
