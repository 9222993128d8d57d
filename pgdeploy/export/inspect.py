"""What a model file is and what it says about itself (``pgdeploy inspect``)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import zipfile
from pathlib import Path
from typing import Any

from pgdeploy._optional import require
from pgdeploy.errors import ModelLoadError


def describe(path: str | Path) -> dict[str, Any]:
    """A JSON-safe description of an ONNX file, a checkpoint or a TorchScript archive."""
    path = Path(path)
    from pgdeploy.runtime.model_file import read_model_bytes

    try:
        _, data = read_model_bytes(path)
        kind = "onnx"
    except ModelLoadError as exc:
        if not path.is_file() or not zipfile.is_zipfile(path):
            raise
        del exc
        data = path.read_bytes()
        kind = "torchscript" if _is_torchscript(path) else "checkpoint"
    info: dict[str, Any] = {
        "path": str(path),
        "kind": kind,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    info.update({"onnx": _onnx, "checkpoint": _checkpoint, "torchscript": _torchscript}[kind](path))
    return info


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def _onnx(path: Path) -> dict[str, Any]:
    from pgdeploy.runtime.model_file import load_model

    model = load_model(path)
    session = model.session
    info: dict[str, Any] = {
        "metadata": _metadata_dict(model.metadata),
        "inputs": [_io(i) for i in session.get_inputs()],
        "outputs": [_io(o) for o in session.get_outputs()],
        "producer": session.get_modelmeta().producer_name,
    }
    if importlib.util.find_spec("onnx") is None:  # a runtime-only install
        info["opset"] = "unknown (install onnx to read it)"
        return info
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    info["opset"] = {op.domain or "ai.onnx": op.version for op in proto.opset_import}
    info["ir_version"] = proto.ir_version
    return info


def _checkpoint(path: Path) -> dict[str, Any]:
    require("torch", extra="train", feature="inspecting a checkpoint")
    from pgdeploy.training.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    return {
        "format_version": 1,
        "pgdeploy_version": checkpoint.pgdeploy_version,
        "spec": checkpoint.spec.to_dict(),
        "config": checkpoint.config.to_dict(),
        "training": checkpoint.training,
        "parameters": {k: list(v.shape) for k, v in checkpoint.state_dict.items()},
    }


def _torchscript(path: Path) -> dict[str, Any]:
    torch = require("torch", extra="train", feature="inspecting a TorchScript file")
    from pgdeploy.export.formats import TORCHSCRIPT_METADATA, _quiet_torch
    from pgdeploy.spec import metadata_from_props

    extra = {TORCHSCRIPT_METADATA: ""}
    with _quiet_torch():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    props = json.loads(extra[TORCHSCRIPT_METADATA] or "{}")
    metadata = metadata_from_props(props, source=repr(str(path)))
    return {
        "metadata": _metadata_dict(metadata),
        "signature": str(module.forward.schema),
    }


def _metadata_dict(metadata: Any) -> dict[str, Any]:
    return {
        "format_version": metadata.format_version,
        "pgdeploy_version": metadata.pgdeploy_version,
        "spec": metadata.spec.to_dict(),
        "training": dict(metadata.training),
    }


def _io(value: Any) -> dict[str, Any]:
    return {"name": value.name, "type": value.type, "shape": list(value.shape)}


def format_text(info: dict[str, Any]) -> str:
    """Human-readable lines for the CLI."""
    lines = [f"{info['path']}: {info['kind']}, {info['size_bytes']} bytes, sha256 {info['sha256']}"]
    meta = info.get("metadata") or info
    spec = meta.get("spec", {})
    if spec:
        lines.append(
            f"env {spec['env_id']}: obs_dim {spec['obs_dim']}, {spec['n_actions']} actions"
            + (f" {spec['action_names']}" if spec.get("action_names") else "")
        )
    training = meta.get("training", {})
    if training:
        keys = (
            "solved",
            "stop_reason",
            "env_steps",
            "episodes",
            "wall_seconds",
            "final_window_mean_return",
        )
        lines.append("training: " + ", ".join(f"{k}={training[k]}" for k in keys if k in training))
    for key in ("opset", "signature", "producer"):
        if key in info:
            lines.append(f"{key}: {info[key]}")
    for key in ("inputs", "outputs"):
        for item in info.get(key, []):
            lines.append(f"{key[:-1]} {item['name']}: {item['type']} {item['shape']}")
    if "parameters" in info:
        lines.append("parameters: " + ", ".join(f"{k}{v}" for k, v in info["parameters"].items()))
    return "\n".join(lines)
