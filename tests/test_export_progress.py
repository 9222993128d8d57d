"""Export progress: one plain line per stage in logs, one rewritten line on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

from pgdeploy.export.progress import ExportProgress


def test_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = ExportProgress(stream, force_tty=False)
    progress("collecting observations")
    progress("exporting model.onnx")
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert lines[0].startswith("export [") and lines[1].endswith("exporting model.onnx")


def test_one_rewritten_line_on_a_terminal_cleared_at_the_end() -> None:
    stream = io.StringIO()
    progress = ExportProgress(stream, force_tty=True)
    progress("collecting observations")
    progress("verifying model.onnx")
    progress.close()
    text = stream.getvalue()
    assert "\n" not in text and text.count("\r") == 3 and text.endswith("\r\x1b[K")
    assert "verifying model.onnx" in text


def test_export_reports_each_stage(exported_model: Path, tmp_path: Path) -> None:
    from pgdeploy.export import export_checkpoint

    stages: list[str] = []
    export_checkpoint(
        exported_model / "model.pt",
        out_dir=tmp_path,
        n_random=64,
        n_on_policy=64,
        progress=stages.append,
    )
    assert stages[0] == "collecting 64 random and 64 on-policy observations"
    assert stages[1:] == [
        "verifying model.onnx",
        "verifying model.torchscript.pt",
    ]
