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
from typing import Any

import numpy as np
import numpy.typing as npt
from torch import nn

from pgdeploy import __version__
from pgdeploy.errors import UnsupportedExportError
from pgdeploy.export.c.templates import DENSE, HEADER, PUBLIC_FUNCTIONS, SINGLE_HEAD_FUNCTIONS
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


@dataclass(frozen=True)
class CPlan:
    """How the raw observation row becomes the MLP's input, and what the actions add.

    The ONNX graph's encoder, as data: the ``continuous_columns`` of the row are clipped
    (to ``clip_low[i]``/``clip_high[i]``) and fed in that order, then one 0/1 feature per
    ``(onehot_columns[k], onehot_values[k])`` pair (``row[column] == value``). The logits
    split into action heads of ``head_sizes`` (one softmax each); a head's action is its
    ``head_starts`` entry + the index. :meth:`plain` is a 1-D Box and one Discrete from 0.
    """

    obs_dim: int
    continuous_columns: tuple[int, ...]
    onehot_columns: tuple[int, ...] = ()
    onehot_values: tuple[float, ...] = ()
    head_sizes: tuple[int, ...] = ()
    head_starts: tuple[int, ...] = ()

    @classmethod
    def plain(cls, obs_dim: int, n_actions: int) -> CPlan:
        return cls(obs_dim, tuple(range(obs_dim)), head_sizes=(n_actions,), head_starts=(0,))

    @property
    def is_plain_obs(self) -> bool:
        return self.continuous_columns == tuple(range(self.obs_dim)) and not self.onehot_columns

    @property
    def n_features(self) -> int:
        return len(self.continuous_columns) + len(self.onehot_columns)


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


def c_sources(
    deployable: DeployablePolicy, spec: PolicySpec, plan: CPlan | None = None
) -> CSources:
    """The header and source of the policy (run :func:`check_c_supported` first).

    ``plan`` (default: a plain 1-D Box, Discrete from 0) says how observations are encoded
    and how the logits split into action heads.
    """
    plan = plan or CPlan.plain(spec.obs_dim, spec.n_actions)
    layers = dense_layers(deployable)
    low = deployable.clip_low.detach().numpy().astype(np.float32)  # type: ignore[operator]
    high = deployable.clip_high.detach().numpy().astype(np.float32)  # type: ignore[operator]
    body = _source_body(layers, low, high, plan)
    model_hash = int(hashlib.sha256(body.encode()).hexdigest()[:8], 16)
    header = _header(spec, layers, model_hash, plan)
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


def _int_array(name: str, values: tuple[int, ...]) -> str:
    lines = [", ".join(map(str, values[i : i + 12])) for i in range(0, len(values), 12)]
    return f"static const int {name}[{len(values)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def _source_body(
    layers: list[DenseLayer],
    low: npt.NDArray[np.float32],
    high: npt.NDArray[np.float32],
    plan: CPlan,
) -> str:
    parts = []
    if plan.continuous_columns:
        parts += [
            _array("pgdeploy_clip_low", low, static=False),
            _array("pgdeploy_clip_high", high, static=False),
        ]
    if not plan.is_plain_obs:
        parts.append("/* The encoder: raw columns fed clipped, then one-hot (column, value). */\n")
        if plan.continuous_columns:
            parts.append(_int_array("continuous_columns", plan.continuous_columns))
        if plan.onehot_columns:
            parts.append(_int_array("onehot_columns", plan.onehot_columns))
            values = np.asarray(plan.onehot_values, dtype=np.float32)
            parts.append(_array("onehot_values", values))
    for i, layer in enumerate(layers):
        parts.append(
            f"/* layer {i}: {layer.weight_t.shape[0]} -> {layer.weight_t.shape[1]}"
            f"{', ReLU' if layer.relu else ''}; weight [in][out], row-major */\n"
        )
        parts.append(_array(f"w{i}", layer.weight_t))
        parts.append(_array(f"b{i}", layer.bias))
    parts.append("/* Action heads: their sizes and the env's start of each. */\n")
    parts.append(_int_array("head_sizes", plan.head_sizes))
    parts.append(_int_array("head_starts", plan.head_starts))
    public = PUBLIC_FUNCTIONS + (SINGLE_HEAD_FUNCTIONS if len(plan.head_sizes) == 1 else "")
    return "\n".join(parts) + "\n" + DENSE + _logits_function(layers, plan) + public


def _encoder_lines(plan: CPlan) -> list[str]:
    """C statements filling x[PGDEPLOY_N_FEATURES] from obs, as the graph's encoder does."""
    n_cont = len(plan.continuous_columns)
    column = "i" if plan.is_plain_obs else "continuous_columns[i]"
    lines = []
    if n_cont:
        lines += [
            f"    for (i = 0; i < {n_cont}; ++i) {{",
            f"        float v = obs[{column}];",
            "        v = v < pgdeploy_clip_low[i] ? pgdeploy_clip_low[i] : v;",
            "        x[i] = v > pgdeploy_clip_high[i] ? pgdeploy_clip_high[i] : v;",
            "    }",
        ]
    if plan.onehot_columns:
        lines += [
            f"    for (i = 0; i < {len(plan.onehot_columns)}; ++i) {{",
            f"        x[{n_cont} + i] = obs[onehot_columns[i]] == onehot_values[i] ? 1.0f : 0.0f;",
            "    }",
        ]
    return lines


def _logits_function(layers: list[DenseLayer], plan: CPlan) -> str:
    lines = [
        "/* Encode obs (clip, one-hot) into the MLP's input, then the MLP: logits. */",
        "static void logits_of(const float *obs, float *logits)",
        "{",
        "    float x[PGDEPLOY_N_FEATURES];",
        "    float a[PGDEPLOY_MAX_WIDTH];",
        "    float b[PGDEPLOY_MAX_WIDTH];",
        "    int i;",
        *_encoder_lines(plan),
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
    spec_data: dict[str, Any] = data["spec"]  # type: ignore[assignment]
    for key, note in (  # too long for a C string: drop the longest parts, say where they are
        ("action_names", "see PGDEPLOY_ACTION_NAMES"),
        ("observation_space", "too long for C; see model.onnx's metadata"),
    ):
        if len(c_string(text)) > _MAX_LITERAL and key in spec_data:
            spec_data[key] = note
            text = json.dumps(data, separators=(",", ":"))
    return text


def _bounds_macro(values: tuple[float, ...]) -> str:
    clamped = [min(max(v, -_FLOAT32_MAX), _FLOAT32_MAX) for v in values]
    return "{" + ", ".join(c_float(v) for v in clamped) + "}"


def _header(spec: PolicySpec, layers: list[DenseLayer], model_hash: int, plan: CPlan) -> str:
    max_width = max([layer.weight_t.shape[1] for layer in layers[:-1]] or [1])
    names = ""
    if spec.action_names:
        joined = ", ".join(c_string(n) for n in spec.action_names)
        names = (
            "/* The action names, in action order. */\n"
            f"#define PGDEPLOY_ACTION_NAMES {{{joined}}}\n"
        )
    shape = " -> ".join(
        [str(plan.n_features)]
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
        n_features=plan.n_features,
        n_continuous=len(plan.continuous_columns),
        n_heads=len(plan.head_sizes),
        head_sizes=", ".join(map(str, plan.head_sizes)),
        head_starts=", ".join(map(str, plan.head_starts)),
        single_head_macro=(
            "/* With one head: the action is PGDEPLOY_ACTION_START + the index. */\n"
            f"#define PGDEPLOY_ACTION_START {plan.head_starts[0]}\n"
            if len(plan.head_sizes) == 1
            else ""
        ),
        single_head_decls=(
            "int pgdeploy_greedy(const float *obs);\n"
            "int pgdeploy_sample(const float *obs, float uniform);\n"
            if len(plan.head_sizes) == 1
            else ""
        ),
        encoding=_encoding_comment(plan),
        clip_decls=(
            "extern const float pgdeploy_clip_low[PGDEPLOY_N_CONTINUOUS];\n"
            "extern const float pgdeploy_clip_high[PGDEPLOY_N_CONTINUOUS];\n"
            if plan.continuous_columns
            else ""
        ),
    )


def _encoding_comment(plan: CPlan) -> str:
    if plan.is_plain_obs:
        return " * obs is the observation itself (a 1-D Box): every value is clipped.\n"
    return (
        " * obs is the env's observation as one flat row (Dict/Tuple members in gymnasium's\n"
        " * flatten order; a Discrete value as its integer). PGDEPLOY_N_CONTINUOUS of its\n"
        " * columns are clipped, the others one-hot encoded inside, as in the ONNX graph.\n"
    )
