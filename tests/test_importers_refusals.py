"""What the importers refuse, each named with why, in one line; and CleanRL state dicts."""

from __future__ import annotations

import base64
import json
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from pgdeploy.errors import ModelLoadError
from pgdeploy.importers import foreign_kind, load_foreign
from pgdeploy.importers.network_numpy import network_probs

from .sb3_models import SpaceEnv, make_model, save

sb3 = pytest.importorskip("stable_baselines3")


def one_line(path: Path, match: str, **kwargs: Any) -> None:
    with pytest.raises(ModelLoadError, match=match) as info:
        load_foreign(path, **kwargs)
    assert "\n" not in str(info.value)


def class_pickle(module: str, name: str) -> str:
    """A protocol-4 pickle of a bare global reference, as cloudpickle writes a class."""
    body = b"\x8c" + bytes([len(module)]) + module.encode()
    body += b"\x8c" + bytes([len(name)]) + name.encode() + b"\x93."
    raw = b"\x80\x04" + body
    return base64.b64encode(raw).decode()


def with_policy_class(source: Path, target: Path, module: str, name: str) -> Path:
    with zipfile.ZipFile(source) as z:
        files = {n: z.read(n) for n in z.namelist()}
    data = json.loads(files["data"])
    data["policy_class"][":serialized:"] = class_pickle(module, name)
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(target, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    return target


@pytest.mark.parametrize(
    ("module", "name", "why"),
    [
        ("sb3_contrib.common.recurrent.policies", "RecurrentActorCriticPolicy", "RecurrentPPO"),
        ("sb3_contrib.common.maskable.policies", "MaskableActorCriticPolicy", "MaskablePPO"),
        ("stable_baselines3.sac.policies", "SACPolicy", "continuous"),
        ("stable_baselines3.td3.policies", "TD3Policy", "continuous"),
        ("stable_baselines3.common.policies", "ActorCriticCnnPolicy", "CnnPolicy"),
        ("my_project.policies", "FancyPolicy", "custom policy classes"),
    ],
)
def test_policy_classes_are_refused_by_name_and_reason(
    module: str, name: str, why: str, tmp_path: Path
) -> None:
    good = save(make_model("PPO", "box", "discrete", "shared", "tanh"), tmp_path)
    path = with_policy_class(good, tmp_path / "x.zip", module, name)
    one_line(path, f"{name}.*{why}")


def test_cnn_policy_and_image_observations_are_refused(tmp_path: Path) -> None:
    image = spaces.Box(0, 255, (36, 36, 3), np.uint8)
    env = SpaceEnv(image, spaces.Discrete(2))
    cnn = sb3.PPO("CnnPolicy", env, n_steps=8, batch_size=8, device="cpu")
    one_line(save(cnn, tmp_path, "cnn.zip"), "ActorCriticCnnPolicy.*CNN")
    mlp = sb3.PPO("MlpPolicy", env, n_steps=8, batch_size=8, device="cpu")
    one_line(save(mlp, tmp_path, "mlp.zip"), "image observations")


def test_continuous_actions_and_gsde_are_refused(tmp_path: Path) -> None:
    ppo = sb3.PPO("MlpPolicy", "Pendulum-v1", n_steps=8, batch_size=8, device="cpu")
    one_line(save(ppo, tmp_path, "box.zip"), r"continuous \(Box\) actions")
    sde = sb3.PPO("MlpPolicy", "Pendulum-v1", n_steps=8, batch_size=8, use_sde=True, device="cpu")
    one_line(save(sde, tmp_path, "sde.zip"), "gSDE")
    sac = sb3.SAC("MlpPolicy", "Pendulum-v1", device="cpu", buffer_size=10)
    one_line(save(sac, tmp_path, "sac.zip"), "SACPolicy.*continuous")


class Extractor(sb3.common.torch_layers.BaseFeaturesExtractor):  # type: ignore[misc]
    def __init__(self, observation_space: gym.Space[Any]) -> None:
        super().__init__(observation_space, features_dim=4)
        self.linear = nn.Linear(5, 4)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(obs))


def test_custom_feature_extractor_is_refused(tmp_path: Path) -> None:
    env = SpaceEnv(spaces.Box(-1, 1, (5,), np.float32), spaces.Discrete(2))
    model = sb3.PPO(
        "MlpPolicy",
        env,
        n_steps=8,
        batch_size=8,
        device="cpu",
        policy_kwargs={"features_extractor_class": Extractor},
    )
    one_line(save(model, tmp_path), "features extractor .*Extractor.* not supported")


def test_unsupported_activation_and_spaces_with_start_are_refused(tmp_path: Path) -> None:
    model = make_model("PPO", "box", "discrete", "shared", "relu")
    model.policy_kwargs["activation_fn"] = nn.Hardswish  # what save() records
    one_line(save(model, tmp_path, "hs.zip"), "activation_fn .*Hardswish")
    env = SpaceEnv(spaces.Discrete(4, start=2), spaces.Discrete(2))
    shifted = sb3.A2C("MlpPolicy", env, n_steps=8, device="cpu")
    one_line(save(shifted, tmp_path, "start.zip"), "start=2")


# --- CleanRL ------------------------------------------------------------------------------


def cleanrl_dqn(obs_dim: int, n: int) -> nn.Module:
    """dqn.py's QNetwork."""
    module = nn.Module()
    module.network = nn.Sequential(
        nn.Linear(obs_dim, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, n)
    )
    return module


def cleanrl_ppo(obs_dim: int, n: int) -> nn.Module:
    """ppo.py's Agent (critic and actor)."""
    module = nn.Module()
    module.critic = nn.Sequential(
        nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)
    )
    module.actor = nn.Sequential(
        nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, n)
    )
    return module


@pytest.mark.parametrize("kind", ["dqn", "ppo"])
def test_cleanrl_state_dicts_match_their_networks(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = (cleanrl_dqn if kind == "dqn" else cleanrl_ppo)(4, 2)
    path = tmp_path / f"{kind}.cleanrl_model"
    torch.save(module.state_dict(), path)
    assert foreign_kind(path) == "cleanrl"
    one_line(path, "--env")
    imported = load_foreign(path, env_id="CartPole-v1")
    obs = np.random.default_rng(0).normal(size=(4096, 4)).astype(np.float32) * 2
    ours = network_probs(imported.spec, imported.network, obs)
    with torch.no_grad():
        if kind == "dqn":
            want = module.network(torch.from_numpy(obs)).argmax(1).numpy()
            assert (ours.argmax(1) == want).all()
        else:
            logits = module.actor(torch.from_numpy(obs))
            want = torch.distributions.Categorical(logits=logits).probs.numpy()
            assert np.abs(ours - want).max() < 2e-6
    assert imported.provenance["source"] == "cleanrl"
    one_line(path, "CleanRL's scripts feed a flat Box", env_id="FrozenLake-v1")


def test_a_pgdeploy_checkpoint_is_not_foreign(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"format_version": 1, "state_dict": {}}, path)
    assert foreign_kind(path) is None
    other = tmp_path / "other.pt"
    torch.save({"something.weight": torch.zeros(2, 2)}, other)
    one_line(other, "not a CleanRL", env_id="CartPole-v1")
    (tmp_path / "text.zip").write_text("not a zip")
    assert foreign_kind(tmp_path / "text.zip") is None
