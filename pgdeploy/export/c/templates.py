"""The fixed C text of the C target: the header template and the functions of ``policy.c``.

Kept apart from :mod:`pgdeploy.export.c.source` (which fills in numbers and the checked
literals) so the C reads as C. This is the only prose that reaches generated comments,
and it is pgdeploy's own. Every function here is reentrant: stack buffers only, no heap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CCode:
    """A named piece of fixed C: an activation's ``activate`` or a head's ``head_probs``."""

    name: str
    code: str


HEADER = """\
/* policy.h: a policy written by pgdeploy. Generated: do not edit.
 *
 * Network: {network}.
{encoding} * Plain C99: no heap, no globals written, no library beyond <math.h>; every function
 * is reentrant and thread-safe. Stack use: about
 * 2 * PGDEPLOY_MAX_WIDTH + PGDEPLOY_N_FEATURES + 2 * PGDEPLOY_N_ACTIONS floats per call.
 *
 * In C, for one observation:
 *   pgdeploy_probs(obs, probs)   obs: PGDEPLOY_OBS_DIM floats, the raw observation;
 *                                probs: PGDEPLOY_N_ACTIONS floats written, one
 *                                distribution per action head, heads concatenated.
 *   pgdeploy_greedy_heads(obs, actions)
 *                                per head: start + argmax of its probs, the first on ties;
 *                                actions: PGDEPLOY_N_HEADS ints written.
 *   pgdeploy_sample_heads(obs, uniforms, actions)
 *                                per head h: start + the number of k < size - 1 with
 *                                cumsum(probs of h)[k] <= uniforms[h], summed in float in
 *                                order; uniforms: PGDEPLOY_N_HEADS floats in [0, 1). The
 *                                same uniforms give the same actions as the Python agent
 *                                (numpy's random(dtype=float32) stream, heads in order).
 *   pgdeploy_greedy(obs), pgdeploy_sample(obs, u)
 *                                with one head (Discrete), the same returning the action.
 *   pgdeploy_obs_finite(obs)     1 if every value is finite, else 0. Call it first: the
 *                                Python runtime rejects NaN/inf, these functions do not.
 *
 * Build: cc -std=c99 -O2 -ffp-contract=off -c policy.c (link with -lm). pgdeploy's
 * export compiles these exact bytes with a test harness and checks them against the float
 * policy before it writes them (unless told verify=False), under
 * {verified}.
 * Do not use -ffast-math or -Ofast (they reorder sums and assume no NaN);
 * -ffp-contract=off stops a * b + c being fused into one FMA (GCC fuses by default outside
 * ISO mode): fused code stays within float32 noise, but only unfused code is verified.
 */
#ifndef PGDEPLOY_POLICY_H
#define PGDEPLOY_POLICY_H

#ifdef __cplusplus
extern "C" {{
#endif

/* Version of pgdeploy that wrote this file, and of its file formats. */
#define PGDEPLOY_VERSION {version_lit}
#define PGDEPLOY_FORMAT_VERSION {format_version}
#define PGDEPLOY_OBS_DIM {obs_dim}
#define PGDEPLOY_N_ACTIONS {n_actions}
/* Action heads (1: Discrete; more: MultiDiscrete), their sizes (summing to
   PGDEPLOY_N_ACTIONS) and starts: an action is its head's start + the index. */
#define PGDEPLOY_N_HEADS {n_heads}
#define PGDEPLOY_HEAD_SIZES {{{head_sizes}}}
#define PGDEPLOY_HEAD_STARTS {{{head_starts}}}
{single_head_macro}/* Inputs of the MLP; observation columns clipped (the others are one-hot). */
#define PGDEPLOY_N_FEATURES {n_features}
#define PGDEPLOY_N_CONTINUOUS {n_continuous}
/* Widest hidden layer (the size of the two stack buffers). */
#define PGDEPLOY_MAX_WIDTH {max_width}
/* Identifies this export; policy.c refuses to compile with another export's header. */
#define PGDEPLOY_MODEL_HASH {model_hash}
/* The observation space's bounds (unbounded dimensions as +-FLT_MAX), as initialisers. */
#define PGDEPLOY_OBS_LOW {low}
#define PGDEPLOY_OBS_HIGH {high}

/* The gymnasium environment the policy was trained on. */
static const char PGDEPLOY_ENV_ID[] = {env_lit};
{names}
/* The model's description as JSON (spec, versions), and the clip bounds of obs. */
extern const char pgdeploy_metadata[];
{clip_decls}
int pgdeploy_obs_finite(const float *obs);
void pgdeploy_probs(const float *obs, float *probs);
void pgdeploy_greedy_heads(const float *obs, int *actions);
void pgdeploy_sample_heads(const float *obs, const float *uniforms, int *actions);
{single_head_decls}
#ifdef __cplusplus
}}
#endif

#endif /* PGDEPLOY_POLICY_H */
"""

PLAIN_OBS_COMMENT = " * obs is the observation itself (a 1-D Box): every value is clipped.\n"
LAYOUT_OBS_COMMENT = (
    " * obs is the env's observation as one flat row (Dict/Tuple members in gymnasium's\n"
    " * flatten order; a Discrete value as its integer). PGDEPLOY_N_CONTINUOUS of its\n"
    " * columns are clipped, the others one-hot encoded inside, as in the ONNX graph.\n"
)

DENSE = """\
/* y = x W + b for W stored [n_in][n_out]: each y[j] is summed over i in order, in float,
   then the bias is added (as a BLAS gemm with beta=1 does). */
static void dense(const float *x, int n_in, const float *w, const float *b, int n_out,
                  float *y)
{
    int i, j;
    for (j = 0; j < n_out; ++j) {
        y[j] = 0.0f;
    }
    for (i = 0; i < n_in; ++i) {
        const float xi = x[i];
        const float *row = w + i * n_out;
        for (j = 0; j < n_out; ++j) {
            y[j] += xi * row[j];
        }
    }
    for (j = 0; j < n_out; ++j) {
        y[j] = y[j] + b[j];
    }
}
"""


def _activation(name: str, formula: str, expression: str) -> CCode:
    code = f"""\
/* The hidden layers' activation, in place: {formula}. */
static void activate(float *y, int n)
{{
    int j;
    for (j = 0; j < n; ++j) {{
        const float v = y[j];
        y[j] = {expression};
    }}
}}
"""
    return CCode(name, code)


#: The C form of every activation of :data:`pgdeploy.runtime.network.ACTIVATIONS`, in
#: torch's own arithmetic; ``ALPHA`` is replaced by the network's float literal.
ACTIVATIONS = {
    "relu": _activation("relu", "max(v, 0), NaN kept", "v < 0.0f ? 0.0f : v"),
    "tanh": _activation("tanh", "tanh(v)", "tanhf(v)"),
    "elu": _activation("elu", "v if v > 0, else exp(v) - 1", "v > 0.0f ? v : expm1f(v)"),
    "leaky_relu": _activation(
        "leaky_relu", "v if v > 0, else alpha * v", "v > 0.0f ? v : v * ALPHA"
    ),
    "silu": _activation("silu", "v * sigmoid(v) as v / (1 + exp(-v))", "v / (1.0f + expf(-v))"),
    "gelu": _activation(
        "gelu",
        "v / 2 * (1 + erf(v / sqrt(2))), the exact form",
        "v * 0.5f * (1.0f + erff(v * 0.707106769f))",
    ),
}

_SOFTMAX = """\
/* probs[0..n) = softmax(logits[0..n)): max subtracted, expf, float sum, divided. */
static void head_probs(const float *logits, int n, float *probs)
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

_ARGMAX = """\
/* probs[0..n) one-hot on the first maximum of logits[0..n), as torch's argmax (a NaN
   counts as the maximum; then every probability is NaN, so an output check sees it). */
static void head_probs(const float *logits, int n, float *probs)
{
    int k, best = 0;
    for (k = 1; k < n; ++k) {
        if (!isnan(logits[best]) && (isnan(logits[k]) || logits[k] > logits[best])) {
            best = k;
        }
    }
    for (k = 0; k < n; ++k) {
        probs[k] = isnan(logits[best]) ? logits[best] : (k == best ? 1.0f : 0.0f);
    }
}
"""

#: How logits become probabilities, per :data:`pgdeploy.runtime.network.HEADS` name.
HEADS = {"softmax": CCode("softmax", _SOFTMAX), "argmax": CCode("argmax", _ARGMAX)}

PUBLIC_FUNCTIONS = """\
int pgdeploy_obs_finite(const float *obs)
{
    int i;
    for (i = 0; i < PGDEPLOY_OBS_DIM; ++i) {
        if (!isfinite(obs[i])) {
            return 0;
        }
    }
    return 1;
}

/* The index of the largest of probs[0..n), the first on ties. */
static int argmax(const float *probs, int n)
{
    int k, best = 0;
    for (k = 1; k < n; ++k) {
        best = probs[k] > probs[best] ? k : best;
    }
    return best;
}

/* How many of the first n - 1 cumulative sums (float, in order) are <= u. */
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
        head_probs(logits + offset, head_sizes[h], probs + offset);
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

#: Appended for a single action head: the int-returning forms.
SINGLE_HEAD_FUNCTIONS = """
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
