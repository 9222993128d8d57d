"""The env a run trained on, made again: its id, constructor keywords and wrapper.

A run records all three (its ``config.json``, the checkpoint, the exported files). Every
command that plays a trained policy again (export's on-policy verification, ``--target
c``, ``run``) makes its env through :func:`run_env`, so they agree on which env it is and
on when a module named in a file may be imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from pgdeploy.envs.making import (
    Vectorization,
    env_id_from_file,
    make_env,
    make_vector_env,
    policy_spec,
)
from pgdeploy.errors import EnvModuleRefusedError, UnsupportedEnvError
from pgdeploy.layout import ActionLayout
from pgdeploy.spec import PolicySpec, check_env_id, check_env_kwargs, is_wrapper

#: The module of the wrappers that ship with pgdeploy (:mod:`pgdeploy.envs.wrappers`): it
#: holds only env -> env functions and imports no code but pgdeploy's own, so a file may
#: name them without the user confirming anything.
OWN_WRAPPERS = "pgdeploy.envs.wrappers"


@dataclass(frozen=True)
class EnvRecipe:
    """``gym.make(env_id, **env_kwargs)``, then ``wrapper`` (``module:callable``)."""

    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    wrapper: str = ""

    def make(self, **extra: Any) -> gym.Env[Any, Any]:
        """One env; ``extra`` keywords (e.g. ``render_mode``) join the recorded ones."""
        return make_env(self.env_id, wrapper=self.wrapper, **{**self.env_kwargs, **extra})

    def make_vector(
        self, num_envs: int, *, vectorization: Vectorization = "auto"
    ) -> gym.vector.VectorEnv[Any, Any, Any]:
        return make_vector_env(
            self.env_id,
            num_envs,
            vectorization=vectorization,
            env_kwargs=self.env_kwargs,
            wrapper=self.wrapper,
        )

    def policy_spec(self) -> PolicySpec:
        """The spec a policy for this env has (from one throwaway instance)."""
        return policy_spec(self.env_id, env_kwargs=self.env_kwargs, wrapper=self.wrapper)

    def describe(self) -> str:
        """``env_id`` with its keywords and wrapper, as a user would type them."""
        parts = [self.env_id]
        if self.env_kwargs:
            parts.append("env_kwargs " + ",".join(f"{k}={v}" for k, v in self.env_kwargs.items()))
        if self.wrapper:
            parts.append(f"wrapper {self.wrapper}")
        return ", ".join(parts)


def recorded_env(
    file_env_id: object, config: Mapping[str, Any] | None, *, source: str
) -> EnvRecipe:
    """What a file says its run trained on: the spec's env id and the run config's
    ``env_kwargs`` and ``wrapper``, each checked as data (nothing is imported here)."""
    env_id = check_env_id(file_env_id, source=f"{source}: env id")
    config = config if isinstance(config, Mapping) else {}
    wrapper = config.get("wrapper", "")
    if not is_wrapper(wrapper):
        raise UnsupportedEnvError(f"{source} records a wrapper that is not module:callable")
    return EnvRecipe(env_id, check_env_kwargs(config.get("env_kwargs", {})), wrapper)


def run_env(
    recorded: EnvRecipe,
    *,
    source: str,
    env_id: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    wrapper: str | None = None,
    trust_env_module: bool = False,
) -> EnvRecipe:
    """The env to play ``recorded``'s policy in: what the user typed, else what the run
    recorded, imported only when the user confirmed it.

    ``env_id``, ``env_kwargs`` and ``wrapper`` are the user's (the command line's); each one
    left ``None`` takes the recorded value. Keywords are data and always apply. A recorded
    ``module:EnvId`` follows :func:`~pgdeploy.envs.making.env_id_from_file`; a recorded
    wrapper is used when its module is one the user typed (in ``env_id`` or ``wrapper``),
    is pgdeploy's own, or ``trust_env_module`` is set, and is otherwise refused with the
    flag that confirms it. Nothing is made or imported here.
    """
    chosen_id = env_id_from_file(
        recorded.env_id, source=source, user_env_id=env_id, trust_env_module=trust_env_module
    )
    kwargs = check_env_kwargs(env_kwargs) if env_kwargs is not None else recorded.env_kwargs
    if wrapper is not None:
        return EnvRecipe(chosen_id, kwargs, wrapper)
    confirmed = {module_of(env_id), OWN_WRAPPERS}
    if recorded.wrapper and not trust_env_module and module_of(recorded.wrapper) not in confirmed:
        raise EnvModuleRefusedError(
            f"{source} was trained with wrapper {recorded.wrapper}, which would import the "
            f"module {module_of(recorded.wrapper)!r}; pass --wrapper {recorded.wrapper} to "
            "confirm it (or --wrapper '' to go without)"
        )
    return EnvRecipe(chosen_id, kwargs, recorded.wrapper)


def check_same_spaces(
    spec: PolicySpec,
    env: EnvRecipe,
    tree: Mapping[str, Any],
    actions: ActionLayout,
    *,
    who: str,
    advice: str,
) -> None:
    """Refuse ``env`` unless its observation layout ``tree`` and ``actions`` are those of
    ``who`` (the policy, a model file): another env, or the right one without the keywords
    or wrapper it was trained with. ``advice`` ends the message: what the caller's user
    can do."""
    if tree != spec.obs_layout.tree:
        got, wanted = f"observations {_words(tree)}", _words(spec.obs_layout.tree)
    elif actions != spec.action_layout:
        got, wanted = f"actions {actions.to_dict()}", f"actions {spec.action_layout.to_dict()}"
    else:
        return
    raise UnsupportedEnvError(
        f"env {env.describe()} has {got}, but {who} expects {wanted}; {advice}"
    )


def _words(tree: Mapping[str, Any]) -> str:
    """A layout tree in a few words: ``box (4,)``, ``discrete 16``, ``dict of 2``."""
    if "shape" in tree:
        return f"{tree['type']} {tuple(tree['shape'])}"
    if "n" in tree:
        return f"discrete {tree['n']}"
    return f"{tree['type']} of {len(tree.get('spaces', ()))}"


def module_of(name: str | None) -> str | None:
    """The module a ``module:thing`` imports (``None`` for a plain id)."""
    if not name or ":" not in name:
        return None
    return name.split(":", 1)[0]


def same_env(env_id: str, other: str) -> bool:
    """Whether two ids name the same registered env (``module:`` only says where it is)."""
    return env_id.rsplit(":", 1)[-1] == other.rsplit(":", 1)[-1]
