"""Hostile SB3 zips, VecNormalize pickles and state dicts: every one is refused in one line
(or, where the hostile part is a field pgdeploy never reads, imported), and no pickle's
side effect ever happens."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pgdeploy.errors import ModelLoadError, PgdeployError
from pgdeploy.importers import archive, load_foreign
from pgdeploy.importers.vecnormalize import read_vecnormalize

from .sb3_models import make_model, save


class SideEffect:
    """Unpickling this runs ``os.system`` (touches a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class ExecEffect:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def write_zip(path: Path, files: dict[str, bytes], *, compress: bool = True) -> Path:
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return path


@pytest.fixture(scope="module")
def good_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sb3")
    return save(make_model("PPO", "box", "discrete", "shared", "tanh"), folder)


def with_data(
    files: dict[str, bytes], change: Callable[[dict[str, Any]], None]
) -> dict[str, bytes]:
    data = json.loads(files["data"])
    change(data)
    return {**files, "data": json.dumps(data).encode()}


def poison_every_field(data: dict[str, Any], payload: bytes) -> None:
    text = base64.b64encode(payload).decode()
    for value in list(data.values()):
        if isinstance(value, dict) and ":serialized:" in value:
            value[":serialized:"] = text
    data["policy_kwargs"] = {":type:": "<class 'dict'>", ":serialized:": text}


def one_line_refusal(call: Callable[[], Any], match: str | None = None) -> str:
    with pytest.raises(PgdeployError, match=match) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message
    return message


@pytest.mark.parametrize("effect", [SideEffect, ExecEffect])
def test_pickles_in_every_serialized_field_never_run(
    effect: type, good_zip: Path, tmp_path: Path
) -> None:
    from pgdeploy.inspect import describe

    marker = tmp_path / "marker"
    payload = pickle.dumps(effect(marker))
    files = with_data(members(good_zip), lambda d: poison_every_field(d, payload))
    hostile = write_zip(tmp_path / "hostile.zip", files)
    message = one_line_refusal(lambda: load_foreign(hostile), "never unpickles|without running")
    assert "system" in message or "exec" in message  # the refused global is named
    info = describe(hostile)  # inspect reports what it can and names the refusal
    assert info["kind"] == "stable-baselines3"
    assert not marker.exists()


def test_hostile_pickles_in_fields_pgdeploy_does_not_read_are_ignored(
    good_zip: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    text = base64.b64encode(pickle.dumps(SideEffect(marker))).decode()

    def poison_unused(data: dict[str, Any]) -> None:
        for key in ("lr_schedule", "clip_range"):
            data[key][":serialized:"] = text

    hostile = write_zip(tmp_path / "h.zip", with_data(members(good_zip), poison_unused))
    assert load_foreign(hostile).provenance["algorithm"] == "PPO"
    assert not marker.exists()


def test_hostile_vecnormalize_pickle_never_runs(tmp_path: Path, good_zip: Path) -> None:
    marker = tmp_path / "marker"
    for i, value in enumerate(
        [
            SideEffect(marker),
            {"obs_rms": SideEffect(marker)},
            [np.zeros(3), ExecEffect(marker)],
        ]
    ):
        path = tmp_path / f"vec{i}.pkl"
        path.write_bytes(pickle.dumps(value))
        one_line_refusal(lambda p=path: read_vecnormalize(p), "not an inert type|not a pickled")
        one_line_refusal(lambda p=path: load_foreign(good_zip, vecnormalize=p))
    assert not marker.exists()


def test_hostile_policy_pth_never_runs(good_zip: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    buffer = io.BytesIO()
    torch.save({"action_net.weight": SideEffect(marker)}, buffer)
    files = {**members(good_zip), "policy.pth": buffer.getvalue()}
    hostile = write_zip(tmp_path / "h.zip", files)
    one_line_refusal(lambda: load_foreign(hostile), "weights_only")
    assert not marker.exists()


def _state_dict_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def malformed_zips(good: dict[str, bytes]) -> dict[str, tuple[dict[str, bytes], str]]:
    """name -> (members, what the refusal must mention)."""
    state = torch.load(io.BytesIO(good["policy.pth"]), weights_only=True)
    cases: dict[str, tuple[dict[str, bytes], str]] = {}
    for bad_name in ("../evil", "/abs/path", "a/../../b", "dir\\x", "caf\u00e9", "a" * 300, ""):
        cases[f"name {bad_name[:12]!r}"] = ({**good, bad_name: b"x"}, "member named")
    cases["no data"] = ({k: v for k, v in good.items() if k != "data"}, "neither")
    cases["no policy.pth"] = ({k: v for k, v in good.items() if k != "policy.pth"}, "neither")
    cases["data not JSON"] = ({**good, "data": b"\x80not json"}, "not JSON")
    cases["data a list"] = ({**good, "data": b"[1, 2]"}, "not a JSON object")
    cases["SB3 1.x"] = ({**good, "_stable_baselines3_version": b"1.8.0"}, "2.x")
    cases["version junk"] = ({**good, "_stable_baselines3_version": b"\x1b[31m"}, "version")
    cases["no policy class"] = (with_data(good, lambda d: d.pop("policy_class")), "policy_class")
    cases["base64 junk"] = (
        with_data(good, lambda d: d["observation_space"].update({":serialized:": "@@@"})),
        "base64",
    )
    cases["truncated pickle"] = (
        with_data(
            good,
            lambda d: d["action_space"].update(
                {":serialized:": d["action_space"][":serialized:"][:40]}
            ),
        ),
        "pickle",
    )
    ints = {k: (v * 100).to(torch.int64) for k, v in state.items()}
    cases["int weights"] = ({**good, "policy.pth": _state_dict_bytes(ints)}, "not float")
    nan = dict(state)
    nan["action_net.weight"] = nan["action_net.weight"] * float("nan")
    cases["NaN weights"] = ({**good, "policy.pth": _state_dict_bytes(nan)}, "NaN")
    narrow = dict(state)
    narrow["action_net.weight"] = narrow["action_net.weight"][:, :5]
    cases["widths do not chain"] = ({**good, "policy.pth": _state_dict_bytes(narrow)}, "inputs")
    wide = dict(state)
    wide["action_net.weight"] = torch.zeros(7, state["action_net.weight"].shape[1])
    wide["action_net.bias"] = torch.zeros(7)
    cases["too many outputs"] = ({**good, "policy.pth": _state_dict_bytes(wide)}, "outputs")
    bias = dict(state)
    bias["action_net.bias"] = torch.zeros(2, 2)
    cases["bias shape"] = ({**good, "policy.pth": _state_dict_bytes(bias)}, "action_net")
    gap = {k: v for k, v in state.items() if not k.startswith("mlp_extractor.policy_net.0")}
    cases["missing layer"] = ({**good, "policy.pth": _state_dict_bytes(gap)}, "indices")
    extra = {**state, "features_extractor.linear.weight": torch.zeros(3, 3)}
    cases["custom extractor weights"] = ({**good, "policy.pth": _state_dict_bytes(extra)}, "custom")
    cases["policy.pth a tensor"] = (
        {**good, "policy.pth": _state_dict_bytes(torch.zeros(3))},  # type: ignore[arg-type]
        "not a state dict",
    )
    cases["policy.pth junk"] = ({**good, "policy.pth": b"junk"}, "weights_only")
    return cases


def test_a_family_of_malformed_zips_is_refused_in_one_line(good_zip: Path, tmp_path: Path) -> None:
    good = members(good_zip)
    cases = malformed_zips(good)
    assert len(cases) > 20
    for i, (name, (files, match)) in enumerate(cases.items()):
        path = write_zip(tmp_path / f"{i}.zip", files)
        try:
            one_line_refusal(lambda p=path: load_foreign(p), match)
        except BaseException as exc:
            raise AssertionError(f"case {name}: {exc}") from exc


def test_too_many_members_zip_bomb_and_too_big_are_refused(
    good_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = members(good_zip)
    many = {**good, **{f"pad/{i}": b"" for i in range(archive.MAX_MEMBERS + 1)}}
    one_line_refusal(lambda: load_foreign(write_zip(tmp_path / "many.zip", many)), "members")
    bomb = {**good, "data": good["data"] + b" " * (20 << 20)}  # 20 MB of spaces: ~1000:1
    one_line_refusal(lambda: load_foreign(write_zip(tmp_path / "bomb.zip", bomb)), "zip bomb")
    monkeypatch.setattr(archive, "MAX_ARCHIVE_BYTES", 1000)
    one_line_refusal(lambda: load_foreign(good_zip), "more than 1000")
    monkeypatch.setattr(archive, "MAX_ARCHIVE_BYTES", 1 << 30)
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 100)
    one_line_refusal(lambda: load_foreign(good_zip), "inflates to")
    not_zip = tmp_path / "nz.zip"
    not_zip.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    one_line_refusal(lambda: load_foreign(not_zip), "neither")


def test_the_malformed_cases_can_fail(good_zip: Path, tmp_path: Path) -> None:
    """The family's refusals are real: the unmodified members import fine."""
    path = write_zip(tmp_path / "same.zip", members(good_zip))
    assert load_foreign(path).spec.n_actions == 3


class Custom:
    def __init__(self) -> None:
        self.x = 1


def test_the_inert_reader_refuses_every_other_name_by_name(tmp_path: Path) -> None:
    from pgdeploy.importers.inert import inert
    from pgdeploy.importers.pickle_reader import read_pickle

    marker = tmp_path / "marker"
    for value, name in [
        (SideEffect(marker), "system"),
        (ExecEffect(marker), "exec"),
        ({"stats": [1, 2, Custom()]}, "Custom"),
        ({"f": os.path.join}, "join"),
    ]:
        for protocol in (2, 4, 5):
            tree = read_pickle(pickle.dumps(value, protocol=protocol), source="x")
            with pytest.raises(ModelLoadError, match=f"refers to .*{name}.*not an inert type"):
                inert(tree, source="x")
    ok = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.float64(2.5), "c": [1, "s"]}
    for protocol in (2, 4, 5):
        back = inert(read_pickle(pickle.dumps(ok, protocol=protocol), source="x"), source="x")
        np.testing.assert_array_equal(back["a"], ok["a"])
        assert back["a"].dtype == np.float32 and back["b"] == 2.5 and back["c"] == [1, "s"]
    assert not marker.exists()
