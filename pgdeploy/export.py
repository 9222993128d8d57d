"""Export a checkpoint to ONNX and TorchScript, verified against the PyTorch policy first.

Each file is written to a temp name in the destination folder, loaded back through its
real deploy path (``pgdeploy.runtime.Agent`` for ONNX, ``torch.jit.load`` for TorchScript),
compared with the training policy on thousands of observations, and only then renamed
into place. A file that fails is deleted: nothing is left under the final name.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy import __version__
from pgdeploy._io import atomic_write_bytes
from pgdeploy.checkpoint import Checkpoint, load_checkpoint
from pgdeploy.errors import ExportVerificationError, missing_dependency
from pgdeploy.policy import DeployablePolicy, SoftmaxPolicy
from pgdeploy.runtime.agent import Agent
from pgdeploy.spec import OBS_INPUT, OUTPUT_NAMES, UNIFORM_INPUT, PolicySpec, spec_to_metadata
from pgdeploy.torch_agent import GraphFn, TorchAgent

#: ONNX opset of exported graphs (onnxruntime >= 1.14 runs it).
OPSET = 18
#: Largest allowed |p_export - p_torch| over all verification observations (float32).
DEFAULT_ATOL = 1e-6


@dataclass(frozen=True)
class FormatCheck:
    """How one exported file compared with the PyTorch policy."""

    format: str
    path: Path
    max_abs_diff: float
    greedy_mismatches: int
    sampled_mismatches: int
    n_observations: int

    @property
    def passed_actions(self) -> bool:
        return self.greedy_mismatches == 0 and self.sampled_mismatches == 0


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
    folder.mkdir(parents=True, exist_ok=True)
    policy = checkpoint.build_policy()
    obs = verification_observations(policy, n_random=n_random, n_on_policy=n_on_policy, seed=seed)
    uniforms = np.random.default_rng(seed).random(len(obs), dtype=np.float32)
    reference = TorchAgent.from_policy(policy).run_graph(obs, uniforms)
    deployable = DeployablePolicy(policy).eval()
    checks = []
    for fmt, name, payload, loader in (
        ("onnx", "model.onnx", onnx_bytes(deployable, checkpoint), _onnx_graph),
        (
            "torchscript",
            "model.torchscript.pt",
            torchscript_bytes(deployable, checkpoint),
            _torchscript_graph,
        ),
    ):
        with _staged(folder / name, payload) as staged:
            graph = loader(staged)
            check = compare(fmt, folder / name, graph, checkpoint.spec, obs, uniforms, reference)
            if check.max_abs_diff > atol or not check.passed_actions:
                raise ExportVerificationError(
                    f"{fmt} export differs from the PyTorch policy: max |dp| = "
                    f"{check.max_abs_diff:.3g} (tolerance {atol:.3g}), "
                    f"{check.greedy_mismatches} greedy and {check.sampled_mismatches} sampled "
                    f"action mismatches over {len(obs)} observations; nothing was written"
                )
            os.replace(staged, folder / name)
        checks.append(check)
    return ExportReport(
        onnx=checks[0], torchscript=checks[1], atol=atol, n_random=n_random, n_on_policy=n_on_policy
    )


def onnx_bytes(deployable: DeployablePolicy, checkpoint: Checkpoint) -> bytes:
    """The ONNX graph with a dynamic batch axis and the policy's description in metadata."""
    try:
        import onnx
    except ImportError as exc:
        raise missing_dependency("onnx", "train", "ONNX export") from exc
    spec = checkpoint.spec
    batch = torch.export.Dim("batch")
    example = (torch.zeros(2, spec.obs_dim), torch.zeros(2, 1))
    with _quiet_torch():
        program = torch.onnx.export(
            deployable,
            example,
            dynamo=True,
            input_names=[OBS_INPUT, UNIFORM_INPUT],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"obs": {0: batch}, "uniform": {0: batch}},
            opset_version=OPSET,
            external_data=False,
            verbose=False,
        )
    assert program is not None
    model = program.model_proto
    model.producer_name = "pgdeploy"
    model.producer_version = __version__
    model.doc_string = f"pgdeploy softmax policy for {spec.env_id}"
    training = {**checkpoint.training, "config": checkpoint.config.to_dict()}
    for key, value in spec_to_metadata(
        spec, training=training, pgdeploy_version=__version__
    ).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


#: Name of the metadata file stored inside TorchScript archives (``_extra_files``).
TORCHSCRIPT_METADATA = "pgdeploy.json"


def torchscript_bytes(deployable: DeployablePolicy, checkpoint: Checkpoint) -> bytes:
    """The scripted module, with the same metadata as the ONNX file in an extra file."""
    training = {**checkpoint.training, "config": checkpoint.config.to_dict()}
    metadata = spec_to_metadata(checkpoint.spec, training=training, pgdeploy_version=__version__)
    buffer = io.BytesIO()
    with _quiet_torch():
        scripted = torch.jit.script(deployable)
        torch.jit.save(scripted, buffer, _extra_files={TORCHSCRIPT_METADATA: json.dumps(metadata)})
    return buffer.getvalue()


def verification_observations(
    policy: SoftmaxPolicy, *, n_random: int, n_on_policy: int, seed: int
) -> npt.NDArray[np.float32]:
    """Random observations around the training statistics, plus ones the policy visits."""
    rng = np.random.default_rng(seed)
    spec = policy.spec
    mean = policy.obs_mean.numpy().astype(np.float64)
    std = np.sqrt(policy.obs_var.numpy().astype(np.float64))
    random = rng.normal(mean, 3 * std, size=(n_random, spec.obs_dim))
    random = np.clip(random, np.asarray(spec.obs_low), np.asarray(spec.obs_high))
    return np.concatenate(
        [random.astype(np.float32), on_policy_observations(policy, n_on_policy, seed)]
    )


def on_policy_observations(policy: SoftmaxPolicy, n: int, seed: int) -> npt.NDArray[np.float32]:
    """``n`` observations from episodes the policy itself plays (sampled actions)."""
    from pgdeploy.envs import make_env

    env = make_env(policy.spec.env_id)
    agent = TorchAgent.from_policy(policy, seed=seed)
    observations: list[npt.NDArray[np.float32]] = []
    try:
        obs, _ = env.reset(seed=seed)
        while len(observations) < n:
            observations.append(np.asarray(obs, np.float32))
            obs, _, terminated, truncated, _ = env.step(agent.act(obs))
            if terminated or truncated:
                obs, _ = env.reset()
    finally:
        env.close()
    return (
        np.stack(observations) if observations else np.zeros((0, policy.spec.obs_dim), np.float32)
    )


def compare(
    fmt: str,
    path: Path,
    graph: GraphFn | Agent,
    spec: PolicySpec,
    obs: npt.NDArray[np.float32],
    uniforms: npt.NDArray[np.float32],
    reference: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]],
) -> FormatCheck:
    """Compare probs, greedy and sampled actions; ties within float noise are not mismatches."""
    if isinstance(graph, Agent):
        out = graph.run_graph(obs, uniforms)
        probs, greedy, sampled = (out[name] for name in OUTPUT_NAMES)
    else:
        probs, greedy, sampled = TorchAgent(graph, spec).run_graph(obs, uniforms)
    ref_probs, ref_greedy, ref_sampled = reference
    diff = float(np.abs(probs - ref_probs).max())
    margin = 4 * max(diff, 1e-7)  # a decision this close to a boundary may flip either way
    top2 = np.sort(ref_probs, axis=1)[:, -2:]
    clear_greedy = (top2[:, 1] - top2[:, 0]) > margin
    cdf = np.cumsum(ref_probs[:, :-1], axis=1)
    clear_sample = (np.abs(cdf - uniforms[:, None]) > margin).all(axis=1)
    return FormatCheck(
        format=fmt,
        path=path,
        max_abs_diff=diff,
        greedy_mismatches=int(((greedy != ref_greedy) & clear_greedy).sum()),
        sampled_mismatches=int(((sampled != ref_sampled) & clear_sample).sum()),
        n_observations=len(obs),
    )


def _onnx_graph(path: Path) -> Agent:
    return Agent.load(path, out_of_bounds="clip")


def _torchscript_graph(path: Path) -> GraphFn:
    with _quiet_torch():
        module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    return module  # type: ignore[no-any-return]


@contextlib.contextmanager
def _staged(final: Path, payload: bytes) -> Iterator[Path]:
    """A complete temp copy of ``payload`` beside ``final``; removed unless renamed into place."""
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    staged = Path(name)
    try:
        atomic_write_bytes(staged, payload)
        yield staged
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """torch.jit is deprecated in torch 2.9+ but still the TorchScript path; hush its notices."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # "torchvision is not installed" notices
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            yield
        finally:
            onnx_logger.setLevel(level)
