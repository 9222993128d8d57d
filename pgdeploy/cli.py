"""The ``pgdeploy`` command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from pgdeploy import __version__
from pgdeploy.errors import PgdeployError


class _Group(click.Group):
    """Turns pgdeploy's typed errors into one clean line and exit code 1 (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PgdeployError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pgdeploy")
def main() -> None:
    """Train a REINFORCE policy, export it to ONNX/TorchScript, and run it with onnxruntime."""


@main.command()
@click.option("--env", "env_id", default="CartPole-v1", show_default=True, help="Gymnasium env id.")
@click.option("--seed", default=0, show_default=True, help="Seed for torch, envs and sampling.")
@click.option(
    "--out",
    "out_dir",
    default="runs/latest",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder.",
)
@click.option("--num-envs", default=None, type=int, help="Envs stepped together.  [default: 16]")
@click.option(
    "--total-timesteps", default=None, type=int, help="Env-step budget.  [default: 500000]"
)
@click.option("--learning-rate", default=None, type=float, help="Adam step size.  [default: 0.01]")
@click.option("--quiet", is_flag=True, help="No progress output.")
def train(env_id: str, seed: int, out_dir: Path, quiet: bool, **overrides: Any) -> None:
    """Train with REINFORCE; writes OUT/model.pt, OUT/metrics.csv and OUT/learning_curve.png."""
    from pgdeploy.config import TrainConfig
    from pgdeploy.metrics import MetricsWriter, plot_learning_curve
    from pgdeploy.progress import ProgressReporter
    from pgdeploy.train import train as run_training

    values = {k: v for k, v in overrides.items() if v is not None}
    config = TrainConfig(env_id=env_id, seed=seed, **values)
    metrics = MetricsWriter(out_dir / "metrics.csv")
    callbacks: list[Any] = [metrics]
    progress = None if quiet else ProgressReporter(config.total_timesteps)
    if progress is not None:
        callbacks.append(progress)
    try:
        result = run_training(config, out_dir=out_dir, callbacks=tuple(callbacks))
    finally:
        metrics.close()
        if progress is not None:
            progress.close()
    summary = result.summary
    plot_learning_curve(
        result.history,
        out_dir / "learning_curve.png",
        title=f"REINFORCE on {env_id} (seed {seed})",
        threshold=summary["reward_threshold"],
    )
    click.echo(
        f"{summary['stop_reason']} after {summary['env_steps']} env steps, "
        f"{summary['episodes']} episodes, {summary['wall_seconds']:.2f} s; "
        f"wrote {result.checkpoint_path}"
    )


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the files.  [default: beside the checkpoint]",
)
@click.option(
    "--atol", default=1e-6, show_default=True, help="Largest allowed probability difference."
)
def export(checkpoint: Path, out_dir: Path | None, atol: float) -> None:
    """Export CHECKPOINT (model.pt) to model.onnx and model.torchscript.pt, verified first."""
    from pgdeploy.export import export_checkpoint

    report = export_checkpoint(checkpoint, out_dir=out_dir, atol=atol)
    for check in (report.onnx, report.torchscript):
        click.echo(
            f"{check.format}: {check.path} verified on {check.n_observations} observations "
            f"({report.n_random} random, {report.n_on_policy} on-policy): max |dp| = "
            f"{check.max_abs_diff:.2e} <= {report.atol:g}, action mismatches: "
            f"{check.greedy_mismatches} greedy, {check.sampled_mismatches} sampled"
        )


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--env", "env_id", default=None, help="Gymnasium env id.  [default: from the model]")
@click.option("--episodes", default=10, show_default=True, help="Episodes to play.")
@click.option(
    "--seed", default=0, show_default=True, help="Seeds the env's first reset and the agent."
)
@click.option("--deterministic", is_flag=True, help="Greedy actions instead of sampling.")
def run(model: Path, env_id: str | None, episodes: int, seed: int, deterministic: bool) -> None:
    """Play episodes with the runtime agent; print returns and act latency."""
    from pgdeploy.runtime import Agent, play

    agent = Agent.load(model, seed=seed, deterministic=deterministic)
    env = _make_env(env_id or agent.spec.env_id)
    try:
        report = play(agent, env, episodes=episodes, seed=seed)
    finally:
        env.close()
    for index, episode in enumerate(report.episodes):
        click.echo(f"episode {index}: return {episode.total_reward:g} ({episode.length} steps)")
    click.echo(
        f"mean return {report.mean_return:.2f} over {episodes} episodes; act latency "
        f"p50 {report.act_latency_us(50):.1f} us, p99 {report.act_latency_us(99):.1f} us"
    )


def _make_env(env_id: str) -> Any:
    from pgdeploy.envs import make_env

    return make_env(env_id)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect(path: Path, as_json: bool) -> None:
    """Print what a model file (.onnx, model.pt, .torchscript.pt) says about itself."""
    from pgdeploy.describe import describe, format_text

    info = describe(path)
    click.echo(json.dumps(info, indent=2) if as_json else format_text(info))


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--threads", default=1, show_default=True, help="onnxruntime intra-op threads.")
@click.option(
    "--batch-sizes", default="1,64,4096,65536", show_default=True, help="Comma-separated."
)
@click.option("--calls", default=20_000, show_default=True, help="act() calls to time.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def bench(model: Path, threads: int, batch_sizes: str, calls: int, as_json: bool) -> None:
    """Measure act latency and act_batch throughput of MODEL on this machine."""
    from pgdeploy.runtime import Agent
    from pgdeploy.runtime.bench import run_bench

    sizes = tuple(int(s) for s in batch_sizes.split(",") if s.strip())
    agent = Agent.load(model, seed=0, threads=threads)
    result = run_bench(agent, batch_sizes=sizes, calls=calls)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    act = result["act"]
    click.echo(
        f"act: p50 {act['p50_us']:.2f} us, p99 {act['p99_us']:.2f} us ({act['calls']} calls)"
    )
    for row in result["act_batch"]:
        click.echo(
            f"act_batch n={row['batch_size']}: {row['median_seconds'] * 1e3:.3f} ms median, "
            f"{row['obs_per_second'] / 1e6:.2f} M obs/s"
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
