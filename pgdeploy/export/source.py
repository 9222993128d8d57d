"""What a policy brings to an export, wherever it was trained: an :class:`ExportSource`.

A source is the spec and :class:`~pgdeploy.runtime.network.PolicyNetwork` every target
builds from, the source's own float computation every target is verified against (a
pgdeploy checkpoint's PyTorch policy, or the PyTorch rebuild of an SB3 or CleanRL actor),
the metadata its files record, and the observations to verify on. Targets read nothing
else, so an imported policy and a trained one go through the same checks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy.errors import ExportVerificationError
from pgdeploy.export.observations import (
    ProbsFn,
    VerificationPlan,
    on_policy_rows,
    plan_verification,
    random_only,
    random_rows,
)
from pgdeploy.export.verify import Reference, reference_outputs
from pgdeploy.importers import ImportedPolicy
from pgdeploy.importers.imported import UNKNOWN_ENV
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.spec import PolicySpec
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.checkpoint_safety import non_finite_weights
from pgdeploy.training.policy import DeployablePolicy, SoftmaxPolicy, network_from_policy


@dataclass(frozen=True)
class ExportSource:
    """A policy to export and everything its verification needs."""

    spec: PolicySpec
    network: PolicyNetwork
    probs: ProbsFn = field(repr=False)  #: the source's own float policy, raw rows -> probs
    metadata: Mapping[str, Any]  #: what the files record in their ``training`` slot
    input_sha256: str  #: of the file the policy came from (ties an export's files to it)
    folder: Path  #: where its files go unless the user says otherwise
    plan: VerificationPlan
    #: mean and std per continuous column that random rows are drawn around
    center: tuple[npt.NDArray[Any], npt.NDArray[Any]] = field(repr=False)
    reference_name: str = "the PyTorch policy"
    origin: str = ""  #: e.g. "PPO from stable-baselines3 2.9.2"; empty for a checkpoint
    #: the TorchScript module; None: the source has none (imported policies: ONNX only)
    deployable: torch.nn.Module | None = field(default=None, repr=False)
    #: the reference normalises in float64 (SB3's VecNormalize), a float32 graph cannot
    float64_statistics: bool = False

    @property
    def provenance(self) -> Mapping[str, Any] | None:
        return self.metadata.get("provenance")

    def observations(
        self, seed: int, n_random: int | None = None, n_on_policy: int | None = None
    ) -> npt.NDArray[np.float32]:
        """Random rows then on-policy ones (``plan``'s counts unless given); without an env
        to play, random rows replace the on-policy ones."""
        n_random = self.plan.n_random if n_random is None else n_random
        n_on_policy = self.plan.n_on_policy if n_on_policy is None else n_on_policy
        if self.plan.env is None:
            n_random, n_on_policy = n_random + n_on_policy, 0
        rows = random_rows(self.spec, self.center, n_random, np.random.default_rng(seed))
        if not n_on_policy or self.plan.env is None:
            return rows
        played = on_policy_rows(self.spec, self.plan.env, self.probs, n_on_policy, seed)
        return np.concatenate([rows, played])

    def reference(self, obs: npt.NDArray[np.float32], *, seed: int, atol: float) -> Reference:
        """The source's outputs on ``obs`` and the float32 tolerance of every form."""
        return reference_outputs(
            self.spec,
            self.network,
            self.probs(obs),
            obs,
            seed=seed,
            atol=atol,
            float64_statistics=self.float64_statistics,
            describe=self.reference_name,
        )

    def env_factory(self) -> Any:
        """A new env of the plan's (for episodes), or None when there is none."""
        return None if self.plan.env is None else self.plan.env.make


def checkpoint_source(
    path: str | os.PathLike[str],
    *,
    env_id: str | None = None,
    trust_env_module: bool = False,
    n_random: int = 4096,
    n_on_policy: int = 4096,
    env_kwargs: Mapping[str, Any] | None = None,
    wrapper: str | None = None,
) -> ExportSource:
    """A pgdeploy checkpoint (refused when its weights hold NaN or infinity), verified on
    the env its run trained on (id, recorded keywords and wrapper) where that may be made."""
    from pgdeploy.envs.recipe import recorded_env

    checkpoint = load_checkpoint(path)
    bad = non_finite_weights(checkpoint.state_dict)
    if bad:
        raise ExportVerificationError(
            f"checkpoint weights {bad} hold NaN or infinity (the run diverged); nothing was written"
        )
    recorded = recorded_env(
        checkpoint.spec.env_id, checkpoint.config.to_dict(), source="the checkpoint"
    )
    plan = plan_verification(
        recorded,
        env_id,
        trust_env_module,
        n_random=n_random,
        n_on_policy=n_on_policy,
        env_kwargs=env_kwargs,
        wrapper=wrapper,
    )
    return policy_source(
        checkpoint.build_policy(),
        plan=plan,
        metadata={**checkpoint.training, "config": checkpoint.config.to_dict()},
        input_sha256=file_sha256(Path(path)),
        folder=Path(path).parent,
    )


def policy_source(
    policy: SoftmaxPolicy,
    *,
    plan: VerificationPlan,
    metadata: Mapping[str, Any] | None = None,
    input_sha256: str = "",
    folder: Path = Path("."),
) -> ExportSource:
    """A trained policy in memory: its network, and its own forward pass as reference."""

    def probs(obs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            return policy.probs(torch.from_numpy(obs)).numpy()

    return ExportSource(
        spec=policy.spec,
        network=network_from_policy(policy),
        probs=probs,
        metadata=dict(metadata or {}),
        input_sha256=input_sha256,
        folder=folder,
        plan=plan,
        center=(policy.obs_mean.numpy(), np.sqrt(policy.obs_var.numpy())),
        deployable=DeployablePolicy(policy).eval(),
    )


def imported_source(
    imported: ImportedPolicy, *, folder: Path, n_random: int = 4096, n_on_policy: int = 4096
) -> ExportSource:
    """A policy read from another library's file, verified against the PyTorch rebuild of
    that library's actor; on-policy rows from the env the user named (``--env``)."""
    spec, network = imported.spec, imported.network
    if spec.env_id == UNKNOWN_ENV:
        plan = random_only(n_random, n_on_policy, "the file names no env (add --env ENV_ID)")
    else:
        from pgdeploy.envs.recipe import EnvRecipe

        plan = VerificationPlan(EnvRecipe(spec.env_id), n_random, n_on_policy)
    actor = imported.actor.module()

    def probs(obs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with torch.inference_mode():
            return actor(torch.from_numpy(obs)).numpy()  # type: ignore[no-any-return]

    n_cont = len(spec.obs_layout.continuous_columns)
    center = (
        (network.obs_mean, network.obs_std)
        if network.obs_mean is not None and network.obs_std is not None
        else (np.zeros(n_cont), np.ones(n_cont))
    )
    origin = imported.provenance
    return ExportSource(
        spec=spec,
        network=network,
        probs=probs,
        metadata=imported.metadata(),
        input_sha256=str(origin.get("input_sha256", "")),
        folder=folder,
        plan=plan,
        center=center,
        reference_name=f"the {origin['source']} policy rebuilt in PyTorch",
        origin=f"{origin['algorithm']} from {origin['source']} {origin['source_version']}",
        float64_statistics=network.obs_mean is not None,
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
