"""C99 source for a :class:`DeployablePolicy`: ``policy.h`` + ``policy.c``, weights inline.

The C code computes what the ONNX graph computes, in the same order: clip the raw
observation to the folded bounds, Linear (+ReLU) layers with float32 accumulation, a
max-subtracted softmax, argmax (first on ties) and the inverse-CDF count of the first
``n_actions - 1`` cumulative sums ``<= u``. Weights are written with ``%.9g``, which
round-trips every float32 exactly (checked here), and each dense layer stores its weight
transposed, ``[in][out]``, so the inner loop runs over outputs: each output is still a
plain sequential sum over inputs, and the compiler can vectorise it without reassociation.
"""

from __future__ import annotations

import hashlib
import json
import math
import textwrap
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from torch import nn

from pgdeploy import __version__
from pgdeploy.errors import UnsupportedExportError
from pgdeploy.export.c_templates import DENSE, HEADER, PUBLIC_FUNCTIONS
from pgdeploy.spec import FORMAT_VERSION, IO_CONTRACT, PolicySpec
from pgdeploy.training.policy import DeployablePolicy

#: C99 compilers need only accept string literals up to 4095 characters (-pedantic warns).
_MAX_LITERAL = 4000
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class CSources:
    """The text of ``policy.h`` and ``policy.c``."""

    header: str
    source: str


@dataclass(frozen=True)
class DenseLayer:
    weight_t: npt.NDArray[np.float32]  #: (in, out): transposed torch weight
    bias: npt.NDArray[np.float32]  #: (out,)
    relu: bool  #: a ReLU follows


def dense_layers(deployable: DeployablePolicy) -> list[DenseLayer]:
    """The Linear layers of the network, each with whether a ReLU follows it."""
    modules = list(deployable.net)
    layers = []
    for i, module in enumerate(modules):
        if isinstance(module, nn.Linear):
            relu = i + 1 < len(modules) and isinstance(modules[i + 1], nn.ReLU)
            weight = module.weight.detach().numpy().astype(np.float32)
            bias = module.bias.detach().numpy().astype(np.float32)
            layers.append(DenseLayer(np.ascontiguousarray(weight.T), bias, relu))
    return layers


def c_float(value: float) -> str:
    """An exact C float literal: ``%.9g`` round-trips float32 (verified), plus ``f``."""
    f32 = np.float32(value)
    if not math.isfinite(float(f32)):
        raise UnsupportedExportError(
            f"the policy holds a non-finite value ({float(f32)}), which C cannot embed and "
            "no policy should contain; retrain or check the checkpoint"
        )
    text = f"{float(f32):.9g}"
    if np.float32(float(text)) != f32:  # pragma: no cover - a property of %.9g
        raise AssertionError(f"{text} does not round-trip {f32!r}")
    if "." not in text and "e" not in text:
        text += ".0"
    return text + "f"


def c_string(text: str) -> str:
    """A C string literal: printable ASCII kept, everything else as octal escapes."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\?':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def comment_safe(text: str) -> str:
    """``text`` for a /* */ comment: no comment end, no non-ASCII."""
    return text.encode("ascii", "replace").decode().replace("*/", "* /")


def c_sources(deployable: DeployablePolicy, spec: PolicySpec) -> CSources:
    """The header and source of the policy (run :func:`check_c_supported` first)."""
    layers = dense_layers(deployable)
    low = deployable.clip_low.detach().numpy().astype(np.float32)  # type: ignore[operator]
    high = deployable.clip_high.detach().numpy().astype(np.float32)  # type: ignore[operator]
    body = _source_body(layers, low, high)
    model_hash = int(hashlib.sha256(body.encode()).hexdigest()[:8], 16)
    header = _header(spec, layers, model_hash)
    source = (
        f"/* policy.c: {comment_safe(spec.env_id)} policy written by pgdeploy {__version__}; "
        "see policy.h for the contract. Generated: do not edit. */\n"
        '#include "policy.h"\n#include <math.h>\n\n'
        f"#if PGDEPLOY_MODEL_HASH != 0x{model_hash:08x}UL\n"
        '#error "policy.h and policy.c come from different exports: copy both from one export"\n'
        "#endif\n\n"
        f"const char pgdeploy_metadata[] = PGDEPLOY_METADATA;\n\n{body}"
    )
    return CSources(header=header, source=source)


def _array(name: str, values: npt.NDArray[np.float32], *, static: bool = True) -> str:
    """``[static ]const float name[n] = {...};`` (flat, row-major), exact literals, 6 a line."""
    dims = f"[{values.size}]"
    flat = [c_float(float(v)) for v in values.reshape(-1)]
    lines = [", ".join(flat[i : i + 6]) for i in range(0, len(flat), 6)]
    prefix = "static const" if static else "const"
    return f"{prefix} float {name}{dims} = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def _source_body(
    layers: list[DenseLayer], low: npt.NDArray[np.float32], high: npt.NDArray[np.float32]
) -> str:
    parts = [
        _array("pgdeploy_clip_low", low, static=False),
        _array("pgdeploy_clip_high", high, static=False),
    ]
    for i, layer in enumerate(layers):
        parts.append(
            f"/* layer {i}: {layer.weight_t.shape[0]} -> {layer.weight_t.shape[1]}"
            f"{', ReLU' if layer.relu else ''}; weight [in][out], row-major */\n"
        )
        parts.append(_array(f"w{i}", layer.weight_t))
        parts.append(_array(f"b{i}", layer.bias))
    return "\n".join(parts) + "\n" + DENSE + _logits_function(layers) + PUBLIC_FUNCTIONS


def _logits_function(layers: list[DenseLayer]) -> str:
    lines = [
        "/* Clip obs to [pgdeploy_clip_low, pgdeploy_clip_high], then the MLP: logits. */",
        "static void logits_of(const float *obs, float *logits)",
        "{",
        "    float x[PGDEPLOY_OBS_DIM];",
        "    float a[PGDEPLOY_MAX_WIDTH];",
        "    float b[PGDEPLOY_MAX_WIDTH];",
        "    int i;",
        "    for (i = 0; i < PGDEPLOY_OBS_DIM; ++i) {",
        "        float v = obs[i];",
        "        v = v < pgdeploy_clip_low[i] ? pgdeploy_clip_low[i] : v;",
        "        x[i] = v > pgdeploy_clip_high[i] ? pgdeploy_clip_high[i] : v;",
        "    }",
    ]
    source = "x"
    for i, layer in enumerate(layers):
        n_in, n_out = layer.weight_t.shape
        target = "logits" if i == len(layers) - 1 else ("a" if i % 2 == 0 else "b")
        lines.append(
            f"    dense({source}, {n_in}, w{i}, b{i}, {n_out}, {int(layer.relu)}, {target});"
        )
        source = target
    if len(layers) == 1:
        lines.append("    (void)a;\n    (void)b;")
    elif len(layers) == 2:
        lines.append("    (void)b;")
    return "\n".join([*lines, "}", "", ""])


def _metadata_json(spec: PolicySpec) -> str:
    """The JSON the header carries: the spec (bounds are in arrays) and versions."""
    data = {
        "format_version": FORMAT_VERSION,
        "pgdeploy_version": __version__,
        "target": "c99",
        "spec": {k: v for k, v in spec.to_dict().items() if k not in ("obs_low", "obs_high")},
    }
    text = json.dumps(data, separators=(",", ":"))
    if len(c_string(text)) > _MAX_LITERAL:  # very long action names: keep the rest
        data["spec"]["action_names"] = "see PGDEPLOY_ACTION_NAMES"  # type: ignore[index]
        text = json.dumps(data, separators=(",", ":"))
    return text


def _bounds_macro(values: tuple[float, ...]) -> str:
    clamped = [min(max(v, -_FLOAT32_MAX), _FLOAT32_MAX) for v in values]
    return "{" + ", ".join(c_float(v) for v in clamped) + "}"


def _header(spec: PolicySpec, layers: list[DenseLayer], model_hash: int) -> str:
    max_width = max([layer.weight_t.shape[1] for layer in layers[:-1]] or [1])
    names = ""
    if spec.action_names:
        joined = ", ".join(c_string(n) for n in spec.action_names)
        names = (
            "/* The action names, in action order. */\n"
            f"#define PGDEPLOY_ACTION_NAMES {{{joined}}}\n"
        )
    shape = " -> ".join(
        [str(spec.obs_dim)]
        + [f"{layer.weight_t.shape[1]}{' ReLU' if layer.relu else ''}" for layer in layers]
    )
    contract = comment_safe(IO_CONTRACT)
    return HEADER.format(
        env=comment_safe(spec.env_id),
        version=__version__,
        shape=shape,
        contract="\n".join(" *   " + line for line in textwrap.wrap(contract, 86)),
        version_lit=c_string(__version__),
        format_version=FORMAT_VERSION,
        env_lit=c_string(spec.env_id),
        obs_dim=spec.obs_dim,
        n_actions=spec.n_actions,
        max_width=max_width,
        model_hash=f"0x{model_hash:08x}UL",
        low=_bounds_macro(spec.obs_low),
        high=_bounds_macro(spec.obs_high),
        names=names,
        metadata=c_string(_metadata_json(spec)),
    )
