"""The documentation runs.

- Every ```python block of README.md and docs/*.md is executed, in order, one namespace
  per file (so a block may use what an earlier one of its file defined), in a temporary
  working folder that sees the repository's ``models/`` (blocks are written to run from
  the repository root, and whatever they write lands in the temporary folder).
- The JavaScript snippet of docs/graph-contract.md runs under Node.js with
  onnxruntime-node and must print what onnxruntime in Python computes; skipped, with the
  reason, where ``node``/``npm`` are missing or the package cannot be installed.
- docs/cli.md is what ``tools/gen_cli_docs.py`` generates from the CLI's --help.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)

#: onnxruntime-node for the JavaScript snippet, installed once into this cache folder
#: (``make docs-js`` does the same install ahead of time).
ORT_NODE = "onnxruntime-node@1.30.0"
#: ``--ignore-scripts``: the package's install script only fetches CUDA binaries.
NPM_INSTALL = ("npm", "install", "--ignore-scripts", "--no-audit", "--no-fund")
NODE_CACHE = Path(
    os.environ.get("PGDEPLOY_NODE_CACHE", Path.home() / ".cache" / "pgdeploy" / "node")
)


def code_blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """(first line number, code) of each fenced block of ``language`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start(2)) + 1, match.group(2))
        for match in FENCE.finditer(text)
        if match.group(1) == language
    ]


def test_the_block_finder_finds_blocks() -> None:
    blocks = code_blocks(ROOT / "README.md", "python")
    assert len(blocks) >= 2 and all("import" in code for _, code in blocks)
    assert code_blocks(ROOT / "docs" / "graph-contract.md", "javascript")


@contextlib.contextmanager
def in_scratch_folder(tmp_path: Path) -> Iterator[None]:
    """cwd = a temporary folder where ``models/`` is the repository's."""
    (tmp_path / "models").symlink_to(ROOT / "models", target_is_directory=True)
    previous = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield
    finally:
        os.chdir(previous)


@pytest.mark.parametrize(
    "path",
    [path for path in DOC_FILES if code_blocks(path, "python")],
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_python_blocks_run(path: Path, tmp_path: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__docs__"}
    with in_scratch_folder(tmp_path):
        for line, code in code_blocks(path, "python"):
            exec(compile(code, f"{path.relative_to(ROOT)}:{line}", "exec"), namespace)


def test_cli_reference_has_not_drifted_from_the_cli() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_cli_docs", ROOT / "tools" / "gen_cli_docs.py"
    )
    assert spec is not None and spec.loader is not None
    gen: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert gen.render(current) == current, "docs/cli.md is stale: run python tools/gen_cli_docs.py"


def node_modules() -> Path:
    """The cache's node_modules holding onnxruntime-node, installed on first use."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("the JavaScript snippet needs node and npm on PATH (not found)")
    NODE_CACHE.mkdir(parents=True, exist_ok=True)
    with (NODE_CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other test runs may share the cache
        if not (NODE_CACHE / "node_modules" / "onnxruntime-node").is_dir():
            (NODE_CACHE / "package.json").write_text('{"private": true}\n')
            done = subprocess.run(
                [*NPM_INSTALL, "--prefix", str(NODE_CACHE), ORT_NODE],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                pytest.skip(f"npm install {ORT_NODE} into {NODE_CACHE} failed: {last}")
    return NODE_CACHE / "node_modules"


def test_make_docs_js_installs_the_version_the_test_uses() -> None:
    assert (
        f"npm install {' '.join(NPM_INSTALL[2:])} --prefix $(PGDEPLOY_NODE_CACHE) {ORT_NODE}"
        in (ROOT / "Makefile").read_text(encoding="utf-8")
    )


def test_javascript_snippet_matches_python_onnxruntime(tmp_path: Path) -> None:
    import onnxruntime as ort

    (_, code), *others = code_blocks(ROOT / "docs" / "graph-contract.md", "javascript")
    assert not others, "test each JavaScript block of docs/graph-contract.md"
    script = tmp_path / "greedy.js"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        ["node", str(script)],
        cwd=ROOT,
        env={**os.environ, "NODE_PATH": str(node_modules())},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout.strip().splitlines()[-1])

    # The same inputs as the snippet, through onnxruntime in Python.
    session = ort.InferenceSession(str(ROOT / "models" / "CartPole-v1" / "model.onnx"))
    obs = np.array([[0.01, 0.2, -0.03, -0.3]], np.float32)
    probs, greedy, sampled = session.run(
        None, {"obs": obs, "uniform": np.full((1, 1), 0.5, np.float32)}
    )
    np.testing.assert_allclose(printed["probs"], probs[0], rtol=0, atol=1e-6)
    assert (printed["greedy"], printed["sampled"]) == (int(greedy[0]), int(sampled[0]))
