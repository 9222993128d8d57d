"""The exported file formats: the canonical ONNX graph and the TorchScript module of a policy.

ONNX is not traced: :func:`~pgdeploy.runtime.policy_graph.build_model` writes the one
graph the runtime will accept for the spec and :class:`PolicyNetwork`, so the file that
export verifies is byte for byte the graph every loader rebuilds. ``onnx.checker`` still
checks it here, against the ONNX specification.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pgdeploy import __version__
from pgdeploy._optional import require
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.runtime.pairing import TORCHSCRIPT_METADATA, check_pair, make_pair_id, read_pair_id
from pgdeploy.runtime.policy_graph import OPSET, build_model
from pgdeploy.spec import PolicySpec, spec_to_metadata

__all__ = [
    "OPSET",
    "TORCHSCRIPT_METADATA",
    "ExportFiles",
    "load_torchscript",
    "onnx_bytes",
    "torchscript_bytes",
]


@dataclass(frozen=True)
class ExportFiles:
    """The metadata both files of one export carry (the same pair id in each)."""

    spec: PolicySpec
    network: PolicyNetwork
    metadata: Mapping[str, str]

    @classmethod
    def make(
        cls,
        spec: PolicySpec,
        network: PolicyNetwork,
        training: Mapping[str, Any],
        checkpoint_sha256: str,
    ) -> ExportFiles:
        """Metadata with a pair id over the ONNX graph (written without it) and the checkpoint."""
        description = json.loads(json.dumps(network.description()))

        def metadata(pair_id: str | None) -> dict[str, str]:
            return spec_to_metadata(
                spec,
                training=training,
                pgdeploy_version=__version__,
                network=description,
                pair_id=pair_id,
            )

        unpaired = build_model(spec, network, metadata(None))
        return cls(spec, network, metadata(make_pair_id(unpaired, checkpoint_sha256)))


def onnx_bytes(files: ExportFiles) -> bytes:
    """The canonical graph with the export's metadata, checked by ``onnx.checker``."""
    onnx = require("onnx", extra="train", feature="ONNX export")
    data = build_model(files.spec, files.network, files.metadata)
    onnx.checker.check_model(onnx.load_model_from_string(data), full_check=True)
    return data


def torchscript_bytes(files: ExportFiles, deployable: torch.nn.Module) -> bytes:
    """The scripted module, with the same metadata as the ONNX file in an extra file."""
    buffer = io.BytesIO()
    with _quiet_torch():
        scripted = torch.jit.script(deployable)
        torch.jit.save(
            scripted,
            buffer,
            _extra_files={TORCHSCRIPT_METADATA: json.dumps(dict(files.metadata))},
        )
    return buffer.getvalue()


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """``torch.jit.load`` of an exported ``model.torchscript.pt`` on the CPU, refused in
    one line when a ``model.onnx`` beside it belongs to another export
    (:mod:`pgdeploy.runtime.pairing`).

    A TorchScript file is a program: load only files you trust.
    """
    path = Path(path)
    check_pair(path, read_pair_id(path))
    with _quiet_torch():
        return torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call,no-any-return]


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """torch.jit is deprecated in torch 2.9+ but still the TorchScript path; hush its notices."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            yield
        finally:
            onnx_logger.setLevel(level)
