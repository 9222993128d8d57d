"""SB3 and CleanRL files to C, float32 and int8, through the one export pipeline.

Each export is verified at export against the source's actor rebuilt in PyTorch; the tests
then hold the written C, compiled again here, to SB3's (or the CleanRL module's) own
outputs on fresh observations, independently of the pipeline's own check.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.errors import ExportVerificationError, UnsupportedExportError
from pgdeploy.export import export_foreign, run_export
from pgdeploy.export.c.compile import CHarness
from pgdeploy.export.c.target import CTarget
from pgdeploy.export.onnx_target import OnnxTarget
from pgdeploy.export.source import imported_source
from pgdeploy.importers import load_foreign

from .sb3_models import SpaceEnv, make_model, sample_batch, save, sb3_greedy, sb3_probs
from .test_importers_refusals import cleanrl_dqn

sb3 = pytest.importorskip("stable_baselines3")
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc, gcc or clang) on PATH")


def written_c(folder: Path, spec: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probs, greedy (n, heads)) of the C export in ``folder``, compiled here."""
    assert CC is not None
    heads = spec.action_layout.n_branches
    harness = CHarness.build(CC, folder, spec.obs_dim, spec.n_actions, heads, name="check")
    uniforms = torch.zeros(len(rows), heads)
    probs, greedy, _ = harness(torch.from_numpy(rows), uniforms)
    return probs.numpy(), greedy.numpy().reshape(len(rows), heads)


def sb3_actions(model: Any, batch: Any) -> np.ndarray:
    """SB3's greedy action per head, (n, heads): q_net's argmax for DQN."""
    if isinstance(model, sb3.DQN):
        return sb3_greedy(model, batch)[:, None]
    probs, columns, offset = sb3_probs(model, batch), [], 0
    for size in getattr(model.action_space, "nvec", [getattr(model.action_space, "n", 0)]):
        columns.append(probs[:, offset : offset + int(size)].argmax(axis=1))
        offset += int(size)
    return np.stack(columns, axis=1)


FLOAT_CASES = [
    pytest.param(
        ("A2C", "box2d", "multidiscrete", "separate", "relu"),
        id="A2C-multidiscrete",
        marks=pytest.mark.slow,
    ),
    pytest.param(("DQN", "box", "discrete", "shared", "relu"), id="DQN-argmax"),
    pytest.param(
        ("PPO", "box", "discrete", "shared", "tanh"), id="PPO-tanh", marks=pytest.mark.slow
    ),
    pytest.param(
        ("PPO", "dict", "multidiscrete", "separate", "gelu"),
        id="PPO-dict-gelu",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        ("DQN", "multidiscrete", "discrete", "shared", "elu"),
        id="DQN-onehot-elu",
        marks=pytest.mark.slow,
    ),
]


@needs_cc
@pytest.mark.parametrize("case", FLOAT_CASES)
def test_sb3_zip_to_float_c_computes_sb3s_policy(case: tuple[str, ...], tmp_path: Path) -> None:
    model = make_model(*case)
    path = save(model, tmp_path)
    out = tmp_path / "c"
    report = export_foreign(path, target="c", out_dir=out, n_random=512, n_on_policy=0)
    assert report.check is not None and report.check.passed
    assert report.check.max_tolerance_ratio < 0.1 and len(report.builds) == 6
    assert report.origin == f"{case[0]} from stable-baselines3 {sb3.__version__}"
    assert report.footprint is not None and report.footprint.flash > 0
    assert sorted(p.name for p in out.iterdir()) == ["policy.c", "policy.h"]
    batch = sample_batch(model.observation_space, 1024, seed=9)
    spec = load_foreign(path).spec
    probs, greedy = written_c(out, spec, spec.obs_layout.flatten_batch(batch))
    np.testing.assert_array_equal(greedy, sb3_actions(model, batch))
    if case[0] != "DQN":
        assert np.abs(probs - sb3_probs(model, batch)).max() < 1e-5


INT8_CASES = [
    pytest.param(
        ("PPO", "box", "discrete", "shared", "relu"), "int8", id="PPO-int8", marks=pytest.mark.slow
    ),
    pytest.param(("DQN", "box", "discrete", "shared", "relu"), "int8-integer", id="DQN-integer"),
    pytest.param(
        ("A2C", "box2d", "multidiscrete", "separate", "relu"),
        "int8",
        id="A2C-multidiscrete-int8",
        marks=pytest.mark.slow,
    ),
]


@needs_cc
@pytest.mark.parametrize(("case", "mode"), INT8_CASES)
def test_sb3_zip_to_int8_c_agrees_with_sb3(
    case: tuple[str, ...], mode: str, tmp_path: Path
) -> None:
    """Random sharp weights (not a trained policy) put many rows near a decision boundary,
    hence the 90 % threshold here; a trained policy is held to the default 99.5 %."""
    model = make_model(*case)
    path = save(model, tmp_path)
    out = tmp_path / mode
    report = export_foreign(
        path, target="c", quantize=mode, min_agreement=0.9, out_dir=out, n_random=1024
    )
    q = report.quantization
    assert q is not None and report.check is None and q.mode == mode
    assert q.agreement_random >= 0.9 and len(report.builds) == 6
    assert 0 < q.max_abs_dp <= 1
    assert f'#define PGDEPLOY_QUANTIZE "{mode}"' in (out / "policy.h").read_text()
    batch = sample_batch(model.observation_space, 2048, seed=9)
    spec = load_foreign(path).spec
    _, greedy = written_c(out, spec, spec.obs_layout.flatten_batch(batch))
    same = (greedy == sb3_actions(model, batch)).all(axis=1).mean()
    assert same >= 0.9


def _vecnormalized(folder: Path) -> tuple[Any, Any, Path, Path]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from .sb3_models import OBS_SPACES

    space = OBS_SPACES["box"]()
    venv = VecNormalize(
        DummyVecEnv([lambda: SpaceEnv(space, OBS_SPACES["discrete"]())]), clip_obs=1.5
    )
    model = PPO("MlpPolicy", venv, n_steps=64, seed=0, device="cpu")
    model.learn(128)  # statistics that are not 0 / 1
    model.save(folder / "m.zip")
    venv.save(str(folder / "vec.pkl"))
    return model, venv, folder / "m.zip", folder / "vec.pkl"


@needs_cc
@pytest.mark.slow
def test_vecnormalize_statistics_reach_the_c(tmp_path: Path) -> None:
    model, venv, path, vec = _vecnormalized(tmp_path)
    out = tmp_path / "c"
    report = export_foreign(path, target="c", vecnormalize=vec, out_dir=out, n_random=1024)
    assert report.check is not None and report.check.passed
    assert "obs_mean" in (out / "policy.c").read_text()
    raw = sample_batch(model.observation_space, 1024, seed=2) * 4  # beyond clip_obs, often
    spec = load_foreign(path, vecnormalize=vec).spec
    probs, _ = written_c(out, spec, raw.astype(np.float32))
    assert np.abs(probs - sb3_probs(model, venv.normalize_obs(raw))).max() < 1e-5


@needs_cc
@pytest.mark.parametrize("mode", [pytest.param("float32", marks=pytest.mark.slow), "int8-integer"])
def test_cleanrl_dqn_to_c_with_on_policy_rows_and_episodes(mode: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = cleanrl_dqn(4, 2)
    path = tmp_path / "dqn.cleanrl_model"
    torch.save(module.state_dict(), path)
    out = tmp_path / mode
    report = export_foreign(
        path,
        target="c",
        quantize=mode,
        env_id="CartPole-v1",
        out_dir=out,
        n_random=512,
        n_on_policy=512,
        episodes=5,
        min_agreement=0.9,
    )
    assert (report.n_random, report.n_on_policy, report.notices) == (512, 512, ())
    if mode == "int8-integer":
        q = report.quantization
        assert q is not None and q.agreement_on_policy is not None and q.episodes == 5
        assert q.mean_return_float is not None and q.mean_return_quantized is not None
    else:
        assert report.check is not None and report.check.passed
    obs = np.random.default_rng(0).normal(size=(1024, 4)).astype(np.float32)
    spec = load_foreign(path, env_id="CartPole-v1").spec
    _, greedy = written_c(out, spec, obs)
    with torch.no_grad():
        want = module.network(torch.from_numpy(obs)).argmax(1).numpy()
    agreement = (greedy[:, 0] == want).mean()
    assert agreement == 1.0 if mode == "float32" else agreement >= 0.9


@needs_cc
def test_int8_below_the_threshold_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    path = save(make_model("A2C", "box2d", "multidiscrete", "separate", "relu"), tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ExportVerificationError, match=r"below the required 100\.00 %.*nothing"):
        export_foreign(
            path, target="c", quantize="int8", min_agreement=1.0, out_dir=out, n_random=1024
        )
    assert list(out.iterdir()) == []


def test_int8_integer_of_a_tanh_policy_is_refused_before_any_work(tmp_path: Path) -> None:
    path = save(make_model("PPO", "box", "discrete", "shared", "tanh"), tmp_path)
    with pytest.raises(UnsupportedExportError, match="int8-integer supports ReLU networks only"):
        export_foreign(path, target="c", quantize="int8-integer", out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["onnx", pytest.param("c", marks=needs_cc)])
def test_an_import_one_weight_off_is_refused_by_the_grounded_tolerance(
    target: str, tmp_path: Path
) -> None:
    """The imported network (what the files are built from) with one bias off by 1e-3,
    the reference (SB3's actor rebuilt in PyTorch) untouched: both targets refuse."""
    imported = load_foreign(save(make_model("PPO", "box", "discrete", "shared", "relu"), tmp_path))
    layers = [(w, b.copy()) for w, b in imported.network.layers]
    layers[-1][1][0] += np.float32(1e-3)
    broken = dataclasses.replace(
        imported, network=dataclasses.replace(imported.network, layers=tuple(layers))
    )
    out = tmp_path / "out"
    source = imported_source(broken, folder=out, n_random=512, n_on_policy=0)
    chosen = OnnxTarget(1e-9) if target == "onnx" else CTarget()
    with pytest.raises(
        ExportVerificationError, match=r"differs from the stable-baselines3 policy rebuilt"
    ):
        run_export(source, chosen, out)
    assert list(out.iterdir()) == []
    healthy = imported_source(imported, folder=out, n_random=512, n_on_policy=0)
    run_export(healthy, chosen, out)  # the same pipeline passes the unbroken network


@needs_cc
@pytest.mark.slow
def test_cli_exports_a_trained_sb3_zip_to_int8_c(tmp_path: Path) -> None:
    model = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=256, batch_size=64, seed=0, device="cpu")
    model.learn(2048)
    model.save(tmp_path / "ppo.zip")
    args = ["export", str(tmp_path / "ppo.zip"), "--target", "c", "--quantize", "int8"]
    result = CliRunner().invoke(main, [*args, "--env", "CartPole-v1", "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"c: {tmp_path / 'policy.h'} and {tmp_path / 'policy.c'} (PPO")
    assert "4096 random and 4096 on-policy observations; int8: greedy agreement" in lines[0]
    assert "mean return over 100 greedy episodes" in lines[0]
    assert lines[-1].startswith("footprint of policy.o, ")
