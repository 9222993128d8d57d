"""Export: a checkpoint or an imported policy to verified ONNX, TorchScript and C files.

One pipeline (:mod:`pgdeploy.export.pipeline`) over sources and targets; the ``train``
extra. ``pgdeploy.inspect`` also reads ONNX files on a runtime-only install, so this
package imports nothing heavy until one of its names is used.
"""

from typing import TYPE_CHECKING, Any

from pgdeploy._optional import require

if TYPE_CHECKING:
    from pgdeploy.export.c.target import CExportReport
    from pgdeploy.export.formats import OPSET
    from pgdeploy.export.onnx_target import ExportReport
    from pgdeploy.export.pipeline import (
        DEFAULT_ATOL,
        export_c,
        export_checkpoint,
        export_foreign,
        export_policy_c,
        run_export,
    )

__all__ = [
    "DEFAULT_ATOL",
    "OPSET",
    "CExportReport",
    "ExportReport",
    "export_c",
    "export_checkpoint",
    "export_foreign",
    "export_policy_c",
    "run_export",
]
_PIPELINE = frozenset(__all__) - {"OPSET"}


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        require("torch", extra="train", feature="export")  # a runtime-only install: one line
        from pgdeploy.export import pipeline

        return getattr(pipeline, name)
    if name == "OPSET":
        from pgdeploy.export.formats import OPSET

        return OPSET
    raise AttributeError(f"module 'pgdeploy.export' has no attribute {name!r}")
