"""Open an ONNX policy file safely and check that its graph matches its own metadata.

Everything that can be wrong with a file is found here, at load time, as a
:class:`~pgdeploy.errors.ModelLoadError`: never at the first ``act``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pgdeploy.errors import ModelLoadError, ModelSpecError
from pgdeploy.runtime.graph_pruning import prune_to_outputs
from pgdeploy.runtime.onnx_graph import GraphInfo, GraphLimits, read_graph
from pgdeploy.runtime.output_checks import (
    action_heads,
    check_probe_outputs,
    multi_head,
    probe_observations,
    probe_uniforms,
)
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

#: Larger files are refused before they are read (``max_bytes`` of :func:`load_model` and
#: ``Agent.load`` changes it): a policy MLP is kilobytes to megabytes.
MAX_MODEL_BYTES = 256 << 20
DEFAULT_LIMITS = GraphLimits()
#: Graphs with more weight elements are not pruned (:func:`pruned_session`): there the
#: ~0.4 us a node pruning saves is lost next to the matrix products, and a second session
#: would hold the weights twice.
PRUNE_MAX_ELEMENTS = 1 << 20

_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class LoadedModel:
    session: ort.InferenceSession
    metadata: ModelMetadata
    sha256: str
    path: Path
    graph: GraphInfo
    #: The checked bytes ``session`` was built from (never re-read from disk; empty above
    #: ``PRUNE_MAX_ELEMENTS`` weights) and its thread count, for :func:`pruned_session`.
    data: bytes = field(default=b"", repr=False)
    threads: int = 1


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


def read_model_bytes(
    path: str | os.PathLike[str], *, max_bytes: int = MAX_MODEL_BYTES
) -> tuple[Path, bytes]:
    """Read a model file, turning every filesystem problem into a typed error."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise ModelLoadError(f"{str(path)!r} is a directory, expected an .onnx file")
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{str(path)!r} is empty (0 bytes), expected an ONNX model")
    if size > max_bytes:
        raise ModelLoadError(
            f"{str(path)!r} is {size} bytes, more than the limit of {max_bytes}; "
            "pass max_bytes=N to Agent.load if you expect a model this large"
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:  # the file grew after stat()
        raise ModelLoadError(f"{str(path)!r} is more than the limit of {max_bytes} bytes")
    if data.startswith(_ZIP_MAGIC):
        raise ModelLoadError(
            f"{str(path)!r} is a zip archive (a PyTorch checkpoint or TorchScript file?), "
            "expected an ONNX model; export one with 'pgdeploy export model.pt'"
        )
    return path, data


def load_model(
    path: str | os.PathLike[str],
    *,
    threads: int = 1,
    expected_sha256: str | None = None,
    max_bytes: int = MAX_MODEL_BYTES,
    limits: GraphLimits = DEFAULT_LIMITS,
) -> LoadedModel:
    """Open ``path`` with onnxruntime, from bytes (external data files are never followed).

    Order matters: the size cap, the hash, then the graph's structure (operators, tensor
    sizes, metadata; :mod:`pgdeploy.runtime.onnx_graph`) and metadata are checked before
    onnxruntime sees a byte, and the outputs on a probe batch before the model is returned.
    """
    path, data = read_model_bytes(path, max_bytes=max_bytes)
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise ModelLoadError(
            f"{str(path)!r} has sha256 {digest}, expected {expected_sha256.lower()}; "
            "the file was modified or is not the model you meant"
        )
    source = repr(str(path))
    graph = read_graph(data, source=source, limits=limits)
    metadata = metadata_from_props(graph.metadata, source=source)
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
    check_graph(session, metadata, source=source)
    return LoadedModel(
        session=session,
        metadata=metadata,
        sha256=digest,
        path=path,
        graph=graph,
        data=data if graph.total_elements <= PRUNE_MAX_ELEMENTS else b"",
        threads=threads,
    )


def pruned_session(model: LoadedModel, outputs: Sequence[str]) -> ort.InferenceSession | None:
    """A session on the model's graph cut down to ``outputs``, or None if it cannot stand in.

    It stands in only when it builds and returns the very same values as the whole graph
    on the load-time probe batch (:func:`probe_observations`); otherwise, and for graphs
    of more than ``PRUNE_MAX_ELEMENTS`` weights, the caller keeps the whole graph, which is
    slower but never wrong.
    """
    if not model.data:
        return None
    spec = model.metadata.spec
    rows = probe_observations(spec)
    feeds = {OBS_INPUT: rows, UNIFORM_INPUT: probe_uniforms(len(rows), len(action_heads(spec)))}
    try:
        session = ort.InferenceSession(
            prune_to_outputs(model.data, outputs),
            sess_options=session_options(model.threads),
            providers=["CPUExecutionProvider"],
        )
        names = {i.name for i in session.get_inputs()}
        got = session.run(list(outputs), {k: v for k, v in feeds.items() if k in names})
    except Exception:
        return None
    want = model.session.run(list(outputs), feeds)
    if all(np.array_equal(a, b) for a, b in zip(got, want, strict=True)):
        return session
    return None


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
    if len(obs_shape) != 2 or obs_shape[1] != spec.obs_dim or isinstance(obs_shape[0], int):
        raise ModelSpecError(
            f"{source}: input {OBS_INPUT!r} has shape {obs_shape}, expected "
            f"['batch', {spec.obs_dim}] (a dynamic batch axis) as its metadata says"
        )
    heads, multi = action_heads(spec), multi_head(spec)
    tails = {
        UNIFORM_INPUT: [len(heads)],
        PROBS_OUTPUT: [sum(size for _, size in heads)],
        GREEDY_OUTPUT: [len(heads)] if multi else [],
        SAMPLED_OUTPUT: [len(heads)] if multi else [],
    }
    for name, tail in tails.items():
        shape = list((inputs.get(name) or outputs[name]).shape or [])
        fixed_ok = all(
            not isinstance(d, int) or d == w for d, w in zip(shape[1:], tail, strict=False)
        )
        if len(shape) != 1 + len(tail) or isinstance(shape[0], int) or not fixed_ok:
            raise ModelSpecError(
                f"{source}: {name!r} is declared with shape {shape}, expected "
                f"{['batch', *tail]} (a dynamic batch axis, then the sizes its metadata says)"
            )
    obs = probe_observations(spec)
    for rows in (obs[:1], obs):
        uniforms = probe_uniforms(len(rows), len(heads))
        try:
            values = session.run(list(OUTPUT_NAMES), {OBS_INPUT: rows, UNIFORM_INPUT: uniforms})
        except Exception as exc:  # onnxruntime's own error types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise ModelSpecError(
                f"{source} fails on a probe batch of {len(rows)} observations: {first}"
            ) from exc
        check_probe_outputs(values, uniforms, spec, source=source)
