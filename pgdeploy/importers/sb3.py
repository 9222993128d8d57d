"""Stable-Baselines3 2.x PPO / A2C / DQN zips -> :class:`ImportedPolicy`.

The acting network is SB3's features (flattened Box, one-hot Discrete) -> ``policy_net``
(or DQN's ``q_net``) with the policy's activation -> ``action_net`` -> a Categorical per
action head (DQN: argmax of Q, exported as one-hot probabilities, first maximum on ties as
``torch.argmax``). The value head is not exported. VecNormalize statistics, when given,
become the network's ``(x - mean) / sqrt(var + eps)`` clipped at ``clip_obs``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from pgdeploy.errors import ModelLoadError
from pgdeploy.importers import spaces
from pgdeploy.importers.archive import Archive
from pgdeploy.importers.imported import UNKNOWN_ENV, ImportedPolicy, no_clip
from pgdeploy.importers.reference import SourceActor
from pgdeploy.importers.sb3_format import Sb3File, read_sb3
from pgdeploy.importers.vecnormalize import VecNormStats, read_vecnormalize
from pgdeploy.importers.weights import Layer, check_chain, linear_chain, load_state_dict
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.spec import PolicySpec, check_env_id

#: State-dict prefixes an actor-critic / DQN MLP policy has; anything else is refused.
_KEYS = {
    "actor_critic": (
        "mlp_extractor.policy_net.",
        "mlp_extractor.value_net.",
        "action_net.",
        "value_net.",
    ),
    "dqn": ("q_net.q_net.", "q_net_target.q_net."),
}
GREEDY_NOTE = (
    "DQN is exported as its greedy policy: probabilities are one-hot on argmax Q "
    "(the first maximum on ties, as torch.argmax)"
)


def import_sb3(
    path: str | os.PathLike[str],
    *,
    vecnormalize: str | os.PathLike[str] | None = None,
    env_id: str | None = None,
) -> ImportedPolicy:
    archive = Archive(path)
    sb3 = read_sb3(archive)
    obs = spaces.observations(sb3.observation_space)
    actions = spaces.actions(sb3.action_space)
    layout = obs.layout
    stats = read_vecnormalize(vecnormalize) if vecnormalize is not None else None
    layers = _layers(sb3, archive.source)
    check_chain(layers, layout.n_features, actions.n_logits, source=archive.source)
    spec = PolicySpec(
        env_id=check_env_id(env_id or UNKNOWN_ENV, source="--env"),
        obs_dim=layout.obs_dim,
        n_actions=actions.n_logits,
        obs_low=obs.low,
        obs_high=obs.high,
        observation_space=obs.tree,
        action_space=actions.to_dict(),
    )
    n_cont = len(layout.continuous_columns)
    low, high = no_clip(n_cont)
    order = spaces.sb3_feature_order(layout)
    first_w, first_b = layers[0]
    permuted = ((np.ascontiguousarray(first_w[:, order]), first_b), *layers[1:])
    norm = _normalization(stats, obs, archive.source)
    head = "argmax" if sb3.family == "dqn" else "softmax"
    network = PolicyNetwork(
        clip_low=low,
        clip_high=high,
        layers=permuted,
        obs_mean=None if norm is None else norm[0].astype(np.float32),
        obs_std=None if stats is None or norm is None else stats.std32(),
        norm_clip=None if norm is None else norm[3],
        activation=sb3.activation,
        head=head,
    )
    network.check(spec, source=archive.source)
    provenance: dict[str, object] = {
        "source": "stable-baselines3",
        "source_version": sb3.version,
        "algorithm": sb3.algorithm,
        "policy_class": sb3.policy_class,
        "input_file": Path(path).name,
        "input_sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "vecnormalize_sha256": None if stats is None else stats.sha256,
        "normalized": norm is not None,
    }
    if head == "argmax":
        provenance["note"] = GREEDY_NOTE
    actor = SourceActor(
        obs_tree=obs.tree,
        layers=tuple(layers),
        activation=sb3.activation,
        head=head,
        nvec=actions.nvec,
        normalization=norm,
    )
    return ImportedPolicy(spec=spec, network=network, provenance=provenance, actor=actor)


def _layers(sb3: Sb3File, source: str) -> list[Layer]:
    state = load_state_dict(sb3.policy_bytes, source=f"{source} policy.pth")
    known = _KEYS[sb3.family]
    stray = sorted(k for k in state if not k.startswith(known))
    if stray:
        what = "log_std (continuous actions)" if "log_std" in stray else ascii(stray[0])
        raise ModelLoadError(
            f"{source}: policy.pth holds {what}, which an MLP policy over discrete actions "
            "does not have (custom networks or feature extractors are not supported)"
        )
    if sb3.family == "dqn":
        layers = linear_chain(state, "q_net.q_net.", source=source)
    else:
        layers = linear_chain(state, "mlp_extractor.policy_net.", source=source)
        layers.append(_single(state, "action_net", source))
    if not layers:
        raise ModelLoadError(f"{source}: policy.pth has no acting layers")
    return layers


def _single(state: dict[str, np.ndarray], name: str, source: str) -> Layer:
    weight, bias = state.get(name + ".weight"), state.get(name + ".bias")
    if weight is None or bias is None or weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ModelLoadError(f"{source}: policy.pth has no usable {name} layer")
    return weight, bias


def _normalization(
    stats: VecNormStats | None, obs: spaces.Observations, source: str
) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    if stats is None or not stats.norm_obs:
        return None
    if obs.tree["type"] != "box":
        raise ModelLoadError(
            f"VecNormalize statistics apply to Box observations; {source} observes a "
            f"{obs.tree['type']} space"
        )
    size = len(obs.low)
    if stats.mean.size != size:
        raise ModelLoadError(
            f"VecNormalize statistics have {stats.mean.size} values, {source} observes {size}"
        )
    return stats.mean.reshape(-1), stats.var.reshape(-1), stats.epsilon, stats.clip_obs
