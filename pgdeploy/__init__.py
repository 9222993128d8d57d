"""pgdeploy: train a REINFORCE policy, export it, and run it anywhere onnxruntime runs.

``import pgdeploy`` is light (no torch, no gymnasium): the runtime lives in
:mod:`pgdeploy.runtime`; training and export are in their own modules and need the
``train`` extra (``pip install "pgdeploy-rl[train]"``).
"""

__version__ = "0.1.0"
