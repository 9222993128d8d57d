"""Envs: the supported spaces, including module:EnvId; clear refusals otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from pgdeploy.envs.making import make_vector_env, policy_spec
from pgdeploy.errors import UnsupportedEnvError


def test_module_colon_env_id_imports_the_users_module() -> None:
    spec = policy_spec("tests.tiny_envs:Guess-v0")
    assert (spec.obs_dim, spec.n_actions, spec.reward_threshold) == (2, 2, 7.0)
    envs = make_vector_env("tests.tiny_envs:Guess-v0", num_envs=2)
    try:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (2, 2) and obs.dtype == np.float32
        actions = (obs[:, 0] > 0).astype(np.int64)  # the paying action in each env
        _, rewards, terminated, truncated, _ = envs.step(actions)
        assert rewards.tolist() == [1.0, 1.0]  # each env stepped with its own action
        assert not terminated.any() and not truncated.any()
    finally:
        envs.close()


def test_acrobot_is_supported() -> None:
    spec = policy_spec("Acrobot-v1")
    assert (spec.obs_dim, spec.n_actions) == (6, 3)


@pytest.mark.parametrize(
    ("env_id", "match"),
    [
        ("tests.tiny_envs:GuessContinuous-v0", r"action space Box.*actions: Discrete"),
        (
            "tests.tiny_envs:GuessImage-v0",
            r"image observations .*uint8.*gymnasium\.wrappers\.FlattenObservation",
        ),
        ("Pendulum-v1", r"continuous actions need another algorithm"),
        ("NoSuchEnv-v0", r"cannot make environment 'NoSuchEnv-v0'"),
        ("no_such_module:Env-v0", r"cannot make environment 'no_such_module:Env-v0'"),
    ],
)
def test_unsupported_envs_fail_with_what_is_supported(env_id: str, match: str) -> None:
    with pytest.raises(UnsupportedEnvError, match=match):
        policy_spec(env_id)
