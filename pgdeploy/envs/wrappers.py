"""Wrappers that ship with pgdeploy, for ``--wrapper pgdeploy.envs.wrappers:NAME``.

Each is a function env -> env. A model file may name one and ``run`` or ``export`` applies
it without asking (:data:`pgdeploy.envs.recipe.OWN_WRAPPERS`), so this module holds
nothing else and imports only gymnasium.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from pgdeploy.errors import UnsupportedEnvError


def without_text(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
    """Drop the text members of a ``Dict`` observation (MiniGrid's ``mission``), which an
    MLP cannot take, and keep the rest (MiniGrid: ``direction`` and ``image``)."""
    space = env.observation_space
    if not isinstance(space, gym.spaces.Dict):
        raise UnsupportedEnvError(
            f"without_text drops members of a Dict observation, got {type(space).__name__}"
        )
    keep = [key for key, sub in space.spaces.items() if not _is_text(sub)]
    return gym.wrappers.FilterObservation(env, keep)


def _is_text(space: gym.Space[Any]) -> bool:
    """gymnasium's ``Text`` and spaces of strings named like it (MiniGrid's ``MissionSpace``)."""
    return isinstance(space, gym.spaces.Text) or type(space).__name__ == "MissionSpace"
