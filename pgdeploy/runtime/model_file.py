"""Open an ONNX policy file safely: only pgdeploy's own graph for the file's metadata runs.

:func:`load_model` reads the bytes (size-capped), takes the metadata and the weights by
their canonical names (:mod:`pgdeploy.runtime.onnx_graph`), builds a
:class:`~pgdeploy.runtime.network.PolicyNetwork` and checks it against the spec, rebuilds
the canonical graph (:func:`~pgdeploy.runtime.policy_graph.build_model`) and compares it
with the file byte for byte. Any difference -- an extra node or output, an attribute, a
rewired input, a Shape trick, a metadata key pgdeploy does not write -- is refused in one
line before onnxruntime sees a byte, and the session is built from the rebuilt bytes.

So what used to be probed at load is a property of the construction: the graph's inputs,
outputs, dtypes and shapes are the ones the spec implies, rows are independent (every
node is row-wise or a per-row reduction), actions are the argmax and the inverse-CDF
sample of the returned probabilities, and the size of every intermediate follows from
the spec and the weights. What remains at run time is a cheap check of the outputs (NaN
probabilities from float32 overflow, actions in range): :mod:`pgdeploy.runtime.output_checks`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from pgdeploy.errors import ModelLoadError, ModelSpecError
from pgdeploy.runtime.network import PolicyNetwork, description_from_metadata
from pgdeploy.runtime.onnx_graph import FileParts, first_difference, read_parts
from pgdeploy.runtime.pairing import check_pair
from pgdeploy.runtime.policy_graph import (
    CLIP_HIGH,
    CLIP_LOW,
    OBS_MEAN,
    OBS_STD,
    build_model,
    layer_names,
)
from pgdeploy.runtime.protobuf import FLOAT
from pgdeploy.spec import (
    GREEDY_OUTPUT,
    METADATA_KEYS,
    PROBS_OUTPUT,
    ModelMetadata,
    metadata_from_props,
)

#: Larger files are refused before they are read (``max_bytes`` of :func:`load_model` and
#: ``Agent.load`` changes it): a policy MLP is kilobytes to megabytes.
MAX_MODEL_BYTES = 256 << 20
#: Most layers a network description may name.
MAX_LAYERS = 64

_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class LoadedModel:
    session: ort.InferenceSession
    metadata: ModelMetadata
    sha256: str
    path: Path
    #: The numbers the file holds, checked against the spec.
    network: PolicyNetwork
    #: The canonical bytes ``session`` was built from (equal to the file's).
    data: bytes = field(default=b"", repr=False)
    threads: int = 1


def not_canonical(source: str, what: str) -> ModelSpecError:
    """The one refusal of a file that is not the graph pgdeploy builds for its metadata."""
    return ModelSpecError(f"{source} is not a pgdeploy policy graph: {what}")


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
) -> LoadedModel:
    """Open ``path`` with onnxruntime if, and only if, it is pgdeploy's canonical graph.

    Order: the size cap, the hash, the metadata and weights, the canonical comparison and
    the sibling's pair id (:mod:`pgdeploy.runtime.pairing`); onnxruntime then gets the rebuilt
    bytes. Every refusal is one ModelLoadError line.
    """
    path, data = read_model_bytes(path, max_bytes=max_bytes)
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise ModelLoadError(
            f"{str(path)!r} has sha256 {digest}, expected {expected_sha256.lower()}; "
            "the file was modified or is not the model you meant"
        )
    source = repr(str(path))
    metadata, network, canonical = canonical_model(data, source=source)
    check_pair(path, metadata.pair_id)
    try:
        session = ort.InferenceSession(
            canonical, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped pybind errors
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"onnxruntime cannot load {str(path)!r}: {first_line[:300]}") from exc
    return LoadedModel(
        session=session,
        metadata=metadata,
        sha256=digest,
        path=path,
        network=network,
        data=canonical,
        threads=threads,
    )


def greedy_session(model: LoadedModel) -> ort.InferenceSession:
    """A session on the canonical graph built with only ``probs`` and ``greedy_action``.

    The greedy single-step path runs it: without the four sampling nodes and the
    ``uniform`` input a greedy ``act`` measured about a third faster (benchmarks/RESULTS.md);
    a sampled ``act`` gains too little from dropping the one ``ArgMax`` and runs the file's
    own graph. It is :func:`build_model`'s output, like every graph the runtime runs.
    """
    data = build_model(
        model.metadata.spec, model.network, {}, outputs=(PROBS_OUTPUT, GREEDY_OUTPUT)
    )
    return ort.InferenceSession(
        data, sess_options=session_options(model.threads), providers=["CPUExecutionProvider"]
    )


def canonical_model(data: bytes, *, source: str) -> tuple[ModelMetadata, PolicyNetwork, bytes]:
    """(metadata, network, canonical bytes) of a file that is pgdeploy's graph, else the
    one-line ModelLoadError naming the first difference."""
    parts = read_parts(data, source=source)
    metadata = metadata_from_props(parts.metadata, source=source)
    network = network_from_parts(parts, metadata, source=source)
    network.check(metadata.spec, source=source)
    canonical_metadata = {k: v for k, v in parts.metadata.items() if k in METADATA_KEYS}
    expected = build_model(metadata.spec, network, canonical_metadata)
    if expected != data:
        raise not_canonical(source, first_difference(data, expected))
    return metadata, network, expected


def network_from_parts(parts: FileParts, metadata: ModelMetadata, *, source: str) -> PolicyNetwork:
    """The PolicyNetwork a file's metadata describes, with the file's weights."""
    if metadata.network is None:
        raise not_canonical(source, "its metadata has no 'pgdeploy.network' description")
    try:
        choices = description_from_metadata(metadata.network)
        widths = metadata.network.get("widths")
        if (
            not isinstance(widths, list)
            or not 1 <= len(widths) <= MAX_LAYERS
            or not all(isinstance(w, int) and not isinstance(w, bool) for w in widths)
        ):
            raise ValueError(f"widths must be a list of 1 to {MAX_LAYERS} integers")
    except ValueError as exc:
        raise not_canonical(source, f"its network description is malformed ({exc})") from exc
    spec = metadata.spec

    def tensor(name: str) -> Any:
        found = parts.initializers.get(name)
        if found is None:
            raise not_canonical(source, f"it has no initializer {name!r}")
        count = int(np.prod(found.dims, dtype=np.int64)) if found.dims else 1
        if found.data_type != FLOAT or len(found.raw) != 4 * count:
            raise not_canonical(
                source, f"initializer {name!r} is not raw float32 data of its shape"
            )
        return np.frombuffer(found.raw, "<f4").astype(np.float32).reshape(found.dims)

    n_cont = len(spec.obs_layout.continuous_columns)
    empty = np.zeros(0, np.float32)
    normalized = choices["normalized"]
    network = PolicyNetwork(
        clip_low=tensor(CLIP_LOW) if n_cont else empty,
        clip_high=tensor(CLIP_HIGH) if n_cont else empty,
        layers=tuple(
            (tensor(layer_names(i)[0]), tensor(layer_names(i)[1])) for i in range(len(widths))
        ),
        obs_mean=tensor(OBS_MEAN) if normalized else None,
        obs_std=tensor(OBS_STD) if normalized else None,
        norm_clip=choices["norm_clip"],
        activation=choices["activation"],
        activation_alpha=choices["activation_alpha"],
        head=choices["head"],
    )
    shapes = [list(weight.shape[:1]) for weight, _ in network.layers]
    if shapes != [[w] for w in widths]:
        raise not_canonical(
            source, f"its network description says widths {widths}, its layers have {shapes}"
        )
    return network
