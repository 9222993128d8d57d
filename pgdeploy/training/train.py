"""Train a softmax policy with REINFORCE on vectorised gymnasium envs: the whole loop.

One iteration, in :func:`_iterate`, top to bottom:

1. collect: the collector (:mod:`~pgdeploy.training.rollout`, or Ray workers with
   ``workers > 0``) plays each of ``num_envs`` envs on to the end of its episode with the
   current weights, for at most ``iteration_steps`` steps per env and never past the budget;
2. returns: discounted returns-to-go of the finished episodes minus a baseline
   (:meth:`ReinforceLearner.advantages`);
3. loss: the REINFORCE objective (:meth:`ReinforceLearner.loss`, written out as math there);
4. step: one Adam step, refused when anything is non-finite (:meth:`ReinforceLearner.step`);
5. record: counters, the solved window, the metrics history (:mod:`~pgdeploy.training.record`)
   and the best weights (:class:`BestPolicy`);
6. save: the run's artefacts as one set into its folder (:mod:`~pgdeploy.training.folder`)
   every ``checkpoint_every`` iterations and/or ``checkpoint_seconds``, at the end, and when
   ``should_stop`` asks (Ctrl-C/SIGTERM through :mod:`~pgdeploy.training.signals`).

Training stops when the mean return of the last ``solve_window`` finished episodes reaches
the env's reward threshold or the ``total_timesteps`` budget is spent, and says which. The
choices behind the defaults are in :class:`~pgdeploy.training.config.TrainConfig`'s field
docs, their measurements in benchmarks/RESULTS.md.
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
from pgdeploy.errors import CheckpointError, TrainingDivergedError
from pgdeploy.spec import PolicySpec
from pgdeploy.training.callbacks import Callback, IterationStats
from pgdeploy.training.checkpoint import Checkpoint, save_checkpoint
from pgdeploy.training.checkpoint_safety import non_finite_weights
from pgdeploy.training.collector import Collector, make_collector
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.folder import RunFolder
from pgdeploy.training.outcome import health_warnings, run_evidence
from pgdeploy.training.policy import SoftmaxPolicy
from pgdeploy.training.record import TrainingRecord
from pgdeploy.training.reinforce import ReinforceLearner, UpdateStats
from pgdeploy.training.resume import ResumeState, resume_payload, resume_state
from pgdeploy.training.rollout import RolloutCollector


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

    ``resume_from`` continues that checkpoint's run: :func:`~pgdeploy.training.resume.resume_state`
    checks it once, before any work (its counters count against ``config.total_timesteps``;
    a config that changes the policy is refused). ``out_dir`` is claimed for the run (a lock
    that a second process is refused) unless it is a RunFolder its caller claimed.
    ``should_stop`` is asked between vector steps; a non-None answer (a reason, e.g. a
    signal name) saves the last whole iteration and returns with ``interrupted`` set.
    ``collector`` replaces the one the config describes (e.g. a Ray collector the caller
    keeps, to read its timings); training closes it either way. A non-finite loss,
    gradient or weight stops the run with :class:`TrainingDivergedError` after saving its
    last finite state.
    """
    torch.set_num_threads(config.torch_threads)
    torch.manual_seed(config.seed)
    spec = policy_spec(config.env_id, env_kwargs=config.env_kwargs, wrapper=config.wrapper)
    resumed = resume_state(resume_from, config, spec) if resume_from is not None else None
    folder = RunFolder(out_dir) if isinstance(out_dir, (str, Path)) else out_dir
    claimed = folder is not None and folder.claim()
    try:
        policy = SoftmaxPolicy(spec, hidden_sizes=config.hidden_sizes, obs_clip=config.obs_clip)
        learner = ReinforceLearner(policy, config)
        if resumed is not None and resume_from is not None:
            resumed.restore(resume_from, policy, learner.optimizer)
            if learner.value is not None and resumed.value is not None:
                learner.value.load_state_dict(resumed.value)
        collector = _collector(config, spec, resumed, collector)
        run = _Run(config, spec, learner, collector, TrainingRecord.begin(config, resumed))
        return _iterate(run, folder, callbacks, should_stop)
    finally:
        if claimed and folder is not None:
            folder.release()


def _iterate(
    run: _Run,
    folder: RunFolder | None,
    callbacks: tuple[Callback, ...],
    should_stop: Callable[[], str | None] | None,
) -> TrainResult:
    """The training loop: one iteration is collect -> returns -> loss -> step -> record -> save."""
    config, record, learner, collector = run.config, run.record, run.learner, run.collector
    saves = PeriodicSaves(config, folder)
    interrupted: str | None = None
    diverged: TrainingDivergedError | None = None
    try:
        while record.env_steps < config.total_timesteps:
            # 1. Collect: every env plays on to the end of its episode, for at most
            #    iteration_steps steps and never past the budget (by num_envs - 1 at most).
            left = config.total_timesteps - record.env_steps
            batch = collector.collect(
                learner.policy.state_dict(),
                max_steps=-(-left // config.num_envs),
                should_stop=should_stop,
            )
            if batch is None:  # should_stop answered mid-iteration: keep the last whole one
                interrupted = should_stop() if should_stop is not None else None
                break
            # 2. Returns: discounted returns-to-go of the finished episodes, minus the baseline.
            advantages = learner.advantages(batch)
            flat = bool(batch.mask.any()) and not np.any(advantages)
            update = NO_UPDATE
            if batch.mask.any():
                # 3. Loss: -log pi(a|s) * A - beta * entropy, over the batch's masked steps.
                loss, entropy = learner.loss(batch, advantages)
                # 4. Step: Adam; a non-finite loss, gradient or weight raises, state kept.
                progress = record.env_steps / config.total_timesteps
                grad_norm = learner.step(loss, batch, progress=progress)
                update = UpdateStats(loss.item(), entropy.item(), grad_norm)
            # 5. Record: counters, the solved window, the history, the best weights.
            stats = record.add(batch, update)
            run.observe(flat=flat)
            for callback in callbacks:
                callback(stats)
            if run.solved() and config.stop_on_solve:
                break
            interrupted = should_stop() if should_stop is not None else None
            if interrupted is not None:
                break
            # 6. Save, when checkpoint_every / checkpoint_seconds say so.
            saves.after_iteration(record.new_iterations, run.snapshot)
    except TrainingDivergedError as exc:
        diverged = exc
    finally:
        collector.close()
    final = run.snapshot(interrupted, diverged=None if diverged is None else str(diverged))
    path = final.save_to(folder) if folder is not None and record.iterations > 0 else None
    if diverged is not None:
        kept = (
            f"its last finite state (iteration {record.iterations}) is saved in {path}"
            if path is not None
            else "nothing was saved"
        )
        raise TrainingDivergedError(
            f"training stopped after iteration {record.iterations}: {diverged}; {kept}; "
            "try a smaller learning_rate or max_grad_norm"
        ) from diverged
    return TrainResult(
        checkpoint=final.checkpoint,
        checkpoint_path=path,
        history=record.history,
        new_iterations=record.new_iterations,
        interrupted=interrupted,
    )


#: An iteration in which no episode finished (all carried over): no step, no statistics.
NO_UPDATE = UpdateStats(math.nan, math.nan, math.nan)


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
            collector.restore_rng_state(resumed.rng)  # its shape was checked by resume_state
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            collector.close()
            raise CheckpointError(
                f"checkpoint has an RNG state this collector cannot take: {type(exc).__name__}"
            ) from exc
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
    record: TrainingRecord
    best: BestPolicy = field(default_factory=lambda: BestPolicy())
    returns_seen: set[float] = field(default_factory=set)
    flat_streak: int = 0
    """Iterations in a row, up to now, whose advantages were all exactly zero (the entropy
    bonus alone moved the policy: its gradient norm is not zero, the REINFORCE term's is)."""

    def observe(self, *, flat: bool = False) -> None:
        """Keep the best full solve window's weights, whether returns ever varied, and how
        many iterations in a row had nothing to learn from."""
        self.flat_streak = self.flat_streak + 1 if flat else 0
        if self.record.window_full:
            self.best.offer(self.record, self.learner.policy)
        if len(self.returns_seen) < 2:
            self.returns_seen.update(self.record.window)

    @property
    def threshold(self) -> float | None:
        if self.config.solve_threshold is not None:
            return self.config.solve_threshold
        return self.spec.reward_threshold

    def solved(self) -> bool:
        return self.record.solved(self.threshold)

    def snapshot(self, interrupted: str | None = None, *, diverged: str | None = None) -> _Snapshot:
        """The run as it stands: a checkpoint with the summary and everything a resume needs."""
        state = self.record
        training = _summary(self.config, state, self.threshold, interrupted, self.flat_streak)
        training.update(self.best.summary())
        # How the envs were stepped (pgdeploy.envs.describe_vectorization): "auto" chooses.
        training["vectorization"] = getattr(self.collector, "vectorization", "ray workers")
        training["diverged"] = diverged
        if diverged is not None:
            training["stop_reason"] = f"stopped: {diverged}"
        elif not training["solved"] and interrupted is None:
            training["stop_reason"] += _unsolved_hint(self, training)
        if not training["solved"]:
            training["evidence"] = run_evidence(
                self.config, state.history, flat_streak=self.flat_streak
            )
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
        if self.record.iterations == 0 or not isinstance(self.collector, RolloutCollector):
            return None
        return self.collector.rng_state()


def _unsolved_hint(run: _Run, training: dict[str, Any]) -> str:
    """Why an unsolved run ended where it did (what to change is the outcome line's job)."""
    if not run.record.history:
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
    return f" without reaching the reward threshold {run.threshold:g} ({kept})"


#: Written beside ``model.pt``: the weights with the best solve-window mean of the run.
BEST_CHECKPOINT = "best.pt"


class BestPolicy:
    """The weights at the end of the best full solve window this process measured.

    REINFORCE can get worse after a peak (LunarLander with the defaults collapsed from a
    batch mean of 129 to 25-48); keeping these weights means a collapse never costs the
    user the good policy. They are written to ``best.pt`` (a full checkpoint without the
    resume section), which ``pgdeploy export`` takes like ``model.pt``. Only a finite mean
    of a window this process filled, with finite weights, is ever offered a place: nothing
    read from a file (a resumed run's earlier ``best.pt`` stays until this part measures one).
    """

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] | None = None
        self.mean_return = -math.inf
        self.env_steps = 0

    def offer(self, record: TrainingRecord, policy: SoftmaxPolicy) -> None:
        """Keep ``policy``'s weights if the window's mean beats the best so far. The window
        must hold only returns of this process's episodes."""
        if record.new_episodes < len(record.window):
            return
        mean = float(np.mean(record.window))
        if not math.isfinite(mean) or mean <= self.mean_return:
            return
        state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
        if non_finite_weights(state):
            return
        self.mean_return, self.env_steps, self.state = mean, record.env_steps, state

    def summary(self) -> dict[str, Any]:
        if self.state is None:
            return {"best_window_mean_return": None, "best_env_steps": None}
        return {"best_window_mean_return": self.mean_return, "best_env_steps": self.env_steps}


def _summary(
    config: TrainConfig,
    state: TrainingRecord,
    threshold: float | None,
    interrupted: str | None,
    flat_streak: int = 0,
) -> dict[str, Any]:
    window_full = state.window_full
    mean = float(np.mean(state.window)) if state.window else None
    solved = state.solved(threshold)
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
        "warnings": health_warnings(state.history, solved=solved, flat_streak=flat_streak),
        "interrupted": interrupted,
        "pgdeploy_version": __version__,
        "torch_version": str(torch.__version__),
        "gymnasium_version": gymnasium.__version__,
    }
