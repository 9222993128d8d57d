"""The exported file formats: ONNX and TorchScript bytes of a :class:`DeployablePolicy`."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import torch

from pgdeploy import __version__
from pgdeploy._optional import require
from pgdeploy.spec import OBS_INPUT, OUTPUT_NAMES, UNIFORM_INPUT, spec_to_metadata
from pgdeploy.training.checkpoint import Checkpoint
from pgdeploy.training.policy import DeployablePolicy

if TYPE_CHECKING:
    import onnx

#: ONNX opset of exported graphs (onnxruntime >= 1.14 runs it).
OPSET = 18

OnnxExporter = Literal["trace", "dynamo"]


def onnx_bytes(
    deployable: DeployablePolicy, checkpoint: Checkpoint, *, exporter: OnnxExporter = "trace"
) -> bytes:
    """The ONNX graph with a dynamic batch axis and the policy's description in metadata.

    ``exporter``: ``"trace"`` (TorchScript's tracer, ~0.2 s) or ``"dynamo"`` (torch.export,
    ~6 s for the same graph; see :func:`_traced_onnx`).
    """
    onnx = require("onnx", extra="train", feature="ONNX export")
    spec = checkpoint.spec
    if exporter == "trace":
        model = _traced_onnx(deployable, spec.obs_dim, spec.action_layout.n_branches)
    else:
        model = _dynamo_onnx(deployable, spec.obs_dim, spec.action_layout.n_branches)
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


def _traced_onnx(deployable: DeployablePolicy, obs_dim: int, heads: int) -> onnx.ModelProto:
    """Trace ``deployable`` to ONNX with TorchScript's tracer (``dynamo=False``).

    Why not the default torch.export-based exporter: for this two-layer MLP it took ~6 s
    (importing torch._dynamo and onnxscript's torchlib, decompositions) against ~0.2 s here,
    for the same operators. The trace has a fixed batch of ``_TRACE_BATCH`` rows so that
    everything computed from shapes alone (the sampler's cumulative-sum matrix) folds into
    constants (:func:`_fold_constants`); the batch axis is then made dynamic, and the export
    is verified at other batch sizes before anything is written.
    """
    import onnx

    example = (torch.zeros(_TRACE_BATCH, obs_dim), torch.zeros(_TRACE_BATCH, heads))
    buffer = io.BytesIO()
    with _quiet_torch():
        torch.onnx.export(
            deployable,
            example,
            buffer,  # type: ignore[arg-type]  # typed as a path; a file object works too
            dynamo=False,
            input_names=[OBS_INPUT, UNIFORM_INPUT],
            output_names=list(OUTPUT_NAMES),
            opset_version=OPSET,
        )
    model = onnx.load_model_from_string(buffer.getvalue())
    _constants_to_initializers(model.graph)
    _fold_constants(model)
    _dynamic_batch(model.graph)
    return model


#: Rows of the example traced: not 1, so no size-1 broadcast can hide a batch-bound shape.
_TRACE_BATCH = 3


def _dynamo_onnx(deployable: DeployablePolicy, obs_dim: int, heads: int) -> onnx.ModelProto:
    """The torch.export-based exporter: the same graph, ~6 s slower (see :func:`_traced_onnx`)."""
    batch = torch.export.Dim("batch")
    example = (torch.zeros(2, obs_dim), torch.zeros(2, heads))
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
    return program.model_proto


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """Move ``Constant`` nodes' tensors into the initializers (one node less per call each)."""
    keep = []
    for node in graph.node:
        attrs = list(node.attribute)
        if node.op_type == "Constant" and len(attrs) == 1 and attrs[0].name == "value":
            tensor = attrs[0].t
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


def _fold_constants(model: onnx.ModelProto) -> None:
    """Evaluate once, at export, every node whose inputs are all initializers (e.g. the
    ``Trilu`` that builds the sampler's cumulative-sum matrix), and drop initializers no
    node uses any more. onnx's reference evaluator computes them."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    known = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    keep = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if inputs and all(name in known for name in inputs):
            outputs = ReferenceEvaluator(node).run(None, {name: known[name] for name in inputs})
            for name, value in zip(node.output, outputs, strict=True):
                known[name] = value
                graph.initializer.append(numpy_helper.from_array(value, name))
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    used = {name for node in keep for name in node.input} | {o.name for o in graph.output}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)


def _dynamic_batch(graph: onnx.GraphProto) -> None:
    """Name the first axis of every input and output ``batch`` (traced with a fixed one)."""
    for value in [*graph.input, *graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    del graph.value_info[:]  # intermediate shapes were the example's; onnx re-infers them


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
