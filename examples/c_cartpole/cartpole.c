/* CartPole-v1 played from C by a policy exported with `pgdeploy export MODEL.pt --target c`.
 *
 * No Python, no runtime: the cart-pole physics is a line-by-line port of gymnasium's
 * CartPole-v1 (euler integration, the same constants in double precision, termination
 * at |x| > 2.4 or |theta| > 12 degrees, truncation at 500 steps, reset to uniform
 * [-0.05, 0.05) per state variable), and actions come from pgdeploy_sample (or
 * pgdeploy_greedy) on the float32 observation, with uniforms from a seeded splitmix64.
 *
 *   make c-example        (exports models/CartPole-v1/model.pt to C, builds and runs this)
 *   cartpole [EPISODES [SEED [sample|greedy [TRACE_FILE]]]]
 *
 * Prints one line per episode and the mean return. TRACE_FILE, if given, receives every
 * step (state in %.17g, the uniform and the action) so a test can replay the episodes
 * through gymnasium and the Python agent and check that both agree step by step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

#if PGDEPLOY_OBS_DIM != 4 || PGDEPLOY_N_ACTIONS != 2
#error "this example needs a CartPole policy (4 observations, 2 actions)"
#endif

/* gymnasium.envs.classic_control.cartpole.CartPoleEnv, in the same order of operations. */
#define GRAVITY 9.8
#define MASSCART 1.0
#define MASSPOLE 0.1
#define TOTAL_MASS (MASSPOLE + MASSCART)
#define LENGTH 0.5 /* half the pole's length */
#define POLEMASS_LENGTH (MASSPOLE * LENGTH)
#define FORCE_MAG 10.0
#define TAU 0.02
#define PI 3.14159265358979323846
#define THETA_THRESHOLD (12 * 2 * PI / 360)
#define X_THRESHOLD 2.4
#define MAX_EPISODE_STEPS 500

typedef struct {
    double x, x_dot, theta, theta_dot;
} CartPole;

/* One euler step; returns 1 when the episode terminates (the pole fell or the cart left). */
static int cartpole_step(CartPole *s, int action)
{
    const double force = action == 1 ? FORCE_MAG : -FORCE_MAG;
    const double costheta = cos(s->theta);
    const double sintheta = sin(s->theta);
    const double temp =
        (force + POLEMASS_LENGTH * (s->theta_dot * s->theta_dot) * sintheta) / TOTAL_MASS;
    const double thetaacc =
        (GRAVITY * sintheta - costheta * temp)
        / (LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / TOTAL_MASS));
    const double xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS;
    s->x = s->x + TAU * s->x_dot;
    s->x_dot = s->x_dot + TAU * xacc;
    s->theta = s->theta + TAU * s->theta_dot;
    s->theta_dot = s->theta_dot + TAU * thetaacc;
    return s->x < -X_THRESHOLD || s->x > X_THRESHOLD || s->theta < -THETA_THRESHOLD
           || s->theta > THETA_THRESHOLD;
}

/* splitmix64: a small, well-mixed, seedable generator (no libc rand, same on every libc). */
typedef struct {
    unsigned long long state;
} Rng;

static unsigned long long rng_next(Rng *rng)
{
    unsigned long long z = (rng->state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double rng_double(Rng *rng) /* [0, 1), 53 random bits */
{
    return (double)(rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

static float rng_float(Rng *rng) /* [0, 1), 24 random bits: exactly representable */
{
    return (float)(rng_next(rng) >> 40) * (1.0f / 16777216.0f);
}

static void cartpole_reset(CartPole *s, Rng *rng)
{
    s->x = -0.05 + 0.1 * rng_double(rng);
    s->x_dot = -0.05 + 0.1 * rng_double(rng);
    s->theta = -0.05 + 0.1 * rng_double(rng);
    s->theta_dot = -0.05 + 0.1 * rng_double(rng);
}

static void observe(const CartPole *s, float *obs)
{
    obs[0] = (float)s->x;
    obs[1] = (float)s->x_dot;
    obs[2] = (float)s->theta;
    obs[3] = (float)s->theta_dot;
}

static void trace_state(FILE *trace, const char *tag, int episode, int t, const CartPole *s)
{
    fprintf(trace, "%s %d %d %.17g %.17g %.17g %.17g", tag, episode, t, s->x, s->x_dot,
            s->theta, s->theta_dot);
}

/* Plays one episode; returns its return (one point per step, as in gymnasium). */
static int play_episode(int episode, Rng *rng, int greedy, FILE *trace)
{
    CartPole s;
    float obs[PGDEPLOY_OBS_DIM];
    int t, terminated = 0;
    cartpole_reset(&s, rng);
    for (t = 0; t < MAX_EPISODE_STEPS && !terminated; ++t) {
        const float u = greedy ? 0.0f : rng_float(rng);
        int action;
        observe(&s, obs);
        action = greedy ? pgdeploy_greedy(obs) : pgdeploy_sample(obs, u);
        if (trace) {
            trace_state(trace, "S", episode, t, &s);
            fprintf(trace, " %.9g %d\n", (double)u, action);
        }
        terminated = cartpole_step(&s, action);
    }
    if (trace) {
        trace_state(trace, "F", episode, t, &s);
        fprintf(trace, " %d\n", terminated);
    }
    return t;
}

int main(int argc, char **argv)
{
    const int episodes = argc > 1 ? atoi(argv[1]) : 10;
    Rng rng;
    int greedy, episode;
    long total = 0;
    FILE *trace = NULL;
    rng.state = argc > 2 ? strtoull(argv[2], NULL, 10) : 0ULL;
    greedy = argc > 3 && strcmp(argv[3], "greedy") == 0;
    if (episodes < 1 || (argc > 3 && !greedy && strcmp(argv[3], "sample") != 0)) {
        fprintf(stderr, "usage: %s [EPISODES>=1 [SEED [sample|greedy [TRACE_FILE]]]]\n", argv[0]);
        return 2;
    }
    if (argc > 4 && !(trace = fopen(argv[4], "w"))) {
        fprintf(stderr, "cannot open trace file %s\n", argv[4]);
        return 1;
    }
    printf("policy: %s, pgdeploy %s, %s actions\n", PGDEPLOY_ENV_ID, PGDEPLOY_VERSION,
           greedy ? "greedy" : "sampled");
    for (episode = 0; episode < episodes; ++episode) {
        const int ret = play_episode(episode, &rng, greedy, trace);
        total += ret;
        printf("episode %d: return %d\n", episode, ret);
    }
    printf("mean return over %d episodes: %.2f\n", episodes, (double)total / episodes);
    if (trace && fclose(trace) != 0) {
        return 1;
    }
    return 0;
}
