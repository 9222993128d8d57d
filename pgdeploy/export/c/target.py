"""Export a checkpoint to dependency-free C99 (``policy.c`` + ``policy.h``), verified first.

The pair is generated into a staging folder inside the destination, compiled with the
harness (:mod:`pgdeploy.export.c.compile`), run on the same random and on-policy
observations and uniforms as the ONNX and TorchScript verification, and compared with
the PyTorch policy by :func:`pgdeploy.export.verify.compare`. Only then are both files
renamed into place (each rename atomic, the header first); a pair that fails is deleted
with its staging folder, so nothing is left under the final names.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgdeploy._io import atomic_write_set, atomic_write_text, check_writable
from pgdeploy.errors import CompilerError, InvalidArgumentError
from pgdeploy.export.c.compile import CHarness, find_compiler
from pgdeploy.export.c.footprint import Footprint, measure
from pgdeploy.export.c.quantized import (
    QUANTIZE_MODES,
    QuantizedNetwork,
    quantized_sources,
)
from pgdeploy.export.c.quantized import (
    quantize as quantize_network,
)
from pgdeploy.export.c.quantized_check import (
    DEFAULT_MIN_AGREEMENT,
    QuantizationCheck,
    check_min_agreement,
    verify_quantized,
)
from pgdeploy.export.c.source import c_sources
from pgdeploy.export.c.support import check_c_supported
from pgdeploy.export.exporter import (
    DEFAULT_ATOL,
    check_atol,
    load_exportable,
    one_torch_thread,
    output_folder,
)
from pgdeploy.export.verify import (
    FormatCheck,
    VerificationPlan,
    compare,
    plan_verification,
    reference_outputs,
    require_passed,
    verification_observations,
)
from pgdeploy.training.policy import DeployablePolicy, SoftmaxPolicy, network_from_policy

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
    quantize: str = "float32"
    #: int8 modes: agreement with the float policy (``check`` is then None).
    quantization: QuantizationCheck | None = None
    #: flash/RAM of policy.o (Cortex-M4F when arm-none-eabi-gcc is present, else host).
    footprint: Footprint | None = None


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
) -> CExportReport:
    """Write ``policy.h`` and ``policy.c`` beside the checkpoint (or in ``out_dir``).

    ``verify=False`` skips compiling and comparing (for machines with no C compiler);
    the code is the same, only unproven. Raises :class:`UnsupportedExportError` for a
    policy C cannot represent, :class:`CompilerError` when verification needs a compiler
    and none is found, :class:`ExportVerificationError` when the C disagrees with PyTorch.

    ``quantize="int8"`` or ``"int8-integer"`` writes int8 C
    (:mod:`pgdeploy.export.c.quantized`), verified by its greedy agreement with the float
    policy (at least ``min_agreement`` on random and on on-policy observations) and, where
    the env can be made, by ``episodes`` greedy episodes of each.
    """
    check_atol(atol)
    if quantize not in QUANTIZE_MODES:
        raise InvalidArgumentError(
            f"quantize must be one of {list(QUANTIZE_MODES)}, got {quantize!r}"
        )
    min_agreement = check_min_agreement(min_agreement)
    checkpoint = load_exportable(checkpoint_path)
    policy = checkpoint.build_policy()
    plan = plan_verification(
        checkpoint.spec.env_id,
        env_id,
        trust_env_module,
        n_random=n_random,
        n_on_policy=n_on_policy,
    )
    deployable = DeployablePolicy(policy).eval()
    support = check_c_supported(checkpoint.spec, deployable)
    qnet = None
    if quantize == "float32":
        sources = c_sources(deployable, checkpoint.spec, support)
    else:
        network = network_from_policy(policy)
        network.check(checkpoint.spec)
        calibration = None
        if verify or quantize == "int8-integer":  # scales from rows other than verified
            calibration = verification_observations(
                policy, n_random=2048, n_on_policy=2048, seed=seed + 1, env_id=plan.env_id
            )
        qnet = quantize_network(network, checkpoint.spec, quantize, calibration)
        sources = quantized_sources(checkpoint.spec, qnet)  # type: ignore[assignment]
    cc = find_compiler(compiler) if verify else None
    folder = output_folder(checkpoint_path, out_dir)
    check_writable(folder, (HEADER_NAME, SOURCE_NAME))
    check = qcheck = footprint = None
    notices = plan.notices
    if cc is not None:
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".pgdeploy-c-"))
        try:
            atomic_write_text(staging / HEADER_NAME, sources.header)
            atomic_write_text(staging / SOURCE_NAME, sources.source)
            if qnet is None:
                check = _verify(cc, staging, policy, folder, plan, atol=atol, seed=seed)
            else:
                qcheck = _verify_quantized(
                    cc, staging, policy, qnet, plan, min_agreement, episodes, seed
                )
            try:
                footprint = measure(staging / SOURCE_NAME)
            except CompilerError as exc:
                notices += (f"no footprint: {exc}",)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    # The verified pair lands as one set, as the ONNX/TorchScript pair does: a failed
    # second rename puts the first file back.
    atomic_write_set(
        {
            folder / HEADER_NAME: sources.header.encode("utf-8"),
            folder / SOURCE_NAME: sources.source.encode("utf-8"),
        }
    )
    return CExportReport(
        header=folder / HEADER_NAME,
        source=folder / SOURCE_NAME,
        check=check,
        compiler=cc,
        atol=atol,
        n_random=plan.n_random,
        n_on_policy=plan.n_on_policy,
        notices=notices,
        quantize=quantize,
        quantization=qcheck,
        footprint=footprint,
    )


def _verify_quantized(
    cc: str,
    staging: Path,
    policy: SoftmaxPolicy,
    qnet: QuantizedNetwork,
    plan: VerificationPlan,
    min_agreement: float,
    episodes: int,
    seed: int,
) -> QuantizationCheck:
    """The int8 C's greedy agreement with the float policy (and returns, env permitting)."""
    from pgdeploy.envs.making import make_env_from_file

    obs = verification_observations(
        policy,
        n_random=plan.n_random,
        n_on_policy=plan.n_on_policy,
        seed=seed,
        env_id=plan.env_id,
    )
    env_id = plan.env_id

    def env_factory() -> Any:
        return make_env_from_file(policy.spec.env_id, source="the checkpoint", user_env_id=env_id)

    return verify_quantized(
        staging,
        cc,
        qnet,
        policy.spec,
        obs,
        plan.n_random,
        min_agreement=min_agreement,
        episodes=episodes,
        env_factory=env_factory if env_id is not None else None,
        seed=seed,
    )


def _verify(
    cc: str,
    staging: Path,
    policy: SoftmaxPolicy,
    folder: Path,
    plan: VerificationPlan,
    *,
    atol: float,
    seed: int,
) -> FormatCheck:
    """Compile the staged pair with the harness and compare it with the PyTorch policy."""
    spec = policy.spec
    obs = verification_observations(
        policy,
        n_random=plan.n_random,
        n_on_policy=plan.n_on_policy,
        seed=seed,
        env_id=plan.env_id,
    )
    heads = spec.action_layout.n_branches
    ref = reference_outputs(policy, obs, seed=seed, atol=atol)
    harness = CHarness.build(cc, staging, spec.obs_dim, spec.n_actions, heads)
    check = compare("c", folder / SOURCE_NAME, harness, spec, *ref.arguments)
    return require_passed(check, atol=atol, n_observations=len(obs), folder=folder)
