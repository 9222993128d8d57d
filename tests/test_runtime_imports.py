"""The runtime is deployable on its own: no torch, no gymnasium, no onnx in its imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("torch", "gymnasium", "onnx", "matplotlib", "click")


def imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_import_runtime_leaves_torch_and_gymnasium_unimported() -> None:
    assert imported_after("import pgdeploy.runtime") == set()


def test_import_pgdeploy_is_light() -> None:
    assert imported_after("import pgdeploy") == set()


def test_loading_and_acting_stays_torch_free(exported_model: Path) -> None:
    code = (
        "import numpy as np\n"
        "from pgdeploy.runtime import Agent\n"
        f"agent = Agent.load({str(exported_model / 'model.onnx')!r}, seed=0)\n"
        "agent.act(np.zeros(4, np.float32)); agent.act_batch(np.zeros((3, 4), np.float32))"
    )
    assert imported_after(code) == set()
