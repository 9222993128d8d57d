"""An env's recipe beyond its id: constructor keywords and a ``module:callable`` wrapper.

Both making (this process) and worker_vector_env (worker processes) build envs this way,
so a wrapped env is the same env wherever it steps.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym

from pgdeploy._process import one_line
from pgdeploy.errors import UnsupportedEnvError
from pgdeploy.spec import is_wrapper


def wrappers(wrapper: str) -> list[Callable[[Any], Any]]:
    """``[callable]`` for a ``module:callable`` wrapper (importing the module), ``[]`` for "".

    The one place a wrapper is imported: a name outside the grammar (a typed one included)
    is refused here, before ``importlib`` sees it."""
    if not is_wrapper(wrapper):
        raise UnsupportedEnvError(
            f"wrapper {wrapper!a} is not module:callable (dotted Python names in ASCII)"
        )
    if not wrapper:
        return []
    module, _, name = wrapper.partition(":")
    try:
        target: Any = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except Exception as exc:  # a user's module may raise anything at import
        raise UnsupportedEnvError(
            f"cannot load wrapper {wrapper!a}: {type(exc).__name__}: {one_line(exc)}"
        ) from exc
    if not callable(target):
        raise UnsupportedEnvError(f"wrapper {wrapper!a} is not callable (expected env -> env)")

    def wrap(env: Any) -> Any:
        try:
            return target(env)
        except Exception as exc:  # the user's wrapper may raise anything
            raise UnsupportedEnvError(
                f"wrapper {wrapper!a} failed: {type(exc).__name__}: {one_line(exc)}"
            ) from exc

    return [wrap]


def sync_vector_env(
    env_id: str, num_envs: int, *, env_kwargs: Mapping[str, Any] | None = None, wrapper: str = ""
) -> gym.vector.VectorEnv[Any, Any, Any]:
    """``num_envs`` envs stepped one after the other in this process."""
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        wrappers=wrappers(wrapper) or None,
        **dict(env_kwargs or {}),
    )
