"""The ONNX graph alone reproduces the Agent's actions: no pgdeploy code on that side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pgdeploy.runtime import Agent

# What a C#/C++/JS app does: read the contract from metadata, feed obs + uniform, read outputs.
FOREIGN_APP = r"""
import json, sys
import numpy as np
import onnxruntime as ort

model, data = sys.argv[1], json.load(open(sys.argv[2]))
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
inputs = json.loads(meta["pgdeploy.inputs"])
outputs = json.loads(meta["pgdeploy.outputs"])
obs = np.asarray(data["obs"], np.float32)
uniform = np.asarray(data["uniforms"], np.float32).reshape(-1, 1)
values = session.run(outputs, {inputs[0]: obs, inputs[1]: uniform})
result = {name: value.tolist() for name, value in zip(outputs, values)}
assert "pgdeploy" not in sys.modules
print(json.dumps(result))
"""


@pytest.fixture
def onnx_path(exported_model: Path) -> Path:
    return exported_model / "model.onnx"


def test_graph_alone_gives_the_agents_actions(onnx_path: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    obs = (rng.uniform(-1, 1, size=(256, 4)) * [2.4, 2.0, 0.2, 2.0]).astype(np.float32)
    agent = Agent.load(onnx_path, seed=11)
    expected_sampled = np.array([agent.act(row) for row in obs])
    uniforms = np.random.default_rng(11).random(len(obs), dtype=np.float32)
    greedy_agent = Agent.load(onnx_path, deterministic=True)
    expected_greedy = greedy_agent.act_batch(obs)

    data = tmp_path / "input.json"
    data.write_text(json.dumps({"obs": obs.tolist(), "uniforms": uniforms.tolist()}))
    script = tmp_path / "foreign_app.py"
    script.write_text(FOREIGN_APP)
    done = subprocess.run(
        [sys.executable, "-I", str(script), str(onnx_path), str(data)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    result = json.loads(done.stdout)
    np.testing.assert_array_equal(result["sampled_action"], expected_sampled)
    np.testing.assert_array_equal(result["greedy_action"], expected_greedy)
    np.testing.assert_allclose(result["probs"], agent.probs(obs), atol=1e-6)
    # Not a vacuous match: a half-trained policy samples both actions.
    assert len(set(expected_sampled.tolist())) == 2
