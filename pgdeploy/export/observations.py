"""The observations every export is verified on: random rows, and rows the policy visits.

The same for every source (a trained checkpoint, an imported SB3 or CleanRL file) and every
target: random rows drawn around the source's statistics within the space, then episodes
the source's own float policy plays (sampled actions, the runtime's inverse-CDF contract,
seeded), where its env can be made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import UnsupportedEnvError
from pgdeploy.runtime.sampling import inverse_cdf
from pgdeploy.spec import PolicySpec

if TYPE_CHECKING:
    from pgdeploy.envs.recipe import EnvRecipe

#: raw rows (n, obs_dim) float32 -> probabilities (n, n_actions), every head's
ProbsFn = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
#: Envs played in lockstep for on-policy rows: one batched forward pass per step of all
#: (one pass per observation made on-policy collection the slowest part of an export).
ON_POLICY_ENVS = 16


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
    source: str = "the checkpoint",
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
            source=source,
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
        return random_only(n_random, n_on_policy, f"{exc}")
    return VerificationPlan(chosen, n_random, n_on_policy)


def random_only(n_random: int, n_on_policy: int, reason: str) -> VerificationPlan:
    """All observations random, and a notice saying why."""
    notice = f"on-policy verification skipped, random observations used instead: {reason}"
    return VerificationPlan(None, n_random + n_on_policy, 0, (notice,))


def random_rows(
    spec: PolicySpec,
    center: tuple[npt.NDArray[Any], npt.NDArray[Any]],
    n: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.float32]:
    """Raw rows: continuous columns normal around ``center`` (mean, std per continuous
    column) at 3 standard deviations, within the space's bounds; MultiBinary columns 0/1;
    categorical ones uniform over their values."""
    layout = spec.obs_layout
    rows = np.zeros((n, spec.obs_dim), np.float64)
    columns = list(layout.continuous_columns)
    if columns:
        mean, std = (np.asarray(v, np.float64) for v in center)
        values = rng.normal(mean, 3 * std, size=(n, len(columns)))
        low, high = np.asarray(spec.obs_low)[columns], np.asarray(spec.obs_high)[columns]
        rows[:, columns] = np.clip(values, low, high)
    for leaf in layout.leaves:
        if leaf.kind == "multi_binary":
            rows[:, leaf.offset : leaf.offset + leaf.size] = rng.integers(0, 2, (n, leaf.size))
    for column, (first, last) in layout.categorical_bounds().items():
        rows[:, column] = rng.integers(first, last + 1, size=n)
    return rows.astype(np.float32)


def on_policy_rows(
    spec: PolicySpec, env: EnvRecipe | str, probs: ProbsFn, n: int, seed: int
) -> npt.NDArray[np.float32]:
    """``n`` raw rows from episodes ``probs`` plays in ``env`` (sampled actions, seeded).

    ``ON_POLICY_ENVS`` envs step in lockstep, env ``i`` reset with ``seed + i``; an episode
    ends at termination, truncation or the spec's step limit (1000 without one). The env's
    spaces must be the policy's.
    """
    if n == 0:
        return np.zeros((0, spec.obs_dim), np.float32)
    from pgdeploy.envs.recipe import EnvRecipe

    recipe = env if isinstance(env, EnvRecipe) else EnvRecipe(env)
    envs = _envs(spec, recipe, min(ON_POLICY_ENVS, n))
    layout, nvec = spec.obs_layout, spec.action_layout.nvec
    start = spec.action_layout.start
    rng = np.random.default_rng(seed)
    limit = spec.max_episode_steps or 1000
    rows: list[npt.NDArray[np.float32]] = []
    try:
        current = [one.reset(seed=seed + i)[0] for i, one in enumerate(envs)]
        steps = [0] * len(envs)
        while len(rows) < n:
            batch = np.stack([layout.flatten(obs) for obs in current])
            rows.extend(batch)
            p = probs(batch)
            uniforms = rng.random((len(envs), len(nvec)), dtype=np.float32)
            heads, offset = [], 0
            for index, size in enumerate(nvec):
                chunk = p[:, offset : offset + size]
                heads.append(inverse_cdf(chunk, uniforms[:, index]) + start[index])
                offset += size
            for i, one in enumerate(envs):
                action: Any = np.asarray([h[i] for h in heads]) if len(nvec) > 1 else heads[0][i]
                obs, _, terminated, truncated, _ = one.step(action)
                steps[i] += 1
                if terminated or truncated or steps[i] >= limit:
                    obs, steps[i] = one.reset()[0], 0
                current[i] = obs
    finally:
        for one in envs:
            one.close()
    return np.stack(rows[:n]).astype(np.float32)


def _envs(spec: PolicySpec, recipe: EnvRecipe, count: int) -> list[Any]:
    """``count`` envs of ``recipe``, refused unless their spaces are the policy's."""
    from pgdeploy.envs.making import action_layout, observation_layout
    from pgdeploy.envs.recipe import check_same_spaces

    env_id = recipe.env_id
    envs = [recipe.make() for _ in range(count)]
    try:
        tree = observation_layout(env_id, envs[0].observation_space)
        actions = action_layout(env_id, envs[0].action_space)
        check_same_spaces(
            spec,
            recipe,
            tree,
            actions,
            who="the policy",
            advice="pass the env it was trained on (its --env, --env-kwargs and --wrapper)",
        )
    except BaseException:
        for one in envs:
            one.close()
        raise
    return envs
