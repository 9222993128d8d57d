"""Train a softmax policy with REINFORCE on vectorised gymnasium envs.

Each iteration: the collector (:mod:`pgdeploy.training.collector`: in this process, or Ray
workers with ``workers > 0``) plays one episode in each of ``num_envs`` envs with the current
weights (one batched forward pass per vector step, actions by the
inverse-CDF sampler from a seeded stream); the :class:`ReinforceLearner` takes one
gradient step on the whole batch. Training stops when the mean return of the last
``solve_window`` finished episodes reaches the env's reward threshold, or when the
``total_timesteps`` budget is spent, and says which.

Choices, all in :class:`~pgdeploy.training.config.TrainConfig`, measured on CartPole-v1 seeds 0-9
(benchmarks/RESULTS.md has the curves):

- REINFORCE, kept plain: Monte-Carlo returns-to-go, no critic, one gradient step per batch.
- A per-timestep baseline (the batch's mean return-to-go at each step) and standardised
  advantages: variance reduction without a learned value, so the algorithm stays REINFORCE.
  When every episode of a batch reaches the time limit the advantages are exactly zero and
  the policy is left alone, which keeps a solved policy solved.
- 16 envs, one episode from each per update, Adam at lr 0.05: the number of updates, not
  the batch size, is what the run needs, so small batches and a large step solve in the
  fewest samples; 16 envs is where the per-vector-step cost (env + one batched forward)
  is amortised enough to meet the wall-time goal at <= 100k median steps.
- Observation normalisation off by default (optional; baked into the export when on).
- Acting through the folded export function (:class:`~pgdeploy.training.rollout.ActingNet`): same
  sampling contract, a third of the per-step cost of the nn.Module path.
- A hand-written Adam (:mod:`pgdeploy.training.optim`): ``torch.optim`` costs ~1.3 s of imports.
- One torch thread: the network is tiny, threads only add synchronisation.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from pgdeploy import __version__
from pgdeploy.envs import policy_spec
from pgdeploy.training.callbacks import Callback, IterationStats
from pgdeploy.training.checkpoint import Checkpoint, resume_payload, resume_state, save_checkpoint
from pgdeploy.training.collector import Collector, make_collector
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.policy import SoftmaxPolicy
from pgdeploy.training.reinforce import ReinforceLearner


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Checkpoint
    checkpoint_path: Path | None
    history: list[IterationStats]

    @property
    def summary(self) -> dict[str, Any]:
        return self.checkpoint.training


def train(
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    callbacks: tuple[Callback, ...] = (),
    resume_from: Checkpoint | None = None,
    collector: Collector | None = None,
) -> TrainResult:
    """Run REINFORCE until solved or out of budget; write ``out_dir/model.pt`` if given.

    ``resume_from`` continues that checkpoint's run (see :mod:`pgdeploy.training.checkpoint`);
    its counters count against ``config.total_timesteps``. ``collector`` replaces the one
    the config describes (e.g. a :class:`~pgdeploy.training.ray_collector.RayCollector` the
    caller keeps, to read its timings); training closes it either way.
    """
    start = time.perf_counter()
    torch.set_num_threads(config.torch_threads)
    torch.manual_seed(config.seed)
    spec = policy_spec(config.env_id)
    threshold = (
        config.solve_threshold if config.solve_threshold is not None else spec.reward_threshold
    )
    policy = SoftmaxPolicy(spec, hidden_sizes=config.hidden_sizes, obs_clip=config.obs_clip)
    learner = ReinforceLearner(policy, config)
    resumed = None
    if resume_from is not None:
        resumed = resume_state(resume_from)
        resumed.restore(resume_from, policy, learner.optimizer)
    if resumed is not None and learner.value is not None:
        value_state = resume_from.resume.get("value") if resume_from is not None else None
        if isinstance(value_state, dict):
            learner.value.load_state_dict(value_state)
    if collector is None:
        seed = resumed.collector_seed(config.seed) if resumed else config.seed
        collector = make_collector(config, spec, seed=seed)
    best = BestPolicy()
    returns_seen: set[float] = set()
    window: deque[float] = deque(resumed.window if resumed else (), maxlen=config.solve_window)
    history: list[IterationStats] = []
    env_steps, episodes, done_iterations = (
        (resumed.env_steps, resumed.episodes, resumed.iterations) if resumed else (0, 0, 0)
    )
    steps_to_solve: int | None = None
    try:
        while env_steps < config.total_timesteps:
            batch = collector.collect(policy.state_dict())
            update = learner.update(batch, progress=env_steps / config.total_timesteps)
            env_steps += batch.env_steps
            episodes += len(batch.lengths)
            # Episodes enter the window in the order they finished (shortest first).
            order = np.argsort(batch.lengths, kind="stable")
            window.extend(batch.episode_returns[order].tolist())
            if len(returns_seen) < 2:
                returns_seen.update(batch.episode_returns.tolist())
            wall = time.perf_counter() - start
            stats = IterationStats(
                iteration=done_iterations + len(history) + 1,
                env_steps=env_steps,
                episodes=episodes,
                batch_mean_return=float(batch.episode_returns.mean()),
                window_mean_return=float(np.mean(window)),
                batch_mean_length=float(batch.lengths.mean()),
                loss=update.loss,
                entropy=update.entropy,
                grad_norm=update.grad_norm,
                wall_seconds=wall,
                steps_per_second=env_steps / wall,
            )
            history.append(stats)
            if len(window) == window.maxlen:
                best.offer(stats.window_mean_return, env_steps, policy)
            for callback in callbacks:
                callback(stats)
            solved = (
                threshold is not None
                and len(window) == window.maxlen
                and stats.window_mean_return >= threshold
            )
            if solved and steps_to_solve is None:
                steps_to_solve = env_steps
            if solved and config.stop_on_solve:
                break
    finally:
        collector.close()
    summary = _summary(config, history, threshold, steps_to_solve, time.perf_counter() - start)
    summary.update(best.summary())
    if steps_to_solve is None and len(returns_seen) == 1 and history:
        summary["stop_reason"] += (
            f"; every episode returned {returns_seen.pop():g}, so the returns carried no "
            "learning signal (a sparse reward that random actions never reach, as in "
            "MountainCar); REINFORCE cannot learn that in any budget: shape the reward "
            "with a gymnasium wrapper or use an algorithm that explores"
        )
    elif steps_to_solve is None and threshold is not None and history:
        kept = (
            f"best mean of {config.solve_window} episodes {best.mean_return:.4g}, kept in "
            f"{BEST_CHECKPOINT}"
            if best.state is not None
            else f"fewer than {config.solve_window} episodes finished"
        )
        summary["stop_reason"] += (
            f" without reaching the reward threshold {threshold:g} ({kept}); try a larger "
            "total_timesteps, or a preset or lower learning_rate"
        )
    resume = resume_payload(
        learner.optimizer,
        env_steps=env_steps,
        episodes=episodes,
        iterations=done_iterations + len(history),
        window=list(window),
    )
    if learner.value is not None:
        resume["value"] = learner.value.state_dict()
    checkpoint = Checkpoint(
        config=config,
        spec=spec,
        state_dict=policy.state_dict(),
        training=summary,
        resume=resume,
    )
    path = None
    if out_dir is not None:
        path = save_checkpoint(Path(out_dir) / "model.pt", checkpoint)
        if best.state is not None:
            best_checkpoint = dataclasses.replace(
                checkpoint, state_dict=best.state, training={**summary, "best": True}, resume={}
            )
            save_checkpoint(Path(out_dir) / BEST_CHECKPOINT, best_checkpoint)
    return TrainResult(checkpoint=checkpoint, checkpoint_path=path, history=history)


#: Written beside ``model.pt``: the weights with the best solve-window mean of the run.
BEST_CHECKPOINT = "best.pt"


class BestPolicy:
    """The weights at the end of the best full solve window seen so far.

    REINFORCE can get worse after a peak (LunarLander with the defaults collapsed from a
    batch mean of 129 to 25-48); keeping these weights means a collapse never costs the
    user the good policy. They are written to ``best.pt`` (a full checkpoint without the
    resume section), which ``pgdeploy export`` takes like ``model.pt``.
    """

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] | None = None
        self.mean_return = -math.inf
        self.env_steps = 0

    def offer(self, window_mean: float, env_steps: int, policy: SoftmaxPolicy) -> None:
        if window_mean > self.mean_return:
            self.mean_return, self.env_steps = window_mean, env_steps
            self.state = {k: v.detach().clone() for k, v in policy.state_dict().items()}

    def summary(self) -> dict[str, Any]:
        if self.state is None:
            return {"best_window_mean_return": None, "best_env_steps": None}
        return {"best_window_mean_return": self.mean_return, "best_env_steps": self.env_steps}


def _summary(
    config: TrainConfig,
    history: list[IterationStats],
    threshold: float | None,
    steps_to_solve: int | None,
    wall_seconds: float,
) -> dict[str, Any]:
    last = history[-1] if history else None
    solved = steps_to_solve is not None
    if solved and config.stop_on_solve:
        reason = f"solved: mean of last {config.solve_window} episodes >= {threshold}"
    else:
        reason = f"budget of {config.total_timesteps} env steps spent"
    return {
        "env_id": config.env_id,
        "seed": config.seed,
        "solved": solved,
        "stop_reason": reason,
        "reward_threshold": threshold,
        "steps_to_solve": steps_to_solve,
        "env_steps": last.env_steps if last else 0,
        "episodes": last.episodes if last else 0,
        "iterations": last.iteration if last else 0,
        "final_window_mean_return": last.window_mean_return if last else None,
        "wall_seconds": round(wall_seconds, 3),
        "pgdeploy_version": __version__,
        "torch_version": str(torch.__version__),
        "gymnasium_version": gymnasium.__version__,
    }
