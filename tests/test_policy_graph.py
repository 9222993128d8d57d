"""build_model: the one graph per spec + PolicyNetwork, checked against the arithmetic.

Every activation and both heads (what the importers produce), normalisation with and
without its clip, one-hot and Dict-like layouts, several heads with a start: the graph
is valid ONNX that ``onnx`` writes back byte for byte, it computes the PolicyNetwork's
function (a numpy reference written from :mod:`pgdeploy.runtime.network`'s docstring),
the runtime loads exactly these bytes, and the variant without sampling nodes (the greedy
single-step path) gives the whole graph's values. Replaces the tests of the old pruning
of traced graphs: the variant is now built, not cut.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from pgdeploy.runtime import Agent, UniformStream, inverse_cdf
from pgdeploy.runtime.network import ACTIVATIONS, PolicyNetwork
from pgdeploy.runtime.policy_graph import build_model
from pgdeploy.spec import (
    GREEDY_OUTPUT,
    OUTPUT_NAMES,
    PROBS_OUTPUT,
    SAMPLED_OUTPUT,
    PolicySpec,
    spec_to_metadata,
)

BOX = PolicySpec("Box-v0", 3, 3, (-5.0, -5.0, -math.inf), (5.0, 5.0, math.inf))
MIXED = PolicySpec(
    "Mixed-v0",
    4,
    5,
    (-1.0, -1.0, 0.0, 0.0),
    (1.0, 1.0, 3.0, 1.0),
    observation_space={
        "type": "dict",
        "spaces": {
            "a": {"type": "box", "shape": [2], "low": [-1, -1], "high": [1, 1]},
            "b": {"type": "discrete", "n": 4, "start": 0},
            "c": {"type": "multi_binary", "shape": [1]},
        },
    },
    action_space={"type": "multi_discrete", "nvec": [2, 3], "start": [1, -1]},
)
ONEHOT_ONLY = PolicySpec(
    "Grid-v0",
    1,
    4,
    (0.0,),
    (15.0,),
    observation_space={"type": "discrete", "n": 16, "start": 0},
    action_space={"type": "discrete", "nvec": [4], "start": [2]},
)


def network(
    spec: PolicySpec, *, seed: int = 0, normalized: bool = True, **choices: Any
) -> PolicyNetwork:
    rng = np.random.default_rng(seed)
    layout = spec.obs_layout
    n_cont = len(layout.continuous_columns)
    widths = [layout.n_features, 16, 8, spec.action_layout.n_logits]
    layers = tuple(
        (
            rng.normal(0, 1, (out, inp)).astype(np.float32),
            rng.normal(0, 0.1, out).astype(np.float32),
        )
        for inp, out in itertools.pairwise(widths)
    )
    low = np.maximum(np.asarray(spec.obs_low)[list(layout.continuous_columns)], -1e6)
    high = np.minimum(np.asarray(spec.obs_high)[list(layout.continuous_columns)], 1e6)
    norm = normalized and n_cont > 0
    return PolicyNetwork(
        clip_low=low.astype(np.float32),
        clip_high=high.astype(np.float32),
        layers=layers,
        obs_mean=rng.normal(0, 1, n_cont).astype(np.float32) if norm else None,
        obs_std=rng.uniform(0.5, 2, n_cont).astype(np.float32) if norm else None,
        **choices,
    )


def reference(
    spec: PolicySpec, net: PolicyNetwork, obs: np.ndarray, uniforms: np.ndarray
) -> list[np.ndarray]:
    """The PolicyNetwork's function in numpy, float64 where float32 does not matter."""
    layout, actions = spec.obs_layout, spec.action_layout
    x = obs[:, list(layout.continuous_columns)].astype(np.float32)
    x = np.minimum(np.maximum(x, net.clip_low), net.clip_high)
    if net.obs_mean is not None and net.obs_std is not None:
        x = (x - net.obs_mean) / net.obs_std
        if net.norm_clip is not None:
            x = np.clip(x, -net.norm_clip, net.norm_clip)
    onehot = (obs[:, list(layout.onehot_columns)] == np.asarray(layout.onehot_values)).astype(
        np.float32
    )
    h = np.concatenate([x, onehot], axis=1).astype(np.float64)
    act = {
        "relu": lambda v: np.maximum(v, 0),
        "tanh": np.tanh,
        "elu": lambda v: np.where(v > 0, v, np.expm1(v)),
        "leaky_relu": lambda v: np.where(v > 0, v, net.activation_alpha * v),
        "silu": lambda v: v / (1 + np.exp(-v)),
        "gelu": lambda v: 0.5 * v * (1 + np.vectorize(math.erf)(v / math.sqrt(2))),
    }[net.activation]
    for i, (w, b) in enumerate(net.layers):
        h = h @ w.T.astype(np.float64) + b
        if i < len(net.layers) - 1:
            h = act(h)
    probs, greedy, sampled, offset = [], [], [], 0
    for k, (n, start) in enumerate(zip(actions.nvec, actions.start, strict=True)):
        z = h[:, offset : offset + n]
        if net.head == "softmax":
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
        else:
            p = np.eye(n)[z.argmax(axis=1)]
        probs.append(p)
        greedy.append(p.argmax(axis=1) + start)
        sampled.append(inverse_cdf(p.astype(np.float32), uniforms[:, k : k + 1]) + start)
        offset += n
    if actions.multi:
        return [np.concatenate(probs, 1), np.stack(greedy, 1), np.stack(sampled, 1)]
    return [probs[0], greedy[0], sampled[0]]


def rows(spec: PolicySpec, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = np.maximum(np.asarray(spec.obs_low), -3)
    high = np.minimum(np.asarray(spec.obs_high), 3)
    obs = rng.uniform(low, high, (n, spec.obs_dim))
    for column, (first, last) in spec.obs_layout.categorical_bounds().items():
        obs[:, column] = rng.integers(first, last + 1, n)
    return obs.astype(np.float32)


CASES = [
    *((BOX, {"activation": a}) for a in ACTIVATIONS),
    (BOX, {"activation": "leaky_relu", "activation_alpha": 0.2}),
    (BOX, {"head": "argmax"}),
    (BOX, {"norm_clip": 1.5}),
    (BOX, {"normalized": False}),
    (MIXED, {"activation": "tanh"}),
    (MIXED, {"head": "argmax"}),
    (ONEHOT_ONLY, {}),
    (ONEHOT_ONLY, {"head": "argmax", "activation": "gelu"}),
]


def _id(case: tuple[PolicySpec, dict[str, Any]]) -> str:
    return f"{case[0].env_id}-" + "-".join(f"{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_the_graph_computes_the_network_and_loads_as_itself(
    case: tuple[PolicySpec, dict[str, Any]], tmp_path: Path
) -> None:
    spec, choices = case
    normalized = choices.pop("normalized", True) if "normalized" in choices else True
    net = network(spec, normalized=normalized, **{k: v for k, v in choices.items()})
    net.check(spec)
    metadata = spec_to_metadata(spec, training={}, pgdeploy_version="0", network=net.description())
    data = build_model(spec, net, metadata)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert model.SerializeToString() == data  # the writer is protobuf's own encoding
    assert build_model(spec, net, metadata) == data  # deterministic
    obs = rows(spec, 256)
    uniforms = np.random.default_rng(2).random((256, spec.action_layout.n_branches), np.float32)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {"obs": obs, "uniform": uniforms})
    want = reference(spec, net, obs, uniforms)
    np.testing.assert_allclose(got[0], want[0], atol=2e-5)
    assert got[1].dtype == got[2].dtype == np.int64
    top2 = np.sort(want[0], axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4
    if not spec.action_layout.multi:
        np.testing.assert_array_equal(got[1][clear], want[1][clear])
        np.testing.assert_array_equal(got[2], want[2])
    else:
        assert got[1].shape == want[1].shape == (256, spec.action_layout.n_branches)
        np.testing.assert_array_equal(got[2], want[2])
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    agent = Agent.load(path, seed=0)
    assert agent.model.data == data
    np.testing.assert_array_equal(agent.run_graph(obs, uniforms)["probs"], got[0])


@pytest.mark.parametrize("spec", [BOX, MIXED, ONEHOT_ONLY], ids=lambda s: s.env_id)
@pytest.mark.parametrize("outputs", [(PROBS_OUTPUT, GREEDY_OUTPUT), (PROBS_OUTPUT, SAMPLED_OUTPUT)])
def test_each_variant_gives_the_whole_graphs_values(
    spec: PolicySpec, outputs: tuple[str, str]
) -> None:
    net = network(spec)
    whole = ort.InferenceSession(build_model(spec, net, {}), providers=["CPUExecutionProvider"])
    data = build_model(spec, net, {}, outputs=outputs)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    variant = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [o.name for o in variant.get_outputs()] == list(outputs)
    obs = rows(spec, 512, seed=3)
    uniforms = np.random.default_rng(4).random((512, spec.action_layout.n_branches), np.float32)
    feeds = {"obs": obs, "uniform": uniforms}
    names = {i.name for i in variant.get_inputs()}
    assert ("uniform" in names) == (SAMPLED_OUTPUT in outputs)
    got = variant.run(list(outputs), {k: v for k, v in feeds.items() if k in names})
    for value, want in zip(got, whole.run(list(outputs), feeds), strict=True):
        np.testing.assert_array_equal(value, want)


def test_unknown_output_sets_are_refused() -> None:
    with pytest.raises(ValueError, match="outputs must be one of"):
        build_model(BOX, network(BOX), {}, outputs=("probs", "logits"))


@pytest.mark.parametrize("deterministic", [False, True])
def test_the_single_step_path_acts_as_the_whole_graph(
    exported_model: Path, deterministic: bool
) -> None:
    agent = Agent.load(exported_model / "model.onnx", seed=4, deterministic=deterministic)
    assert agent.uses_fast_path
    obs = np.random.default_rng(2).uniform(-0.2, 0.2, size=(500, 4)).astype(np.float32)
    actions = [agent.act(row) for row in obs]
    probs = agent.probs(obs)  # the whole graph
    if deterministic:
        np.testing.assert_array_equal(actions, probs.argmax(axis=1))
    else:
        np.testing.assert_array_equal(actions, inverse_cdf(probs, UniformStream(4).take(500)))


def test_what_the_agent_was_loaded_with_is_fixed(exported_model: Path) -> None:
    """The single-step binding reads one action output, so the mode cannot change later."""
    agent = Agent.load(exported_model / "model.onnx", seed=0)
    for name, value in (("deterministic", True), ("model", None), ("checker", None)):
        with pytest.raises(AttributeError):
            setattr(agent, name, value)
    assert agent.deterministic is False


def test_widths_in_the_description_must_match_the_layers(tmp_path: Path) -> None:
    """The description is copied into the rebuilt bytes, so it is checked on its own."""
    from pgdeploy.errors import ModelLoadError

    net = network(BOX)
    description = {**net.description(), "widths": [99, 8, 3]}
    metadata = spec_to_metadata(BOX, training={}, pgdeploy_version="0", network=description)
    path = tmp_path / "model.onnx"
    path.write_bytes(build_model(BOX, net, metadata))
    with pytest.raises(ModelLoadError, match=r"description says widths \[99, 8, 3\]"):
        Agent.load(path)
    path.write_bytes(build_model(BOX, dataclasses.replace(net), {}))
    with pytest.raises(ModelLoadError, match="has no pgdeploy metadata"):
        Agent.load(path)
