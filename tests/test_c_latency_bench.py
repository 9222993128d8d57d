"""benchmarks/c_latency.py keeps working: it builds the C harness and times all three."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on PATH")
@pytest.mark.slow
def test_c_latency_benchmark_runs_and_reports_three_medians(tmp_path: Path) -> None:
    out = tmp_path / "c_latency.json"
    args = ["--rounds", "1", "--c-calls", "20000", "--agent-calls", "2000"]
    done = subprocess.run(
        [
            sys.executable,
            "benchmarks/c_latency.py",
            "models/CartPole-v1/model.pt",
            *args,
            "--reference-calls",
            "200",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
        check=True,
    )
    rows = re.findall(
        r"^(C pgdeploy_sample|Agent\.act|select_action).*?([\d.]+)x$", done.stdout, re.M
    )
    assert [name for name, _ in rows] == ["C pgdeploy_sample", "Agent.act", "select_action"]
    assert float(rows[0][1]) == 1.0  # C against itself
    figures = json.loads(out.read_text())
    assert set(figures["median_us"]) == {"c", "agent", "reference"}
    assert all(v > 0 for v in figures["median_us"].values())
    assert len(re.findall(r"^goal .*: (met|NOT met)$", done.stdout, re.M)) == 2
