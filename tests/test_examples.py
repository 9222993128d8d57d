"""examples/ keep working: each runs against a real exported model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_embed_controller_runs_without_gymnasium(exported_model: Path) -> None:
    # -X importtime-free check: the example must not pull in gymnasium or torch.
    code = (
        "import runpy, sys; sys.argv = ['embed_controller.py', sys.argv[1], '--episodes', '2'];"
        "runpy.run_path(sys.argv[0] if False else 'examples/embed_controller.py',"
        " run_name='__main__');"
        "bad = [m for m in ('gymnasium', 'torch') if m in sys.modules];"
        "assert not bad, bad"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(exported_model / "model.onnx")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        match = re.fullmatch(r"episode \d: balanced (\d+) steps, act [\d.]+ us/step", line)
        assert match is not None, line
        assert 1 <= int(match.group(1)) <= 500
