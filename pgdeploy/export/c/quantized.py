"""int8 C for a :class:`PolicyNetwork`: the weights in a quarter of the bytes, verified.

Two arithmetics, chosen by ``mode``:

``int8`` (float accumulation; for cores with an FPU, e.g. Cortex-M4F)
    Each Linear layer's weight is an int8 matrix ``q`` of shape ``(in, out)``, quantized
    symmetrically per output channel: ``s_j = max_i |W_ji| / 127``,
    ``q_ij = round(W_ji / s_j)``; its bias is int16 in the same units,
    ``round(b_j / s_j)`` (``s_j`` grows where a bias would not fit). The C sums
    ``x_i * (float)q_ij`` in float32, in input order, adds the bias, and multiplies by
    ``s_j``. After ReLU and leaky ReLU
    (``act(s z) = s act(z)`` for ``s > 0``) the multiplication is folded into the next
    layer's weights instead (``W' = W diag(s)``, quantized afterwards), so a hidden layer
    stores no scales at all; but that requantizes the next layer coarsely where the
    ``s_j`` differ a lot, so :func:`quantize` folds only where calibration observations
    show no loss of agreement. The observation encoding (clip, normalisation, one-hot) and
    the heads (softmax with ``expf``, or argmax) stay float32, as in the float target.

``int8-integer`` (int32 accumulation; for FPU-less cores, e.g. Cortex-M0)
    Activations are integers too. Each encoded feature is quantized to int16 with its own
    scale ``sx_i`` (from calibration observations: ``max|x_i| / 32767``; one-hot features
    ``1/32767``) as ``q = round(x * (1/sx_i))`` clamped to +-32767, the scale folded into
    the first layer's weights. Layers accumulate ``activation * int8 weight`` in int32
    plus an int32 bias (a worst-case bound of 2^30 is checked); a hidden ReLU output is
    requantized to 8 bits (0..255) by a per-channel right shift (``k_j``, rounding half
    up, saturating) chosen so the calibration maximum fits, the ``s_j 2^k_j``
    folded into the next layer. The last layer has one scale for all logits, so the
    greedy action is the argmax of the int32 accumulators: no float after the encoder.
    Greedy control only: ``pgdeploy_probs`` is one-hot on the greedy action and
    ``pgdeploy_sample_heads`` returns the greedy actions. ReLU networks only.

Both are emulated here in numpy (:func:`quantized_logits`), so tests can hold the C to
its documented arithmetic, and compared with the float network
(:func:`float_logits`) at export. Nothing read from a file reaches the C except the env
id, as an escaped string literal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy import __version__
from pgdeploy.errors import UnsupportedExportError
from pgdeploy.export.c.source import c_float, c_string
from pgdeploy.export.tolerance import activate
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.spec import PolicySpec

#: The ``--quantize`` choices; ``float32`` is the float generator's (not this module's).
QUANTIZE_MODES = ("float32", "int8", "int8-integer")
INT8_MODES = ("int8", "int8-integer")
#: Activations through which a positive per-channel scale can move to the next layer.
_HOMOGENEOUS = ("relu", "leaky_relu")
_MAX_SHIFT = 30
#: int8-integer: the encoded features' integer range (int16: 4 inputs cost no flash, and
#: int8 inputs cost CartPole's on-policy agreement 92 % against 98 %), and the hidden
#: activations' (8 bits: ReLU outputs are >= 0, so 0..255).
INPUT_LEVELS = 32767
HIDDEN_LEVELS = 255
_ACC_LIMIT = 2**30  # worst-case |accumulator|, with room for the rounding term

Int8 = npt.NDArray[np.int8]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class QuantLayer:
    """One Linear layer: ``q`` int8 ``(in, out)``, its bias, and how to rescale."""

    q: Int8
    #: (out,) bias in accumulator units: int16 values (int8), int32 (int8-integer).
    bias: npt.NDArray[np.int32]
    #: int8 mode: (out,) float32 multiplier after the sum, or None (folded forward).
    #: int8-integer: None.
    scale: F32 | None
    #: int8-integer hidden layers: (out,) right shifts requantizing to int8.
    shift: npt.NDArray[np.uint8] | None = None

    @property
    def n_in(self) -> int:
        return int(self.q.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.q.shape[1])


@dataclass(frozen=True)
class QuantizedNetwork:
    """A :class:`PolicyNetwork` in int8: the float network (its encoder) plus the layers."""

    mode: str
    network: PolicyNetwork
    layers: tuple[QuantLayer, ...]
    #: int8-integer: (n_features,) float32 ``1 / sx_i`` multiplying each encoded feature.
    input_multiplier: F32 | None = None


def check_quantizable(network: PolicyNetwork, mode: str) -> None:
    """UnsupportedExportError unless ``mode`` can express ``network``."""
    if mode not in INT8_MODES:
        raise UnsupportedExportError(
            f"quantize mode {mode!r} is not one of {list(INT8_MODES)} (float32 is the float target)"
        )
    if mode == "int8-integer" and network.activation != "relu":
        raise UnsupportedExportError(
            f"--quantize int8-integer supports ReLU networks only, this one uses "
            f"{network.activation!r}; use --quantize int8 (float accumulation) instead"
        )


# --- the float reference ------------------------------------------------------------------


def encode(network: PolicyNetwork, spec: PolicySpec, obs: F32) -> F32:
    """The MLP's float32 input for raw rows: clip, normalise, norm_clip, then one-hot."""
    layout = spec.obs_layout
    obs = np.asarray(obs, np.float32)
    x = obs[:, list(layout.continuous_columns)]
    x = np.minimum(np.maximum(x, network.clip_low), network.clip_high)
    if network.obs_mean is not None and network.obs_std is not None:
        x = (x - network.obs_mean) / network.obs_std
        if network.norm_clip is not None:
            clip = np.float32(network.norm_clip)
            x = np.minimum(np.maximum(x, -clip), clip)
    values = np.asarray(layout.onehot_values, np.float32)
    onehot = (obs[:, list(layout.onehot_columns)] == values).astype(np.float32)
    return np.ascontiguousarray(np.concatenate([x, onehot], axis=1), dtype=np.float32)


def float_logits(network: PolicyNetwork, spec: PolicySpec, obs: F32) -> F32:
    """The float32 network's logits (torch, the training arithmetic)."""
    h = torch.from_numpy(encode(network, spec, obs))
    with torch.no_grad():
        for i, (weight, bias) in enumerate(network.layers):
            h = h @ torch.from_numpy(weight).T + torch.from_numpy(bias)
            if i < len(network.layers) - 1:
                h = activate(network.activation, network.activation_alpha, h)
    return np.ascontiguousarray(h.numpy(), dtype=np.float32)


def head_probs(logits: F32, spec: PolicySpec, head: str) -> F32:
    """Probabilities per action head: softmax, or one-hot on the first maximum."""
    out = np.zeros_like(logits, dtype=np.float32)
    offset = 0
    for size in spec.action_layout.nvec:
        part = logits[:, offset : offset + size]
        if head == "softmax":
            out[:, offset : offset + size] = torch.softmax(torch.from_numpy(part), dim=1).numpy()
        else:
            out[np.arange(len(part)), offset + part.argmax(axis=1)] = 1.0
        offset += size
    return out


def greedy_indices(probs: F32, spec: PolicySpec) -> npt.NDArray[np.int64]:
    """(n, heads) argmax per head, the first on ties (no starts added)."""
    columns, offset = [], 0
    for size in spec.action_layout.nvec:
        columns.append(probs[:, offset : offset + size].argmax(axis=1))
        offset += size
    return np.stack(columns, axis=1).astype(np.int64)


# --- quantization ---------------------------------------------------------------------------


def _per_channel(matrix: npt.NDArray[np.float64]) -> tuple[Int8, npt.NDArray[np.float64]]:
    """Symmetric per-row int8: (q (rows, cols), scale (rows,)); an all-zero row gets 1."""
    top = np.abs(matrix).max(axis=1)
    scale = np.where(top > 0, top / 127.0, 1.0)
    q = np.clip(np.rint(matrix / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def quantize(
    network: PolicyNetwork,
    spec: PolicySpec,
    mode: str,
    calibration: F32 | None = None,
) -> QuantizedNetwork:
    """The int8 form of ``network`` (see the module docstring for both arithmetics).

    ``calibration`` (raw observation rows) sets the integer path's activation scales (it
    is required for ``int8-integer``). For ``int8`` it decides whether the hidden scales
    are folded through ReLU (fewer bytes): only where the folded network's greedy actions
    agree with the float network's on it at least as often as the unfolded one's; without
    calibration rows nothing is folded.
    """
    check_quantizable(network, mode)
    if mode == "int8":
        kept = _quantize_float_accumulation(network, fold=False)
        if calibration is None or len(calibration) == 0 or network.activation not in _HOMOGENEOUS:
            return kept
        folded = _quantize_float_accumulation(network, fold=True)
        rows = np.asarray(calibration, np.float32)
        want = greedy_indices(float_logits(network, spec, rows), spec)

        def agreement(qnet: QuantizedNetwork) -> float:
            got = greedy_indices(quantized_logits(qnet, spec, rows), spec)
            return float((got == want).all(axis=1).mean())

        return folded if agreement(folded) >= agreement(kept) else kept
    if calibration is None or len(calibration) == 0:
        raise UnsupportedExportError("--quantize int8-integer needs calibration observations")
    return _quantize_integer(network, spec, np.asarray(calibration, np.float32))


def _quantize_float_accumulation(network: PolicyNetwork, *, fold: bool) -> QuantizedNetwork:
    layers = []
    carry: npt.NDArray[np.float64] | None = None  # per-input scale from the previous layer
    last = len(network.layers) - 1
    for i, (weight, bias) in enumerate(network.layers):
        w = weight.astype(np.float64) * (1.0 if carry is None else carry[None, :])
        b = bias.astype(np.float64)
        top = np.maximum(np.abs(w).max(axis=1) / 127.0, np.abs(b) / 32767.0)
        scale = np.where(top > 0, top, 1.0)
        q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
        qb = np.clip(np.rint(b / scale), -32767, 32767).astype(np.int32)
        folded = fold and i < last and network.activation in _HOMOGENEOUS
        kept = None if folded else scale.astype(np.float32)
        layers.append(QuantLayer(np.ascontiguousarray(q.T), qb, kept))
        carry = scale if folded else None
    return QuantizedNetwork("int8", network, tuple(layers))


def _quantize_integer(network: PolicyNetwork, spec: PolicySpec, rows: F32) -> QuantizedNetwork:
    features = encode(network, spec, rows)
    n_cont = len(spec.obs_layout.continuous_columns)
    top = np.abs(features).max(axis=0).astype(np.float64)
    top[n_cont:] = 1.0  # one-hot features: 1 -> INPUT_LEVELS
    sx = np.where(top > 0, top / INPUT_LEVELS, 1.0 / INPUT_LEVELS)
    multiplier = (1.0 / sx).astype(np.float32)
    carry = 1.0 / multiplier.astype(np.float64)
    qx = _quantize_input(features, multiplier)
    layers = []
    last = len(network.layers) - 1
    h = qx.astype(np.int64)
    for i, (weight, bias) in enumerate(network.layers):
        w = weight.astype(np.float64) * carry[None, :]
        if i < last:
            q, scale = _per_channel(w)
        else:  # one scale for every logit: the argmax of the accumulators is the action
            s = float(np.abs(w).max()) / 127.0 or 1.0
            q = np.clip(np.rint(w / s), -127, 127).astype(np.int8)
            scale = np.full(len(w), s)
        b = np.rint(bias.astype(np.float64) / scale)
        levels = INPUT_LEVELS if i == 0 else HIDDEN_LEVELS
        worst = float((np.abs(q.astype(np.float64)).sum(axis=1) * levels + np.abs(b)).max())
        if worst > _ACC_LIMIT:
            raise UnsupportedExportError(
                f"--quantize int8-integer: layer {i}'s int32 accumulator could reach "
                f"{worst:.3g} > 2^30 (too many inputs or too large a bias); use --quantize int8"
            )
        qb = b.astype(np.int32)
        acc = h @ q.T.astype(np.int64) + qb
        if i < last:
            peak = np.maximum(acc.max(axis=0), 1)
            shift = np.clip(np.ceil(np.log2(peak / HIDDEN_LEVELS)), 0, _MAX_SHIFT)
            shift = shift.astype(np.uint8)
            layers.append(QuantLayer(np.ascontiguousarray(q.T), qb, None, shift))
            carry = scale * 2.0 ** shift.astype(np.float64)
            h = _requantize(acc, shift)
        else:
            layers.append(QuantLayer(np.ascontiguousarray(q.T), qb, None))
    return QuantizedNetwork("int8-integer", network, tuple(layers), multiplier)


def _quantize_input(features: F32, multiplier: F32) -> npt.NDArray[np.int64]:
    """The C's input quantization, float32 step for step: x * m, clamp, round half away."""
    v = (features * multiplier).astype(np.float32)
    v = np.minimum(np.maximum(v, np.float32(-INPUT_LEVELS)), np.float32(INPUT_LEVELS))
    up = (v + np.float32(0.5)).astype(np.float32)
    down = (np.float32(0.5) - v).astype(np.float32)
    out: npt.NDArray[np.int64] = np.where(v >= 0, np.trunc(up), -np.trunc(down)).astype(np.int64)
    return out


def _requantize(acc: npt.NDArray[np.int64], shift: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    k = shift.astype(np.int64)
    half = np.where(k > 0, np.left_shift(1, np.maximum(k - 1, 0)), 0)
    out: npt.NDArray[np.int64] = np.minimum((np.maximum(acc, 0) + half) >> k, HIDDEN_LEVELS)
    return out


def quantized_logits(qnet: QuantizedNetwork, spec: PolicySpec, obs: F32) -> F32:
    """The C's arithmetic in numpy: int8 mode up to float32 summation order, int8-integer
    exactly (its logits are the int32 accumulators, in units of the last layer's scale)."""
    net = qnet.network
    x = encode(net, spec, obs)
    last = len(qnet.layers) - 1
    if qnet.mode == "int8":
        h = torch.from_numpy(x)
        with torch.no_grad():
            for i, layer in enumerate(qnet.layers):
                q = torch.from_numpy(layer.q.astype(np.float32))
                h = h @ q + torch.from_numpy(layer.bias.astype(np.float32))
                if layer.scale is not None:
                    h = h * torch.from_numpy(layer.scale)
                if i < last:
                    h = activate(net.activation, net.activation_alpha, h)
        return np.ascontiguousarray(h.numpy(), dtype=np.float32)
    assert qnet.input_multiplier is not None
    hq = _quantize_input(x, qnet.input_multiplier)
    for i, layer in enumerate(qnet.layers):
        acc = hq @ layer.q.astype(np.int64) + layer.bias.astype(np.int64)
        if i < last:
            assert layer.shift is not None
            hq = _requantize(acc, layer.shift)
    return acc.astype(np.float32)


def quantized_probs(qnet: QuantizedNetwork, spec: PolicySpec, obs: F32) -> F32:
    """What the C's ``pgdeploy_probs`` returns (int8-integer: one-hot on the greedy action)."""
    head = "argmax" if qnet.mode == "int8-integer" else qnet.network.head
    return head_probs(quantized_logits(qnet, spec, obs), spec, head)


# --- C text ---------------------------------------------------------------------------------


def _c_array(
    ctype: str, name: str, values: npt.NDArray[np.generic], *, public: bool = False
) -> str:
    """``[static ]const ctype name[n] = {...};``, flat row-major, 12 a line."""
    flat = values.reshape(-1)
    # An unsuffixed decimal constant takes the first of int, long that holds its value.
    items = [c_float(float(v)) if ctype == "float" else str(int(v)) for v in flat]
    lines = [", ".join(items[i : i + 12]) for i in range(0, len(items), 12)]
    prefix = "const" if public else "static const"
    return f"{prefix} {ctype} {name}[{len(items)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


_ACTIVATION_C = {
    "relu": "return v > 0.0f ? v : 0.0f;",
    "tanh": "return tanhf(v);",
    "elu": "return v > 0.0f ? v : expm1f(v);",
    "leaky_relu": "return v > 0.0f ? v : {alpha} * v;",
    "silu": "return v / (1.0f + expf(-v));",
    "gelu": "return 0.5f * v * (1.0f + erff(v * 0.707106781f));",
}


@dataclass(frozen=True)
class QuantizedSources:
    """The text of ``policy.h`` and ``policy.c`` (same fields as the float target's)."""

    header: str
    source: str


def quantized_sources(spec: PolicySpec, qnet: QuantizedNetwork) -> QuantizedSources:
    """``policy.h``/``policy.c`` with the float target's API, for ``qnet``'s arithmetic."""
    layout, actions = spec.obs_layout, spec.action_layout
    integer = qnet.mode == "int8-integer"
    body = _data(spec, qnet) + (_integer_code(spec, qnet) if integer else _float_code(spec, qnet))
    body = body.replace("@BIAS@", _bias_type(qnet))
    if integer:
        body += _PUBLIC_INTEGER
    elif qnet.network.head == "softmax":
        body += _FINITE + _SOFTMAX + _PUBLIC_FLOAT.replace("@HEAD@", "softmax")
    else:
        body += _FINITE + _ONEHOT_ARGMAX + _PUBLIC_FLOAT.replace("@HEAD@", "onehot_argmax")
    if actions.n_branches == 1:
        body += _SINGLE_HEAD
    model_hash = int(hashlib.sha256(body.encode()).hexdigest()[:8], 16)
    widths = [layer.n_out for layer in qnet.layers[:-1]] or [1]
    defines = {
        "PGDEPLOY_VERSION": c_string(__version__),
        "PGDEPLOY_QUANTIZE": c_string(qnet.mode),
        "PGDEPLOY_OBS_DIM": str(spec.obs_dim),
        "PGDEPLOY_N_ACTIONS": str(spec.n_actions),
        "PGDEPLOY_N_HEADS": str(actions.n_branches),
        "PGDEPLOY_HEAD_SIZES": "{" + ", ".join(map(str, actions.nvec)) + "}",
        "PGDEPLOY_HEAD_STARTS": "{" + ", ".join(map(str, actions.start)) + "}",
        "PGDEPLOY_N_FEATURES": str(layout.n_features),
        "PGDEPLOY_N_CONTINUOUS": str(len(layout.continuous_columns)),
        "PGDEPLOY_MAX_WIDTH": str(max(widths)),
        "PGDEPLOY_MODEL_HASH": f"0x{model_hash:08x}UL",
    }
    if actions.n_branches == 1:
        defines["PGDEPLOY_ACTION_START"] = str(actions.start[0])
    header = (
        _HEADER_TOP.replace("@MODE@", _MODE_NOTE[qnet.mode])
        + "".join(f"#define {k} {v}\n" for k, v in defines.items())
        # The one string from the file: an escaped literal, never a macro or a comment.
        + f"static const char PGDEPLOY_ENV_ID[] = {c_string(spec.env_id)};\n"
        + _HEADER_DECLS
        + (_SINGLE_HEAD_DECLS if actions.n_branches == 1 else "")
        + _HEADER_END
    )
    source = (
        "/* policy.c: an int8 policy written by pgdeploy; see policy.h. Generated: "
        "do not edit. */\n"
        '#include "policy.h"\n'
        + ("#include <stdint.h>\n" if integer else "#include <math.h>\n#include <stdint.h>\n")
        + f"\n#if PGDEPLOY_MODEL_HASH != 0x{model_hash:08x}UL\n"
        '#error "policy.h and policy.c come from different exports: copy both from one export"\n'
        "#endif\n\n" + body
    )
    return QuantizedSources(header=header, source=source)


def _bias_type(qnet: QuantizedNetwork) -> str:
    """int16_t when every integer bias fits (half the bytes), else int32_t."""
    biases = [np.abs(layer.bias.astype(np.int64)).max() for layer in qnet.layers]
    return "int16_t" if max(biases, default=0) <= 32767 else "int32_t"


def _data(spec: PolicySpec, qnet: QuantizedNetwork) -> str:
    layout, net = spec.obs_layout, qnet.network
    parts = []
    if layout.continuous_columns:
        parts.append(_c_array("float", "clip_low", net.clip_low))
        parts.append(_c_array("float", "clip_high", net.clip_high))
        parts.append(_c_array("int", "cont_columns", np.asarray(layout.continuous_columns)))
        if net.obs_mean is not None and net.obs_std is not None:
            parts.append(_c_array("float", "obs_mean", net.obs_mean))
            parts.append(_c_array("float", "obs_std", net.obs_std))
    if layout.onehot_columns:
        parts.append(_c_array("int", "onehot_columns", np.asarray(layout.onehot_columns)))
        parts.append(
            _c_array("float", "onehot_values", np.asarray(layout.onehot_values, np.float32))
        )
    if qnet.input_multiplier is not None:
        parts.append(_c_array("float", "input_multiplier", qnet.input_multiplier))
    for i, layer in enumerate(qnet.layers):
        parts.append(_c_array("signed char", f"q{i}", layer.q))
        if layer.scale is not None:
            parts.append(_c_array("float", f"s{i}", layer.scale))
        parts.append(_c_array(_bias_type(qnet), f"b{i}", layer.bias))
        if layer.shift is not None:
            parts.append(_c_array("unsigned char", f"k{i}", layer.shift))
    parts.append(_c_array("int", "head_sizes", np.asarray(spec.action_layout.nvec)))
    parts.append(_c_array("int", "head_starts", np.asarray(spec.action_layout.start)))
    return "\n".join(parts) + "\n"


def _encoder_c(spec: PolicySpec, net: PolicyNetwork) -> list[str]:
    """Statements filling float x[PGDEPLOY_N_FEATURES] from obs, as :func:`encode` does."""
    layout = spec.obs_layout
    n_cont = len(layout.continuous_columns)
    lines = []
    if n_cont:
        lines += [
            f"    for (i = 0; i < {n_cont}; ++i) {{",
            "        float v = obs[cont_columns[i]];",
            "        v = v < clip_low[i] ? clip_low[i] : v;",
            "        v = v > clip_high[i] ? clip_high[i] : v;",
        ]
        if net.obs_mean is not None:
            lines.append("        v = (v - obs_mean[i]) / obs_std[i];")
            if net.norm_clip is not None:
                c = c_float(net.norm_clip)
                lines.append(f"        v = v < -{c} ? -{c} : v;")
                lines.append(f"        v = v > {c} ? {c} : v;")
        lines += ["        x[i] = v;", "    }"]
    if layout.onehot_columns:
        lines += [
            f"    for (i = 0; i < {len(layout.onehot_columns)}; ++i) {{",
            f"        x[{n_cont} + i] = obs[onehot_columns[i]] == onehot_values[i] ? 1.0f : 0.0f;",
            "    }",
        ]
    return lines


def _float_code(spec: PolicySpec, qnet: QuantizedNetwork) -> str:
    net = qnet.network
    act = _ACTIVATION_C[net.activation].replace("{alpha}", c_float(net.activation_alpha))
    lines = [
        _QDENSE,
        "static float act(float v)",
        "{",
        f"    {act}",
        "}",
        "",
        "static void logits_of(const float *obs, float *logits)",
        "{",
        "    float x[PGDEPLOY_N_FEATURES];",
        "    float a[PGDEPLOY_MAX_WIDTH];",
        "    float b[PGDEPLOY_MAX_WIDTH];",
        "    int i;",
        *_encoder_c(spec, net),
    ]
    source, last = "x", len(qnet.layers) - 1
    for i, layer in enumerate(qnet.layers):
        target = "logits" if i == last else ("a" if i % 2 == 0 else "b")
        lines.append(f"    qdense({source}, {layer.n_in}, q{i}, b{i}, {layer.n_out}, {target});")
        if layer.scale is not None or i < last:
            lines.append(f"    for (i = 0; i < {layer.n_out}; ++i) {{")
            value = f"{target}[i] * s{i}[i]" if layer.scale is not None else f"{target}[i]"
            lines.append(f"        {target}[i] = {value if i == last else f'act({value})'};")
            lines.append("    }")
        source = target
    lines += ["    (void)a;", "    (void)b;", "}", "", ""]
    return "\n".join(lines)


def _integer_code(spec: PolicySpec, qnet: QuantizedNetwork) -> str:
    net = qnet.network
    lines = [
        _IDENSE,
        "static void logits_of(const float *obs, int32_t *logits)",
        "{",
        "    float x[PGDEPLOY_N_FEATURES];",
        "    int16_t qx[PGDEPLOY_N_FEATURES];",
        "    int16_t h[PGDEPLOY_MAX_WIDTH];",
        "    int32_t acc[PGDEPLOY_MAX_WIDTH];",
        "    int i;",
        *_encoder_c(spec, net),
        "    for (i = 0; i < PGDEPLOY_N_FEATURES; ++i) {",
        "        float v = x[i] * input_multiplier[i];",
        "        v = v < -32767.0f ? -32767.0f : v;",
        "        v = v > 32767.0f ? 32767.0f : v;",
        "        qx[i] = (int16_t)(v >= 0.0f ? (int32_t)(v + 0.5f) : -(int32_t)(0.5f - v));",
        "    }",
    ]
    source, last = "qx", len(qnet.layers) - 1
    for i, layer in enumerate(qnet.layers):
        if i == last:
            lines.append(f"    idense({source}, {layer.n_in}, q{i}, b{i}, {layer.n_out}, logits);")
        else:
            lines.append(f"    idense({source}, {layer.n_in}, q{i}, b{i}, {layer.n_out}, acc);")
            lines.append(f"    requantize(acc, k{i}, {layer.n_out}, h);")
        source = "h"
    lines += ["    (void)h;", "    (void)acc;", "}", "", ""]
    return "\n".join(lines)


_MODE_NOTE = {
    "int8": (
        " * Arithmetic (--quantize int8): int8 weights, symmetric per output channel, an int16\n"
        " * bias in the same units; float32 activations and float32 accumulation\n"
        " * in input order, then the channel's scale (after ReLU folded into the next\n"
        " * layer where calibration showed that costs no agreement).\n"
        " * The encoder (clip, normalisation, one-hot) and the heads are float32 as in the\n"
        " * float target. Needs <math.h> (expf for softmax and some activations).\n"
    ),
    "int8-integer": (
        " * Arithmetic (--quantize int8-integer): int8 weights, int16 inputs, 8-bit hidden\n"
        " * activations (0..255), int32 accumulation with an int32 bias, per-channel right\n"
        " * shifts between layers; only the encoder (clip, normalisation, one input scale per\n"
        " * feature) uses float. Greedy control only: pgdeploy_probs is one-hot on the\n"
        " * greedy action and the sample functions return it. No library calls.\n"
    ),
}

_HEADER_TOP = """\
/* policy.h: an int8 policy written by pgdeploy. Generated: do not edit.
 *
@MODE@ *
 * The API of the float target (docs/c-target.md), for one observation:
 *   pgdeploy_probs(obs, probs)   obs: PGDEPLOY_OBS_DIM floats, the raw observation;
 *                                probs: PGDEPLOY_N_ACTIONS floats, per head.
 *   pgdeploy_greedy_heads(obs, actions)   per head: start + argmax, the first on ties.
 *   pgdeploy_sample_heads(obs, uniforms, actions)   per head h: start + the number of
 *                                k < size - 1 with cumsum(probs)[k] <= uniforms[h].
 *   pgdeploy_greedy(obs), pgdeploy_sample(obs, u)   with one head, returning the action.
 *   pgdeploy_obs_finite(obs)     1 if every value is finite, else 0. Call it first.
 * Plain C99: no heap, no globals written; reentrant and thread-safe.
 * Build: cc -std=c99 -O2 -ffp-contract=off -c policy.c (no -ffast-math).
 */
#ifndef PGDEPLOY_POLICY_H
#define PGDEPLOY_POLICY_H

#ifdef __cplusplus
extern "C" {
#endif

"""

_HEADER_DECLS = """
int pgdeploy_obs_finite(const float *obs);
void pgdeploy_probs(const float *obs, float *probs);
void pgdeploy_greedy_heads(const float *obs, int *actions);
void pgdeploy_sample_heads(const float *obs, const float *uniforms, int *actions);
"""

_SINGLE_HEAD_DECLS = """\
int pgdeploy_greedy(const float *obs);
int pgdeploy_sample(const float *obs, float uniform);
"""

_HEADER_END = """
#ifdef __cplusplus
}
#endif

#endif /* PGDEPLOY_POLICY_H */
"""

_QDENSE = """\
/* y[j] = sum_i x[i] * q[i][j] in float, in input order, then + b[j]. */
static void qdense(const float *x, int n_in, const signed char *q, const @BIAS@ *b, int n_out,
                   float *y)
{
    int i, j;
    for (j = 0; j < n_out; ++j) {
        y[j] = 0.0f;
    }
    for (i = 0; i < n_in; ++i) {
        const float xi = x[i];
        const signed char *row = q + i * n_out;
        for (j = 0; j < n_out; ++j) {
            y[j] += xi * (float)row[j];
        }
    }
    for (j = 0; j < n_out; ++j) {
        y[j] += (float)b[j];
    }
}
"""

_IDENSE = """\
/* acc[j] = b[j] + sum_i x[i] * q[i][j] in int32 (|acc| <= 2^30, checked at export). */
static void idense(const int16_t *x, int n_in, const signed char *q, const @BIAS@ *b,
                   int n_out, int32_t *acc)
{
    int i, j;
    for (j = 0; j < n_out; ++j) {
        acc[j] = b[j];
    }
    for (i = 0; i < n_in; ++i) {
        const int32_t xi = x[i];
        const signed char *row = q + i * n_out;
        if (xi == 0) {
            continue;
        }
        for (j = 0; j < n_out; ++j) {
            acc[j] += xi * (int32_t)row[j];
        }
    }
}

/* ReLU, then h = min(255, (acc + 2^(k-1)) >> k): the next layer's 8-bit input. */
static void requantize(const int32_t *acc, const unsigned char *k, int n, int16_t *h)
{
    int j;
    for (j = 0; j < n; ++j) {
        int32_t v = acc[j] > 0 ? acc[j] : 0;
        v = k[j] > 0 ? (v + ((int32_t)1 << (k[j] - 1))) >> k[j] : v;
        h[j] = (int16_t)(v > 255 ? 255 : v);
    }
}

"""

_FINITE = """\
int pgdeploy_obs_finite(const float *obs)
{
    int i;
    for (i = 0; i < PGDEPLOY_OBS_DIM; ++i) {
        if (!(obs[i] - obs[i] == 0.0f)) {
            return 0;
        }
    }
    return 1;
}

"""

_SOFTMAX = """\
/* probs[0..n) = softmax(logits[0..n)): max subtracted, expf, float sum, divided. */
static void softmax(const float *logits, int n, float *probs)
{
    float max = logits[0], sum = 0.0f;
    int k;
    for (k = 1; k < n; ++k) {
        max = logits[k] > max ? logits[k] : max;
    }
    for (k = 0; k < n; ++k) {
        probs[k] = expf(logits[k] - max);
        sum += probs[k];
    }
    for (k = 0; k < n; ++k) {
        probs[k] = probs[k] / sum;
    }
}

"""

_ONEHOT_ARGMAX = """\
/* probs one-hot on the first maximum of logits (an argmax head). */
static void onehot_argmax(const float *logits, int n, float *probs)
{
    int k, best = 0;
    for (k = 1; k < n; ++k) {
        best = logits[k] > logits[best] ? k : best;
    }
    for (k = 0; k < n; ++k) {
        probs[k] = k == best ? 1.0f : 0.0f;
    }
}

"""

_PUBLIC_FLOAT = """\
static int argmax(const float *probs, int n)
{
    int k, best = 0;
    for (k = 1; k < n; ++k) {
        best = probs[k] > probs[best] ? k : best;
    }
    return best;
}

static int inverse_cdf(const float *probs, int n, float u)
{
    float cdf = 0.0f;
    int k, action = 0;
    for (k = 0; k < n - 1; ++k) {
        cdf += probs[k];
        action += cdf <= u;
    }
    return action;
}

void pgdeploy_probs(const float *obs, float *probs)
{
    float logits[PGDEPLOY_N_ACTIONS];
    int h, offset = 0;
    logits_of(obs, logits);
    for (h = 0; h < PGDEPLOY_N_HEADS; ++h) {
        @HEAD@(logits + offset, head_sizes[h], probs + offset);
        offset += head_sizes[h];
    }
}

void pgdeploy_greedy_heads(const float *obs, int *actions)
{
    float probs[PGDEPLOY_N_ACTIONS];
    int h, offset = 0;
    pgdeploy_probs(obs, probs);
    for (h = 0; h < PGDEPLOY_N_HEADS; ++h) {
        actions[h] = head_starts[h] + argmax(probs + offset, head_sizes[h]);
        offset += head_sizes[h];
    }
}

void pgdeploy_sample_heads(const float *obs, const float *uniforms, int *actions)
{
    float probs[PGDEPLOY_N_ACTIONS];
    int h, offset = 0;
    pgdeploy_probs(obs, probs);
    for (h = 0; h < PGDEPLOY_N_HEADS; ++h) {
        actions[h] = head_starts[h] + inverse_cdf(probs + offset, head_sizes[h], uniforms[h]);
        offset += head_sizes[h];
    }
}
"""

_PUBLIC_INTEGER = (
    _FINITE
    + """\
void pgdeploy_greedy_heads(const float *obs, int *actions)
{
    int32_t logits[PGDEPLOY_N_ACTIONS];
    int h, k, offset = 0;
    logits_of(obs, logits);
    for (h = 0; h < PGDEPLOY_N_HEADS; ++h) {
        int best = 0;
        for (k = 1; k < head_sizes[h]; ++k) {
            best = logits[offset + k] > logits[offset + best] ? k : best;
        }
        actions[h] = head_starts[h] + best;
        offset += head_sizes[h];
    }
}

void pgdeploy_probs(const float *obs, float *probs)
{
    int actions[PGDEPLOY_N_HEADS];
    int h, k, offset = 0;
    pgdeploy_greedy_heads(obs, actions);
    for (h = 0; h < PGDEPLOY_N_HEADS; ++h) {
        for (k = 0; k < head_sizes[h]; ++k) {
            probs[offset + k] = k == actions[h] - head_starts[h] ? 1.0f : 0.0f;
        }
        offset += head_sizes[h];
    }
}

void pgdeploy_sample_heads(const float *obs, const float *uniforms, int *actions)
{
    (void)uniforms;
    pgdeploy_greedy_heads(obs, actions);
}
"""
)

_SINGLE_HEAD = """
int pgdeploy_greedy(const float *obs)
{
    int action;
    pgdeploy_greedy_heads(obs, &action);
    return action;
}

int pgdeploy_sample(const float *obs, float uniform)
{
    int action;
    pgdeploy_sample_heads(obs, &uniform, &action);
    return action;
}
"""
