"""What a Stable-Baselines3 2.x zip says, read without unpickling.

The zip holds ``data`` (JSON; each non-JSON value as a cloudpickle under ``:serialized:``
beside plain-JSON descriptions), ``policy.pth`` (a state dict, read with
``torch.load(weights_only=True)``), ``_stable_baselines3_version`` and a few members not
needed here (the optimizer, ``pytorch_variables.pth``). Classes and spaces come from the
pickles' opcodes (:mod:`pgdeploy.importers.pickle_reader`): the names they reference are
read, never imported, and only the ones listed here are accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from pgdeploy.errors import ModelLoadError
from pgdeploy.importers.archive import Archive
from pgdeploy.importers.inert import inert
from pgdeploy.importers.pickle_reader import Call, Global, read_pickle

MEMBERS = ("data", "policy.pth")
VERSION_MEMBER = "_stable_baselines3_version"
MAX_DATA_BYTES = 16 << 20
VERSION = re.compile(r"[0-9][0-9A-Za-z.+\-]{0,31}", re.ASCII)

_POLICIES = "stable_baselines3.common.policies."
#: Supported policy classes -> (family, what its MlpPolicy alias is).
POLICY_CLASSES = {
    _POLICIES + "ActorCriticPolicy": "actor_critic",
    _POLICIES + "MultiInputActorCriticPolicy": "actor_critic",
    "stable_baselines3.dqn.policies.DQNPolicy": "dqn",
    "stable_baselines3.dqn.policies.MultiInputPolicy": "dqn",
}
#: Known classes pgdeploy refuses, and why.
REFUSED_CLASSES = {
    _POLICIES + "ActorCriticCnnPolicy": "CnnPolicy feeds images to a CNN; pgdeploy exports MLPs",
    "stable_baselines3.dqn.policies.CnnPolicy": "CnnPolicy feeds images to a CNN; pgdeploy "
    "exports MLPs",
    "sb3_contrib.common.recurrent.policies.RecurrentActorCriticPolicy": "RecurrentPPO carries "
    "an LSTM state between steps; pgdeploy's graph is stateless",
    "sb3_contrib.common.recurrent.policies.RecurrentActorCriticCnnPolicy": "RecurrentPPO "
    "carries an LSTM state between steps; pgdeploy's graph is stateless",
    "sb3_contrib.common.maskable.policies.MaskableActorCriticPolicy": "MaskablePPO needs an "
    "action mask at every step; pgdeploy's graph takes observations only",
    "stable_baselines3.sac.policies.SACPolicy": "SAC acts in continuous action spaces",
    "stable_baselines3.td3.policies.TD3Policy": "TD3 acts in continuous action spaces",
}
#: activation_fn class -> pgdeploy activation name.
ACTIVATIONS = {
    "torch.nn.modules.activation." + cls: name
    for cls, name in (
        ("ReLU", "relu"),
        ("Tanh", "tanh"),
        ("ELU", "elu"),
        ("LeakyReLU", "leaky_relu"),
        ("SiLU", "silu"),
        ("GELU", "gelu"),
    )
}
FEATURE_EXTRACTORS = {
    "stable_baselines3.common.torch_layers.FlattenExtractor",
    "stable_baselines3.common.torch_layers.CombinedExtractor",
}


@dataclass(frozen=True)
class Sb3File:
    """The fields of an SB3 zip pgdeploy uses (spaces are inert records)."""

    version: str
    policy_class: str
    family: str  #: "actor_critic" or "dqn"
    algorithm: str  #: "PPO", "A2C" or "DQN" (inferred from the saved hyperparameters)
    activation: str
    observation_space: Any
    action_space: Any
    policy_bytes: bytes
    policy_kwargs: dict[str, Any]


def read_sb3(archive: Archive) -> Sb3File:
    """Parse and check the zip's fields; refusals name what is unsupported and why."""
    source = archive.source
    missing = [name for name in MEMBERS if not archive.has(name)]
    if missing:
        raise ModelLoadError(f"{source} is not a Stable-Baselines3 zip: no member {missing[0]!r}")
    version = _version(archive)
    data = _data(archive)
    policy_class = _class_name(data, "policy_class", source)
    family = POLICY_CLASSES.get(policy_class)
    if family is None:
        why = REFUSED_CLASSES.get(policy_class, "custom policy classes are not supported")
        raise ModelLoadError(
            f"{source}: policy class {ascii(policy_class)[1:-1]} cannot be exported: {why} "
            f"(supported: MlpPolicy / MultiInputPolicy of PPO, A2C and DQN)"
        )
    if data.get("use_sde"):
        raise ModelLoadError(
            f"{source}: the policy uses gSDE (use_sde=True), which only exists for continuous "
            "actions; pgdeploy exports discrete policies"
        )
    kwargs = _policy_kwargs(data, source)
    activation = _activation(kwargs, family, source)
    spaces = {
        key: inert(_pickle(data, key, source), source=f"{source} {key}")
        for key in ("observation_space", "action_space")
    }
    algorithm = "DQN" if family == "dqn" else "PPO" if "clip_range" in data else "A2C"
    return Sb3File(
        version=version,
        policy_class=policy_class,
        family=family,
        algorithm=algorithm,
        activation=activation,
        observation_space=spaces["observation_space"],
        action_space=spaces["action_space"],
        policy_bytes=archive.read("policy.pth"),
        policy_kwargs=kwargs,
    )


def _version(archive: Archive) -> str:
    if not archive.has(VERSION_MEMBER):
        return "unknown"
    text = archive.read(VERSION_MEMBER, limit=64).decode("ascii", "replace").strip()
    if VERSION.fullmatch(text) is None:
        raise ModelLoadError(f"{archive.source}: SB3 version {ascii(text)[:40]} is not a version")
    if not text.startswith("2."):
        raise ModelLoadError(
            f"{archive.source} was saved by Stable-Baselines3 {text}; pgdeploy reads 2.x files "
            "(load and save it with SB3 2.x first)"
        )
    return text


def _data(archive: Archive) -> dict[str, Any]:
    raw = archive.read("data", limit=MAX_DATA_BYTES)
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=lambda name: None)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{archive.source}: member 'data' is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{archive.source}: member 'data' is not a JSON object")
    return data


def _pickle(data: dict[str, Any], key: str, source: str) -> Any:
    """The opcode tree of ``data[key][':serialized:']`` (never unpickled)."""
    entry = data.get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get(":serialized:"), str):
        raise ModelLoadError(f"{source}: field {key!r} is missing or not a serialized value")
    try:
        raw = base64.b64decode(entry[":serialized:"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ModelLoadError(f"{source}: field {key!r} is not base64") from exc
    return read_pickle(raw, source=f"{source} {key}")


def _class_name(data: dict[str, Any], key: str, source: str) -> str:
    value = _pickle(data, key, source)
    if not isinstance(value, Global):
        raise ModelLoadError(
            f"{source}: field {key!r} is not a class reference (its pickle builds "
            f"{_built(value)}); pgdeploy never unpickles"
        )
    return value.qualname


def _built(value: Any) -> str:
    """What a pickle's top value is, for messages: the global it calls, or its type."""
    if isinstance(value, Call) and isinstance(value.func, Global):
        return ascii(value.func.qualname)[1:-1]
    return type(value).__name__


def _policy_kwargs(data: dict[str, Any], source: str) -> dict[str, Any]:
    entry = data.get("policy_kwargs", {})
    if isinstance(entry, dict) and ":serialized:" not in entry:
        return entry  # plain JSON: SB3 stores JSON-serialisable values as they are
    value = _pickle(data, "policy_kwargs", source)
    if not isinstance(value, dict):
        raise ModelLoadError(
            f"{source}: policy_kwargs is not a plain dict (its pickle builds "
            f"{_built(value)}); pgdeploy never unpickles"
        )
    return value


def _activation(kwargs: dict[str, Any], family: str, source: str) -> str:
    extractor = kwargs.get("features_extractor_class")
    if extractor is not None:
        name = extractor.qualname if isinstance(extractor, Global) else ascii(extractor)
        if name not in FEATURE_EXTRACTORS:
            raise ModelLoadError(
                f"{source}: features extractor {ascii(name)[1:-1]} is not supported (custom "
                "extractors and CNNs run code pgdeploy cannot express; expected "
                "FlattenExtractor or CombinedExtractor)"
            )
    default = "tanh" if family == "actor_critic" else "relu"
    fn = kwargs.get("activation_fn")
    if fn is None:
        return default
    name = fn.qualname if isinstance(fn, Global) else str(fn)
    if name not in ACTIVATIONS:
        raise ModelLoadError(
            f"{source}: activation_fn {ascii(name)[1:-1]} is not supported (expected one of "
            f"{sorted(n.rsplit('.', 1)[1] for n in ACTIVATIONS)})"
        )
    return ACTIVATIONS[name]
