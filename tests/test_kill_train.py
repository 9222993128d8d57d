"""Runs are never lost: a killed ``pgdeploy train`` leaves a folder that describes its
checkpoint, and Ctrl-C / SIGTERM save the run before exiting."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.train import train

ROOT = Path(__file__).resolve().parents[1]
GUESS = "tests.tiny_envs:Guess-v0"
PNG_END = b"IEND\xaeB`\x82"
#: A run that saves after every iteration and would go on for minutes.
ARGS = ["--env", GUESS, "--num-envs", "2", "--hidden-sizes", "8", "--total-timesteps",
        "10000000", "--no-stop-on-solve", "--checkpoint-every", "1", "-q"]  # fmt: skip


def folder_problem(folder: Path) -> str | None:
    """What is inconsistent in a run folder (None: it describes its checkpoint, or is empty)."""
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    if "model.pt" not in names:
        return f"artefacts without a checkpoint: {names}" if names else None
    checkpoint = load_checkpoint(folder / "model.pt")
    with (folder / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    summary = checkpoint.training
    if len(rows) != summary["iterations"] or int(rows[-1]["env_steps"]) != summary["env_steps"]:
        return f"metrics has {len(rows)} rows, checkpoint {summary['iterations']} iterations"
    if json.loads((folder / "config.json").read_text()) != checkpoint.config.to_dict():
        return "config.json is not the checkpoint's config"
    png = (folder / "learning_curve.png").read_bytes()
    if not (png.startswith(b"\x89PNG") and png.endswith(PNG_END)):
        return "learning_curve.png is truncated"
    return None


# Imports torch once, then forks `pgdeploy train` (the real CLI) and SIGKILLs it at random
# moments; the first child starts the run, later ones resume it. Reports each folder state.
_KILL_LOOP = textwrap.dedent(
    """
    import json, os, random, signal, sys, time
    from pathlib import Path
    import PIL.Image, torch  # imported once, before the forks
    from pgdeploy.cli import main
    from tests.test_kill_train import ARGS, folder_problem
    from pgdeploy.training.checkpoint import load_checkpoint

    folder, kills, low, high = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    rng, seen = random.Random(0), []
    for kill in range(kills):
        has_run = os.path.exists(os.path.join(folder, "model.pt"))
        args = ["--resume", folder] if has_run else ["--out", folder, "--overwrite"]
        pid = os.fork()
        if pid == 0:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1), os.dup2(null, 2)
            try:
                main(["train", *ARGS, *args], standalone_mode=False)
            finally:
                os._exit(0)
        # After the first kill (which may land before any save), wait for a new save, so
        # every kill lands in a run that is training and saving, at a random moment of it.
        model = Path(folder, "model.pt")
        stamp = model.stat().st_mtime_ns if model.exists() else None
        deadline = time.monotonic() + 120
        while kill and time.monotonic() < deadline:
            if model.exists() and model.stat().st_mtime_ns != stamp:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(low, high))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        problem = folder_problem(Path(folder))
        saved = Path(folder, "model.pt").exists()
        its = load_checkpoint(Path(folder, "model.pt")).training["iterations"] if saved else 0
        seen.append({"problem": problem, "iterations": its})
    print(json.dumps(seen))
    """
)


def kill_repeatedly(folder: Path, kills: int, low: float, high: float) -> list[dict[str, object]]:
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _KILL_LOOP, str(folder), str(kills), str(low), str(high)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def check_kills(folder: Path, seen: list[dict[str, object]]) -> None:
    assert [s["problem"] for s in seen] == [None] * len(seen), seen
    iterations = [int(str(s["iterations"])) for s in seen]
    assert iterations == sorted(iterations), "a kill lost saved iterations"
    assert len(set(iterations) - {0}) >= 2, "kills never landed in a resumed run"
    # The last checkpoint loads and the run resumes from it, counters continuing.
    checkpoint = load_checkpoint(folder / "model.pt")
    done = checkpoint.training["env_steps"]
    more = dataclasses.replace(checkpoint.config, total_timesteps=done + 32, checkpoint_every=0)
    result = train(
        more,
        out_dir=folder,
        resume_from=checkpoint,
    )
    assert result.summary["env_steps"] >= done + 32
    assert result.history[0].iteration == 1 and result.new_iterations >= 1
    assert folder_problem(folder) is None


def test_sigkill_at_random_moments_never_loses_the_run(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    check_kills(folder, kill_repeatedly(folder, kills=8, low=0.0, high=0.3))


@pytest.mark.slow
def test_sigkill_many_times(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    check_kills(folder, kill_repeatedly(folder, kills=60, low=0.0, high=0.5))


@pytest.mark.parametrize(
    "sig, code, vectorization",
    [
        (signal.SIGINT, 130, "sync"),
        (signal.SIGTERM, 143, "sync"),
        # A terminal's Ctrl-C reaches the whole process group, env workers included: they
        # ignore it, so the parent alone stops the run and saves it.
        (signal.SIGINT, 130, "subprocess"),
        (signal.SIGTERM, 143, "subprocess"),
    ],
)
def test_ctrl_c_and_sigterm_save_and_say_how_to_resume(
    tmp_path: Path, sig: signal.Signals, code: int, vectorization: str
) -> None:
    folder = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgdeploy", "train", *ARGS, "--out", str(folder),
         "--vectorization", vectorization],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # its own process group, as a terminal would give it
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (folder / "model.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, sig)  # the whole group, as Ctrl-C in a terminal does
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, (stdout, stderr)
    assert "Traceback" not in stderr
    lines = stdout.strip().splitlines()
    assert f"interrupted by {sig.name} after" in lines[0]
    assert lines[1] == f"saved; continue this run with: pgdeploy train --resume {folder}"
    assert lines[-1].startswith(("SOLVED", "NOT SOLVED"))
    assert folder_problem(folder) is None
    checkpoint = load_checkpoint(folder / "model.pt")
    assert checkpoint.training["interrupted"] == sig.name
    assert checkpoint.training["iterations"] >= 1
