"""Optional dependencies: imported where a feature needs them, named with their fix when absent.

The plain install is the runtime (numpy + onnxruntime); training, export, TensorBoard and
video need extras. Every feature that needs one asks :func:`require` for its module, so a
user without it gets one :class:`~pgdeploy.errors.MissingDependencyError` that names the
extra and the exact ``pip install`` command, never a bare ``ModuleNotFoundError`` from deep
inside a call.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pgdeploy._process import gc_paused
from pgdeploy.errors import MissingDependencyError

#: The distribution name on package indexes. The import name stays ``pgdeploy``; the public
#: project called "pgdeploy" is unrelated, so install commands must never name it.
DISTRIBUTION = "pgdeploy-rl"


def install_command(extra: str) -> str:
    """The pip command that installs ``extra`` (it also works in an install from a clone)."""
    return f'pip install "{DISTRIBUTION}[{extra}]"'


def missing(module: str, *, extra: str, feature: str) -> MissingDependencyError:
    """The error for ``feature`` lacking ``module``, naming the extra that provides it."""
    return MissingDependencyError(
        f"{feature} needs the '{module}' package, which is not installed; "
        f"install the '{extra}' extra with: {install_command(extra)}"
    )


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise :class:`MissingDependencyError`.

    Only the absence of ``module`` itself (or of a package it is part of) becomes the
    typed error; an ImportError of anything else inside it is a real bug and propagates.
    These are the heavy imports (torch first), so the garbage collector is paused for them
    (:func:`pgdeploy._process.gc_paused`).
    """
    try:
        with gc_paused():
            return importlib.import_module(module)
    except ImportError as exc:
        absent = exc.name or ""
        if absent and not (module == absent or module.startswith(absent + ".")):
            raise
        raise missing(module, extra=extra, feature=feature) from exc
