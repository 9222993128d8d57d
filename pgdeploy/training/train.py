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

Saving (``out_dir``): the run's artefacts are saved as one set
(:mod:`pgdeploy.training.run_folder`) every ``checkpoint_every`` iterations and/or
``checkpoint_seconds``, at the end, and when ``should_stop`` asks (Ctrl-C/SIGTERM through
:mod:`pgdeploy.training.signals`). A resumed run continues its counters, history,
optimiser and RNG states (:mod:`pgdeploy.training.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch

from pgdeploy import __version__
from pgdeploy.envs.making import policy_spec
from pgdeploy.errors import CheckpointError
from pgdeploy.spec import PolicySpec
from pgdeploy.training.callbacks import Callback, IterationStats
from pgdeploy.training.checkpoint import (
    Checkpoint,
    ResumeState,
    check_resumable,
    check_same_spaces,
    resume_payload,
    resume_state,
    save_checkpoint,
)
from pgdeploy.training.collector import Collector, make_collector
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.outcome import health_warnings
from pgdeploy.training.policy import SoftmaxPolicy
from pgdeploy.training.reinforce import ReinforceLearner, UpdateStats
from pgdeploy.training.rollout import EpisodeBatch, RolloutCollector
from pgdeploy.training.run_folder import RunFolder
from pgdeploy.training.run_state import RunState


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Checkpoint
    checkpoint_path: Path | None
    history: list[IterationStats]
    """The whole run's iterations, those of resumed-from parts included."""
    new_iterations: int = 0
    """How many of them this call ran."""
    interrupted: str | None = None
    """The signal (``"SIGINT"``, ``"SIGTERM"``) that stopped the run early, else None."""

    @property
    def summary(self) -> dict[str, Any]:
        return self.checkpoint.training

    @property
    def solved(self) -> bool:
        return bool(self.summary.get("solved"))


def checkpoint_due(config: TrainConfig, *, iterations: int, seconds: float) -> bool:
    """Whether a periodic save is due, ``iterations`` and ``seconds`` after the last one."""
    by_count = config.checkpoint_every > 0 and iterations >= config.checkpoint_every
    by_time = config.checkpoint_seconds > 0 and seconds >= config.checkpoint_seconds
    return by_count or by_time


def train(
    config: TrainConfig,
    *,
    out_dir: str | Path | RunFolder | None = None,
    callbacks: tuple[Callback, ...] = (),
    resume_from: Checkpoint | None = None,
    should_stop: Callable[[], str | None] | None = None,
    collector: Collector | None = None,
) -> TrainResult:
    """Run REINFORCE until solved or out of budget, saving the run into ``out_dir`` if given.

    ``resume_from`` continues that checkpoint's run (see :mod:`pgdeploy.training.checkpoint`):
    its counters count against ``config.total_timesteps``, and a config that changes the
    policy (env, network) is refused before any work. ``should_stop`` is asked after every
    iteration; a non-None answer (a reason, e.g. a signal name) saves the run and returns
    with ``interrupted`` set. ``collector`` replaces the one the config describes (e.g. a
    :class:`~pgdeploy.training.ray_collector.RayCollector` the caller keeps, to read its
    timings); training closes it either way.
    """
    torch.set_num_threads(config.torch_threads)
    torch.manual_seed(config.seed)
    spec = policy_spec(config.env_id, env_kwargs=config.env_kwargs, wrapper=config.wrapper)
    if resume_from is not None:
        check_resumable(resume_from, config)
        check_same_spaces(resume_from, spec)
    folder = RunFolder(out_dir) if isinstance(out_dir, (str, Path)) else out_dir
    policy = SoftmaxPolicy(spec, hidden_sizes=config.hidden_sizes, obs_clip=config.obs_clip)
    learner = ReinforceLearner(policy, config)
    resumed = resume_state(resume_from) if resume_from is not None else None
    if resumed is not None and resume_from is not None:
        resumed.restore(resume_from, policy, learner.optimizer)
        value_state = resume_from.resume.get("value")
        if learner.value is not None and isinstance(value_state, dict):
            learner.value.load_state_dict(value_state)
    collector = _collector(config, spec, resumed, collector)
    run = _Run(config, spec, learner, collector, RunState.begin(config, resumed))
    if resume_from is not None:
        run.best.carry(resume_from.training)
    saves = PeriodicSaves(config, folder)
    interrupted = None
    try:
        while run.state.env_steps < config.total_timesteps:
            progress = run.state.env_steps / config.total_timesteps
            stats = run.state.record(*_iteration(collector, learner, policy, progress))
            run.observe(stats)
            for callback in callbacks:
                callback(stats)
            if run.solved() and config.stop_on_solve:
                break
            interrupted = should_stop() if should_stop is not None else None
            if interrupted is not None:
                break
            saves.after_iteration(run.state.new_iterations, run.snapshot)
        final = run.snapshot(interrupted)
    finally:
        collector.close()
    path = final.save_to(folder) if folder is not None and run.state.iterations > 0 else None
    return TrainResult(
        checkpoint=final.checkpoint,
        checkpoint_path=path,
        history=run.state.history,
        new_iterations=run.state.new_iterations,
        interrupted=interrupted,
    )


class PeriodicSaves:
    """Saves the run into ``folder`` whenever :func:`checkpoint_due` says so (no folder: never)."""

    def __init__(self, config: TrainConfig, folder: RunFolder | None) -> None:
        self.config, self.folder = config, folder
        self.last = (0, time.perf_counter())

    def after_iteration(self, iterations: int, snapshot: Callable[[], _Snapshot]) -> bool:
        """Save if due, ``iterations`` being this call's count so far; True when it saved."""
        if self.folder is None:
            return False
        since = (iterations - self.last[0], time.perf_counter() - self.last[1])
        if not checkpoint_due(self.config, iterations=since[0], seconds=since[1]):
            return False
        snapshot().save_to(self.folder)
        self.last = (iterations, time.perf_counter())
        return True


def _iteration(
    collector: Collector, learner: ReinforceLearner, policy: SoftmaxPolicy, progress: float
) -> tuple[EpisodeBatch, UpdateStats]:
    """One batch and one update; ``progress`` (0..1 of the budget) drives the lr schedule."""
    batch = collector.collect(policy.state_dict())
    return batch, learner.update(batch, progress=progress)


def _collector(
    config: TrainConfig, spec: PolicySpec, resumed: ResumeState | None, given: Collector | None
) -> Collector:
    """The run's collector; on resume, the local collector continues the saved RNG states
    exactly, others (and checkpoints without them) get a seed derived from the resume point."""
    exact = resumed is not None and resumed.rng is not None
    seed = resumed.collector_seed(config.seed) if resumed and not exact else config.seed
    collector = given if given is not None else make_collector(config, spec, seed=seed)
    if resumed is not None and resumed.rng and isinstance(collector, RolloutCollector):
        try:
            collector.restore_rng_state(resumed.rng)
        except (KeyError, TypeError, ValueError) as exc:
            collector.close()
            raise CheckpointError(f"checkpoint has a malformed RNG state: {exc}") from exc
    return collector


@dataclass(frozen=True)
class _Snapshot:
    checkpoint: Checkpoint
    history: list[IterationStats]
    best: Checkpoint | None = None

    def save_to(self, folder: RunFolder) -> Path:
        path = folder.save(self.checkpoint, self.history)
        if self.best is not None:
            save_checkpoint(folder.path / BEST_CHECKPOINT, self.best)
        return path


@dataclass
class _Run:
    """What a snapshot of the run is made of."""

    config: TrainConfig
    spec: PolicySpec
    learner: ReinforceLearner
    collector: Collector
    state: RunState
    best: BestPolicy = field(default_factory=lambda: BestPolicy())
    returns_seen: set[float] = field(default_factory=set)

    def observe(self, stats: IterationStats) -> None:
        """Keep the best full solve window's weights, and whether returns ever varied."""
        if len(self.state.window) == self.state.window.maxlen:
            self.best.offer(stats.window_mean_return, stats.env_steps, self.learner.policy)
        if len(self.returns_seen) < 2:
            self.returns_seen.update(self.state.window)

    @property
    def threshold(self) -> float | None:
        if self.config.solve_threshold is not None:
            return self.config.solve_threshold
        return self.spec.reward_threshold

    def solved(self) -> bool:
        return self.state.solved(self.threshold)

    def snapshot(self, interrupted: str | None = None) -> _Snapshot:
        """The run as it stands: a checkpoint with the summary and everything a resume needs."""
        state = self.state
        training = _summary(self.config, state, self.threshold, interrupted)
        training.update(self.best.summary())
        # How the envs were stepped (pgdeploy.envs.describe_vectorization): "auto" chooses.
        training["vectorization"] = getattr(self.collector, "vectorization", "ray workers")
        if not training["solved"] and interrupted is None:
            training["stop_reason"] += _unsolved_hint(self, training)
        checkpoint = Checkpoint(
            config=self.config,
            spec=self.spec,
            state_dict={k: v.clone() for k, v in self.learner.policy.state_dict().items()},
            training=training,
            resume=resume_payload(
                self.learner.optimizer,
                env_steps=state.env_steps,
                episodes=state.episodes,
                iterations=state.iterations,
                window=list(state.window),
                history=state.history,
                steps_to_solve=state.steps_to_solve,
                wall_seconds=state.earlier_seconds + state.seconds,
                rng=self._rng_state(),
            ),
        )
        if self.learner.value is not None:
            checkpoint.resume["value"] = self.learner.value.state_dict()
        best = None
        if self.best.state is not None:
            best = dataclasses.replace(
                checkpoint,
                state_dict=self.best.state,
                training={**training, "best": True},
                resume={},
            )
        return _Snapshot(checkpoint, list(state.history), best)

    def _rng_state(self) -> str | None:
        """What an exact resume needs (the local collector's RNGs; None for other collectors)."""
        if self.state.iterations == 0 or not isinstance(self.collector, RolloutCollector):
            return None
        return self.collector.rng_state()


def _unsolved_hint(run: _Run, training: dict[str, Any]) -> str:
    """Why an unsolved run ended where it did, and what to try."""
    if not run.state.history:
        return ""
    if len(run.returns_seen) == 1:
        (only,) = run.returns_seen
        return (
            f"; every episode returned {only:g}, so the returns carried no learning signal "
            "(a sparse reward that random actions never reach, as in MountainCar); REINFORCE "
            "cannot learn that in any budget: shape the reward with a gymnasium wrapper or "
            "use an algorithm that explores"
        )
    if run.threshold is None:
        return ""
    kept = (
        f"best mean of {run.config.solve_window} episodes {run.best.mean_return:.4g}, kept in "
        f"{BEST_CHECKPOINT}"
        if math.isfinite(run.best.mean_return)
        else f"fewer than {run.config.solve_window} episodes finished"
    )
    return (
        f" without reaching the reward threshold {run.threshold:g} ({kept}); try a larger "
        "total_timesteps, or a preset or lower learning_rate"
    )


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

    def carry(self, training: dict[str, Any]) -> None:
        """Continue a resumed run's record: its best weights stay in its ``best.pt`` until
        this part beats their mean."""
        mean, steps = training.get("best_window_mean_return"), training.get("best_env_steps")
        if isinstance(mean, (int, float)) and isinstance(steps, int) and math.isfinite(mean):
            self.mean_return, self.env_steps = float(mean), steps

    def offer(self, window_mean: float, env_steps: int, policy: SoftmaxPolicy) -> None:
        if window_mean > self.mean_return:
            self.mean_return, self.env_steps = window_mean, env_steps
            self.state = {k: v.detach().clone() for k, v in policy.state_dict().items()}

    def summary(self) -> dict[str, Any]:
        if self.state is None and not math.isfinite(self.mean_return):
            return {"best_window_mean_return": None, "best_env_steps": None}
        return {"best_window_mean_return": self.mean_return, "best_env_steps": self.env_steps}


def _summary(
    config: TrainConfig, state: RunState, threshold: float | None, interrupted: str | None
) -> dict[str, Any]:
    window_full = len(state.window) == state.window.maxlen
    mean = float(np.mean(state.window)) if state.window else None
    solved = threshold is not None and window_full and mean is not None and mean >= threshold
    if interrupted is not None:
        reason = f"interrupted by {interrupted}"
    elif solved and config.stop_on_solve:
        reason = f"solved: mean of last {config.solve_window} episodes >= {threshold}"
    else:
        reason = f"budget of {config.total_timesteps} env steps spent"
    seconds = state.seconds
    return {
        "env_id": config.env_id,
        "seed": config.seed,
        "solved": solved,
        "stop_reason": reason,
        "reward_threshold": threshold,
        "solve_window": config.solve_window,
        "window_full": window_full,
        "steps_to_solve": state.steps_to_solve,
        "env_steps": state.env_steps,
        "episodes": state.episodes,
        "iterations": state.iterations,
        "final_window_mean_return": mean,
        "wall_seconds": round(state.earlier_seconds + seconds, 3),
        "env_steps_this_process": state.new_steps,
        "seconds_this_process": round(seconds, 3),
        "steps_per_second": round(state.new_steps / seconds, 1) if seconds > 0 else 0.0,
        "warnings": health_warnings(state.history, solved=solved),
        "interrupted": interrupted,
        "pgdeploy_version": __version__,
        "torch_version": str(torch.__version__),
        "gymnasium_version": gymnasium.__version__,
    }
