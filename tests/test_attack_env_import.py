"""Attack 1: a file naming ``module:EnvId`` must not make pgdeploy import the module.

Each test puts ``evilmod.py`` (writes a MARKER file when imported) beside the model, on
``sys.path`` as ``python -m pgdeploy`` in that folder would, and runs export, train
--resume and run on a file whose env id is ``evilmod:CartPole-v1``. The opt-in paths
show the marker does appear when the user allows it, so the check can fail.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgdeploy.cli import main
from pgdeploy.envs.making import env_id_from_file, make_env_from_file
from pgdeploy.errors import EnvModuleRefusedError
from pgdeploy.export import export_checkpoint
from pgdeploy.training.checkpoint import load_checkpoint
from pgdeploy.training.launch import resolve_config
from tests.attack_files import (
    checkpoint_dict,
    load_onnx,
    marker_module,
    save_checkpoint_dict,
    save_onnx,
    set_spec,
)

EVIL = "evilmod:CartPole-v1"


@pytest.fixture
def evil_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("evilmod", None)


def evil_checkpoint(exported_model: Path, folder: Path) -> Path:
    data = checkpoint_dict(exported_model)
    data["config"]["env_id"] = EVIL
    data["spec"]["env_id"] = EVIL
    return save_checkpoint_dict(data, folder / "model.pt")


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), prog_name="pgdeploy")
    return result.exit_code, result.output


def test_the_rule() -> None:
    assert env_id_from_file("CartPole-v1", source="f") == "CartPole-v1"
    assert env_id_from_file(EVIL, source="f", user_env_id=EVIL) == EVIL
    assert env_id_from_file(EVIL, source="f", trust_env_module=True) == EVIL
    with pytest.raises(EnvModuleRefusedError, match=r"f names env 'evilmod:CartPole-v1'.*--env"):
        env_id_from_file(EVIL, source="f")


def test_registered_ids_whose_entry_point_names_a_module_are_made() -> None:
    # CartPole's entry point is "gymnasium.envs.classic_control.cartpole:CartPoleEnv"; the
    # user's own registration (tests.tiny_envs, imported by this test) works the same way.
    import tests.tiny_envs  # noqa: F401

    for env_id, module in (("CartPole-v1", "gymnasium.envs"), ("Guess-v0", "tests.tiny_envs")):
        env = make_env_from_file(env_id, source="f")
        try:
            assert env.spec is not None and env.spec.id == env_id
            assert type(env.unwrapped).__module__.startswith(module)
        finally:
            env.close()


def test_export_never_imports_and_says_so(exported_model: Path, evil_folder: Path) -> None:
    marker = marker_module(evil_folder, "evilmod")
    path = evil_checkpoint(exported_model, evil_folder)
    report = export_checkpoint(path, n_random=64, n_on_policy=64)
    assert not marker.exists()
    assert report.n_on_policy == 0 and report.n_random == 128
    (notice,) = report.notices
    assert "on-policy verification skipped" in notice and "evilmod" in notice
    code, out = cli("export", str(path))
    assert code == 0 and "notice: on-policy verification skipped" in out
    assert not marker.exists()


def test_export_imports_only_when_the_user_opts_in(exported_model: Path, evil_folder: Path) -> None:
    marker = marker_module(evil_folder, "evilmod")
    path = evil_checkpoint(exported_model, evil_folder)
    report = export_checkpoint(path, n_random=64, n_on_policy=64, trust_env_module=True)
    assert marker.exists() and report.notices == () and report.n_on_policy == 64


def test_export_uses_the_env_the_user_names(exported_model: Path, evil_folder: Path) -> None:
    marker = marker_module(evil_folder, "evilmod")
    path = evil_checkpoint(exported_model, evil_folder)
    report = export_checkpoint(path, n_random=64, n_on_policy=64, env_id="CartPole-v1")
    assert not marker.exists() and report.n_on_policy == 64 and report.notices == ()


def test_resume_refuses(exported_model: Path, evil_folder: Path) -> None:
    marker = marker_module(evil_folder, "evilmod")
    path = evil_checkpoint(exported_model, evil_folder)
    code, out = cli("train", "--resume", str(path), "--out", str(evil_folder / "run"), "-q")
    assert code == 1
    assert "names env 'evilmod:CartPole-v1', which would import the Python module" in out
    assert len(out.strip().splitlines()) == 1
    with pytest.raises(EnvModuleRefusedError, match="evilmod"):
        resolve_config(resume=load_checkpoint(path))
    assert not marker.exists()
    # naming the env is the user's decision: resuming on CartPole-v1 imports nothing
    resolved = resolve_config({"env_id": "CartPole-v1"}, resume=load_checkpoint(path))
    assert resolved.config.env_id == "CartPole-v1"
    assert not marker.exists()


def test_run_refuses(exported_model: Path, evil_folder: Path) -> None:
    marker = marker_module(evil_folder, "evilmod")
    model = load_onnx(exported_model)
    set_spec(model, env_id=EVIL)
    path = save_onnx(model, evil_folder / "model.onnx")
    code, out = cli("run", str(path), "--episodes", "1")
    assert code == 1 and "would import the Python module 'evilmod'" in out
    assert not marker.exists()
    code, out = cli("run", str(path), "--episodes", "1", "--env", "CartPole-v1")
    assert code == 0 and "mean return" in out
    assert not marker.exists()
    code, out = cli("run", str(path), "--episodes", "1", "--trust-env-module")
    assert code == 0 and marker.exists()
