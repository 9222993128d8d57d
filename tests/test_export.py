"""Export writes verified, self-describing files, or nothing at all."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from pgdeploy.errors import ExportVerificationError, WriteError
from pgdeploy.export import OPSET, export_checkpoint, onnx_target, source
from pgdeploy.spec import FORMAT_VERSION
from pgdeploy.training.checkpoint import load_checkpoint
from tests.helpers import perturbed_graph

STANDALONE = """
import json, sys
import numpy as np
kind, path, obs_path = sys.argv[1:]
obs = np.load(obs_path)
if kind == "onnx":
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    probs = session.run(["probs"], {"obs": obs, "uniform": np.zeros((len(obs), 1), np.float32)})[0]
else:
    import torch
    module = torch.jit.load(path)
    probs = module(torch.from_numpy(obs), torch.zeros(len(obs), 1))[0].detach().numpy()
np.save(obs_path + ".probs.npy", probs)
"""


@pytest.mark.parametrize("kind, name", [("onnx", "model.onnx"), ("jit", "model.torchscript.pt")])
def test_files_alone_reproduce_pytorch_probs(exported_model: Path, kind: str, name: str) -> None:
    """A program with no pgdeploy code gets the PyTorch policy's probabilities."""
    import torch

    policy = load_checkpoint(exported_model / "model.pt").build_policy()
    obs = np.random.default_rng(0).normal(0, 1, size=(2048, 4)).astype(np.float32)
    obs_path = exported_model / f"obs-{kind}.npy"
    np.save(obs_path, obs)
    subprocess.run(
        [sys.executable, "-c", STANDALONE, kind, str(exported_model / name), str(obs_path)],
        check=True,
        cwd="/",  # not the repo: pgdeploy must not be importable by accident
    )
    probs = np.load(str(obs_path) + ".probs.npy")
    with torch.no_grad():
        reference = policy.probs(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(probs, reference, rtol=0, atol=1e-6)


def test_onnx_file_describes_itself(exported_model: Path) -> None:
    model = onnx.load(str(exported_model / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    spec = json.loads(props["pgdeploy.spec"])
    assert spec["env_id"] == "CartPole-v1"
    assert (spec["obs_dim"], spec["n_actions"]) == (4, 2)
    assert json.loads(props["pgdeploy.format_version"]) == FORMAT_VERSION
    assert "solved" in json.loads(props["pgdeploy.training"])
    assert model.opset_import[0].version == OPSET
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param  # dynamic batch axis


def test_export_refuses_and_leaves_no_file_when_parity_fails(
    exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(exported_model / "model.pt", tmp_path / "model.pt")
    monkeypatch.setattr(source, "network_from_policy", perturbed_graph(layer=-1, index=(0, 0)))
    with pytest.raises(ExportVerificationError, match=r"onnx export differs .*nothing was written"):
        export_checkpoint(tmp_path / "model.pt", n_random=64, n_on_policy=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_export_into_out_dir_reports_what_it_verified(exported_model: Path, tmp_path: Path) -> None:
    report = export_checkpoint(
        exported_model / "model.pt", out_dir=tmp_path / "out", n_random=256, n_on_policy=256
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "model.onnx",
        "model.torchscript.pt",
    ]
    for check in (report.onnx, report.torchscript):
        assert check.n_observations == 512
        assert check.max_abs_diff <= 1e-6
        assert check.passed_actions


def test_export_runs_on_one_torch_thread_and_restores_the_callers(
    exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    seen: list[int] = []
    reference_outputs = source.reference_outputs

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(torch.get_num_threads())
        return reference_outputs(*args, **kwargs)

    monkeypatch.setattr(source, "reference_outputs", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        export_checkpoint(
            exported_model / "model.pt", out_dir=tmp_path, n_random=64, n_on_policy=64
        )
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def old_export(folder: Path, exported_model: Path) -> dict[str, bytes]:
    shutil.copy(exported_model / "model.pt", folder / "model.pt")
    (folder / "model.onnx").write_bytes(b"the previous onnx")
    (folder / "model.torchscript.pt").write_bytes(b"the previous torchscript")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_torchscript_failure_leaves_the_folder_exactly_as_it_was(
    exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = old_export(tmp_path, exported_model)
    real_compare = onnx_target.compare

    def compare(fmt: str, *args: Any) -> Any:
        check = real_compare(fmt, *args)
        failed = dataclasses.replace(check, max_abs_diff=0.5, max_tolerance_ratio=2.0)
        return failed if fmt == "torchscript" else check

    monkeypatch.setattr(onnx_target, "compare", compare)
    with pytest.raises(ExportVerificationError, match=r"torchscript export differs .*left as it"):
        export_checkpoint(tmp_path / "model.pt", n_random=64, n_on_policy=64)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp files either


def test_failed_second_rename_puts_the_first_file_back(
    exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = old_export(tmp_path, exported_model)
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == "model.torchscript.pt":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(WriteError, match=r"cannot write .*model.torchscript.pt: Input/output"):
        export_checkpoint(tmp_path / "model.pt", n_random=64, n_on_policy=64)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
