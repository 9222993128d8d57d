"""What a foreign file holds, for ``pgdeploy inspect``: read like an import, never unpickled.

A refusal (an unsupported policy, a hostile pickle) is reported as the ``refused`` line
next to everything that could be read, so inspect also explains why export would refuse.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pgdeploy.errors import ModelLoadError
from pgdeploy.importers.archive import Archive

#: Plain-JSON fields of SB3's ``data`` shown as they are (numbers only).
_COUNTERS = ("num_timesteps", "_total_timesteps", "seed", "n_envs")


def describe_foreign(path: str | Path, kind: str) -> dict[str, Any]:
    """A JSON-safe description of an SB3 zip or a CleanRL state dict."""
    archive = Archive(path)
    info: dict[str, Any] = {"members": sorted(archive.names())}
    if kind == "sb3":
        info.update(_sb3_fields(archive))
    try:
        if kind == "sb3":
            from pgdeploy.importers.sb3 import import_sb3

            imported = import_sb3(path)
        else:
            info["note"] = "a CleanRL state dict names no env: export it with --env ENV_ID"
            return info
    except ModelLoadError as exc:
        info["refused"] = str(exc)
        return info
    spec = imported.spec
    info.update(
        {
            "provenance": dict(imported.provenance),
            "observation_space": spec.obs_layout.tree,
            "action_space": spec.action_layout.to_dict(),
            "network": imported.network.description(),
            "statistics": "none in the zip (SB3 saves VecNormalize statistics in a separate "
            ".pkl; export with --vecnormalize VEC.pkl if the model was trained with them)",
        }
    )
    return info


def _sb3_fields(archive: Archive) -> dict[str, Any]:
    from pgdeploy.importers.sb3_format import MAX_DATA_BYTES, VERSION, VERSION_MEMBER, _data

    fields: dict[str, Any] = {}
    if archive.has(VERSION_MEMBER):
        text = archive.read(VERSION_MEMBER, limit=64).decode("ascii", "replace").strip()
        fields["sb3_version"] = text if VERSION.fullmatch(text) else ascii(text)[:40]
    if archive.has("data"):
        try:
            data = _data(archive)
        except ModelLoadError as exc:
            return {**fields, "data": str(exc)}
        fields["data_sha256"] = hashlib.sha256(
            archive.read("data", limit=MAX_DATA_BYTES)
        ).hexdigest()
        fields.update({k: data[k] for k in _COUNTERS if isinstance(data.get(k), int) and k in data})
    return fields
