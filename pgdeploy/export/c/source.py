"""C99 source for a policy: ``policy.h`` + ``policy.c`` from a PolicySpec and a PolicyNetwork.

The C computes :mod:`pgdeploy.runtime.network`'s function, in its order and in float32:
clip, ``(x - mean) / std`` (never folded into the first layer: that cancels badly for
near-constant columns), the optional ``norm_clip``, one-hot categorical columns, dense
layers with the named activation, and a ``softmax`` or ``argmax`` per action head. It is
assembled from three pieces, each a :class:`CPiece` built from numbers only:
:func:`encoder_piece` (observation row -> ``x``), :func:`mlp_piece` (``x`` -> ``logits``)
and :func:`heads_piece` (logits -> probabilities and actions); :func:`assemble` puts any
such pieces into the one file skeleton, so a variant (another layer arithmetic) swaps a
piece and keeps the rest.

What may reach the generated text, by construction (``tests/test_c_construction.py``):

- numbers, written by :func:`c_float` (``%.9g``, exact for float32) and :func:`c_int`;
- pgdeploy's own fixed text (this module and :mod:`~pgdeploy.export.c.templates`), which
  alone makes up the comments and preprocessor lines;
- strings from the file only when they matched their grammar (the env id,
  :func:`pgdeploy.spec.check_env_id`; action names, ``ACTION_NAME_PATTERN``), and then only
  as :func:`c_string` literals in a ``static const char`` definition;
- the metadata JSON (which holds strings of no grammar, such as Dict keys) only as a list
  of byte values, never as text.

:func:`c_string` keeps ``[A-Za-z0-9_.:/-]`` and writes every other byte as a three-digit
octal escape, so no ``?`` (trigraphs), no newline, no quote and no backslash but an
escape's own can appear: a value cannot end its literal, splice a line or open a comment.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pgdeploy import __version__
from pgdeploy.errors import UnsupportedExportError
from pgdeploy.export.c import templates
from pgdeploy.export.c.compile import FP_FLAGS, VERIFIED_OPT_LEVELS, VERIFIED_STANDARDS
from pgdeploy.export.c.support import CPlan, check_c_supported
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.spec import ACTION_NAME_PATTERN, FORMAT_VERSION, PolicySpec, check_env_id

_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Bytes a string literal keeps as they are; all others become ``\ooo``.
_LITERAL_SAFE = re.compile(r"[A-Za-z0-9_.:/-]", re.ASCII)


@dataclass(frozen=True)
class CSources:
    """The text of ``policy.h`` and ``policy.c`` (ASCII)."""

    header: str
    source: str

    def files(self) -> dict[str, bytes]:
        """The exact bytes that export verifies and ships, by file name."""
        return {"policy.h": self.header.encode("ascii"), "policy.c": self.source.encode("ascii")}


@dataclass(frozen=True)
class CPiece:
    """A part of ``policy.c``: file-scope definitions, and statements of ``logits_of``.

    ``logits_of(const float *obs, float *logits)`` declares ``float x[N_FEATURES]``,
    ``a`` and ``b`` (``[MAX_WIDTH]`` each) and ``int i``; the encoder fills ``x`` from
    ``obs``, the MLP turns ``x`` into ``logits``. The heads piece has no statements.
    """

    definitions: str
    statements: tuple[str, ...] = ()
    #: One line for the header's comment: pgdeploy's own words and numbers only.
    summary: str = ""


# --- values --------------------------------------------------------------------------


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


def c_int(value: int) -> str:
    """A C int literal of a Python or numpy integer within int's guaranteed range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UnsupportedExportError(f"expected an integer for C, got {type(value).__name__}")
    number = int(value)
    if not -(2**31 - 1) <= number <= 2**31 - 1:
        raise UnsupportedExportError(f"the integer {number} does not fit a 32-bit C int")
    return str(number)


def c_count(value: int) -> int:
    """A positive size, checked as :func:`c_int` does."""
    c_int(value)
    if int(value) < 1:
        raise UnsupportedExportError(f"a size must be >= 1, got {int(value)}")
    return int(value)


def c_string(text: str) -> str:
    """A C string literal: ``[A-Za-z0-9_.:/-]`` kept, every other byte (UTF-8) as ``\\ooo``.

    Three octal digits always end an escape, so the next character cannot extend it
    (unlike ``\\x``), and no ``?``, quote, newline or bare backslash is ever written.
    """
    out = []
    for byte in text.encode("utf-8", "surrogatepass"):
        char = chr(byte)
        out.append(char if _LITERAL_SAFE.fullmatch(char) else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_bytes(data: bytes, *, per_line: int = 20) -> str:
    """``{b0, b1, ..., 0}``: bytes as decimal values, NUL-terminated (never as text)."""
    values = [str(b) for b in data] + ["0"]
    lines = [", ".join(values[i : i + per_line]) for i in range(0, len(values), per_line)]
    return "{\n    " + ",\n    ".join(lines) + "\n}"


def float_array(name: str, values: npt.ArrayLike, *, static: bool = True) -> str:
    """``[static ]const float name[n] = {...};`` (flat, row-major), exact literals, 6 a line."""
    flat_values = np.asarray(values, dtype=np.float32).reshape(-1)
    flat = [c_float(float(v)) for v in flat_values]
    lines = [", ".join(flat[i : i + 6]) for i in range(0, len(flat), 6)]
    prefix = "static const" if static else "const"
    return f"{prefix} float {name}[{len(flat)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def int_array(name: str, values: Sequence[int]) -> str:
    """``static const int name[n] = {...};``."""
    items = [c_int(v) for v in values]
    lines = [", ".join(items[i : i + 12]) for i in range(0, len(items), 12)]
    return f"static const int {name}[{len(items)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


# --- the three pieces ----------------------------------------------------------------


def encoder_piece(plan: CPlan, network: PolicyNetwork) -> CPiece:
    """``obs`` -> ``x``: clip, normalise, norm_clip the continuous columns; one-hot the rest."""
    n_cont = len(plan.continuous_columns)
    parts = []
    lines: list[str] = []
    steps = ["clip"] if n_cont else []
    if n_cont:
        parts += [
            float_array("pgdeploy_clip_low", network.clip_low, static=False),
            float_array("pgdeploy_clip_high", network.clip_high, static=False),
        ]
        if not plan.is_plain_obs:
            parts.append(int_array("continuous_columns", plan.continuous_columns))
        column = "i" if plan.is_plain_obs else "continuous_columns[i]"
        lines += [
            f"    for (i = 0; i < {c_int(n_cont)}; ++i) {{",
            f"        float v = obs[{column}];",
            "        v = v < pgdeploy_clip_low[i] ? pgdeploy_clip_low[i] : v;",
            "        v = v > pgdeploy_clip_high[i] ? pgdeploy_clip_high[i] : v;",
        ]
        if network.obs_mean is not None and network.obs_std is not None:
            steps.append("(x - mean) / std")
            parts += [
                float_array("obs_mean", network.obs_mean),
                float_array("obs_std", network.obs_std),
            ]
            lines.append("        v = (v - obs_mean[i]) / obs_std[i];")
            if network.norm_clip is not None:
                steps.append("norm_clip")
                bound = c_float(network.norm_clip)
                lines += [
                    f"        v = v < -{bound} ? -{bound} : v;",
                    f"        v = v > {bound} ? {bound} : v;",
                ]
        lines += ["        x[i] = v;", "    }"]
    if plan.onehot_columns:
        steps.append("one-hot")
        parts += [
            int_array("onehot_columns", plan.onehot_columns),
            float_array("onehot_values", np.asarray(plan.onehot_values, np.float32)),
        ]
        lines += [
            f"    for (i = 0; i < {c_int(len(plan.onehot_columns))}; ++i) {{",
            f"        x[{c_int(n_cont)} + i] = "
            "obs[onehot_columns[i]] == onehot_values[i] ? 1.0f : 0.0f;",
            "    }",
        ]
    return CPiece("\n".join(parts), tuple(lines), ", ".join(steps))


def mlp_piece(network: PolicyNetwork) -> CPiece:
    """``x`` -> ``logits``: float32 dense layers (weights inline, transposed to [in][out])
    with the network's activation after each hidden one."""
    activation = templates.ACTIVATIONS.get(network.activation)
    if activation is None:
        raise UnsupportedExportError(
            f"activation {network.activation!a} has no C form; expected one of "
            f"{sorted(templates.ACTIVATIONS)}"
        )
    parts = [templates.DENSE]
    if len(network.layers) > 1:
        code = activation.code
        if "ALPHA" in code:
            code = code.replace("ALPHA", c_float(network.activation_alpha))
        parts.append(code)
    lines: list[str] = []
    source = "x"
    widths = []
    for i, (weight, bias) in enumerate(network.layers):
        n_out, n_in = (c_count(n) for n in weight.shape)
        widths.append(str(n_out))
        last = i == len(network.layers) - 1
        target = "logits" if last else ("a" if i % 2 == 0 else "b")
        parts.append(
            f"/* layer {c_int(i)}: {c_int(n_in)} -> {c_int(n_out)}"
            f"{'' if last else ', then ' + activation.name}; weight [in][out], row-major */\n"
            + float_array(f"w{i}", np.ascontiguousarray(weight.T))
            + float_array(f"b{i}", bias)
        )
        lines.append(f"    dense({source}, {n_in}, w{i}, b{i}, {n_out}, {target});")
        if not last:
            lines.append(f"    activate({target}, {n_out});")
        source = target
    if len(network.layers) <= 2:
        lines.append("    (void)b;" if len(network.layers) == 2 else "    (void)a;\n    (void)b;")
    summary = " -> ".join(
        [*(f"{w} {activation.name}" for w in widths[:-1]), f"{widths[-1]} logits"]
    )
    return CPiece("\n".join(parts), tuple(lines), summary)


def heads_piece(plan: CPlan, network: PolicyNetwork) -> CPiece:
    """logits -> probabilities (``softmax``, or one-hot ``argmax``) per head, and the
    public functions: greedy and inverse-CDF sampled actions, starts added."""
    head = templates.HEADS.get(network.head)
    if head is None:
        raise UnsupportedExportError(
            f"head {network.head!a} has no C form; expected one of {sorted(templates.HEADS)}"
        )
    parts = [
        "/* Action heads: their sizes and the env's start of each. */\n"
        + int_array("head_sizes", plan.head_sizes)
        + int_array("head_starts", plan.head_starts),
        head.code,
        templates.PUBLIC_FUNCTIONS,
    ]
    if len(plan.head_sizes) == 1:
        parts.append(templates.SINGLE_HEAD_FUNCTIONS)
    return CPiece("\n".join(parts), (), head.name)


# --- the skeleton --------------------------------------------------------------------


def c_sources(spec: PolicySpec, network: PolicyNetwork) -> CSources:
    """The header and source of the policy; :class:`UnsupportedExportError` (from
    :func:`~pgdeploy.export.c.support.check_c_supported`) when the pair does not fit."""
    plan = check_c_supported(spec, network)
    return assemble(
        spec,
        plan,
        encoder_piece(plan, network),
        mlp_piece(network),
        heads_piece(plan, network),
        max_width=max([w.shape[0] for w, _ in network.layers[:-1]] or [1]),
    )


def assemble(
    spec: PolicySpec,
    plan: CPlan,
    encoder: CPiece,
    mlp: CPiece,
    heads: CPiece,
    *,
    max_width: int,
    target: str = "c99",
) -> CSources:
    """The file skeleton around the pieces: ``policy.c`` (pieces, ``logits_of``, metadata)
    and ``policy.h`` (sizes, API, the env id and action names as checked literals)."""
    check_env_id(spec.env_id, source="the policy's env id")
    for name in spec.action_names:
        if not isinstance(name, str) or ACTION_NAME_PATTERN.fullmatch(name) is None:
            raise UnsupportedExportError(f"action name {ascii(name)[:80]} is not a valid name")
    logits_of = "\n".join(
        [
            "/* Encode obs into the MLP's input x, then the MLP: logits. */",
            "static void logits_of(const float *obs, float *logits)",
            "{",
            "    float x[PGDEPLOY_N_FEATURES];",
            "    float a[PGDEPLOY_MAX_WIDTH];",
            "    float b[PGDEPLOY_MAX_WIDTH];",
            "    int i;",
            *encoder.statements,
            *mlp.statements,
            "}",
            "",
            "",
        ]
    )
    body = "\n".join([encoder.definitions, mlp.definitions, logits_of + heads.definitions])
    metadata = _metadata_json(spec, target)
    model_hash = int(hashlib.sha256((body + metadata).encode()).hexdigest()[:8], 16)
    source = (
        "/* policy.c: a policy written by pgdeploy; see policy.h for the contract.\n"
        "   Generated: do not edit. */\n"
        '#include "policy.h"\n#include <math.h>\n\n'
        f"#if PGDEPLOY_MODEL_HASH != 0x{model_hash:08x}UL\n"
        '#error "policy.h and policy.c come from different exports: copy both from one export"\n'
        "#endif\n\n"
        "/* The model's description as JSON (spec, versions), as byte values. */\n"
        f"const char pgdeploy_metadata[] = {c_bytes(metadata.encode('ascii'))};\n\n{body}"
    )
    header = _header(spec, plan, encoder, mlp, heads, model_hash, max_width)
    return CSources(header=header, source=source)


def _metadata_json(spec: PolicySpec, target: str) -> str:
    """The JSON ``pgdeploy_metadata`` holds: the spec (bounds are in macros) and versions."""
    data = {
        "format_version": FORMAT_VERSION,
        "pgdeploy_version": __version__,
        "target": target,
        "spec": {k: v for k, v in spec.to_dict().items() if k not in ("obs_low", "obs_high")},
    }
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _bounds_macro(values: tuple[float, ...]) -> str:
    clamped = [min(max(v, -_FLOAT32_MAX), _FLOAT32_MAX) for v in values]
    return "{" + ", ".join(c_float(v) for v in clamped) + "}"


def _header(
    spec: PolicySpec,
    plan: CPlan,
    encoder: CPiece,
    mlp: CPiece,
    heads: CPiece,
    model_hash: int,
    max_width: int,
) -> str:
    names = ""
    if spec.action_names:
        joined = ",\n    ".join(c_string(n) for n in spec.action_names)
        names = (
            "/* The action names, in action order. */\n"
            "static const char *const PGDEPLOY_ACTION_NAMES[PGDEPLOY_N_ACTIONS] = {\n"
            f"    {joined}\n}};\n"
        )
    single = len(plan.head_sizes) == 1
    standards = [s.removeprefix("-std=") for s in VERIFIED_STANDARDS]
    verified = (
        f"{', '.join(standards[:-1])} and {standards[-1]}, each at "
        f"{' and '.join(VERIFIED_OPT_LEVELS)}, all with {' '.join(FP_FLAGS)}"
    )
    return templates.HEADER.format(
        verified=verified,
        network=f"{encoder.summary} -> {mlp.summary} -> {heads.summary}",
        version_lit=c_string(__version__),
        format_version=c_int(FORMAT_VERSION),
        env_lit=c_string(spec.env_id),
        obs_dim=c_int(spec.obs_dim),
        n_actions=c_int(spec.n_actions),
        max_width=c_int(max_width),
        model_hash=f"0x{model_hash:08x}UL",
        low=_bounds_macro(spec.obs_low),
        high=_bounds_macro(spec.obs_high),
        names=names,
        n_features=c_int(plan.n_features),
        n_continuous=c_int(len(plan.continuous_columns)),
        n_heads=c_int(len(plan.head_sizes)),
        head_sizes=", ".join(c_int(n) for n in plan.head_sizes),
        head_starts=", ".join(c_int(s) for s in plan.head_starts),
        single_head_macro=(
            "/* With one head: the action is PGDEPLOY_ACTION_START + the index. */\n"
            f"#define PGDEPLOY_ACTION_START {c_int(plan.head_starts[0])}\n"
            if single
            else ""
        ),
        single_head_decls=(
            "int pgdeploy_greedy(const float *obs);\n"
            "int pgdeploy_sample(const float *obs, float uniform);\n"
            if single
            else ""
        ),
        encoding=(
            templates.PLAIN_OBS_COMMENT if plan.is_plain_obs else templates.LAYOUT_OBS_COMMENT
        ),
        clip_decls=(
            "extern const float pgdeploy_clip_low[PGDEPLOY_N_CONTINUOUS];\n"
            "extern const float pgdeploy_clip_high[PGDEPLOY_N_CONTINUOUS];\n"
            if plan.continuous_columns
            else ""
        ),
    )
