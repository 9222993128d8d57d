"""Progress: a live bar under a real pseudo-terminal, plain lines in a log file."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "pgdeploy", "train", "--env", "tests.tiny_envs:Guess-v0"]
ARGS = ["--num-envs", "2", "--total-timesteps", "400", "--no-stop-on-solve"]


def test_bar_under_a_pty(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    proc = subprocess.Popen(
        [*TRAIN, *ARGS, "--out", str(tmp_path)],
        cwd=ROOT,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "120"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode()
    assert "\r" in text  # the bar redraws in place
    assert "training: 100%" in text
    assert "episodes=" in text and "return=" in text and "steps/s=" in text
    assert "iter 1 steps=" not in text  # no plain log lines on a terminal


def test_plain_lines_in_a_log_and_quiet(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    with log.open("w") as handle:
        subprocess.run([*TRAIN, *ARGS, "--out", str(tmp_path)], cwd=ROOT, stderr=handle, check=True)
    text = log.read_text()
    assert "\r" not in text and "\x1b[" not in text
    assert text.startswith("iter 1 steps=")
    quiet = subprocess.run(
        [*TRAIN, *ARGS, "--out", str(tmp_path), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert quiet.stderr == ""
    assert quiet.stdout.startswith("budget of 400 env steps spent")
