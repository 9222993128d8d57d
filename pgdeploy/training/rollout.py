"""Rollout collection: policy weights in, a bounded batch of steps out.

This is the seam between acting and learning. The learner never touches an env; a
collector owns its envs, its own copy of the policy and its own RNG, so the same
interface can run on remote workers (e.g. Ray actors) for slow simulators.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import gymnasium as gym
import numpy as np
import numpy.typing as npt
import torch

from pgdeploy.envs.making import Vectorization, describe_vectorization, make_vector_env
from pgdeploy.envs.worker_vector_env import WorkerVectorEnv, alive_stepper
from pgdeploy.runtime.sampling import UniformStream
from pgdeploy.spec import PolicySpec
from pgdeploy.training.policy import DeployablePolicy, SoftmaxPolicy, action_heads


@dataclass(frozen=True)
class EpisodeBatch:
    """One iteration's steps, padded to the longest env: arrays are (T, N, ...).

    ``mask`` marks the steps a gradient may use: those of episodes that finished in this
    batch, from where this batch took them up. An episode still running when the iteration
    ended is carried into the next one (:class:`RolloutCollector`); its steps here count in
    ``env_steps`` but are masked out, since their returns-to-go are not known yet.
    """

    obs: npt.NDArray[np.float32]  # (T, N, obs_dim), raw flat rows (see pgdeploy.layout)
    actions: npt.NDArray[np.int64]  # (T, N), or (T, N, heads) for multi-discrete actions
    rewards: npt.NDArray[np.float32]  # (T, N), zero off the mask
    mask: npt.NDArray[np.bool_]  # (T, N), True on steps of episodes that finished here
    lengths: npt.NDArray[np.int64]  # (E,) whole lengths of the episodes that finished, env order
    episode_returns: npt.NDArray[np.float64]  # (E,) their undiscounted whole returns
    env_steps: int = -1
    """Every env step this batch took, carried episodes' included (-1: ``lengths.sum()``)."""
    finish_steps: npt.NDArray[np.int64] | None = None
    """(E,) the vector step at which each episode finished (None: at its length)."""

    def __post_init__(self) -> None:
        if self.env_steps < 0:
            object.__setattr__(self, "env_steps", int(self.lengths.sum()))
        if self.finish_steps is None:
            object.__setattr__(self, "finish_steps", self.lengths.copy())


class ActingNet:
    """Acting runs the exported function (:class:`DeployablePolicy`), minus module dispatch.

    Acting needs no autograd and the weights are fixed for a whole :meth:`collect`, so the
    statistics are fixed once per batch, exactly as export fixes them. Each vector step
    then runs the deployed graph's own pieces, the
    :class:`~pgdeploy.training.policy.ObsEncoder` and
    :func:`~pgdeploy.training.policy.action_heads`, with the MLP as plain ``addmm``/ReLU
    calls on the folded weights, which skip the nn.Module call path's per-call overhead.
    """

    def __init__(self, policy: SoftmaxPolicy) -> None:
        graph = DeployablePolicy(policy)
        self.features = graph.features
        self.clip_low = cast(torch.Tensor, graph.clip_low)
        self.clip_high = cast(torch.Tensor, graph.clip_high)
        linears = [m for m in graph.net if isinstance(m, torch.nn.Linear)]
        self.layers = [(m.bias.detach(), m.weight.detach().T.contiguous()) for m in linears]
        self.nvec, self.start = graph.nvec, graph.start

    def sample(self, obs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """Env actions (n,) or (n, heads) for raw ``obs`` (n, obs_dim), ``uniform`` (n, heads)."""
        x = self.features(obs)
        for bias, weight in self.layers[:-1]:
            x = torch.addmm(bias, x, weight).relu_()
        bias, weight = self.layers[-1]
        logits = torch.addmm(bias, x, weight)
        return action_heads(logits, uniform, self.nvec, self.start)[2]

    def act(
        self, obs: npt.NDArray[np.float32], uniform: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.int64]:
        """:meth:`sample` on numpy arrays (the collector's interface to either net)."""
        with torch.inference_mode():
            actions: npt.NDArray[np.int64] = self.sample(
                torch.from_numpy(obs), torch.from_numpy(uniform)
            ).numpy()
        return actions


class NumpyActingNet:
    """The same function in numpy, for the plain case (a 1-D Box observation, one Discrete
    head starting at 0: :meth:`supports`), where it is faster than torch.

    Acting needs no autograd and the weights are fixed for a whole :meth:`collect`, so the
    statistics are fixed once per batch (as export fixes them) and each vector step is
    clip -> (x - mean) / std -> matmul/relu ... -> softmax -> inverse CDF on
    float32 arrays: at a few envs torch's per-op dispatch costs more than the arithmetic
    (docs/performance.md). The sampling contract is unchanged.
    """

    def __init__(self, policy: SoftmaxPolicy) -> None:
        folded = DeployablePolicy(policy)
        self.clip_low = _array(cast(torch.Tensor, folded.clip_low))
        self.clip_high = _array(cast(torch.Tensor, folded.clip_high))
        self.normalize = folded.normalize
        self.mean = _array(cast(torch.Tensor, folded.obs_mean))
        self.std = _array(cast(torch.Tensor, folded.obs_std))
        n_actions = policy.spec.action_layout.nvec[0]  # probs @ upper: first A-1 cumsums
        self.upper = np.triu(np.ones((n_actions, n_actions - 1), np.float32))
        linears = [m for m in folded.net if isinstance(m, torch.nn.Linear)]
        self.layers = [(_array(m.bias), _array(m.weight.T)) for m in linears]

    @staticmethod
    def supports(spec: PolicySpec) -> bool:
        layout = spec.action_layout
        return spec.obs_layout.plain and layout.n_branches == 1 and layout.start[0] == 0

    def act(
        self, obs: npt.NDArray[np.float32], uniform: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.int64]:
        """Actions (n,) for raw ``obs`` (n, obs_dim) and ``uniform`` (n, 1), float32."""
        x = np.minimum(np.maximum(obs, self.clip_low), self.clip_high)
        if self.normalize:
            x -= self.mean
            x /= self.std
        for bias, weight in self.layers[:-1]:
            x = x @ weight
            x += bias
            np.maximum(x, 0.0, out=x)
        bias, weight = self.layers[-1]
        z = x @ weight
        z += bias
        # ufunc.reduce directly: the ndarray methods add a Python layer per call.
        z -= np.maximum.reduce(z, axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= np.add.reduce(z, axis=1, keepdims=True)
        actions: npt.NDArray[np.int64] = np.add.reduce(
            z @ self.upper <= uniform, axis=1, dtype=np.int64
        )
        return actions


def _array(tensor: torch.Tensor) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(tensor.detach().numpy(), dtype=np.float32)


class RolloutCollector:
    """Plays each of ``num_envs`` vectorised envs to the end of its episode per
    :meth:`collect`, for at most ``iteration_steps`` vector steps (and the caller's
    ``max_steps``), so an iteration's size is bounded however long the episodes are.

    An episode still running at that bound is carried over: the next collect continues it
    (envs that finished are reset, the others are not). Its steps before the bound are
    counted and its return accrues, but only the steps of the part that finishes go into a
    gradient, so every return-to-go a gradient sees is a complete Monte-Carlo return under
    the weights that chose its actions (REINFORCE stays on-policy). A native numpy vector
    env cannot reset some envs and not others: there a carried episode is dropped and all
    envs reset. Episodes are cut (truncated) at ``max_episode_steps``.

    ``seed`` seeds the envs (env ``j`` gets ``seed + j``) and, unless ``sampler_seed`` is
    given, the action sampler. A Ray worker holding envs ``k..k+n`` of the run passes
    ``seed + k`` and its own sampler stream, so the envs get the seeds they would have here.
    """

    def __init__(
        self,
        spec: PolicySpec,
        *,
        num_envs: int,
        seed: int,
        hidden_sizes: tuple[int, ...],
        obs_clip: float,
        max_episode_steps: int | None = None,
        iteration_steps: int | None = None,
        sampler_seed: np.random.SeedSequence | None = None,
        vectorization: Vectorization = "auto",
        env_kwargs: Mapping[str, object] | None = None,
        wrapper: str = "",
    ) -> None:
        self.envs = make_vector_env(
            spec.env_id,
            num_envs,
            vectorization=vectorization,
            env_kwargs=env_kwargs,
            wrapper=wrapper,
        )
        self.vectorization = describe_vectorization(self.envs)
        self.num_envs = num_envs
        self.policy = SoftmaxPolicy(spec, hidden_sizes=hidden_sizes, obs_clip=obs_clip)
        self.policy.requires_grad_(False)
        if sampler_seed is None:
            sampler_seed = np.random.SeedSequence(seed).spawn(1)[0]
        self.uniforms = UniformStream(sampler_seed)
        self.max_episode_steps = max_episode_steps or spec.max_episode_steps or 10_000
        self.iteration_steps = iteration_steps or self.max_episode_steps
        layout = spec.obs_layout
        self.flatten = None if layout.plain else layout.flatten_batch
        self.n_heads = spec.action_layout.n_branches
        self._next_seed: int | None = seed
        self._partial_reset = isinstance(self.envs, (gym.vector.SyncVectorEnv, WorkerVectorEnv))
        # Episodes in progress between collects: which envs, their last obs, length, return.
        self._carried = np.zeros(num_envs, dtype=bool)
        self._carry_obs: npt.NDArray[np.float32] | None = None
        self._length = np.zeros(num_envs, dtype=np.int64)
        self._return = np.zeros(num_envs, dtype=np.float64)

    def collect(
        self,
        policy_state: Mapping[str, torch.Tensor],
        *,
        max_steps: int | None = None,
        should_stop: Callable[[], object] | None = None,
    ) -> EpisodeBatch | None:
        """Step every env until its episode ends, for at most ``iteration_steps`` and
        ``max_steps`` vector steps; None (and nothing carried) if ``should_stop`` answers
        truthy between two vector steps.

        One batched forward pass per vector step. Envs that finish early are not stepped
        again where each env steps on its own (``alive_stepper``); a native vector env keeps
        stepping them (autoreset). Either way those rows are masked out and not counted.
        """
        self.policy.load_state_dict(policy_state)
        fast = NumpyActingNet.supports(self.policy.spec)
        net = NumpyActingNet(self.policy) if fast else ActingNet(self.policy)
        horizon = min(self.iteration_steps, max_steps or self.iteration_steps)
        obs = self._start()
        n, heads = self.num_envs, self.n_heads
        alive = np.ones(n, dtype=bool)
        finished = np.zeros(n, dtype=bool)
        finish_steps = np.zeros(n, dtype=np.int64)
        obs_steps: list[npt.NDArray[np.float32]] = []
        action_steps: list[npt.NDArray[np.int64]] = []
        reward_steps: list[npt.NDArray[np.float32]] = []
        alive_steps: list[npt.NDArray[np.bool_]] = []
        step = alive_stepper(self.envs)
        while alive.any() and len(obs_steps) < horizon:
            if should_stop is not None and should_stop():
                self._carried[:] = False  # the envs stand mid-episode: the next collect resets
                return None
            actions = net.act(obs, self.uniforms.take(n * heads).reshape(n, heads))
            obs_steps.append(obs)
            action_steps.append(actions)
            alive_steps.append(alive.copy())
            raw, rewards, terminated, truncated = step(actions, alive)
            obs = self._flat(raw)
            reward_steps.append(np.multiply(rewards, alive, dtype=np.float32))
            self._length += alive
            self._return += reward_steps[-1]
            done = alive & (terminated | truncated | (self._length >= self.max_episode_steps))
            finished |= done
            finish_steps[done] = len(obs_steps)
            alive &= ~done
        self._carried = alive
        self._carry_obs = obs
        ended = np.flatnonzero(finished)
        lengths, returns = self._length[ended].copy(), self._return[ended].copy()
        self._length[finished], self._return[finished] = 0, 0.0
        mask = np.stack(alive_steps) & finished
        return EpisodeBatch(
            obs=np.stack(obs_steps),
            actions=np.stack(action_steps),
            rewards=np.stack(reward_steps) * mask,
            mask=mask,
            lengths=lengths,
            episode_returns=returns,
            env_steps=int(np.stack(alive_steps).sum()),
            finish_steps=finish_steps[ended],
        )

    def _start(self) -> npt.NDArray[np.float32]:
        """Flat observations to start a collect from: carried episodes continue, every other
        env is reset (all of them where partial resets are not possible)."""
        carried = self._carried
        if not carried.any() or not self._partial_reset or self._carry_obs is None:
            raw, _ = self.envs.reset(seed=self._next_seed)
            self._next_seed = None
            self._carried[:] = False
            self._length[:], self._return[:] = 0, 0.0
            return self._flat(raw)
        obs: npt.NDArray[np.float32] = self._carry_obs.copy()
        if not carried.all():
            raw, _ = self.envs.reset(options={"reset_mask": ~carried})
            obs[~carried] = self._flat(raw)[~carried]
        return obs

    def _flat(self, raw: Any) -> npt.NDArray[np.float32]:
        if self.flatten is None:
            return np.asarray(raw, dtype=np.float32)
        return self.flatten(raw)

    def rng_state(self) -> str:
        """The envs' and the sampler's RNG states as JSON (what a resumed run continues from).

        A collect with no episode carried over resets all envs first, so between such
        collects these states are all the randomness a run carries forward.
        """
        envs = [g.bit_generator.state for g in self._env_generators()]
        return json.dumps({"envs": envs, "uniforms": self.uniforms.get_state()})

    def restore_rng_state(self, state: str) -> None:
        """Continue from :meth:`rng_state`; the next collect resets the envs without a seed."""
        data = json.loads(state)
        generators = self._env_generators()
        if len(data["envs"]) != len(generators):
            raise ValueError(
                f"RNG state for {len(data['envs'])} envs, this collector has {len(generators)}"
            )
        for generator, saved in zip(generators, data["envs"], strict=True):
            generator.bit_generator.state = saved
        self.uniforms.set_state(data["uniforms"])
        self._next_seed = None
        self._carried[:] = False

    def _env_generators(self) -> list[np.random.Generator]:
        """The generators the envs draw resets from: one per env, or one for a numpy vector env."""
        if self._next_seed is not None:  # seed them first, as the first collect would
            self.envs.reset(seed=self._next_seed)
            self._next_seed = None
        generators = self.envs.np_random
        return list(generators) if isinstance(generators, tuple) else [generators]

    def close(self) -> None:
        self.envs.close()


def split_envs(num_envs: int, workers: int) -> list[int]:
    """Envs per worker, as even as possible, the larger shares first: (16, 3) -> [6, 5, 5]."""
    share, extra = divmod(num_envs, workers)
    return [share + (1 if i < extra else 0) for i in range(workers)]


def concat_batches(batches: Sequence[EpisodeBatch]) -> EpisodeBatch:
    """Join batches along the env axis, in the order given, padding time to the longest.

    Padding steps are masked out (mask False, reward 0), so the learner sees exactly the
    episodes of the parts; the order makes a run with workers reproducible.
    """
    if len(batches) == 1:
        return batches[0]
    horizon = max(len(b.obs) for b in batches)

    def pad(array: npt.NDArray[np.generic], fill: float | bool) -> npt.NDArray[np.generic]:
        extra = horizon - len(array)
        if extra == 0:
            return array
        filler = np.full((extra, *array.shape[1:]), fill, dtype=array.dtype)
        return np.concatenate([array, filler])

    return EpisodeBatch(
        obs=np.concatenate([pad(b.obs, 0.0) for b in batches], axis=1),
        actions=np.concatenate([pad(b.actions, 0) for b in batches], axis=1),
        rewards=np.concatenate([pad(b.rewards, 0.0) for b in batches], axis=1),
        mask=np.concatenate([pad(b.mask, False) for b in batches], axis=1),
        lengths=np.concatenate([b.lengths for b in batches]),
        episode_returns=np.concatenate([b.episode_returns for b in batches]),
        env_steps=sum(b.env_steps for b in batches),
        finish_steps=np.concatenate([cast(npt.NDArray[np.int64], b.finish_steps) for b in batches]),
    )
