"""Export an :class:`~pgdeploy.importers.ImportedPolicy` to verified ONNX.

The graph comes from ``pgdeploy.runtime.policy_graph.build_model`` (the one builder from a
PolicyNetwork) when it exists; until then an interim builder traces a torch module of the
same formula (:func:`_interim_onnx`). Either way the file is loaded back through the
runtime's :class:`~pgdeploy.runtime.Agent` and its probabilities are held to the source's
own computation (the PyTorch rebuild of the SB3 or CleanRL actor) on random observations
and, where the env can be made, on-policy ones, before it is written, all or nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from pgdeploy import __version__
from pgdeploy._io import check_writable, commit_staged, stage_bytes
from pgdeploy.errors import (
    ExportVerificationError,
    ModelLoadError,
    UnsupportedEnvError,
    UnsupportedExportError,
)
from pgdeploy.export.exporter import one_torch_thread
from pgdeploy.importers import ImportedPolicy
from pgdeploy.importers.imported import UNKNOWN_ENV
from pgdeploy.runtime.agent import Agent
from pgdeploy.spec import OBS_INPUT, OUTPUT_NAMES, PROBS_OUTPUT, UNIFORM_INPUT, spec_to_metadata

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
    """The graph from ``policy_graph.build_model`` where that module exists, else interim."""
    if importlib.util.find_spec("pgdeploy.runtime.policy_graph") is None:
        return _interim_onnx(imported, metadata)
    graph = importlib.import_module("pgdeploy.runtime.policy_graph")
    return bytes(graph.build_model(imported.spec, imported.network, metadata).SerializeToString())


def _interim_onnx(imported: ImportedPolicy, metadata: dict[str, Any]) -> bytes:
    """Until ``policy_graph.build_model`` lands: trace the formula with torch's tracer."""
    import onnx

    from pgdeploy.export.formats import (
        OPSET,
        _constants_to_initializers,
        _dynamic_batch,
        _fold_constants,
        _quiet_torch,
    )

    if imported.network.activation == "gelu":
        raise UnsupportedExportError(
            "GELU needs the Erf operator, which the runtime's graph allow-list lacks until the "
            "PolicyNetwork graph builder lands"
        )
    spec = imported.spec
    module = _NetworkModule(imported).eval()
    example = (torch.zeros(3, spec.obs_dim), torch.zeros(3, spec.action_layout.n_branches))
    buffer = io.BytesIO()
    with _quiet_torch():
        torch.onnx.export(
            module,
            example,
            buffer,  # type: ignore[arg-type]
            dynamo=False,
            input_names=[OBS_INPUT, UNIFORM_INPUT],
            output_names=list(OUTPUT_NAMES),
            opset_version=OPSET,
        )
    model = onnx.load_model_from_string(buffer.getvalue())
    _constants_to_initializers(model.graph)
    _fold_constants(model)
    _dynamic_batch(model.graph)
    model.producer_name = "pgdeploy"
    model.producer_version = __version__
    model.doc_string = f"pgdeploy import of a {imported.provenance.get('source')} policy"
    props = spec_to_metadata(spec, training=metadata, pgdeploy_version=__version__)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


class _NetworkModule(nn.Module):
    """The PolicyNetwork formula in torch ops the runtime's graph allow-list accepts."""

    def __init__(self, imported: ImportedPolicy) -> None:
        super().__init__()
        from pgdeploy.training.policy import ObsEncoder

        network, spec = imported.network, imported.spec
        self.encoder = ObsEncoder(spec.obs_layout)
        self.low = torch.from_numpy(network.clip_low)
        self.high = torch.from_numpy(network.clip_high)
        self.mean = None if network.obs_mean is None else torch.from_numpy(network.obs_mean)
        self.std = None if network.obs_std is None else torch.from_numpy(network.obs_std)
        self.norm_clip = network.norm_clip
        self.n_cont = len(spec.obs_layout.continuous_columns)
        self.n_features = spec.obs_layout.n_features
        self.linears = nn.ModuleList()
        for weight, bias in network.layers:
            linear = nn.Linear(weight.shape[1], weight.shape[0])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(weight))
                linear.bias.copy_(torch.from_numpy(bias))
            self.linears.append(linear)
        self.activation, self.alpha = network.activation, network.activation_alpha
        self.argmax = network.head == "argmax"
        self.nvec = list(spec.action_layout.nvec)
        self.start = list(spec.action_layout.start)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        """Built from relu, so no constant takes the traced batch's shape."""
        if self.activation == "relu":
            return torch.relu(x)
        if self.activation == "tanh":
            return torch.tanh(x)
        if self.activation == "elu":  # x for x > 0 (exp(0) - 1 is exactly 0), else e^x - 1
            return torch.relu(x) + (torch.exp(-torch.relu(-x)) - 1)
        if self.activation == "leaky_relu":
            return torch.relu(x) - self.alpha * torch.relu(-x)
        if self.activation == "silu":
            return x * torch.sigmoid(x)
        raise UnsupportedExportError(f"activation {self.activation} has no interim graph")

    def forward(self, obs: torch.Tensor, uniform: torch.Tensor) -> Any:
        from pgdeploy.training.policy import action_heads

        h = self.encoder(obs, self.low, self.high, self.mean, self.std)
        if self.norm_clip is not None:
            c = float(self.norm_clip)
            cont = torch.clamp(h[:, : self.n_cont], -c, c)
            h = (
                torch.cat([cont, h[:, self.n_cont :]], dim=1)
                if self.n_cont < self.n_features
                else cont
            )
        for i, linear in enumerate(self.linears):
            h = linear(h)
            if i < len(self.linears) - 1:
                h = self.act(h)
        if self.argmax:
            h = _one_hot_logits(h, self.nvec)
        return action_heads(h, uniform, self.nvec, self.start)


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
