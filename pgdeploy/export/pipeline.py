"""The one export pipeline: a source, a target, then load -> build -> verify -> write.

Every export reads top to bottom in :func:`run_export`. A *source*
(:mod:`pgdeploy.export.source`: a checkpoint, a policy in memory, an SB3 or CleanRL file)
gives the spec, the :class:`~pgdeploy.runtime.network.PolicyNetwork`, the float policy to
verify against and the observations; a *target* (:class:`~pgdeploy.export.onnx_target.OnnxTarget`,
:class:`~pgdeploy.export.c.target.CTarget` in float32 or int8) turns it into bytes, checks
the staged bytes and reports. All or nothing: the output folder is checked first, every
file is staged under a temp name beside its final one, verified there, and only when the
whole set passed is it renamed into place together (:func:`pgdeploy._io.commit_staged`;
a failed rename puts the earlier ones back). Any failure leaves the folder as it was.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from pgdeploy._io import check_writable, commit_staged, stage_bytes
from pgdeploy.errors import InvalidArgumentError
from pgdeploy.export.c.quantized_check import DEFAULT_MIN_AGREEMENT
from pgdeploy.export.c.target import CExportReport, CTarget
from pgdeploy.export.observations import VerificationPlan
from pgdeploy.export.onnx_target import ExportReport, OnnxTarget
from pgdeploy.export.source import (
    ExportSource,
    checkpoint_source,
    imported_source,
    policy_source,
)
from pgdeploy.export.verify import Reference
from pgdeploy.training.policy import SoftmaxPolicy

#: Absolute floor of the allowed |p_export - p_source|, added to the float32 bound that
#: :func:`~pgdeploy.export.verify.probability_tolerance` derives per observation.
DEFAULT_ATOL = 1e-9
Report = TypeVar("Report", covariant=True)
Say = Callable[[str], None]


class Target(Protocol[Report]):
    """What the pipeline asks of a target (ONNX + TorchScript, C)."""

    verifies: bool  #: whether it needs the reference (False: write unverified)

    def build(self, source: ExportSource, *, seed: int) -> dict[str, bytes]:
        """The files, by final name in commit order; refusals raise before any is written."""

    def verify(
        self,
        source: ExportSource,
        reference: Reference | None,
        staged: dict[str, Path],
        folder: Path,
        say: Say,
    ) -> Report:
        """Check the staged bytes (raise to refuse) and say how they compared."""


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch thread for an export (as a decorator too), the caller's count restored.

    Verification runs many small forward passes, and waking torch's thread pool for each
    costs far more than the pass itself (docs/performance.md).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_export(
    source: ExportSource,
    target: Target[Report],
    folder: Path,
    *,
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
    progress: Say | None = None,
) -> Report:
    """Build ``target``'s files for ``source``, verify the staged bytes, write them all or
    none. ``progress`` is called with a short line as each stage starts."""
    say = progress or (lambda line: None)
    files = target.build(source, seed=seed)
    check_writable(folder, list(files))
    reference = None
    if target.verifies:
        plan = source.plan
        say(f"collecting {plan.n_random} random and {plan.n_on_policy} on-policy observations")
        obs = source.observations(seed)
        reference = source.reference(obs, seed=seed, atol=atol)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, data in files.items():
            staged.append((stage_bytes(folder / name, data), folder / name))
        report = target.verify(
            source, reference, {final.name: temp for temp, final in staged}, folder, say
        )
        commit_staged(staged)
    finally:
        for temp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    return report


@one_torch_thread()
def export_checkpoint(
    checkpoint_path: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    atol: float = DEFAULT_ATOL,
    n_random: int = 4096,
    n_on_policy: int = 4096,
    seed: int = 0,
    env_id: str | None = None,
    trust_env_module: bool = False,
    progress: Say | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    wrapper: str | None = None,
) -> ExportReport:
    """Write ``model.onnx`` and ``model.torchscript.pt`` beside the checkpoint (or in out_dir).

    On-policy verification plays the run's env (its id, recorded ``env_kwargs`` and
    ``wrapper``; the user's ``env_id``, ``env_kwargs`` and ``wrapper`` replace those parts)
    where :func:`pgdeploy.envs.recipe.run_env` allows it (``trust_env_module`` allows a
    recorded module); otherwise those observations are random ones and the report's
    ``notices`` says so.
    """
    check_atol(atol)
    source = checkpoint_source(
        checkpoint_path,
        env_id=env_id,
        trust_env_module=trust_env_module,
        n_random=n_random,
        n_on_policy=n_on_policy,
        env_kwargs=env_kwargs,
        wrapper=wrapper,
    )
    return run_export(
        source, OnnxTarget(atol), _folder(source, out_dir), seed=seed, atol=atol, progress=progress
    )


@one_torch_thread()
def export_c(
    checkpoint_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    verify: bool = True,
    compiler: str | None = None,
    atol: float = DEFAULT_ATOL,
    n_random: int = 4096,
    n_on_policy: int = 4096,
    seed: int = 0,
    env_id: str | None = None,
    trust_env_module: bool = False,
    quantize: str = "float32",
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    episodes: int = 100,
    progress: Say | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    wrapper: str | None = None,
) -> CExportReport:
    """Write ``policy.h`` and ``policy.c`` beside the checkpoint (or in ``out_dir``).

    ``verify=False`` skips compiling and comparing (for machines with no C compiler); the
    code is the same, only unproven. ``quantize="int8"`` or ``"int8-integer"`` writes int8
    C (:mod:`pgdeploy.export.c.quantized`), verified by its greedy agreement with the float
    policy (at least ``min_agreement`` on random and on on-policy observations) and, where
    the env can be made, by ``episodes`` greedy episodes of each.
    """
    check_atol(atol)
    target = CTarget(quantize, verify, compiler, atol, min_agreement, episodes)
    source = checkpoint_source(
        checkpoint_path,
        env_id=env_id,
        trust_env_module=trust_env_module,
        n_random=n_random,
        n_on_policy=n_on_policy,
        env_kwargs=env_kwargs,
        wrapper=wrapper,
    )
    folder = _folder(source, out_dir)
    return run_export(source, target, folder, seed=seed, atol=atol, progress=progress)


@one_torch_thread()
def export_policy_c(
    policy: SoftmaxPolicy,
    folder: str | os.PathLike[str],
    *,
    plan: VerificationPlan,
    verify: bool = True,
    compiler: str | None = None,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
) -> CExportReport:
    """:func:`export_c` for a policy in memory, verified on ``plan``'s observations."""
    check_atol(atol)
    source = policy_source(policy, plan=plan, folder=Path(folder))
    target = CTarget("float32", verify, compiler, atol)
    return run_export(source, target, Path(folder), seed=seed, atol=atol)


@one_torch_thread()
def export_foreign(
    path: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    vecnormalize: str | os.PathLike[str] | None = None,
    env_id: str | None = None,
    target: str = "onnx",
    quantize: str = "float32",
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    atol: float = DEFAULT_ATOL,
    n_random: int = 4096,
    n_on_policy: int = 4096,
    seed: int = 0,
    episodes: int = 100,
    verify: bool = True,
    compiler: str | None = None,
    progress: Say | None = None,
) -> ExportReport | CExportReport:
    """``pgdeploy export`` for a Stable-Baselines3 zip or a CleanRL state dict: ONNX, or C
    in float32 or int8, verified against the source's actor rebuilt in PyTorch."""
    from pgdeploy.importers import load_foreign

    check_atol(atol)
    c_target = CTarget(quantize, verify, compiler, atol, min_agreement, episodes)
    if target not in ("onnx", "c") or (target == "onnx" and quantize != "float32"):
        raise InvalidArgumentError(
            f"target must be 'onnx' or 'c' (quantize only with 'c'), got {target!r} "
            f"with quantize {quantize!r}"
        )
    imported = load_foreign(path, vecnormalize=vecnormalize, env_id=env_id)
    source = imported_source(
        imported, folder=Path(path).parent, n_random=n_random, n_on_policy=n_on_policy
    )
    folder = _folder(source, out_dir)
    if target == "c":
        return run_export(source, c_target, folder, seed=seed, atol=atol, progress=progress)
    return run_export(source, OnnxTarget(atol), folder, seed=seed, atol=atol, progress=progress)


def _folder(source: ExportSource, out_dir: str | os.PathLike[str] | None) -> Path:
    """Where an export writes: ``out_dir``, else beside the file the policy came from."""
    return Path(out_dir) if out_dir is not None else source.folder


def check_atol(atol: Any) -> None:
    """``atol`` must be a finite positive real number (``nan`` would pass every comparison)."""
    if (
        isinstance(atol, bool)
        or not isinstance(atol, (int, float))
        or not math.isfinite(atol)
        or atol <= 0
    ):
        raise InvalidArgumentError(f"atol must be a finite number > 0, got {atol!r}")
