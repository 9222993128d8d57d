"""The command's process: heavy imports with the collector paused, an exit without teardown
that still runs atexit handlers, flushes output, keeps exit codes and waits for threads."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pgdeploy import _process
from pgdeploy._optional import require

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "CartPole-v1" / "model.onnx"


def _python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _pgdeploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgdeploy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_paused_restores_the_collector_as_it_was(enabled: bool) -> None:
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with _process.gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError, match="inside"), _process.gc_paused():
            raise RuntimeError("inside")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_outside_the_command_nothing_is_frozen() -> None:
    before = gc.get_freeze_count()
    require("json", extra="train", feature="a test")
    assert gc.get_freeze_count() == before
    assert gc.isenabled()


def test_in_the_command_process_a_heavy_import_is_frozen_and_collection_resumes() -> None:
    result = _python(
        """
        import gc
        from pgdeploy import _process
        from pgdeploy._optional import require
        _process.claim_process()
        before = gc.get_freeze_count()
        require("xml.dom.minidom", extra="train", feature="a test")
        print(gc.get_freeze_count() > before, gc.isenabled())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [("None", 0, ""), ("3", 3, ""), ("'bad thing'", 1, "bad thing\n"), ("True", 1, "")],
)
def test_exit_now_runs_atexit_handlers_flushes_and_keeps_the_status(
    tmp_path: Path, code: str, status: int, stderr: str
) -> None:
    marker = tmp_path / "atexit-ran"
    result = _python(
        f"""
        import atexit, pathlib, sys
        from pgdeploy._process import exit_now
        atexit.register(lambda: pathlib.Path(sys.argv[1]).write_text("yes"))
        sys.stdout.write("unflushed output " * 1000)  # buffered: a pipe is not a tty
        exit_now({code})
        print("not reached")
        """,
        str(marker),
    )
    assert result.returncode == status
    assert result.stdout == "unflushed output " * 1000
    assert result.stderr == stderr
    assert marker.read_text() == "yes"


def test_exit_now_waits_for_a_running_non_daemon_thread(tmp_path: Path) -> None:
    marker = tmp_path / "thread-finished"
    result = _python(
        """
        import pathlib, sys, threading, time
        from pgdeploy._process import exit_now
        def work():
            time.sleep(0.3)
            pathlib.Path(sys.argv[1]).write_text("done")
        threading.Thread(target=work).start()
        exit_now(4)
        """,
        str(marker),
    )
    assert result.returncode == 4, result.stderr
    assert marker.read_text() == "done"


def test_the_command_keeps_its_exit_codes_and_complete_output() -> None:
    inspected = _pgdeploy("inspect", str(SHIPPED), "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["metadata"]["spec"]["env_id"] == "CartPole-v1"
    missing = _pgdeploy("run", "/nonexistent/model.onnx")
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: ") and "nonexistent" in missing.stderr
    usage = _pgdeploy("run", str(SHIPPED), "--episodes", "zero")
    assert usage.returncode == 2
    assert "'zero' is not a valid integer" in usage.stderr
