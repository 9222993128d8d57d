"""Progress: a live bar on a terminal, throttled plain lines elsewhere, nothing when quiet.

The reporter writes to any text stream, so a ``StringIO`` tests it in milliseconds; one
test keeps a real pseudo-terminal, because only there does the CLI choose the bar itself.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.training.callbacks import IterationStats, ProgressReporter

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train", "--env", "tests.tiny_envs:Guess-v0"]
ARGS = ["--num-envs", "2", "--total-timesteps", "400", "--no-stop-on-solve"]


def stats(iteration: int) -> IterationStats:
    return IterationStats(
        iteration=iteration,
        env_steps=100 * iteration,
        episodes=10 * iteration,
        batch_mean_return=float(iteration),
        window_mean_return=iteration + 0.25,
        batch_mean_length=8.0,
        loss=0.0,
        entropy=0.5,
        grad_norm=1.0,
        wall_seconds=0.1 * iteration,
        steps_per_second=1234.0,
    )


def report(reporter: ProgressReporter, iterations: int) -> None:
    for i in range(1, iterations + 1):
        reporter(stats(i))
    reporter.close()


def test_plain_lines_off_a_terminal() -> None:
    stream = io.StringIO()
    report(ProgressReporter(300, stream=stream, force_tty=False, log_interval=0.0), 3)
    assert stream.getvalue().splitlines() == [
        f"iter {i} steps={100 * i} episodes={10 * i} return={i}.2 steps/s=1,234" for i in (1, 2, 3)
    ]


def test_plain_lines_at_most_once_per_interval() -> None:
    stream = io.StringIO()
    report(ProgressReporter(300, stream=stream, force_tty=False, log_interval=3600.0), 3)
    assert stream.getvalue().splitlines() == [
        "iter 1 steps=100 episodes=10 return=1.2 steps/s=1,234"
    ]


def test_bar_redraws_in_place_with_live_figures() -> None:
    stream = io.StringIO()
    report(ProgressReporter(300, stream=stream, force_tty=True), 3)
    text = stream.getvalue()
    assert "\r" in text and "training: 100%" in text
    assert "episodes=30 return=3.2 steps/s=1,234" in text
    assert "iter " not in text  # no plain log lines on a terminal


def test_cli_logs_plain_lines_to_a_pipe_and_nothing_when_quiet(tmp_path: Path) -> None:
    runner = CliRunner()
    logged = runner.invoke(main, [*TRAIN, *ARGS, "--out", str(tmp_path)])
    assert logged.exit_code == 0, logged.output
    assert re.match(r"iter 1 steps=\d+ episodes=\d+ return=", logged.stderr), logged.stderr
    assert "\r" not in logged.stderr and "\x1b[" not in logged.stderr
    quiet = runner.invoke(main, [*TRAIN, *ARGS, "--out", str(tmp_path), "--overwrite", "--quiet"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    assert quiet.stdout.startswith("budget of 400 env steps spent")


def test_bar_under_a_pty(tmp_path: Path) -> None:
    """The whole CLI under a real terminal: it detects the TTY and draws the bar."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgdeploy", *TRAIN, *ARGS, "--out", str(tmp_path)],
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
