"""Export: a checkpoint to verified ONNX, TorchScript and C files (the ``train`` extra).

``pgdeploy.inspect`` also reads ONNX files on a runtime-only install, so this
package imports nothing heavy until one of its names is used.
"""

from typing import TYPE_CHECKING, Any

from pgdeploy._optional import require

if TYPE_CHECKING:
    from pgdeploy.export.c.target import CExportReport, export_c
    from pgdeploy.export.exporter import DEFAULT_ATOL, ExportReport, export_checkpoint
    from pgdeploy.export.formats import OPSET

__all__ = [
    "DEFAULT_ATOL",
    "OPSET",
    "CExportReport",
    "ExportReport",
    "export_c",
    "export_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name in ("DEFAULT_ATOL", "ExportReport", "export_checkpoint"):
        require("torch", extra="train", feature="export")  # a runtime-only install: one line
        from pgdeploy.export import exporter

        return getattr(exporter, name)
    if name in ("CExportReport", "export_c"):
        require("torch", extra="train", feature="export")  # the C target loads a checkpoint too
        from pgdeploy.export.c import target as c_target

        return getattr(c_target, name)
    if name == "OPSET":
        from pgdeploy.export.formats import OPSET

        return OPSET
    raise AttributeError(f"module 'pgdeploy.export' has no attribute {name!r}")
