"""The exported file formats: ONNX and TorchScript bytes of a :class:`DeployablePolicy`."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator

import torch

from pgdeploy import __version__
from pgdeploy._optional import require
from pgdeploy.spec import OBS_INPUT, OUTPUT_NAMES, UNIFORM_INPUT, spec_to_metadata
from pgdeploy.training.checkpoint import Checkpoint
from pgdeploy.training.policy import DeployablePolicy

#: ONNX opset of exported graphs (onnxruntime >= 1.14 runs it).
OPSET = 18


def onnx_bytes(deployable: DeployablePolicy, checkpoint: Checkpoint) -> bytes:
    """The ONNX graph with a dynamic batch axis and the policy's description in metadata."""
    onnx = require("onnx", extra="train", feature="ONNX export")
    spec = checkpoint.spec
    batch = torch.export.Dim("batch")
    example = (torch.zeros(2, spec.obs_dim), torch.zeros(2, spec.action_layout.n_branches))
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
