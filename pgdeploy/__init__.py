"""pgdeploy: train a REINFORCE policy, export it, and run it anywhere onnxruntime runs.

``from pgdeploy import Agent, train, export`` is the public face: the runtime agent, a
training run (:func:`pgdeploy.training.launch.run_training`) and the export package
(``export.export_checkpoint``, ``export.export_c``). Each name is imported on
first use, so ``import pgdeploy`` stays light and a runtime-only install (numpy +
onnxruntime, no torch) can use :class:`Agent`; ``train`` and ``export`` need the ``train``
extra (``pip install "pgdeploy-rl[train]"``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Agent", "__version__", "export", "train"]

#: Public name -> (module, attribute), imported on first access (PEP 562).
_LAZY = {
    "Agent": ("pgdeploy.runtime.agent", "Agent"),
    "train": ("pgdeploy.training.launch", "run_training"),
    "export": ("pgdeploy.export", ""),
}

if TYPE_CHECKING:
    from pgdeploy import export
    from pgdeploy.runtime.agent import Agent
    from pgdeploy.training.launch import run_training as train


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pgdeploy' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    imported = importlib.import_module(module)
    value = getattr(imported, attribute) if attribute else imported
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
