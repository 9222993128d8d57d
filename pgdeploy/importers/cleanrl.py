"""CleanRL ``.cleanrl_model`` state dicts -> :class:`ImportedPolicy`, given the env.

CleanRL saves ``torch.save(model.state_dict())`` and nothing about the env, so ``env_id``
is required and its spaces are made with gymnasium. Recognised: ``dqn.py``'s QNetwork
(``network.0/2/4``, ReLU, greedy) and ``ppo.py``'s Agent (``actor.0/2/4``, Tanh,
Categorical). CleanRL feeds raw float observations: Box observations only, no clip.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pgdeploy.errors import ModelLoadError
from pgdeploy.importers.archive import Archive
from pgdeploy.importers.imported import ImportedPolicy, no_clip
from pgdeploy.importers.reference import SourceActor
from pgdeploy.importers.weights import check_chain, linear_chain, load_state_dict
from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.spec import check_env_id

#: key prefix -> (algorithm, activation, head)
LAYOUTS = {
    "network.": ("DQN", "relu", "argmax"),
    "actor.": ("PPO", "tanh", "softmax"),
}


def import_cleanrl(path: str | os.PathLike[str], *, env_id: str | None) -> ImportedPolicy:
    archive = Archive(path)
    if env_id is None:
        raise ModelLoadError(
            f"{archive.source} is a CleanRL state dict, which does not say its env; "
            "name it with --env ENV_ID"
        )
    check_env_id(env_id, source="--env")
    raw = Path(path).read_bytes()
    state = load_state_dict(raw, source=archive.source)
    prefix = next((p for p in LAYOUTS if any(k.startswith(p) for k in state)), None)
    if prefix is None:
        raise ModelLoadError(
            f"{archive.source} is not a CleanRL dqn.py QNetwork (network.0/2/4) or ppo.py "
            "Agent (actor.0/2/4) state dict"
        )
    algorithm, activation, head = LAYOUTS[prefix]
    layers = linear_chain(state, prefix, source=archive.source)
    from pgdeploy.envs.making import policy_spec

    spec = policy_spec(env_id)
    if not spec.obs_layout.plain:
        raise ModelLoadError(
            f"{env_id} has {spec.obs_layout.tree['type']} observations; CleanRL's scripts feed "
            "a flat Box observation, so only those are imported"
        )
    if spec.action_layout.multi:
        raise ModelLoadError(f"{env_id} has MultiDiscrete actions; CleanRL's scripts use Discrete")
    check_chain(layers, spec.obs_dim, spec.n_actions, source=archive.source)
    low, high = no_clip(spec.obs_dim)
    network = PolicyNetwork(
        clip_low=low, clip_high=high, layers=tuple(layers), activation=activation, head=head
    )
    network.check(spec, source=archive.source)
    provenance = {
        "source": "cleanrl",
        "source_version": "unknown",
        "algorithm": algorithm,
        "policy_class": "QNetwork" if algorithm == "DQN" else "Agent.actor",
        "input_file": Path(path).name,
        "input_sha256": hashlib.sha256(raw).hexdigest(),
        "normalized": False,
    }
    actor = SourceActor(
        obs_tree=dict(spec.obs_layout.tree),
        layers=tuple(layers),
        activation=activation,
        head=head,
        nvec=spec.action_layout.nvec,
        normalization=None,
    )
    return ImportedPolicy(spec=spec, network=network, provenance=provenance, actor=actor)
