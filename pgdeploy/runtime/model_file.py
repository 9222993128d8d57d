"""Open an ONNX policy file safely and check that its graph matches its own metadata.

Everything that can be wrong with a file is found here, at load time, as a
:class:`~pgdeploy.errors.ModelLoadError`: never at the first ``act``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pgdeploy.errors import ModelLoadError, ModelSpecError
from pgdeploy.spec import (
    GREEDY_OUTPUT,
    OBS_INPUT,
    OUTPUT_NAMES,
    PROBS_OUTPUT,
    SAMPLED_OUTPUT,
    UNIFORM_INPUT,
    ModelMetadata,
    metadata_from_props,
)

#: Larger files are refused before they are read: a policy MLP is kilobytes to megabytes.
MAX_MODEL_BYTES = 1 << 30

_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class LoadedModel:
    session: ort.InferenceSession
    metadata: ModelMetadata
    sha256: str
    path: Path


def session_options(threads: int) -> ort.SessionOptions:
    """Options for a tiny MLP: few threads, no spinning, all graph optimisations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Spinning threads burn a core between calls of a control loop for no gain at this size.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def read_model_bytes(path: str | os.PathLike[str]) -> tuple[Path, bytes]:
    """Read a model file, turning every filesystem problem into a typed error."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise ModelLoadError(f"{str(path)!r} is a directory, expected an .onnx file")
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{str(path)!r} is empty (0 bytes), expected an ONNX model")
    if size > MAX_MODEL_BYTES:
        raise ModelLoadError(f"{str(path)!r} is {size} bytes, more than {MAX_MODEL_BYTES}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    if data.startswith(_ZIP_MAGIC):
        raise ModelLoadError(
            f"{str(path)!r} is a zip archive (a PyTorch checkpoint or TorchScript file?), "
            "expected an ONNX model; export one with 'pgdeploy export model.pt'"
        )
    return path, data


def load_model(
    path: str | os.PathLike[str], *, threads: int = 1, expected_sha256: str | None = None
) -> LoadedModel:
    """Open ``path`` with onnxruntime, from bytes (external data files are never followed)."""
    path, data = read_model_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise ModelLoadError(
            f"{str(path)!r} has sha256 {digest}, expected {expected_sha256.lower()}; "
            "the file was modified or is not the model you meant"
        )
    try:
        session = ort.InferenceSession(
            data, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped pybind errors
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"onnxruntime cannot load {str(path)!r} as an ONNX model: {first_line[:300]}"
            f"{_hint(first_line)}"
        ) from exc
    metadata = metadata_from_props(
        session.get_modelmeta().custom_metadata_map, source=repr(str(path))
    )
    check_graph(session, metadata, source=repr(str(path)))
    return LoadedModel(session=session, metadata=metadata, sha256=digest, path=path)


_HINTS = (
    ("INVALID_PROTOBUF", "the file is not an ONNX model, or it is truncated"),
    (
        "External data",
        "pgdeploy models keep their weights inside the .onnx file; "
        "external data files are never read",
    ),
    (
        "not a registered function/op",
        "the graph uses an operator outside the standard ONNX "
        "domains; pgdeploy loads no custom-op libraries",
    ),
)


def _hint(message: str) -> str:
    """A plain-words reason for the onnxruntime errors users actually meet."""
    for marker, hint in _HINTS:
        if marker in message:
            return f" ({hint})"
    return ""


def check_graph(session: ort.InferenceSession, metadata: ModelMetadata, *, source: str) -> None:
    """Check names, dtypes and shapes of the graph against its metadata with one probe run."""
    spec = metadata.spec
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if set(inputs) != {OBS_INPUT, UNIFORM_INPUT}:
        raise ModelSpecError(
            f"{source} has inputs {sorted(inputs)}, expected {[OBS_INPUT, UNIFORM_INPUT]}"
        )
    if not set(OUTPUT_NAMES) <= set(outputs):
        raise ModelSpecError(
            f"{source} has outputs {sorted(outputs)}, expected at least {list(OUTPUT_NAMES)}"
        )
    for name, want in ((OBS_INPUT, "tensor(float)"), (UNIFORM_INPUT, "tensor(float)")):
        if inputs[name].type != want:
            raise ModelSpecError(
                f"{source}: input {name!r} is {inputs[name].type}, expected {want}"
            )
    obs_shape = inputs[OBS_INPUT].shape
    if len(obs_shape) != 2 or obs_shape[1] != spec.obs_dim:
        raise ModelSpecError(
            f"{source}: input {OBS_INPUT!r} has shape {obs_shape}, expected "
            f"['batch', {spec.obs_dim}] as its metadata says"
        )
    heads = spec.action_layout.n_branches
    actions_shape = (2, heads) if spec.action_layout.multi else (2,)
    probe = {
        OBS_INPUT: np.asarray([spec.obs_layout.probe_row(spec.obs_low, spec.obs_high)] * 2),
        UNIFORM_INPUT: np.full((2, heads), 0.5, np.float32),
    }
    try:
        probs, greedy, sampled = session.run(list(OUTPUT_NAMES), probe)
    except Exception as exc:
        raise ModelSpecError(f"{source} fails on a probe observation: {exc}") from exc
    expected = {
        PROBS_OUTPUT: ((2, spec.n_actions), np.float32),
        GREEDY_OUTPUT: (actions_shape, np.int64),
        SAMPLED_OUTPUT: (actions_shape, np.int64),
    }
    for (name, (shape, dtype)), value in zip(
        expected.items(), (probs, greedy, sampled), strict=True
    ):
        if value.shape != shape or value.dtype != dtype:
            raise ModelSpecError(
                f"{source}: output {name!r} is {value.dtype}{list(value.shape)} for a batch of 2, "
                f"expected {np.dtype(dtype)}{list(shape)} ({spec.n_actions} actions per metadata)"
            )
    if not np.allclose(probs.sum(axis=1), float(heads), atol=1e-4 * heads):
        raise ModelSpecError(f"{source}: output {PROBS_OUTPUT!r} does not sum to 1 on a probe")
