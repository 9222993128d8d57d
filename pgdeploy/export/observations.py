"""The observations every export is verified on: random rows, and rows the policy visits.

The same for every source (a trained checkpoint, an imported SB3 or CleanRL file) and every
target: random rows drawn around the source's statistics within the space, then episodes
the source's own float policy plays (sampled actions, the runtime's inverse-CDF contract,
seeded), where its env can be made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pgdeploy.errors import UnsupportedEnvError
from pgdeploy.runtime.sampling import inverse_cdf
from pgdeploy.spec import PolicySpec

#: raw rows (n, obs_dim) float32 -> probabilities (n, n_actions), every head's
ProbsFn = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
#: Envs played in lockstep for on-policy rows: one batched forward pass per step of all
#: (one pass per observation made on-policy collection the slowest part of an export).
ON_POLICY_ENVS = 16


@dataclass(frozen=True)
class VerificationPlan:
    """The observations an export is checked on, the same for every target."""

    env_id: str | None
    """The env played for the on-policy observations; None: random ones replace them."""
    n_random: int
    n_on_policy: int
    notices: tuple[str, ...] = ()
    """Why the on-policy observations were replaced, when they were."""


def plan_verification(
    file_env_id: str,
    env_id: str | None,
    trust_env_module: bool,
    *,
    n_random: int,
    n_on_policy: int,
    source: str = "the checkpoint",
) -> VerificationPlan:
    """The env for on-policy observations and the counts, or random rows with a notice.

    ``env_id`` (the user's) is used as given; the file's own id only when
    :func:`pgdeploy.envs.env_id_from_file` allows it and it can be made, else random
    observations replace the on-policy ones (the total stays) and the notice says so.
    """
    from pgdeploy.envs.making import env_id_from_file, make_env

    try:
        chosen = env_id_from_file(
            file_env_id, source=source, user_env_id=env_id, trust_env_module=trust_env_module
        )
        if env_id is None:
            make_env(chosen).close()  # an unregistered id falls back below, not mid-export
    except UnsupportedEnvError as exc:
        if env_id is not None:
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
    spec: PolicySpec, env_id: str, probs: ProbsFn, n: int, seed: int
) -> npt.NDArray[np.float32]:
    """``n`` raw rows from episodes ``probs`` plays in ``env_id`` (sampled actions, seeded).

    ``ON_POLICY_ENVS`` envs step in lockstep, env ``i`` reset with ``seed + i``; an episode
    ends at termination, truncation or the spec's step limit (1000 without one). The env's
    spaces must be the policy's.
    """
    if n == 0:
        return np.zeros((0, spec.obs_dim), np.float32)
    envs = _envs(spec, env_id, min(ON_POLICY_ENVS, n))
    layout, nvec = spec.obs_layout, spec.action_layout.nvec
    start = spec.action_layout.start
    rng = np.random.default_rng(seed)
    limit = spec.max_episode_steps or 1000
    rows: list[npt.NDArray[np.float32]] = []
    try:
        current = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
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
            for i, env in enumerate(envs):
                action: Any = np.asarray([h[i] for h in heads]) if len(nvec) > 1 else heads[0][i]
                obs, _, terminated, truncated, _ = env.step(action)
                steps[i] += 1
                if terminated or truncated or steps[i] >= limit:
                    obs, steps[i] = env.reset()[0], 0
                current[i] = obs
    finally:
        for env in envs:
            env.close()
    return np.stack(rows[:n]).astype(np.float32)


def _envs(spec: PolicySpec, env_id: str, count: int) -> list[Any]:
    """``count`` envs of ``env_id``, refused unless their spaces are the policy's."""
    from pgdeploy.envs.making import action_layout, make_env, observation_layout

    envs = [make_env(env_id) for _ in range(count)]
    tree = observation_layout(env_id, envs[0].observation_space)
    actions = action_layout(env_id, envs[0].action_space)
    if tree != spec.obs_layout.tree or actions.nvec != spec.action_layout.nvec:
        for env in envs:
            env.close()
        raise UnsupportedEnvError(
            f"env {env_id} observes {tree} and acts in {actions.to_dict()}, but the policy "
            f"expects {spec.obs_layout.tree} and {spec.action_layout.to_dict()}; pass the env "
            "it was trained on with --env"
        )
    return envs
