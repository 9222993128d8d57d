"""What ``pgdeploy export`` does, callable from Python: any model file, any target, one call.

Torch-free until the file is known to exist and to be something export reads, so a wrong
path fails at once rather than after torch's import.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pgdeploy.errors import InvalidArgumentError


def export_file(
    path: str | os.PathLike[str],
    *,
    target: str = "onnx",
    progress: Callable[[str], None] | None = None,
    vecnormalize: str | os.PathLike[str] | None = None,
    trust_env_module: bool = False,
    **options: Any,
) -> Any:
    """A pgdeploy checkpoint through :func:`~pgdeploy.export.export_checkpoint` (ONNX) or
    :func:`~pgdeploy.export.export_c` (C), an SB3 zip or CleanRL file through
    :func:`~pgdeploy.export.export_foreign`; returns the report, which renders itself."""
    from pgdeploy.importers import foreign_kind
    from pgdeploy.training.checkpoint_file import checkpoint_file

    say = progress or (lambda line: None)
    if foreign_kind(path) is not None:
        from pgdeploy.export import export_foreign

        if options.get("wrapper") is not None:
            raise InvalidArgumentError(
                "--wrapper applies to pgdeploy checkpoints (model.pt) only; name the env of "
                "an imported policy with --env"
            )
        options.pop("wrapper", None)

        return export_foreign(
            path, target=target, vecnormalize=vecnormalize, progress=progress, **options
        )
    if vecnormalize is not None:
        raise InvalidArgumentError(
            "--vecnormalize applies to Stable-Baselines3 zips only; a pgdeploy checkpoint "
            "carries its own statistics"
        )
    checkpoint_file(path)  # a wrong path fails now, not after torch's import
    say("loading torch, onnx and the checkpoint")
    options |= {"trust_env_module": trust_env_module, "progress": progress}
    if target == "c":
        from pgdeploy.export import export_c

        return export_c(path, **options)
    if {"quantize", "min_agreement"} & set(options):
        raise InvalidArgumentError("quantize and min_agreement need the C target")
    from pgdeploy.export import export_checkpoint

    return export_checkpoint(path, **options)
