"""Export a checkpoint to dependency-free C99 (``policy.c`` + ``policy.h``), verified first.

The pair is generated into a staging folder inside the destination, compiled with the
harness (:mod:`pgdeploy.export.c_compile`), run on the same random and on-policy
observations and uniforms as the ONNX and TorchScript verification, and compared with
the PyTorch policy by :func:`pgdeploy.export.verify.compare`. Only then are both files
renamed into place (each rename atomic, the header first); a pair that fails is deleted
with its staging folder, so nothing is left under the final names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from pgdeploy._io import atomic_write_text, check_writable, commit_staged, stage_bytes
from pgdeploy.errors import ExportVerificationError
from pgdeploy.export.c_compile import CHarness, find_compiler
from pgdeploy.export.c_source import c_sources
from pgdeploy.export.c_support import check_c_supported
from pgdeploy.export.exporter import DEFAULT_ATOL, check_atol, load_exportable
from pgdeploy.export.verify import (
    FormatCheck,
    compare,
    reference_outputs,
    verification_env,
    verification_observations,
)
from pgdeploy.training.policy import DeployablePolicy, SoftmaxPolicy

HEADER_NAME = "policy.h"
SOURCE_NAME = "policy.c"


@dataclass(frozen=True)
class CExportReport:
    """Where the pair went and how it compared (``check`` is None when not verified)."""

    header: Path
    source: Path
    check: FormatCheck | None
    compiler: str | None
    atol: float
    n_random: int
    n_on_policy: int
    notices: tuple[str, ...] = ()


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
) -> CExportReport:
    """Write ``policy.h`` and ``policy.c`` beside the checkpoint (or in ``out_dir``).

    ``verify=False`` skips compiling and comparing (for machines with no C compiler);
    the code is the same, only unproven. Raises :class:`UnsupportedExportError` for a
    policy C cannot represent, :class:`CompilerError` when verification needs a compiler
    and none is found, :class:`ExportVerificationError` when the C disagrees with PyTorch.
    """
    check_atol(atol)
    checkpoint = load_exportable(checkpoint_path)
    policy = checkpoint.build_policy()
    verify_env, notices = verification_env(checkpoint.spec.env_id, env_id, trust_env_module)
    if verify_env is None:  # the checkpoint's env may not be imported: random rows instead
        n_random, n_on_policy = n_random + n_on_policy, 0
    deployable = DeployablePolicy(policy).eval()
    plan = check_c_supported(checkpoint.spec, deployable)
    sources = c_sources(deployable, checkpoint.spec, plan)
    cc = find_compiler(compiler) if verify else None
    folder = Path(out_dir) if out_dir is not None else Path(checkpoint_path).parent
    check_writable(folder, (HEADER_NAME, SOURCE_NAME))
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".pgdeploy-c-"))
    try:
        atomic_write_text(staging / HEADER_NAME, sources.header)
        atomic_write_text(staging / SOURCE_NAME, sources.source)
        check = None
        if cc is not None:
            with _one_torch_thread():
                check = _verify(
                    cc,
                    staging,
                    policy,
                    folder,
                    atol=atol,
                    n_random=n_random,
                    n_on_policy=n_on_policy,
                    seed=seed,
                    env_id=verify_env,
                )
        # The verified bytes land as one set, as the ONNX/TorchScript pair does: a failed
        # second rename puts the first file back.
        final = [
            (stage_bytes(folder / name, (staging / name).read_bytes()), folder / name)
            for name in (HEADER_NAME, SOURCE_NAME)
        ]
        try:
            commit_staged(final)
        finally:
            for temp, _ in final:
                temp.unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return CExportReport(
        header=folder / HEADER_NAME,
        source=folder / SOURCE_NAME,
        check=check,
        compiler=cc,
        atol=atol,
        n_random=n_random,
        n_on_policy=n_on_policy,
        notices=notices,
    )


def _verify(
    cc: str,
    staging: Path,
    policy: SoftmaxPolicy,
    folder: Path,
    *,
    atol: float,
    n_random: int,
    n_on_policy: int,
    seed: int,
    env_id: str | None = None,
) -> FormatCheck:
    """Compile the staged pair with the harness and compare it with the PyTorch policy."""
    spec = policy.spec
    obs = verification_observations(
        policy, n_random=n_random, n_on_policy=n_on_policy, seed=seed, env_id=env_id
    )
    heads = spec.action_layout.n_branches
    ref = reference_outputs(policy, obs, seed=seed, atol=atol)
    harness = CHarness.build(cc, staging, spec.obs_dim, spec.n_actions, heads)
    check = compare("c", folder / SOURCE_NAME, harness, spec, *ref.arguments)
    if not check.passed:  # NaN fails too: the ratio comparison is "<= 1.0"
        raise ExportVerificationError(
            f"c export differs from the PyTorch policy: max |dp| = {check.max_abs_diff:.3g}, "
            f"{check.max_tolerance_ratio:.3g}x the float32 tolerance (atol floor {atol:.3g}), "
            f"{check.greedy_mismatches} greedy and {check.sampled_mismatches} sampled action "
            f"mismatches over {len(obs)} observations; nothing was written"
        )
    return check


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Verification runs thousands of one-row forward passes: on a busy 2-core machine
    torch's thread pool made each ~10 ms (waking workers) against ~10 us on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
