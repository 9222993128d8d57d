"""Foreign state dicts -> float32 numpy layers: ``torch.load(weights_only=True)`` only.

The layer chain is found from the key names and checked by the tensor shapes (each
layer's input width is the previous one's output width), so widths need no config.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from pgdeploy._optional import require
from pgdeploy.errors import ModelLoadError

Layer = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]


def load_state_dict(raw: bytes, *, source: str) -> dict[str, npt.NDArray[np.float32]]:
    """A state dict of float tensors, as float32 arrays; anything else is refused."""
    torch = require("torch", extra="train", feature="importing a PyTorch state dict")
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for hostile or corrupt files
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ModelLoadError(
            f"{source} is not a plain PyTorch state dict ({type(exc).__name__}: "
            f"{ascii(first)[1:-1]}); it was read with torch.load(weights_only=True)"
        ) from None
    if not isinstance(state, Mapping):
        raise ModelLoadError(f"{source} holds a {type(state).__name__}, not a state dict")
    arrays: dict[str, npt.NDArray[np.float32]] = {}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ModelLoadError(f"{source}: entry {ascii(key)[:60]} is not a named tensor")
        if not value.dtype.is_floating_point:
            raise ModelLoadError(f"{source}: tensor {key} has dtype {value.dtype}, not float")
        array = value.detach().to(torch.float32).numpy().copy()
        if not np.isfinite(array).all():
            raise ModelLoadError(f"{source}: tensor {key} holds NaN or infinity")
        arrays[key] = array
    return arrays


def linear_chain(
    state: Mapping[str, npt.NDArray[np.float32]], prefix: str, *, source: str
) -> list[Layer]:
    """The Linear layers ``{prefix}{i}.weight/bias`` of an ``nn.Sequential`` with an
    activation between them (indices 0, 2, 4, ...), in order."""
    pattern = re.compile(re.escape(prefix) + r"([0-9]+)\.(weight|bias)")
    found: dict[int, dict[str, npt.NDArray[np.float32]]] = {}
    for key, value in state.items():
        match = pattern.fullmatch(key)
        if match:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = value
    indices = sorted(found)
    if indices != list(range(0, 2 * len(indices), 2)):
        raise ModelLoadError(
            f"{source}: layers {prefix}{indices} are not an MLP of Linear and activation "
            "layers (expected indices 0, 2, 4, ...)"
        )
    return [_layer(found[i], f"{prefix}{i}", source) for i in indices]


def _layer(entry: Mapping[str, Any], name: str, source: str) -> Layer:
    weight, bias = entry.get("weight"), entry.get("bias")
    if weight is None or bias is None:
        raise ModelLoadError(f"{source}: layer {name} needs a weight and a bias")
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ModelLoadError(
            f"{source}: layer {name} has weight {list(weight.shape)} and bias "
            f"{list(bias.shape)}, expected (out, in) and (out,)"
        )
    return weight, bias


def check_chain(layers: list[Layer], n_in: int, n_out: int, *, source: str) -> None:
    """Widths must chain from ``n_in`` features to ``n_out`` logits."""
    width = n_in
    for i, (weight, _) in enumerate(layers):
        if weight.shape[1] != width:
            raise ModelLoadError(
                f"{source}: layer {i} takes {weight.shape[1]} inputs, expected {width}"
            )
        width = weight.shape[0]
    if width != n_out:
        raise ModelLoadError(f"{source}: the policy has {width} outputs, the spaces need {n_out}")
