"""Export an :class:`~pgdeploy.importers.ImportedPolicy` to verified ONNX.

The graph comes from ``pgdeploy.runtime.policy_graph.build_model``, the one builder from a
PolicyNetwork, so an imported policy is the same canonical graph as a trained one. The
file is loaded back through the
runtime's :class:`~pgdeploy.runtime.Agent` and its probabilities are held to the source's
own computation (the PyTorch rebuild of the SB3 or CleanRL actor) on random observations
and, where the env can be made, on-policy ones, before it is written, all or nothing.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy._io import check_writable, commit_staged, stage_bytes
from pgdeploy.errors import (
    ExportVerificationError,
    ModelLoadError,
    UnsupportedEnvError,
    UnsupportedExportError,
)
from pgdeploy.export.exporter import one_torch_thread
from pgdeploy.export.formats import ExportFiles
from pgdeploy.importers import ImportedPolicy
from pgdeploy.importers.imported import UNKNOWN_ENV
from pgdeploy.runtime.agent import Agent
from pgdeploy.runtime.policy_graph import build_model
from pgdeploy.spec import PROBS_OUTPUT

#: Allowed |p_onnx - p_source| (float32 rounding of a few layers; a weight off by 1e-3
#: moves probabilities by far more).
PROBS_ATOL = 1e-5
#: Envs stepped in lockstep for on-policy rows: one batched forward pass per step of all
#: (one pass per observation made on-policy collection the slowest part of an export).
ON_POLICY_ENVS = 16
ONNX_NAME = "model.onnx"


@dataclass(frozen=True)
class ImportReport:
    path: Path
    max_abs_diff: float
    greedy_mismatches: int
    n_observations: int
    provenance: dict[str, Any]
    n_on_policy: int = 0
    notices: tuple[str, ...] = ()

    def render(self) -> str:
        """One line: what was written and how it compared with the source policy."""
        origin = self.provenance
        return (
            f"onnx: {self.path} ({origin['algorithm']} from {origin['source']} "
            f"{origin['source_version']}) verified on {self.n_observations} observations "
            f"({self.n_on_policy} on-policy) against the source policy rebuilt in PyTorch: "
            f"max |dp| = {self.max_abs_diff:.2e}, greedy mismatches: {self.greedy_mismatches}"
        )


@one_torch_thread()
def export_imported(
    imported: ImportedPolicy,
    out_dir: str | os.PathLike[str],
    *,
    n_random: int = 4096,
    n_on_policy: int = 4096,
    seed: int = 0,
) -> ImportReport:
    """Write ``out_dir/model.onnx`` for ``imported``, verified first; nothing on failure.

    On-policy observations come from the policy's env (its spec's id, which for an SB3
    zip is what the user named with ``--env``); without one, random rows only, and the
    report's ``notices`` says so.
    """
    folder = Path(out_dir)
    check_writable(folder, [ONNX_NAME])
    metadata = imported.metadata()
    data = _onnx_bytes(imported, metadata)
    notices: list[str] = []
    obs = verification_rows(imported, n_random, seed)
    if imported.spec.env_id == UNKNOWN_ENV:
        notices.append("on-policy verification skipped (name the env with --env to add it)")
        n_on_policy = 0
    elif n_on_policy:
        obs = np.concatenate([obs, on_policy_rows(imported, n_on_policy, seed)])
    with torch.no_grad():
        expected = imported.actor.module()(torch.from_numpy(obs)).numpy()
    final = folder / ONNX_NAME
    temp = stage_bytes(final, data)
    try:
        try:
            agent = Agent.load(temp, out_of_bounds="clip")
        except ModelLoadError as exc:
            raise ExportVerificationError(
                f"the ONNX export fails the runtime's load checks: {exc}; nothing was written"
            ) from exc
        zeros = np.zeros((len(obs), imported.spec.action_layout.n_branches), np.float32)
        got = agent.run_graph(obs, zeros)[PROBS_OUTPUT]
        diff = float(np.abs(got - expected).max())
        greedy = _greedy_mismatches(got, expected, imported.spec.action_layout.nvec)
        if not diff <= PROBS_ATOL or (imported.network.head == "argmax" and greedy):
            raise ExportVerificationError(
                f"ONNX probabilities differ from the source policy by {diff:.3g} (allowed "
                f"{PROBS_ATOL}), {greedy} greedy actions differ; nothing was written"
            )
        commit_staged([(temp, final)])
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return ImportReport(
        final, diff, greedy, len(obs), dict(imported.provenance), n_on_policy, tuple(notices)
    )


def export_foreign(
    path: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    vecnormalize: str | os.PathLike[str] | None = None,
    env_id: str | None = None,
    target: str = "onnx",
) -> ImportReport:
    """``pgdeploy export`` for a file that is not a pgdeploy checkpoint (SB3, CleanRL)."""
    from pgdeploy.importers import load_foreign

    if target != "onnx":
        raise UnsupportedExportError(
            f"--target {target} is not available for imported policies yet (ONNX only); "
            "the C generator from a PolicyNetwork is on its way"
        )
    imported = load_foreign(path, vecnormalize=vecnormalize, env_id=env_id)
    folder = Path(out_dir) if out_dir is not None else Path(path).parent
    return export_imported(imported, folder)


def verification_rows(imported: ImportedPolicy, n: int, seed: int) -> npt.NDArray[np.float32]:
    """Raw rows: continuous columns normal around the normalisation statistics (or 0) at
    3 standard deviations, within the space's bounds; categorical ones uniform."""
    rng = np.random.default_rng(seed)
    spec, network = imported.spec, imported.network
    layout = spec.obs_layout
    rows = np.zeros((n, spec.obs_dim), np.float64)
    columns = list(layout.continuous_columns)
    if columns:
        mean = network.obs_mean if network.obs_mean is not None else np.zeros(len(columns))
        std = network.obs_std if network.obs_std is not None else np.ones(len(columns))
        values = rng.normal(mean, 3 * std, size=(n, len(columns)))
        low, high = np.asarray(spec.obs_low)[columns], np.asarray(spec.obs_high)[columns]
        rows[:, columns] = np.clip(values, low, high)
        for leaf in layout.leaves:
            if leaf.kind == "multi_binary":
                cols = range(leaf.offset, leaf.offset + leaf.size)
                rows[:, cols] = rng.integers(0, 2, size=(n, leaf.size))
    for column, (first, last) in layout.categorical_bounds().items():
        rows[:, column] = rng.integers(first, last + 1, size=n)
    return rows.astype(np.float32)


def on_policy_rows(imported: ImportedPolicy, n: int, seed: int) -> npt.NDArray[np.float32]:
    """Rows the source policy visits in its env (sampled actions, seeded); the env's
    spaces must be the policy's. Sampled actions: the stochastic policy's states."""
    from pgdeploy.envs.making import make_env, policy_spec

    spec = imported.spec
    env_spec = policy_spec(spec.env_id)
    if (
        env_spec.obs_layout.tree != spec.obs_layout.tree
        or env_spec.action_layout.nvec != spec.action_layout.nvec
    ):
        raise UnsupportedEnvError(
            f"env {spec.env_id} observes {env_spec.obs_layout.tree} and acts in "
            f"{env_spec.action_layout.to_dict()}, the imported policy expects "
            f"{spec.obs_layout.tree} and {spec.action_layout.to_dict()}"
        )
    actor = imported.actor.module()
    rng = np.random.default_rng(seed)
    layout, nvec = spec.obs_layout, spec.action_layout.nvec
    envs = [make_env(spec.env_id) for _ in range(ON_POLICY_ENVS)]
    rows: list[npt.NDArray[np.float32]] = []
    try:
        observations = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
        while len(rows) < n:  # one batched forward pass per step of all envs
            batch = np.stack([layout.flatten(obs) for obs in observations])
            rows.extend(batch)
            with torch.no_grad():
                probs = actor(torch.from_numpy(batch)).numpy().astype(np.float64)
            heads, offset = [], 0
            for size in nvec:  # inverse CDF, one uniform per env and head
                cdf = np.cumsum(probs[:, offset : offset + size], axis=1)
                u = rng.random((len(envs), 1)) * cdf[:, -1:]
                heads.append(np.minimum((cdf <= u).sum(axis=1), size - 1))
                offset += size
            for i, env in enumerate(envs):
                action: Any = (
                    np.asarray([h[i] for h in heads]) if len(nvec) > 1 else int(heads[0][i])
                )
                obs, _, terminated, truncated, _ = env.step(action)
                observations[i] = env.reset()[0] if terminated or truncated else obs
    finally:
        for env in envs:
            env.close()
    return np.stack(rows[:n]).astype(np.float32)


def _greedy_mismatches(got: Any, expected: Any, nvec: tuple[int, ...]) -> int:
    offset, bad = 0, np.zeros(len(got), bool)
    for n in nvec:
        a, b = got[:, offset : offset + n], expected[:, offset : offset + n]
        bad |= a.argmax(axis=1) != b.argmax(axis=1)
        offset += n
    return int(bad.sum())


def _onnx_bytes(imported: ImportedPolicy, metadata: dict[str, Any]) -> bytes:
    """The canonical graph of the imported network (the runtime accepts nothing else), with
    the provenance in the ``training`` slot and a pair id over the source file's sha256."""
    files = ExportFiles.make(
        imported.spec, imported.network, metadata, str(imported.provenance.get("input_sha256", ""))
    )
    return build_model(files.spec, files.network, files.metadata)


def _one_hot_logits(logits: torch.Tensor, nvec: list[int]) -> torch.Tensor:
    """Logits whose softmax is one-hot on each head's first maximum, to float32 precision:
    0 at the argmax, -1e4 elsewhere (exp(-1e4) is 0 in float32)."""
    parts = []
    offset = 0
    for n in nvec:
        chunk = logits[:, offset : offset + n]
        index = chunk.argmax(dim=1, keepdim=True)
        positions = torch.arange(n).unsqueeze(0)
        parts.append(((positions == index).float() - 1.0) * 1e4)
        offset += n
    return torch.cat(parts, dim=1)
