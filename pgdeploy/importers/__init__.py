"""Policies trained elsewhere (Stable-Baselines3 zips, CleanRL state dicts), read as data.

:func:`load_foreign` turns a foreign file into an :class:`ImportedPolicy` -- the same
:class:`~pgdeploy.spec.PolicySpec` + :class:`~pgdeploy.runtime.network.PolicyNetwork` a
pgdeploy checkpoint yields, plus provenance and a PyTorch rebuild of the source's actor
to verify against. Nothing is unpickled: zips are read within bounds
(:mod:`~pgdeploy.importers.archive`), pickled fields by their opcodes
(:mod:`~pgdeploy.importers.pickle_reader`, :mod:`~pgdeploy.importers.inert`), weights with
``torch.load(weights_only=True)``. Files are recognised by content, not by name.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from pgdeploy.errors import ModelLoadError
from pgdeploy.importers.imported import ImportedPolicy

__all__ = ["ImportedPolicy", "foreign_kind", "load_foreign"]


def foreign_kind(path: str | os.PathLike[str]) -> str | None:
    """``"sb3"`` for an SB3 zip, ``"cleanrl"`` for a torch state dict that is not a pgdeploy
    checkpoint, ``None`` for anything else (a pgdeploy checkpoint, a non-zip)."""
    from pgdeploy.importers.archive import Archive
    from pgdeploy.importers.pickle_reader import read_pickle

    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return None
    archive = Archive(path)
    if archive.has("data", "policy.pth"):
        return "sb3"
    pickles = [name for name in archive.names() if name.endswith("/data.pkl")]
    if len(pickles) != 1:
        return None
    top = read_pickle(archive.read(pickles[0]), source=archive.source)
    if isinstance(top, dict) and "format_version" not in top and top:
        return "cleanrl"
    return None


def load_foreign(
    path: str | os.PathLike[str],
    *,
    vecnormalize: str | os.PathLike[str] | None = None,
    env_id: str | None = None,
) -> ImportedPolicy:
    """The policy in an SB3 zip (``vecnormalize``: its VecNormalize ``.pkl``) or a CleanRL
    state dict (``env_id`` required); raises ModelLoadError naming what is unsupported."""
    kind = foreign_kind(path)
    if kind == "sb3":
        from pgdeploy.importers.sb3 import import_sb3

        return import_sb3(path, vecnormalize=vecnormalize, env_id=env_id)
    if kind == "cleanrl":
        if vecnormalize is not None:
            raise ModelLoadError("--vecnormalize applies to Stable-Baselines3 zips only")
        from pgdeploy.importers.cleanrl import import_cleanrl

        return import_cleanrl(path, env_id=env_id)
    raise ModelLoadError(
        f"{str(path)!a} is neither a Stable-Baselines3 zip (members data, policy.pth) "
        "nor a CleanRL state dict"
    )
