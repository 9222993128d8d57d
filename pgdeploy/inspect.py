"""What a model file is and what it says about itself (``pgdeploy inspect``).

Inspecting never runs the file: ONNX is parsed and checked like ``Agent.load`` does,
a checkpoint is read with ``torch.load(weights_only=True)`` under the checkpoint
limits, and a TorchScript archive -- a program whose ``__setstate__`` runs on
``torch.jit.load`` -- is only opened as a zip to read its metadata record.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

from pgdeploy._optional import require
from pgdeploy._process import escape_text
from pgdeploy.errors import ModelLoadError

#: Largest zip archive (checkpoint or TorchScript) inspect will open.
MAX_ARCHIVE_BYTES = 256 << 20


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
        if path.stat().st_size > MAX_ARCHIVE_BYTES:
            raise ModelLoadError(
                f"{str(path)!r} is {path.stat().st_size} bytes, more than {MAX_ARCHIVE_BYTES}"
            ) from None
        data = path.read_bytes()
        foreign = _foreign_kind(path)
        if foreign is not None:
            return _foreign(path, foreign, data)
        kind = "torchscript" if _is_torchscript(path) else "checkpoint"
    info: dict[str, Any] = {
        "path": str(path),
        "kind": kind,
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    info.update({"onnx": _onnx, "checkpoint": _checkpoint, "torchscript": _torchscript}[kind](path))
    return info


def _foreign_kind(path: Path) -> str | None:
    from pgdeploy.importers import foreign_kind

    return foreign_kind(path)


def _foreign(path: Path, kind: str, data: bytes) -> dict[str, Any]:
    """An SB3 zip or CleanRL state dict, read like an import (nothing unpickled)."""
    from pgdeploy.importers.describe import describe_foreign

    return {
        "path": str(path),
        "kind": {"sb3": "stable-baselines3", "cleanrl": "cleanrl"}[kind],
        "size_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        **describe_foreign(path, kind),
    }


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ModelLoadError(f"{str(path)!r} is a corrupt zip archive: {exc}") from exc


def _onnx(path: Path) -> dict[str, Any]:
    from pgdeploy.runtime.model_file import canonical_model, read_model_bytes
    from pgdeploy.runtime.policy_graph import IR_VERSION, OPSET, PRODUCER

    _, data = read_model_bytes(path)
    metadata, _, _ = canonical_model(data, source=repr(str(path)))
    return {
        "metadata": _metadata_dict(metadata),
        "graph": "pgdeploy's canonical policy graph (checked byte for byte)",
        "producer": PRODUCER,
        "opset": {"ai.onnx": OPSET},
        "ir_version": IR_VERSION,
        **_pair(path, metadata.pair_id),
    }


def _pair(path: Path, pair_id: str | None) -> dict[str, Any]:
    """The pair id and whether the sibling file of the same export agrees."""
    from pgdeploy.runtime.pairing import read_pair_id, sibling

    other = sibling(path)
    if other is None or not other.exists():
        status = "no sibling file"
    else:
        try:
            theirs = read_pair_id(other)
        except ModelLoadError:
            theirs = "unreadable"
        status = f"{'matches' if theirs == pair_id else 'DOES NOT match'} {other.name}"
    return {"pair_id": pair_id, "pair": status}


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
    """The metadata record, read from the zip; the module itself is never loaded."""
    from pgdeploy.runtime.pairing import torchscript_metadata
    from pgdeploy.spec import metadata_from_props

    metadata = metadata_from_props(torchscript_metadata(path), source=repr(str(path)))
    return {
        "metadata": _metadata_dict(metadata),
        "note": "TorchScript files are programs: inspect read only their metadata record; "
        "load them (torch.jit.load) only if you trust where they came from",
        **_pair(path, metadata.pair_id),
    }


def _metadata_dict(metadata: Any) -> dict[str, Any]:
    return {
        "format_version": metadata.format_version,
        "pgdeploy_version": metadata.pgdeploy_version,
        "spec": metadata.spec.to_dict(),
        "training": dict(metadata.training),
        "network": None if metadata.network is None else dict(metadata.network),
    }


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
        if "provenance" in training:
            lines.append(f"imported: {json.dumps(training['provenance'])}")
        else:
            lines.append(
                "training: " + ", ".join(f"{k}={training[k]}" for k in keys if k in training)
            )
    for key in ("opset", "producer", "graph", "pair_id", "pair", "note"):
        if key in info:
            lines.append(f"{key}: {info[key]}")
    for key in ("inputs", "outputs"):
        for item in info.get(key, []):
            lines.append(f"{key[:-1]} {item['name']}: {item['type']} {item['shape']}")
    for key in ("sb3_version", "provenance", "observation_space", "action_space", "network"):
        if key in info:
            lines.append(f"{key}: {json.dumps(info[key])}")
    for key in ("statistics", "refused", "members"):
        if key in info:
            lines.append(f"{key}: {info[key]}")
    if "parameters" in info:
        lines.append("parameters: " + ", ".join(f"{k}{v}" for k, v in info["parameters"].items()))
    return "\n".join(escape_text(line) for line in lines)  # every value from the file, escaped
