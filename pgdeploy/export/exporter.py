"""Export a checkpoint to ONNX and TorchScript, verified against the PyTorch policy first.

All or nothing: the output folder is checked first (writable, no folder in the way), then
both files are written to temp names in it, each loaded back through its real deploy path
(``pgdeploy.runtime.Agent`` for ONNX, ``torch.jit.load`` for TorchScript) and compared
with the training policy on thousands of observations; only when both pass are they
renamed into place, together (a failed rename puts the first back). Any failure leaves
the folder exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pgdeploy._io import check_writable, commit_staged, stage_bytes
from pgdeploy.errors import ExportVerificationError
from pgdeploy.export.formats import _quiet_torch, onnx_bytes, torchscript_bytes
from pgdeploy.export.reference import GraphFn, TorchAgent
from pgdeploy.export.verify import FormatCheck, compare, verification_observations
from pgdeploy.runtime.agent import Agent
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.policy import DeployablePolicy

#: Largest allowed |p_export - p_torch| over all verification observations (float32).
DEFAULT_ATOL = 1e-6


@dataclass(frozen=True)
class ExportReport:
    onnx: FormatCheck
    torchscript: FormatCheck
    atol: float
    n_random: int
    n_on_policy: int


def export_checkpoint(
    checkpoint_path: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    atol: float = DEFAULT_ATOL,
    n_random: int = 4096,
    n_on_policy: int = 4096,
    seed: int = 0,
) -> ExportReport:
    """Write ``model.onnx`` and ``model.torchscript.pt`` beside the checkpoint (or in out_dir)."""
    checkpoint = load_checkpoint(checkpoint_path)
    folder = Path(out_dir) if out_dir is not None else Path(checkpoint_path).parent
    check_writable(folder, [name for _, name, _ in _FORMATS])
    policy = checkpoint.build_policy()
    obs = verification_observations(policy, n_random=n_random, n_on_policy=n_on_policy, seed=seed)
    uniforms = np.random.default_rng(seed).random(len(obs), dtype=np.float32)
    reference = TorchAgent.from_policy(policy).run_graph(obs, uniforms)
    deployable = DeployablePolicy(policy).eval()
    staged: list[tuple[Path, Path]] = []
    checks = []
    try:
        for fmt, name, build in _FORMATS:
            final = folder / name
            staged.append((stage_bytes(final, build(deployable, checkpoint)), final))
            graph = _LOADERS[fmt](staged[-1][0])
            check = compare(fmt, final, graph, checkpoint.spec, obs, uniforms, reference)
            if check.max_abs_diff > atol or not check.passed_actions:
                raise ExportVerificationError(
                    f"{fmt} export differs from the PyTorch policy: max |dp| = "
                    f"{check.max_abs_diff:.3g} (tolerance {atol:.3g}), "
                    f"{check.greedy_mismatches} greedy and {check.sampled_mismatches} sampled "
                    f"action mismatches over {len(obs)} observations; {folder} was left as it was"
                )
            checks.append(check)
        commit_staged(staged)
    finally:
        for temp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    return ExportReport(
        onnx=checks[0], torchscript=checks[1], atol=atol, n_random=n_random, n_on_policy=n_on_policy
    )


def _onnx_graph(path: Path) -> Agent:
    return Agent.load(path, out_of_bounds="clip")


def _torchscript_graph(path: Path) -> GraphFn:
    with _quiet_torch():
        module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    return module  # type: ignore[no-any-return]


_FORMATS = (
    ("onnx", "model.onnx", onnx_bytes),
    ("torchscript", "model.torchscript.pt", torchscript_bytes),
)
_LOADERS: dict[str, Callable[[Path], GraphFn | Agent]] = {
    "onnx": _onnx_graph,
    "torchscript": _torchscript_graph,
}
