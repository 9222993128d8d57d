"""Gymnasium environments: creation, space checks, and the policy spec they imply."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from pgdeploy._optional import missing, require
from pgdeploy.envs.wrapping import sync_vector_env, wrappers
from pgdeploy.errors import EnvModuleRefusedError, UnsupportedEnvError
from pgdeploy.layout import ActionLayout
from pgdeploy.spec import FLOAT32_MAX, PolicySpec

SUPPORTED = (
    "observations: Box (any shape), Discrete, MultiBinary, MultiDiscrete, or Dict/Tuple of "
    "these; actions: Discrete (>= 2 actions, any start) or 1-D MultiDiscrete"
)


def make_env(env_id: str, *, wrapper: str = "", **kwargs: Any) -> gym.Env[Any, Any]:
    """``gym.make(env_id, **kwargs)`` then ``wrapper`` (``module:callable``), with a typed
    error for unknown ids (``module:EnvId`` imports the module)."""
    try:
        env = gym.make(env_id, **kwargs)
    except Exception as exc:  # a user's env module may raise anything at import or creation
        raise _make_error(env_id, exc) from exc
    for wrap in wrappers(wrapper):
        env = wrap(env)
    return env


def allow_local_modules(*typed: str | None) -> None:
    """Let a ``module:`` env id or wrapper the user typed be found in the current folder, as
    ``python -m pgdeploy`` would: the folder is appended to ``sys.path`` (after installed
    packages, so it shadows none). Only the CLI calls this, with the user's own words; an id
    from a file never gets here (:func:`env_id_from_file`)."""
    if any(value and ":" in value for value in typed):
        here = os.getcwd()
        if here not in sys.path and "" not in sys.path:
            sys.path.append(here)


def env_id_from_file(
    file_env_id: str,
    *,
    source: str,
    user_env_id: str | None = None,
    trust_env_module: bool = False,
) -> str:
    """The env id to make for a policy read from a file: the one rule for file-named envs.

    An env id inside a model file is data. gymnasium's ``gym.make("pkg.mod:Env-v0")`` imports
    ``pkg.mod`` first, and with ``python -m`` the working folder is on ``sys.path``, so a
    downloaded model folder holding one ``.py`` file could run code. Hence: an id the user
    names (``user_env_id``, the CLI's ``--env``) is used as given; an id from the file
    without a colon is a registry lookup and is allowed (its entry point was registered by
    code the user already imported); a ``module:EnvId`` from the file is refused unless the
    user opts in with ``trust_env_module`` (``--trust-env-module``).
    """
    if user_env_id is not None:
        return user_env_id
    if not isinstance(file_env_id, str) or not file_env_id:
        raise UnsupportedEnvError(f"{source} has env id {file_env_id!r}, expected a gymnasium id")
    if ":" in file_env_id and not trust_env_module:
        module = file_env_id.split(":", 1)[0]
        raise EnvModuleRefusedError(
            f"{source} names env {file_env_id!r}, which would import the Python module "
            f"{module!r}; pgdeploy never imports a module a file names. Pass --env "
            f"{file_env_id} (trust_env_module=True in Python, --trust-env-module) if you "
            "trust that module, or --env ID for a registered env"
        )
    return file_env_id


def make_env_from_file(
    file_env_id: str,
    *,
    source: str,
    user_env_id: str | None = None,
    trust_env_module: bool = False,
    **kwargs: Any,
) -> gym.Env[Any, Any]:
    """``make_env`` for an id read from a file, through :func:`env_id_from_file`."""
    env_id = env_id_from_file(
        file_env_id, source=source, user_env_id=user_env_id, trust_env_module=trust_env_module
    )
    return make_env(env_id, **kwargs)


Vectorization = Literal["auto", "native", "sync", "subprocess"]

#: Subprocess stepping is chosen when it should be at least this much faster than stepping
#: every env in this process (it also competes with acting and learning for the cores).
SUBPROCESS_MIN_SPEEDUP = 1.4
#: Cost of one vector step through worker pipes beyond the envs' own work (send, pickle,
#: receive, concatenate for 2 workers), measured ~0.1-0.2 ms on a 2-core machine.
SUBPROCESS_OVERHEAD_S = 300e-6


def make_vector_env(
    env_id: str,
    num_envs: int,
    *,
    vectorization: Vectorization = "auto",
    env_kwargs: Mapping[str, Any] | None = None,
    wrapper: str = "",
) -> gym.vector.VectorEnv[Any, Any, Any]:
    """Vectorised envs, chosen for speed; :func:`describe_vectorization` says which.

    ``native``: the env's own numpy implementation where it has one (e.g. CartPole's
    ``CartPoleVectorEnv``, ~60 us for 64 envs against ~660 us with ``SyncVectorEnv``), else
    ``sync``. ``sync``: every env in this process. ``subprocess``:
    :class:`~pgdeploy.envs.worker_vector_env.WorkerVectorEnv`, a slice of the envs in this
    process and one in a worker process per other core. ``auto`` (default): native where
    the env has one, else one env's step is timed (:func:`step_seconds`) and subprocesses
    are used when the predicted speedup reaches ``SUBPROCESS_MIN_SPEEDUP``.
    """
    if vectorization not in ("auto", "native", "sync", "subprocess"):
        raise UnsupportedEnvError(
            f"vectorization must be 'auto', 'native', 'sync' or 'subprocess', got {vectorization!r}"
        )
    kwargs = dict(env_kwargs or {})
    if vectorization == "auto":
        vectorization = choose_vectorization(env_id, num_envs, env_kwargs=kwargs, wrapper=wrapper)
    if vectorization == "native" and (wrapper or kwargs):
        # A wrapper wraps single envs, and a native vector env's keywords are its own (ALE's
        # AtariVectorEnv takes no obs_type): both go to envs made one by one.
        vectorization = "sync"
    try:
        if vectorization == "subprocess":
            from pgdeploy.envs.worker_vector_env import WorkerVectorEnv

            if num_envs < 2:
                raise UnsupportedEnvError("vectorization 'subprocess' needs num_envs >= 2")
            workers = max(1, _processes(num_envs, count_load=False) - 1)
            envs: gym.vector.VectorEnv[Any, Any, Any] = WorkerVectorEnv(
                env_id, num_envs, workers=workers, env_kwargs=kwargs, wrapper=wrapper
            )
        elif vectorization == "sync":
            envs = sync_vector_env(env_id, num_envs, env_kwargs=kwargs, wrapper=wrapper)
        else:
            envs = gym.make_vec(env_id, num_envs=num_envs, **kwargs)
    except UnsupportedEnvError:
        raise
    except Exception as exc:  # a user's env module may raise anything at import or creation
        raise _make_error(env_id, exc) from exc
    check_spaces(env_id, envs.single_observation_space, envs.single_action_space)
    return envs


def _make_error(env_id: str, exc: Exception) -> UnsupportedEnvError:
    """One line: gymnasium's own errors as they are, anything else with its type."""
    known = isinstance(exc, (gym.error.Error, ImportError))
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    what = detail if known else f"{type(exc).__name__}: {detail}".rstrip(": ")
    return UnsupportedEnvError(f"cannot make environment {env_id!r}: {what}")


def choose_vectorization(
    env_id: str, num_envs: int, *, env_kwargs: Mapping[str, Any] | None = None, wrapper: str = ""
) -> Vectorization:
    """``native`` if the env has a vector implementation; else ``subprocess`` or ``sync``.

    Stepping ``n`` envs costs ``n * c`` in this process and about ``n * c / p + overhead``
    over ``p`` processes (this one and a worker per other free core); subprocesses win when
    that ratio reaches
    ``SUBPROCESS_MIN_SPEEDUP``. ``c`` is measured on one env, a few milliseconds at most.
    """
    spec = _registered(env_id)
    if spec is not None and spec.vector_entry_point is not None and not (wrapper or env_kwargs):
        return "native"
    processes = _processes(num_envs)
    if processes < 2:
        return "sync"
    try:
        probe = make_env(env_id, wrapper=wrapper, **dict(env_kwargs or {}))
        flat = isinstance(probe.observation_space, gym.spaces.Box)
        probe.close()
        if not flat:  # worker envs concatenate observation arrays; Dict/Tuple ones stay here
            return "sync"
        sync = num_envs * step_seconds(env_id, env_kwargs=env_kwargs, wrapper=wrapper)
    except (UnsupportedEnvError, ValueError, TypeError):
        return "sync"  # the vector env's own creation reports what is wrong with this env
    predicted = sync / (sync / processes + SUBPROCESS_OVERHEAD_S)
    return "subprocess" if predicted >= SUBPROCESS_MIN_SPEEDUP else "sync"


def step_seconds(
    env_id: str,
    *,
    steps: int = 256,
    budget_s: float = 0.15,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    wrapper: str = "",
) -> float:
    """Mean seconds per ``env.step`` with random actions, resets included, as the envs
    will run: ``steps`` steps or ``budget_s`` seconds, whichever ends first.

    Whole episodes matter: LunarLander's first steps cost a third of its later ones (its
    engine particles accumulate), so a median of a few steps after reset misled here.
    """
    env = make_env(env_id, wrapper=wrapper, **dict(env_kwargs or {}))
    try:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        start = time.perf_counter()
        done = 0
        while done < steps and time.perf_counter() - start < budget_s:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done += 1
            if terminated or truncated:
                env.reset()
        return (time.perf_counter() - start) / done
    finally:
        env.close()


def describe_vectorization(envs: Any) -> str:
    """How ``envs`` steps its envs, for summaries and progress lines."""
    from pgdeploy.envs.worker_vector_env import WorkerVectorEnv

    if isinstance(envs, WorkerVectorEnv):
        return f"subprocess ({envs.workers} worker{'s' if envs.workers > 1 else ''} + this process)"
    if isinstance(envs, gym.vector.SyncVectorEnv):
        return "sync"
    if isinstance(envs, gym.vector.AsyncVectorEnv):
        return "async"
    return f"native ({type(envs).__name__})"


def _registered(env_id: str) -> Any:
    try:
        return gym.spec(env_id)
    except gym.error.Error:  # not registered: make_env raises the typed error
        return None
    except ImportError as exc:  # a module:EnvId whose module is missing
        raise UnsupportedEnvError(f"cannot make environment {env_id!r}: {exc}") from exc


def _processes(num_envs: int, *, count_load: bool = True) -> int:
    """Processes that may step envs side by side: the cores this process may use, less
    the cores other processes keep busy (``count_load``), at most one per env.

    On a saturated machine (1-minute load average >= cores) workers cannot run side by
    side and would only add pipe round trips, so the answer is 1 (stay in process).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if count_load and hasattr(os, "getloadavg"):
        busy_elsewhere = max(0.0, os.getloadavg()[0] - 1.0)  # minus this process
        cores = max(1, min(cores, round(cores - busy_elsewhere)))
    return max(1, min(cores, num_envs))


def check_spaces(env_id: str, obs_space: gym.Space[Any], action_space: gym.Space[Any]) -> None:
    """Raise :class:`UnsupportedEnvError`, naming the fix, unless pgdeploy can train on these."""
    action_layout(env_id, action_space)
    observation_layout(env_id, obs_space)


def action_layout(env_id: str, space: gym.Space[Any]) -> ActionLayout:
    """Discrete -> one softmax head; a 1-D MultiDiscrete -> one head per component."""
    spaces = gym.spaces
    if isinstance(space, spaces.Discrete) and int(space.n) >= 2:
        return ActionLayout.discrete(int(space.n), int(space.start))
    if isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim == 1 and space.nvec.min() >= 2:
        return ActionLayout(
            "multi_discrete",
            tuple(int(v) for v in space.nvec),
            tuple(int(v) for v in space.start),
        )
    hint = (
        "continuous actions need another algorithm (e.g. a Gaussian policy)"
        if isinstance(space, spaces.Box)
        else "flatten a multi-dimensional MultiDiscrete to 1-D with a wrapper"
        if isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim != 1
        else "every action head needs at least 2 choices"
    )
    raise UnsupportedEnvError(
        f"{env_id} has action space {space}; pgdeploy supports {SUPPORTED} ({hint})"
    )


def observation_layout(env_id: str, space: gym.Space[Any]) -> dict[str, Any]:
    """The observation space as a :mod:`pgdeploy.layout` tree (gymnasium's flatten order)."""
    spaces = gym.spaces
    if isinstance(space, spaces.Box):
        if _is_image(space):
            raise UnsupportedEnvError(
                f"{env_id} has image observations {space}; pgdeploy's MLP policy does not take "
                "images (a CNN is out of scope). Wrap the env so it returns a flat vector, e.g. "
                "gymnasium.wrappers.FlattenObservation (after GrayscaleObservation and "
                "ResizeObservation to keep it small), in a module that registers the wrapped "
                "env, and train on 'your_module:YourEnv-v0'"
            )
        return {"type": "box", "shape": [int(d) for d in space.shape]}
    if isinstance(space, spaces.Discrete):
        return {"type": "discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "multi_binary", "shape": [int(d) for d in space.shape]}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "type": "multi_discrete",
            "shape": [int(d) for d in space.shape],
            "nvec": [int(v) for v in space.nvec.reshape(-1)],
            "start": [int(v) for v in space.start.reshape(-1)],
        }
    if isinstance(space, spaces.Dict):
        return {
            "type": "dict",
            "spaces": {str(k): observation_layout(env_id, v) for k, v in space.spaces.items()},
        }
    if isinstance(space, spaces.Tuple):
        return {"type": "tuple", "spaces": [observation_layout(env_id, v) for v in space.spaces]}
    if isinstance(space, spaces.Text) or type(space).__name__ == "MissionSpace":  # strings
        hint = (
            "text cannot be encoded for an MLP; drop it with --wrapper "
            "pgdeploy.envs.wrappers:without_text (Dict observations; docs/envs.md, MiniGrid)"
        )
    else:
        hint = "wrap the env so it returns one of these, and pass it as --wrapper module:function"
    raise UnsupportedEnvError(
        f"{env_id} has observation space {type(space).__name__}; pgdeploy supports "
        f"{SUPPORTED} ({hint})"
    )


def _is_image(space: gym.spaces.Box) -> bool:
    """Box uint8 (H, W), (H, W, C) or (C, H, W): what gymnasium's image checks consider images."""
    return space.dtype == np.uint8 and len(space.shape) in (2, 3) and min(space.shape[:2]) >= 8


def observation_bounds(
    space: gym.Space[Any],
) -> tuple[list[float], list[float]]:
    """Per raw column (layout order): Box bounds, 0/1 for MultiBinary, the integer range of
    Discrete/MultiDiscrete values."""
    spaces = gym.spaces
    if isinstance(space, spaces.Box):
        box_low = np.asarray(space.low, np.float64).reshape(-1)
        box_high = np.asarray(space.high, np.float64).reshape(-1)
        return [_bound(v) for v in box_low], [_bound(v) for v in box_high]
    if isinstance(space, spaces.Discrete):
        return [float(space.start)], [float(space.start + space.n - 1)]
    if isinstance(space, spaces.MultiBinary):
        size = int(np.prod(space.shape))
        return [0.0] * size, [1.0] * size
    if isinstance(space, spaces.MultiDiscrete):
        start = space.start.reshape(-1).astype(np.float64)
        last = start + space.nvec.reshape(-1) - 1
        return [float(v) for v in start], [float(v) for v in last]
    low: list[float] = []
    high: list[float] = []
    members = space.spaces.values() if isinstance(space, spaces.Dict) else space.spaces  # type: ignore[attr-defined]
    for sub in members:
        sub_low, sub_high = observation_bounds(sub)
        low += sub_low
        high += sub_high
    return low, high


def policy_spec(
    env_id: str, *, env_kwargs: Mapping[str, Any] | None = None, wrapper: str = ""
) -> PolicySpec:
    """The spec of ``env_id`` (made with ``env_kwargs``, then ``wrapper``) from one
    throwaway env instance."""
    env = make_env(env_id, wrapper=wrapper, **dict(env_kwargs or {}))
    try:
        check_spaces(env_id, env.observation_space, env.action_space)
        actions = action_layout(env_id, env.action_space)
        tree = observation_layout(env_id, env.observation_space)
        low, high = observation_bounds(env.observation_space)
        spec = env.spec
        threshold = spec.reward_threshold if spec is not None else None
        max_steps = spec.max_episode_steps if spec is not None else None
        meanings = getattr(env.unwrapped, "get_action_meanings", None)
        names = tuple(str(m) for m in meanings()) if callable(meanings) else ()
        return PolicySpec(
            env_id=env_id,
            obs_dim=len(low),
            n_actions=actions.n_logits,
            obs_low=tuple(low),
            obs_high=tuple(high),
            action_names=names if len(names) == actions.n_logits and not actions.multi else (),
            reward_threshold=None if threshold is None else float(threshold),
            max_episode_steps=None if max_steps is None else int(max_steps),
            observation_space=tree,
            action_space=actions.to_dict(),
        )
    finally:
        env.close()


def _bound(value: float) -> float:
    """Float32's largest finite value is what gymnasium uses for 'unbounded' in many envs."""
    return math.copysign(math.inf, value) if abs(value) >= FLOAT32_MAX else float(value)


def make_play_env(
    env_id: str,
    *,
    render: bool = False,
    video_dir: str | Path | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    wrapper: str = "",
) -> gym.Env[Any, Any]:
    """An env for watching a policy: a window (``render``) and/or MP4s in ``video_dir``.

    A missing display or ``moviepy`` is caught before the env is made, and a missing
    renderer (pygame) by one probe frame right after, so each fails fast with its fix
    instead of deep inside gymnasium's renderer.
    """
    if render and video_dir is not None:
        raise UnsupportedEnvError(
            "rendering to a window and recording video cannot be combined (one env has one "
            "render mode); pick one"
        )
    if render and not has_display():
        raise UnsupportedEnvError(
            "rendering to a window needs a display, but neither DISPLAY nor WAYLAND_DISPLAY is "
            "set; record video instead to watch the agent on a headless machine"
        )
    if video_dir is not None:
        require("moviepy", extra="video", feature="recording videos")
    mode = "human" if render else "rgb_array" if video_dir is not None else None
    kwargs = {**(env_kwargs or {}), **({"render_mode": mode} if mode else {})}
    env = make_env(env_id, wrapper=wrapper, **kwargs)
    if mode is not None:
        _check_renderer(env, env_id)
    if video_dir is not None:
        env = gym.wrappers.RecordVideo(
            env, str(video_dir), episode_trigger=lambda _: True, disable_logger=True
        )
    return env


def _check_renderer(env: gym.Env[Any, Any], env_id: str) -> None:
    """Render one frame now, so a missing renderer (pygame for classic control) is a typed
    error naming the extra here, not a gymnasium traceback at the first step."""
    try:
        env.reset()
        env.render()
    except gym.error.DependencyNotInstalled as exc:
        env.close()
        raise missing("pygame", extra="video", feature=f"rendering {env_id} ({exc})") from exc


def has_display() -> bool:
    """Whether a window can open: X11/Wayland variables on Linux, always on macOS/Windows."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
