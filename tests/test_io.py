"""Atomic writes: a process killed mid-write leaves the old file or the new one, never a partial."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pgdeploy._io import atomic_write, atomic_write_text
from pgdeploy.training.checkpoint import load_checkpoint

# Imports torch once, then forks writers and SIGKILLs them at random moments; after every
# kill it loads the checkpoint under its final name and reports what it found.
_KILL_LOOP = textwrap.dedent(
    """
    import json, os, random, signal, sys, time
    import torch
    from pgdeploy.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from pgdeploy.training.config import TrainConfig
    from pgdeploy.envs.making import policy_spec
    from pgdeploy.training.policy import SoftmaxPolicy

    path, kills = sys.argv[1], int(sys.argv[2])
    config = TrainConfig(hidden_sizes=(256, 256))
    spec = policy_spec(config.env_id)
    policy = SoftmaxPolicy(spec, hidden_sizes=config.hidden_sizes, obs_clip=config.obs_clip)
    base = Checkpoint(config=config, spec=spec, state_dict=policy.state_dict())
    save_checkpoint(path, base)
    rng, seen = random.Random(0), []
    for kill in range(kills):
        pid = os.fork()
        if pid == 0:  # writer: save forever, each save a new step number
            step = kill * 1_000_000
            while True:
                step += 1
                base.training = {"step": step}
                save_checkpoint(path, base)
        time.sleep(rng.uniform(0.002, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        try:
            seen.append(load_checkpoint(path).training.get("step", 0))
        except Exception as exc:
            seen.append(repr(exc))
    print(json.dumps(seen))
    """
)


def test_sigkill_during_checkpoint_writes_never_leaves_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    kills = 25
    out = subprocess.run(
        [sys.executable, "-c", _KILL_LOOP, str(path), str(kills)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(seen) == kills
    assert all(isinstance(step, int) for step in seen), seen  # every kill left a loadable file
    assert seen == sorted(seen)  # and never an older one than before
    load_checkpoint(path)
    # Kills landed mid-write (temp files were abandoned), so the scenario was exercised.
    leftovers = list(tmp_path.glob(".model.pt.*.tmp"))
    assert leftovers, "no kill interrupted a write; the test proved nothing"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["model.pt"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "a.txt", "old")

    def explode(handle: object) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, explode)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_creates_folder_and_normal_permissions(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "new" / "b.txt", "hello")
    assert path.read_text() == "hello"
    assert path.stat().st_mode & 0o777 != 0o600  # not mkstemp's private mode
