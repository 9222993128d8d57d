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
import hashlib
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pgdeploy._io import check_writable, commit_staged, stage_bytes
from pgdeploy.errors import ExportVerificationError, InvalidArgumentError, ModelLoadError
from pgdeploy.export.formats import ExportFiles, _quiet_torch, onnx_bytes, torchscript_bytes
from pgdeploy.export.reference import GraphFn
from pgdeploy.export.verify import (
    FormatCheck,
    checkpoint_env,
    compare,
    plan_verification,
    reference_outputs,
    require_passed,
    verification_observations,
)
from pgdeploy.runtime.agent import Agent
from pgdeploy.training.checkpoint import Checkpoint, load_checkpoint
from pgdeploy.training.checkpoint_safety import non_finite_weights
from pgdeploy.training.policy import DeployablePolicy, network_from_policy

#: Absolute floor of the allowed |p_export - p_torch|, added to the float32 bound that
#: :func:`~pgdeploy.export.verify.probability_tolerance` derives per observation.
DEFAULT_ATOL = 1e-9


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One torch thread for an export (as a decorator too), the caller's count restored.

    Verification runs many small forward passes: on a busy 2-core machine torch's thread
    pool made each one-row pass ~10 ms (waking workers) against ~10 us on one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class ExportReport:
    onnx: FormatCheck
    torchscript: FormatCheck
    atol: float
    n_random: int
    n_on_policy: int
    notices: tuple[str, ...] = ()
    """Things the user should know, e.g. on-policy verification replaced by random
    observations because the checkpoint's env could not (or may not) be made."""

    def render(self) -> str:
        """What was verified, a line per file."""
        return "\n".join(
            c.render(str(c.path), self.n_random, self.n_on_policy)
            for c in (self.onnx, self.torchscript)
        )


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
    progress: Callable[[str], None] | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    wrapper: str | None = None,
) -> ExportReport:
    """Write ``model.onnx`` and ``model.torchscript.pt`` beside the checkpoint (or in out_dir).

    ``progress`` is called with a short line as each stage starts (the CLI shows them).

    On-policy verification plays the env the run recorded (id, keywords, wrapper), with
    ``env_id``, ``env_kwargs`` and ``wrapper`` (the user's) in place of its parts; a
    recorded module is imported only when the user confirms it
    (:func:`pgdeploy.export.verify.plan_verification`); otherwise those observations are
    random ones and the report's ``notices`` says what to pass.
    """
    check_atol(atol)
    checkpoint = load_exportable(checkpoint_path)
    folder = output_folder(checkpoint_path, out_dir)
    check_writable(folder, [name for _, name, _ in _FORMATS])
    policy = checkpoint.build_policy()
    plan = plan_verification(
        checkpoint_env(checkpoint),
        env_id,
        trust_env_module,
        n_random=n_random,
        n_on_policy=n_on_policy,
        env_kwargs=env_kwargs,
        wrapper=wrapper,
    )
    say = progress or (lambda line: None)
    say(f"collecting {plan.n_random} random and {plan.n_on_policy} on-policy observations")
    obs = verification_observations(
        policy,
        n_random=plan.n_random,
        n_on_policy=plan.n_on_policy,
        seed=seed,
        env=plan.env,
    )
    ref = reference_outputs(policy, obs, seed=seed, atol=atol)
    deployable = DeployablePolicy(policy).eval()
    files = ExportFiles.make(
        checkpoint.spec,
        network_from_policy(policy),
        {**checkpoint.training, "config": checkpoint.config.to_dict()},
        _file_sha256(Path(checkpoint_path)),
    )
    staged: list[tuple[Path, Path]] = []
    checks = []
    try:
        for fmt, name, build in _FORMATS:
            say(f"exporting and verifying {name}")
            final = folder / name
            staged.append((stage_bytes(final, build(files, deployable)), final))
            try:
                graph = _LOADERS[fmt](staged[-1][0])
            except ModelLoadError as exc:  # e.g. the runtime's probe finds NaN probabilities
                raise ExportVerificationError(
                    f"{fmt} export fails the runtime's load checks: {exc}; "
                    f"nothing was written ({folder} was left as it was)"
                ) from exc
            check = compare(fmt, final, graph, checkpoint.spec, *ref.arguments)
            checks.append(require_passed(check, atol=atol, n_observations=len(obs), folder=folder))
        commit_staged(staged)
    finally:
        for temp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    return ExportReport(
        onnx=checks[0],
        torchscript=checks[1],
        atol=atol,
        n_random=plan.n_random,
        n_on_policy=plan.n_on_policy,
        notices=plan.notices,
    )


def output_folder(
    checkpoint_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None
) -> Path:
    """Where an export writes: ``out_dir``, else the checkpoint's own folder."""
    return Path(out_dir) if out_dir is not None else Path(checkpoint_path).parent


def load_exportable(checkpoint_path: str | os.PathLike[str]) -> Checkpoint:
    """The checkpoint, refused when its weights hold NaN or infinity (every target)."""
    checkpoint = load_checkpoint(checkpoint_path)
    bad = non_finite_weights(checkpoint.state_dict)
    if bad:
        raise ExportVerificationError(
            f"checkpoint weights {bad} hold NaN or infinity (the run diverged); nothing was written"
        )
    return checkpoint


def check_atol(atol: object) -> None:
    """``atol`` must be a finite positive real number (``nan`` would pass every comparison)."""
    if (
        isinstance(atol, bool)
        or not isinstance(atol, (int, float))
        or not math.isfinite(atol)
        or atol <= 0
    ):
        raise InvalidArgumentError(f"atol must be a finite number > 0, got {atol!r}")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
