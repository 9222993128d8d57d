"""No traceback, ever, from the ``pgdeploy`` command, by family: any unforeseen exception in
any command (one line naming the command and a saved traceback, exit 70); Ctrl-C before work
begins (one line, exit 130); config files that are not small UTF-8 regular files (each named
as what it is, never blocking); numbers too large; temp names in OS errors."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import pgdeploy.envs.play
import pgdeploy.inspect
import pgdeploy.runtime.bench
import pgdeploy.training.launch
from pgdeploy.cli import EXIT_INTERNAL, EXIT_INTERRUPTED, main
from pgdeploy.training.config_files import MAX_CONFIG_BYTES

ROOT = Path(__file__).resolve().parents[1]

#: Each command and the library call it makes, which the tests make fail.
CALLS = {
    "train": (["train", "-q", "--total-timesteps", "1"], pgdeploy.training.launch, "run_training"),
    "run": (["run", "MODEL/model.onnx"], pgdeploy.envs.play, "play_model"),
    "inspect": (["inspect", "MODEL/model.onnx"], pgdeploy.inspect, "describe"),
    "bench": (["bench", "MODEL/model.onnx"], pgdeploy.runtime.bench, "bench_model"),
}
UNFORESEEN = [ValueError, TypeError, KeyError, RuntimeError, AssertionError, RecursionError]


def invoke(args: list[str], model: Path) -> Any:
    args = [a.replace("MODEL", str(model)) for a in args]
    return CliRunner().invoke(main, args, prog_name="pgdeploy")


def one_error_line(result: Any) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("error", UNFORESEEN, ids=lambda e: e.__name__)
@pytest.mark.parametrize("command", list(CALLS))
def test_an_unforeseen_error_is_one_line_and_a_saved_traceback(
    command: str, error: type[Exception], exported_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, module, name = CALLS[command]

    def fail(*_: Any, **__: Any) -> Any:
        raise error("\x1b[2J deep inside")

    monkeypatch.setattr(module, name, fail)
    result = invoke(args, exported_model)
    assert result.exit_code == EXIT_INTERNAL
    line = one_error_line(result)
    assert f"internal error in 'pgdeploy {command}' ({error.__name__})" in line
    saved = Path(re.search(r"the full traceback is in (\S+);", line).group(1))  # type: ignore[union-attr]
    text = saved.read_text()
    assert "Traceback" in text and "deep inside" in text and f"def {name}" not in line
    saved.unlink()


@pytest.mark.parametrize("command", list(CALLS))
def test_ctrl_c_before_work_begins_is_one_line_and_130(
    command: str, exported_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, module, name = CALLS[command]

    def interrupt(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, interrupt)
    result = invoke(args, exported_model)
    assert result.exit_code == EXIT_INTERRUPTED
    assert "interrupted" in one_error_line(result)


def test_ctrl_c_while_torch_imports_in_a_real_process(tmp_path: Path) -> None:
    """The real command: a Ctrl-C arriving while torch imports (most of start-up)."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-m", "pgdeploy", "train", "-q", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == EXIT_INTERRUPTED, done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: interrupted before any work began; nothing was written"
    ]


def _fifo(tmp: Path) -> Path:
    path = tmp / "c.toml"
    os.mkfifo(path)
    return path


def _big(tmp: Path) -> Path:
    path = tmp / "c.toml"
    with path.open("wb") as handle:
        handle.truncate(MAX_CONFIG_BYTES + 1)
    return path


def _bytes(data: bytes, suffix: str = "toml") -> Any:
    def make(tmp: Path) -> Path:
        path = tmp / f"c.{suffix}"
        path.write_bytes(data)
        return path

    return make


SPECIAL_FILES = {
    "missing": (lambda tmp: tmp / "nope.toml", "does not exist"),
    "directory": (lambda tmp: tmp, "is a directory"),
    "fifo": (_fifo, "is a FIFO (named pipe)"),
    "/dev/zero": (lambda tmp: Path("/dev/zero"), "is a character device"),
    "/dev/null": (lambda tmp: Path("/dev/null"), "is a character device"),
    "too large": (_big, f"is larger than {MAX_CONFIG_BYTES} bytes"),
    "latin-1 at 0": (_bytes(b"\xe9t\xe9 = 1\n"), "invalid byte 0xe9 at byte offset 0"),
    "latin-1 at 12": (
        _bytes(b'env_id = "Ca\xffrtPole-v1"\n'),
        "invalid byte 0xff at byte offset 12",
    ),
    "lone continuation": (_bytes(b"seed = 1\n#\x80\n"), "invalid byte 0x80 at byte offset 10"),
    "utf-16": (_bytes("seed = 1\n".encode("utf-16")), "invalid byte 0xff at byte offset 0"),
}


@pytest.mark.parametrize("name", list(SPECIAL_FILES))
def test_a_config_that_is_not_a_small_utf8_file_is_named_as_what_it_is(
    name: str, tmp_path: Path
) -> None:
    """In a subprocess with a time limit: a FIFO or a device must never block the command."""
    make, expect = SPECIAL_FILES[name]
    path = make(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pgdeploy", "train", "--config", str(path), "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], done.stderr
    assert not (tmp_path / "runs").exists()


HUGE = "1" + "0" * 5000


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        ("json", f'{{"seed": {HUGE}}}'),
        ("toml", f"seed = {HUGE}\n"),
        ("yaml", f"seed: {HUGE}\n"),
        ("json", f'{{"learning_rate": 1{"0" * 400}}}'),
        ("json", f'{{"total_timesteps": 1{"0" * 30}}}'),
        ("json", f'{{"hidden_sizes": [1{"0" * 30}]}}'),
        ("json", f'{{"env_kwargs": {{"n": 1{"0" * 30}}}}}'),
        ("toml", f"solve_threshold = 1{'0' * 400}\n"),
    ],
)
def test_a_number_too_large_is_called_that(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"c.{suffix}"
    path.write_text(text)
    result = CliRunner().invoke(main, ["train", "--config", str(path), "-q"])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "a number too large" in line or "must be" in line, line
    assert "pickled" not in line and len(line) < 400


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES])
def test_os_errors_name_the_users_file_not_a_temp_name(
    code: int, exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "model.onnx"
    temp = tmp_path / ".model.onnx.k3j2x9_a.tmp"

    def fail(*_: Any, **__: Any) -> Any:
        raise OSError(code, os.strerror(code), str(temp))

    monkeypatch.setattr(pgdeploy.inspect, "describe", fail)
    line = one_error_line(invoke(["inspect", str(final)], exported_model))
    assert str(final) in line and ".tmp" not in line, line
