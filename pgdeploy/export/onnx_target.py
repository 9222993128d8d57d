"""The ONNX (+ TorchScript) target: each staged file loaded through its real deploy path.

``model.onnx`` is loaded back with :class:`pgdeploy.runtime.Agent` (which rebuilds the
canonical graph and compares it byte for byte) and ``model.torchscript.pt`` with
``torch.jit.load``; each is compared with the source's float policy on every
verification observation. TorchScript is written when the source has a torch module of
its own (a pgdeploy checkpoint); an imported policy gets ``model.onnx`` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pgdeploy.errors import ExportVerificationError, ModelLoadError
from pgdeploy.export.formats import ExportFiles, _quiet_torch, onnx_bytes, torchscript_bytes
from pgdeploy.export.reference import GraphFn
from pgdeploy.export.source import ExportSource
from pgdeploy.export.verify import FormatCheck, Reference, compare, require_passed
from pgdeploy.runtime.agent import Agent
from pgdeploy.runtime.pairing import ONNX_NAME, TORCHSCRIPT_NAME  # the names pairs are read by


@dataclass(frozen=True)
class ExportReport:
    onnx: FormatCheck
    torchscript: FormatCheck | None
    atol: float
    n_random: int
    n_on_policy: int
    notices: tuple[str, ...] = ()
    """Things the user should know, e.g. on-policy verification replaced by random
    observations because the env could not (or may not) be made."""
    origin: str = ""  #: e.g. "PPO from stable-baselines3 2.9.2" (imported policies)
    reference: str = "the PyTorch policy"  #: what the files were compared with
    provenance: Mapping[str, Any] | None = None  #: imported policies: where it came from

    @property
    def path(self) -> Path:
        """The ONNX file written."""
        return self.onnx.path

    def render(self) -> str:
        """What was verified, a line per file."""
        origin = f" ({self.origin})" if self.origin else ""
        return "\n".join(
            c.render(f"{c.path}{origin}", self.n_random, self.n_on_policy, self.reference)
            for c in (self.onnx, self.torchscript)
            if c is not None
        )


class OnnxTarget:
    """``model.onnx`` (and ``model.torchscript.pt``), each verified through its loader."""

    verifies = True

    def __init__(self, atol: float) -> None:
        self.atol = atol

    def build(self, source: ExportSource, *, seed: int) -> dict[str, bytes]:
        del seed  # nothing here is calibrated
        files = ExportFiles.make(source.spec, source.network, source.metadata, source.input_sha256)
        built = {ONNX_NAME: onnx_bytes(files)}
        if source.deployable is not None:
            built[TORCHSCRIPT_NAME] = torchscript_bytes(files, source.deployable)
        return built

    def verify(
        self,
        source: ExportSource,
        reference: Reference | None,
        staged: dict[str, Path],
        folder: Path,
        say: Callable[[str], None],
    ) -> ExportReport:
        assert reference is not None  # this target always verifies
        checks: list[FormatCheck] = []
        for name, temp in staged.items():
            fmt = "onnx" if name == ONNX_NAME else "torchscript"
            say(f"verifying {name}")
            try:
                graph = _onnx_graph(temp) if fmt == "onnx" else _torchscript_graph(temp)
            except ModelLoadError as exc:  # e.g. the runtime's probe finds NaN probabilities
                raise ExportVerificationError(
                    f"{fmt} export fails the runtime's load checks: {exc}; "
                    f"nothing was written ({folder} was left as it was)"
                ) from exc
            check = compare(fmt, folder / name, graph, source.spec, reference)
            checks.append(
                require_passed(check, atol=self.atol, folder=folder, reference=reference.describe)
            )
        return ExportReport(
            onnx=checks[0],
            torchscript=checks[1] if len(checks) > 1 else None,
            atol=self.atol,
            n_random=source.plan.n_random,
            n_on_policy=source.plan.n_on_policy,
            notices=source.plan.notices,
            origin=source.origin,
            reference=reference.describe,
            provenance=source.provenance,
        )


def _onnx_graph(path: Path) -> Agent:
    return Agent.load(path, out_of_bounds="clip")


def _torchscript_graph(path: Path) -> GraphFn:
    with _quiet_torch():
        module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    return module  # type: ignore[no-any-return]
