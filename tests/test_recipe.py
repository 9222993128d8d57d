"""pgdeploy/envs/recipe.py: a run's env made again from what it recorded (id, env keywords,
wrapper), what the user typed, and when a module named in a file may be imported; and the
commands that share it (export's on-policy verification, run)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import tests.tiny_envs  # noqa: F401 - registers WideGuess-v0 and Mission-v0
from pgdeploy.envs.making import describe_vectorization, make_vector_env
from pgdeploy.envs.recipe import EnvRecipe, recorded_env, run_env
from pgdeploy.envs.wrappers import without_text
from pgdeploy.errors import EnvModuleRefusedError, UnsupportedEnvError
from pgdeploy.training.config import TrainConfig
from pgdeploy.training.train import train

OWN = "pgdeploy.envs.wrappers:without_text"

#: (recorded id, recorded wrapper, typed id, typed wrapper, trust) -> (id, wrapper) made.
ALLOWED = [
    ("CartPole-v1", "", None, None, False, ("CartPole-v1", "")),
    ("CartPole-v1", "mod:wrap", None, "mod:wrap", False, ("CartPole-v1", "mod:wrap")),
    ("CartPole-v1", "mod:wrap", None, "", False, ("CartPole-v1", "")),
    ("CartPole-v1", "mod:wrap", None, "other:wrap", False, ("CartPole-v1", "other:wrap")),
    ("CartPole-v1", "mod:wrap", None, None, True, ("CartPole-v1", "mod:wrap")),
    ("mod:Env-v0", "mod:wrap", "mod:Env-v0", None, False, ("mod:Env-v0", "mod:wrap")),
    ("mod:Env-v0", "", None, None, True, ("mod:Env-v0", "")),
    ("mod:Env-v0", "", "Other-v0", None, False, ("Other-v0", "")),
    ("CartPole-v1", OWN, None, None, False, ("CartPole-v1", OWN)),
]
#: The same, refused: (..., the flag the one-line error names).
REFUSED = [
    ("CartPole-v1", "mod:wrap", None, None, False, "pass --wrapper mod:wrap"),
    ("CartPole-v1", "mod:wrap", "CartPole-v1", None, False, "pass --wrapper mod:wrap"),
    ("mod:Env-v0", "other:wrap", "mod:Env-v0", None, False, "pass --wrapper other:wrap"),
    ("mod:Env-v0", "mod.sub:wrap", "mod:Env-v0", None, False, "pass --wrapper mod.sub:wrap"),
    ("mod:Env-v0", "", None, None, False, "Pass --env mod:Env-v0"),
    ("mod:Env-v0", "", None, "mod:wrap", False, "Pass --env mod:Env-v0"),
    ("CartPole-v1", "pgdeploy.export.exporter:export_checkpoint", None, None, False, "--wrapper"),
]


@pytest.mark.parametrize(("rec_id", "rec_wrap", "env_id", "wrapper", "trust", "made"), ALLOWED)
def test_what_the_user_confirmed_is_used(
    rec_id: str,
    rec_wrap: str,
    env_id: str | None,
    wrapper: str | None,
    trust: bool,
    made: tuple[str, str],
) -> None:
    recorded = EnvRecipe(rec_id, {"size": 3}, rec_wrap)
    chosen = run_env(recorded, source="f", env_id=env_id, wrapper=wrapper, trust_env_module=trust)
    assert (chosen.env_id, chosen.wrapper) == made
    assert chosen.env_kwargs == {"size": 3}  # keywords are data: they always apply
    assert "mod" not in sys.modules  # deciding imports nothing


@pytest.mark.parametrize(("rec_id", "rec_wrap", "env_id", "wrapper", "trust", "flag"), REFUSED)
def test_a_module_the_user_did_not_type_is_refused_naming_the_flag(
    rec_id: str, rec_wrap: str, env_id: str | None, wrapper: str | None, trust: bool, flag: str
) -> None:
    with pytest.raises(EnvModuleRefusedError, match=f"{flag.replace('.', '[.]')}") as info:
        run_env(
            EnvRecipe(rec_id, {}, rec_wrap),
            source="f",
            env_id=env_id,
            wrapper=wrapper,
            trust_env_module=trust,
        )
    assert "\n" not in str(info.value)
    assert "mod" not in sys.modules


@pytest.mark.parametrize(
    ("typed", "made"), [(None, {"size": 3}), ({"size": 5}, {"size": 5}), ({}, {})]
)
def test_typed_env_kwargs_replace_the_recorded_ones(
    typed: dict[str, Any] | None, made: dict[str, Any]
) -> None:
    chosen = run_env(EnvRecipe("CartPole-v1", {"size": 3}), source="f", env_kwargs=typed)
    assert chosen.env_kwargs == made


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"wrapper": "os:system; rm"}, "records a wrapper that is not module:callable"),
        ({"wrapper": 3}, "records a wrapper that is not module:callable"),
        ({"env_kwargs": {"a b": 1}}, "is not a Python identifier"),
        ({"env_kwargs": {"x": float("nan")}}, "must be a string, finite number"),
        ({"env_kwargs": [1, 2]}, "must be a mapping"),
    ],
)
def test_a_files_record_is_checked_as_data(config: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        recorded_env("CartPole-v1", config, source="model.onnx")


def test_a_files_record_round_trips() -> None:
    config = TrainConfig(env_kwargs={"width": 3}, wrapper=OWN).to_dict()
    assert recorded_env("Guess-v0", config, source="f") == EnvRecipe("Guess-v0", {"width": 3}, OWN)
    assert recorded_env("Guess-v0", None, source="f") == EnvRecipe("Guess-v0")


def test_without_text_keeps_the_numbers_and_refuses_what_it_cannot_filter() -> None:
    env = without_text(EnvRecipe("tests.tiny_envs:Mission-v0").make())
    try:
        obs, _ = env.reset(seed=0)
        assert sorted(obs) == ["pos"]
    finally:
        env.close()
    with pytest.raises(UnsupportedEnvError, match="drops members of a Dict observation, got Box"):
        without_text(EnvRecipe("CartPole-v1").make())


@pytest.mark.parametrize(
    ("kwargs", "wrapper", "expected"),
    [({}, "", "native (CartPoleVectorEnv)"), ({"sutton_barto_reward": True}, "", "sync")],
)
def test_native_vector_envs_take_no_env_keywords(
    kwargs: dict[str, Any], wrapper: str, expected: str
) -> None:
    """A native vector env's keywords are its own (ALE's takes no obs_type): envs with
    keywords are made one by one."""
    envs = make_vector_env("CartPole-v1", 2, vectorization="native", env_kwargs=kwargs)
    try:
        assert describe_vectorization(envs) == expected
    finally:
        envs.close()


def _trained(tmp_path: Path, **fields: Any) -> Path:
    config = TrainConfig(total_timesteps=300, num_envs=4, seed=0, stop_on_solve=False, **fields)
    train(config, out_dir=tmp_path / "run")
    return tmp_path / "run" / "model.pt"


def test_export_verifies_on_policy_in_the_env_as_recorded(tmp_path: Path) -> None:
    """A policy trained with width=3 is verified on WideGuess with width=3; the env made by
    id alone (2 columns) is not the policy's env and says so."""
    from pgdeploy.export import export_c, export_checkpoint

    model = _trained(tmp_path, env_id="tests.tiny_envs:WideGuess-v0", env_kwargs={"width": 3})
    env = "tests.tiny_envs:WideGuess-v0"
    report = export_checkpoint(model, env_id=env, n_random=256, n_on_policy=512)
    assert (report.n_on_policy, report.notices) == (512, ())
    c = export_c(model, env_id=env, n_random=256, n_on_policy=512, verify=False)
    assert c.notices == () or all("footprint" in n for n in c.notices)
    with pytest.raises(UnsupportedEnvError, match=r"box \(2,\), but the policy expects box \(3,\)"):
        export_checkpoint(model, env_id=env, env_kwargs={}, n_random=256, n_on_policy=512)


def test_export_uses_a_recorded_wrapper_once_confirmed(tmp_path: Path) -> None:
    from pgdeploy.export import export_checkpoint

    env = "tests.tiny_envs:Mission-v0"
    model = _trained(tmp_path, env_id=env, wrapper=OWN)
    # pgdeploy's own wrapper needs no confirmation; the module env id does
    report = export_checkpoint(model, env_id=env, n_random=256, n_on_policy=512)
    assert (report.n_on_policy, report.notices) == (512, ())
    quiet = export_checkpoint(model, n_random=256, n_on_policy=512)
    assert quiet.n_on_policy == 0
    assert "Pass --env tests.tiny_envs:Mission-v0" in quiet.notices[0]
    with pytest.raises(UnsupportedEnvError, match="text cannot be encoded for an MLP"):
        export_checkpoint(model, env_id=env, wrapper="", n_random=256, n_on_policy=512)


def test_run_plays_the_recorded_env(tmp_path: Path) -> None:
    from pgdeploy.envs.play import play_model
    from pgdeploy.export import export_checkpoint

    env = "tests.tiny_envs:WideGuess-v0"
    model = _trained(tmp_path, env_id=env, env_kwargs={"width": 3})
    export_checkpoint(model, env_id=env, n_random=256, n_on_policy=256)
    onnx = model.with_suffix(".onnx")
    outcome = play_model(onnx, env_id=env, episodes=2)
    assert len(outcome.report.episodes) == 2
    assert np.isfinite(outcome.report.mean_return)
    with pytest.raises(UnsupportedEnvError, match=r"WideGuess-v0, env_kwargs width=4 has obs"):
        play_model(onnx, env_id=env, env_kwargs={"width": 4}, episodes=1)


#: Wrapper names outside the grammar, as a user might type them or a file might carry them.
BAD_WRAPPERS = [
    "bad name:wrap",
    "mod:wrap ",
    "mod :wrap",
    "mod",
    "mod:",
    ":wrap",
    "mod:wrap:extra",
    "1mod:wrap",
    "mod..sub:wrap",
    "../mod:wrap",
    "mod/sub:wrap",
    "mod:wrap()",
    "mod:wrap\n",
    "x:y\x1b[2J",
    "m\u00f6d:wrap",
    "mod:wr\u202eap",
    "mod\x00:wrap",
    "os:system;rm",
]


@pytest.mark.parametrize("name", BAD_WRAPPERS)
def test_a_wrapper_outside_the_grammar_never_reaches_importlib(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Typed (export, run, make_env) or recorded, a wrapper name outside module:callable is
    refused before any import is attempted, by the one function that imports wrappers."""
    import pgdeploy.envs.wrapping as wrapping
    from pgdeploy.envs.making import make_env
    from pgdeploy.errors import PgdeployError

    imported: list[str] = []  # what the wrapper loader asked importlib for (gym's own imports run)
    monkeypatch.setattr(wrapping, "importlib", SimpleNamespace(import_module=imported.append))
    with pytest.raises(UnsupportedEnvError, match="is not module:callable"):
        wrapping.wrappers(name)
    with pytest.raises(UnsupportedEnvError, match="is not module:callable"):
        make_env("CartPole-v1", wrapper=name)
    typed = run_env(EnvRecipe("CartPole-v1"), source="test", wrapper=name)
    with pytest.raises(UnsupportedEnvError, match="is not module:callable"):
        typed.make()
    with pytest.raises(UnsupportedEnvError, match="not module:callable"):
        recorded_env("CartPole-v1", {"wrapper": name}, source="the file")
    with pytest.raises(PgdeployError, match="wrapper"):
        TrainConfig(wrapper=name)
    assert imported == []
