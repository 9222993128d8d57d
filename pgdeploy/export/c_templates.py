"""The fixed C text of the C target: the header template and the functions of ``policy.c``.

Kept apart from :mod:`pgdeploy.export.c_source` (which fills in the weights and metadata)
so the C reads as C. Every function here is reentrant: stack buffers only, no heap.
"""

HEADER = """\
/* policy.h: the {env} softmax policy, written by pgdeploy {version}. Generated: do not edit.
 *
 * Network: encode -> {shape} -> softmax, normalisation folded into the first layer.
{encoding} * Plain C99: no heap, no globals written, no library beyond <math.h> (expf, isfinite);
 * every function is reentrant and thread-safe. Stack use: about
 * 2 * PGDEPLOY_MAX_WIDTH + PGDEPLOY_N_FEATURES + 2 * PGDEPLOY_N_ACTIONS floats per call.
 *
 * The same contract as the ONNX graph (model.onnx):
{contract}
 * In C, for one observation:
 *   pgdeploy_probs(obs, probs)   obs: PGDEPLOY_OBS_DIM floats, the raw observation;
 *                                probs: PGDEPLOY_N_ACTIONS floats written (softmax).
 *   pgdeploy_greedy(obs)         argmax of probs, the first on ties (+ ACTION_START).
 *   pgdeploy_sample(obs, u)      u a uniform float in [0, 1): the number of
 *                                k < PGDEPLOY_N_ACTIONS - 1 with cumsum(probs)[k] <= u,
 *                                summed in float in order (+ ACTION_START). The same u
 *                                gives the same action as the Python agent (numpy's
 *                                random(dtype=float32) stream).
 *   pgdeploy_obs_finite(obs)     1 if every value is finite, else 0. Call it first: the
 *                                Python runtime rejects NaN/inf, these functions do not.
 *   Continuous columns are clipped to pgdeploy_clip_low/high (the space folded with the
 *   normalisation's clip), like the graph.
 *
 * Build: cc -std=c99 -O2 -ffp-contract=off -c policy.c (link with -lm). Do not use
 * -ffast-math or -Ofast (they reorder sums and assume no NaN). -ffp-contract=off stops
 * a * b + c being fused into one FMA (GCC fuses by default outside ISO mode, e.g. on
 * ARM with -std=gnu99); fused or not, results stay within float32 noise of the ONNX
 * graph, but only unfused code is what export verified.
 */
#ifndef PGDEPLOY_POLICY_H
#define PGDEPLOY_POLICY_H

#ifdef __cplusplus
extern "C" {{
#endif

/* Version of pgdeploy that wrote this file, and of its file formats. */
#define PGDEPLOY_VERSION {version_lit}
#define PGDEPLOY_FORMAT_VERSION {format_version}
/* The gymnasium environment the policy was trained on. */
#define PGDEPLOY_ENV_ID {env_lit}
#define PGDEPLOY_OBS_DIM {obs_dim}
#define PGDEPLOY_N_ACTIONS {n_actions}
/* Actions are PGDEPLOY_ACTION_START + index (the env's Discrete start). */
#define PGDEPLOY_ACTION_START {action_start}
/* Inputs of the MLP, and how many observation columns are clipped (the rest one-hot). */
#define PGDEPLOY_N_FEATURES {n_features}
#define PGDEPLOY_N_CONTINUOUS {n_continuous}
/* Widest hidden layer (the size of the two stack buffers). */
#define PGDEPLOY_MAX_WIDTH {max_width}
/* Identifies this export; policy.c refuses to compile with another export's header. */
#define PGDEPLOY_MODEL_HASH {model_hash}
/* The observation space's bounds (unbounded dimensions as +-FLT_MAX), as initialisers. */
#define PGDEPLOY_OBS_LOW {low}
#define PGDEPLOY_OBS_HIGH {high}
{names}/* The model's description as JSON (the spec of the ONNX file's metadata). */
#define PGDEPLOY_METADATA {metadata}

/* The same JSON as a string, and the clip bounds the policy applies to obs. */
extern const char pgdeploy_metadata[];
{clip_decls}
int pgdeploy_obs_finite(const float *obs);
void pgdeploy_probs(const float *obs, float *probs);
int pgdeploy_greedy(const float *obs);
int pgdeploy_sample(const float *obs, float uniform);

#ifdef __cplusplus
}}
#endif

#endif /* PGDEPLOY_POLICY_H */
"""

DENSE = """\
/* y = x W + b for W stored [n_in][n_out]: each y[j] is summed over i in order, in float,
   then the bias is added (as a BLAS gemm with beta=1 does); relu != 0 clamps at zero. */
static void dense(const float *x, int n_in, const float *w, const float *b, int n_out,
                  int relu, float *y)
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
        const float v = y[j] + b[j];
        y[j] = (relu && !(v > 0.0f)) ? 0.0f : v;
    }
}

"""

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

void pgdeploy_probs(const float *obs, float *probs)
{
    float logits[PGDEPLOY_N_ACTIONS];
    float max, sum;
    int k;
    logits_of(obs, logits);
    max = logits[0];
    for (k = 1; k < PGDEPLOY_N_ACTIONS; ++k) {
        max = logits[k] > max ? logits[k] : max;
    }
    sum = 0.0f;
    for (k = 0; k < PGDEPLOY_N_ACTIONS; ++k) {
        probs[k] = expf(logits[k] - max);
        sum += probs[k];
    }
    for (k = 0; k < PGDEPLOY_N_ACTIONS; ++k) {
        probs[k] = probs[k] / sum;
    }
}

int pgdeploy_greedy(const float *obs)
{
    float probs[PGDEPLOY_N_ACTIONS];
    int k, best = 0;
    pgdeploy_probs(obs, probs);
    for (k = 1; k < PGDEPLOY_N_ACTIONS; ++k) {
        best = probs[k] > probs[best] ? k : best;
    }
    return PGDEPLOY_ACTION_START + best;
}

int pgdeploy_sample(const float *obs, float uniform)
{
    float probs[PGDEPLOY_N_ACTIONS];
    float cdf = 0.0f;
    int k, action = 0;
    pgdeploy_probs(obs, probs);
    for (k = 0; k < PGDEPLOY_N_ACTIONS - 1; ++k) {
        cdf += probs[k];
        action += cdf <= uniform;
    }
    return PGDEPLOY_ACTION_START + action;
}
"""
