"""Which file a checkpoint is read from, checked without torch.

``pgdeploy export`` imports torch (about a second) before it can load a checkpoint, so a
mistyped path is checked first and fails at once, with the same error ``load_checkpoint``
gives.
"""

from __future__ import annotations

import os
from pathlib import Path

from pgdeploy.errors import CheckpointError


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path if it names a file; else a CheckpointError saying what it is."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {str(path)!r} {what}, expected a model.pt file")
    return path
