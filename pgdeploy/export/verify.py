"""Verification of an exported file against the PyTorch policy, on thousands of observations."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy.envs.recipe import EnvRecipe
from pgdeploy.errors import ExportVerificationError, UnsupportedEnvError
from pgdeploy.export.reference import GraphFn, TorchAgent
from pgdeploy.runtime.agent import Agent
from pgdeploy.spec import OUTPUT_NAMES, PolicySpec
from pgdeploy.training.policy import SoftmaxPolicy


@dataclass(frozen=True)
class FormatCheck:
    """How one exported file compared with the PyTorch policy."""

    format: str
    path: Path
    max_abs_diff: float
    #: Largest |dp| / tolerance over all probabilities: <= 1 passes.
    max_tolerance_ratio: float
    greedy_mismatches: int
    sampled_mismatches: int
    n_observations: int

    @property
    def passed_actions(self) -> bool:
        return self.greedy_mismatches == 0 and self.sampled_mismatches == 0

    @property
    def passed(self) -> bool:
        return self.max_tolerance_ratio <= 1.0 and self.passed_actions

    def render(self, what: str, n_random: int, n_on_policy: int) -> str:
        """One line: ``what`` verified on how many observations, and how closely."""
        return (
            f"{self.format}: {what} verified on {self.n_observations} observations "
            f"({n_random} random, {n_on_policy} on-policy): max |dp| = "
            f"{self.max_abs_diff:.2e} ({self.max_tolerance_ratio:.2g}x its float32 "
            f"tolerance), action mismatches: {self.greedy_mismatches} greedy, "
            f"{self.sampled_mismatches} sampled"
        )


def verification_observations(
    policy: SoftmaxPolicy,
    *,
    n_random: int,
    n_on_policy: int,
    seed: int,
    env: EnvRecipe | str | None = None,
) -> npt.NDArray[np.float32]:
    """Raw rows: random ones around the training statistics (categorical values drawn
    uniformly from their ranges), plus ones the policy visits.

    ``env`` (a recipe, e.g. a :class:`VerificationPlan`'s, or a bare env id) plays the
    on-policy episodes; ``None`` takes the checkpoint's own id through
    :func:`pgdeploy.envs.making.env_id_from_file` (a ``module:EnvId`` there is refused).
    """
    rng = np.random.default_rng(seed)
    spec = policy.spec
    layout = spec.obs_layout
    random = np.zeros((n_random, spec.obs_dim), np.float64)
    columns = list(layout.continuous_columns)
    if columns:
        mean = policy.obs_mean.numpy().astype(np.float64)
        std = np.sqrt(policy.obs_var.numpy().astype(np.float64))
        values = rng.normal(mean, 3 * std, size=(n_random, len(columns)))
        low, high = np.asarray(spec.obs_low)[columns], np.asarray(spec.obs_high)[columns]
        random[:, columns] = np.clip(values, low, high)
    for column, (first, last) in layout.categorical_bounds().items():
        random[:, column] = rng.integers(first, last + 1, size=n_random)
    return np.concatenate(
        [random.astype(np.float32), on_policy_observations(policy, n_on_policy, seed, env)]
    )


#: Envs stepped together while collecting on-policy observations: one batched forward
#: pass per vector step instead of one per observation (4,096 single ``act`` calls took
#: 2.1 s; this takes a few hundredths).
ON_POLICY_ENVS = 16


def on_policy_observations(
    policy: SoftmaxPolicy, n: int, seed: int, env: EnvRecipe | str | None = None
) -> npt.NDArray[np.float32]:
    """``n`` raw rows from episodes the policy itself plays (sampled actions) in ``env``
    (see :func:`verification_observations`), ``ON_POLICY_ENVS`` envs at a time acting
    through one batched forward pass per step.

    An env's final observation is not collected: the vector env resets it on the next
    step (ignoring that env's action).
    """
    from pgdeploy.envs.making import env_id_from_file

    spec = policy.spec
    if n == 0:
        return np.zeros((0, spec.obs_dim), np.float32)
    if isinstance(env, EnvRecipe):
        recipe = env
    else:
        recipe = EnvRecipe(env_id_from_file(spec.env_id, source="the checkpoint", user_env_id=env))
    num_envs = min(ON_POLICY_ENVS, n)
    # No worker processes: their start-up would outweigh a few hundred vector steps.
    envs = recipe.make_vector(num_envs, vectorization="native")
    agent = TorchAgent.from_policy(policy, seed=seed)
    heads = spec.action_layout
    observations: list[npt.NDArray[np.float32]] = []
    collected = 0
    fresh = np.ones(num_envs, dtype=bool)  # False where obs is an episode's final one
    try:
        _check_fits(policy, recipe, envs.single_observation_space)
        obs, _ = envs.reset(seed=seed)
        while collected < n:
            rows = agent.rows(obs)[fresh]
            observations.append(rows)
            collected += len(rows)
            # Actions of envs being reset are ignored; any valid one will do.
            actions = np.tile(np.asarray(heads.start, np.int64), (num_envs, 1))
            if len(rows):
                actions[fresh] = agent.act_rows(rows).reshape(len(rows), -1)
            step = actions if heads.multi else actions[:, 0]
            obs, _, terminated, truncated, _ = envs.step(step)
            fresh = ~(np.asarray(terminated) | np.asarray(truncated))
    finally:
        envs.close()
    return np.concatenate(observations)[:n]


def _check_fits(policy: SoftmaxPolicy, env: EnvRecipe, space: Any) -> None:
    """Refuse an env whose observations are not the policy's (another env, or the right
    one without the keywords or wrapper it was trained with)."""
    from pgdeploy.envs.making import observation_layout

    tree = observation_layout(env.env_id, space)
    if tree != policy.spec.obs_layout.tree:
        raise UnsupportedEnvError(
            f"env {env.describe()} has observations {_shape(tree)}, but the policy expects "
            f"{_shape(policy.spec.obs_layout.tree)}; pass the env it was trained on (its "
            "--env, --env-kwargs and --wrapper)"
        )


def _shape(tree: dict[str, Any]) -> str:
    """A layout tree in a few words: ``box (4,)``, ``discrete 16``, ``dict of 2``."""
    if "shape" in tree:
        return f"{tree['type']} {tuple(tree['shape'])}"
    if "n" in tree:
        return f"discrete {tree['n']}"
    return f"{tree['type']} of {len(tree['spaces'])}"


@dataclass(frozen=True)
class VerificationPlan:
    """The observations an export is checked on, the same for every target."""

    env: EnvRecipe | None
    """The env played for the on-policy observations; None: random ones replace them."""
    n_random: int
    n_on_policy: int
    notices: tuple[str, ...] = ()
    """Why the on-policy observations were replaced, when they were."""

    @property
    def env_id(self) -> str | None:
        return None if self.env is None else self.env.env_id


def plan_verification(
    recorded: EnvRecipe,
    env_id: str | None,
    trust_env_module: bool,
    *,
    n_random: int,
    n_on_policy: int,
    env_kwargs: Mapping[str, Any] | None = None,
    wrapper: str | None = None,
) -> VerificationPlan:
    """The env for on-policy observations and the counts, or random rows with a notice.

    ``recorded`` is the env the run trained on (:func:`pgdeploy.envs.recipe.recorded_env`);
    ``env_id``, ``env_kwargs`` and ``wrapper`` are the user's and replace its parts
    (:func:`pgdeploy.envs.recipe.run_env`, which also decides what may be imported). When
    the user named neither an env nor a wrapper and the recorded env may not be imported
    or cannot be made, random observations replace the on-policy ones (the total stays)
    and the notice says what to pass; an env the user named that fails is an error.
    """
    from pgdeploy.envs.recipe import run_env

    typed = env_id is not None or wrapper is not None
    try:
        chosen = run_env(
            recorded,
            source="the checkpoint",
            env_id=env_id,
            env_kwargs=env_kwargs,
            wrapper=wrapper,
            trust_env_module=trust_env_module,
        )
        if not typed:
            chosen.make().close()  # an unregistered id falls back below, not mid-export
    except UnsupportedEnvError as exc:
        if typed:
            raise
        notice = f"on-policy verification skipped, random observations used instead: {exc}"
        return VerificationPlan(None, n_random + n_on_policy, 0, (notice,))
    return VerificationPlan(chosen, n_random, n_on_policy)


#: Unit roundoff of float32 (half an ulp of 1.0).
FLOAT32_UNIT = 2.0**-24
#: Multiple of sqrt(fan-in) * unit roundoff allowed per layer (see :func:`logit_error_bound`).
ROUNDING_FACTOR = 1.0


def logit_error_bound(
    policy: SoftmaxPolicy, obs: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """Per observation and logit, how far two correct float32 evaluations may differ.

    A layer ``y = W x + b`` with fan-in ``k`` evaluated in float32 is off by at most
    ``gamma_k * (|W| |x| + |b|)``, and an input error ``e`` reaches the output as
    ``|W| e`` (ReLU does not enlarge either). Rigorously ``gamma_k ~ k u``; rounding errors
    behave like independent random variables, so ``sqrt(k) u`` times a small constant
    (Higham & Mary, 2019) is what real evaluations stay within, and that is what is used
    (``ROUNDING_FACTOR * sqrt(k + 2) * u``; the +2 covers the normalisation folded into
    the first layer). The recursion runs in float64 on the magnitudes of the training
    policy's own activations, so the bound scales with the observation, the weights and
    the fan-in: large unbounded observations get a proportionally larger bound, a
    small model on small inputs a tight one. Both sides (training policy, exported graph)
    contribute, hence the factor 2.
    """
    with torch.no_grad():
        x = policy.features(torch.from_numpy(obs)).double().abs()
        error = x * 2 * FLOAT32_UNIT  # (x - mean) / std: two roundings
        for module in policy.net:
            if isinstance(module, torch.nn.Linear):
                weight = module.weight.double().abs()
                k = weight.shape[1]
                gamma = ROUNDING_FACTOR * math.sqrt(k + 2) * FLOAT32_UNIT
                magnitude = x @ weight.T + module.bias.double().abs()
                error = error @ weight.T + gamma * magnitude
                x = magnitude
    return 2 * error.numpy()


def probability_tolerance(
    probs: npt.NDArray[np.float32],
    logit_bound: npt.NDArray[np.float64],
    nvec: list[int],
    atol: float,
) -> npt.NDArray[np.float64]:
    """Per observation and action, the largest |dp| logit errors of ``logit_bound`` allow.

    For p = softmax(z) and |dz| <= d (the largest bound of the head),
    |dp_i| <= p_i (exp(2 d) - 1); the softmax itself adds ~(A + 4) u relative error for A
    actions. ``atol`` is an absolute floor (float noise on tiny probabilities).
    """
    p = probs.astype(np.float64)
    tol = np.empty_like(p)
    offset = 0
    for n in nvec:
        head = slice(offset, offset + n)
        d = logit_bound[:, head].max(axis=1, keepdims=True)
        # A huge bound allows any |dp| <= 1, no more; 0 * inf (an overflowing bound on a
        # zero probability) is NaN, which fails the comparison.
        with np.errstate(over="ignore", invalid="ignore"):
            tol[:, head] = p[:, head] * (np.expm1(2 * d) + (n + 4) * FLOAT32_UNIT)
        offset += n
    return np.minimum(tol + atol, 1.0)


def require_passed(
    check: FormatCheck, *, atol: float, n_observations: int, folder: Path
) -> FormatCheck:
    """``check`` when it passed, else the error saying how far the file is from PyTorch."""
    if check.passed:  # NaN fails too: the ratio comparison is "<= 1.0"
        return check
    raise ExportVerificationError(
        f"{check.format} export differs from the PyTorch policy: max |dp| = "
        f"{check.max_abs_diff:.3g}, {check.max_tolerance_ratio:.3g}x the float32 "
        f"tolerance (atol floor {atol:.3g}), "
        f"{check.greedy_mismatches} greedy and {check.sampled_mismatches} sampled "
        f"action mismatches over {n_observations} observations; nothing was written "
        f"({folder} was left as it was)"
    )


def compare(
    fmt: str,
    path: Path,
    graph: GraphFn | Agent,
    spec: PolicySpec,
    obs: npt.NDArray[np.float32],
    uniforms: npt.NDArray[np.float32],
    reference: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]],
    tolerance: npt.NDArray[np.float64],
) -> FormatCheck:
    """Compare probs with a per-element ``tolerance`` (:func:`probability_tolerance`), and
    greedy and sampled actions; decisions within the tolerance of a tie are not mismatches."""
    if isinstance(graph, Agent):
        out = graph.run_graph(obs, uniforms)
        probs, greedy, sampled = (out[name] for name in OUTPUT_NAMES)
    else:
        probs, greedy, sampled = TorchAgent(graph, spec).run_graph(obs, uniforms)
    ref_probs, ref_greedy, ref_sampled = reference
    abs_diff = np.abs(probs.astype(np.float64) - ref_probs)
    diff = float(abs_diff.max())
    ratio = float((abs_diff / tolerance).max())
    nvec = list(spec.action_layout.nvec)
    u = uniforms.reshape(len(obs), len(nvec))
    greedy_bad = np.zeros(len(obs), bool)
    sampled_bad = np.zeros(len(obs), bool)
    offset = 0
    for index, n in enumerate(nvec):
        head = slice(offset, offset + n)
        p, tol = ref_probs[:, head], tolerance[:, head]
        margin = 2 * tol.sum(axis=1) + 4e-7  # a decision this close to a boundary may flip
        top2 = np.sort(p, axis=1)[:, -2:]
        clear_greedy = (top2[:, 1] - top2[:, 0]) > margin
        cdf = np.cumsum(p[:, :-1], axis=1)
        clear_sample = (np.abs(cdf - u[:, index : index + 1]) > margin[:, None]).all(axis=1)
        g, rg = greedy.reshape(len(obs), -1)[:, index], ref_greedy.reshape(len(obs), -1)[:, index]
        s_, rs = (
            sampled.reshape(len(obs), -1)[:, index],
            ref_sampled.reshape(len(obs), -1)[:, index],
        )
        greedy_bad |= (g != rg) & clear_greedy
        sampled_bad |= (s_ != rs) & clear_sample
        offset += n
    return FormatCheck(
        format=fmt,
        path=path,
        max_abs_diff=diff,
        max_tolerance_ratio=ratio,
        greedy_mismatches=int(greedy_bad.sum()),
        sampled_mismatches=int(sampled_bad.sum()),
        n_observations=len(obs),
    )


@dataclass(frozen=True)
class Reference:
    """What every exported format is compared with: the PyTorch policy's outputs on the
    verification observations, the uniforms they used, and the per-element tolerance."""

    obs: npt.NDArray[np.float32]
    uniforms: npt.NDArray[np.float32]
    outputs: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]
    tolerance: npt.NDArray[np.float64]

    @property
    def arguments(
        self,
    ) -> tuple[
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
        tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]],
        npt.NDArray[np.float64],
    ]:
        """``compare``'s arguments after the graph: obs, uniforms, outputs, tolerance."""
        return self.obs, self.uniforms, self.outputs, self.tolerance


def reference_outputs(
    policy: SoftmaxPolicy, obs: npt.NDArray[np.float32], *, seed: int, atol: float
) -> Reference:
    """The PyTorch side of verification; a policy whose own probabilities are not finite
    (weights that overflow float32) is refused here, before any format is built."""
    heads = policy.spec.action_layout.n_branches
    uniforms = np.random.default_rng(seed).random(len(obs) * heads, dtype=np.float32)
    outputs = TorchAgent.from_policy(policy).run_graph(obs, uniforms)
    bad_rows = int((~np.isfinite(outputs[0])).any(axis=1).sum())
    if bad_rows:
        raise ExportVerificationError(
            f"the PyTorch policy's probabilities are not finite on {bad_rows} of {len(obs)} "
            "verification observations (its weights overflow float32); nothing was written"
        )
    tolerance = probability_tolerance(outputs[0], logit_error_bound(policy, obs), policy.nvec, atol)
    return Reference(obs, uniforms, outputs, tolerance)


def checkpoint_env(checkpoint: Any) -> EnvRecipe:
    """The env a checkpoint's run trained on: its spec's id, its config's keywords and
    wrapper (:class:`~pgdeploy.training.checkpoint.Checkpoint`)."""
    from pgdeploy.envs.recipe import recorded_env

    return recorded_env(
        checkpoint.spec.env_id, checkpoint.config.to_dict(), source="the checkpoint"
    )
