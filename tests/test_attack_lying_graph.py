"""Attack 3: a graph that lies about its outputs is refused at load, or at the call.

A lie needs nodes pgdeploy does not write, so every lying graph here is refused at load
as "not a pgdeploy policy graph" (the structure is rebuilt from the metadata and compared
byte for byte). What weights alone can do -- overflow float32 to NaN probabilities -- is
caught at the call, on every path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from pgdeploy.errors import ModelSpecError, PolicyOutputError
from pgdeploy.runtime import Agent
from tests.attack_files import (
    constant,
    initializer,
    load_onnx,
    reroute,
    save_onnx,
    set_initializer,
)

NOT_OURS = "is not a pgdeploy policy graph: "


def test_sampled_action_plus_97_is_refused(exported_model: Path, tmp_path: Path) -> None:
    model = load_onnx(exported_model)
    reroute(
        model,
        "sampled_action",
        [
            constant("c97", np.array(97, np.int64)),
            helper.make_node("Add", ["raw", "c97"], ["sampled_action"]),
        ],
    )
    path = save_onnx(model, tmp_path / "model.onnx")
    with pytest.raises(ModelSpecError, match=NOT_OURS):
        Agent.load(path)


def test_greedy_that_is_not_the_argmax_is_refused(exported_model: Path, tmp_path: Path) -> None:
    model = load_onnx(exported_model)
    reroute(
        model,
        "greedy_action",
        [
            constant("one", np.array(1, np.int64)),
            helper.make_node("Sub", ["one", "raw"], ["greedy_action"]),
        ],
    )
    with pytest.raises(ModelSpecError, match=NOT_OURS):
        Agent.load(save_onnx(model, tmp_path / "model.onnx"))


def test_weight_1e38_nan_probabilities_are_refused_at_the_call(
    exported_model: Path, tmp_path: Path
) -> None:
    """Weights are data: a canonical file with huge weights loads, and its NaN rows raise."""
    model = load_onnx(exported_model)
    weight = initializer(model, "layer0.weight").copy()
    weight[:, :2] = 3e38  # two finite weights whose sum overflows: inf hidden units, NaN logits
    set_initializer(model, "layer0.weight", weight)
    agent = Agent.load(save_onnx(model, tmp_path / "model.onnx"), seed=0)
    obs = np.array([1.0, 1.0, 0, 0], np.float32)
    for call in (agent.act, agent.probs, lambda o: agent.act_batch(o[np.newaxis])):
        with pytest.raises(PolicyOutputError, match="probabilities are NaN"):
            call(obs)


def test_negative_probabilities_summing_to_one_are_refused(
    exported_model: Path, tmp_path: Path
) -> None:
    model = load_onnx(exported_model)
    # a confident policy (scaled logits), then probs = 2p - 0.5: rows sum to 1, some < 0
    set_initializer(model, "layer1.weight", initializer(model, "layer1.weight") * 100)
    reroute(
        model,
        "probs",
        [
            constant("two", np.array(2, np.float32)),
            constant("half", np.array(0.5, np.float32)),
            helper.make_node("Mul", ["raw", "two"], ["twice"]),
            helper.make_node("Sub", ["twice", "half"], ["probs"]),
        ],
    )
    with pytest.raises(ModelSpecError, match=NOT_OURS):
        Agent.load(save_onnx(model, tmp_path / "model.onnx"))


def test_constant_outputs_that_ignore_the_batch_are_refused(
    exported_model: Path, tmp_path: Path
) -> None:
    model = load_onnx(exported_model)
    del model.graph.node[:]
    model.graph.node.extend(
        [
            constant("probs", np.full((2, 2), 0.5, np.float32)),
            constant("greedy_action", np.zeros(2, np.int64)),
            constant("sampled_action", np.zeros(2, np.int64)),
        ]
    )
    with pytest.raises(ModelSpecError, match=NOT_OURS + r"graph: node 0 \('Constant'\)"):
        Agent.load(save_onnx(model, tmp_path / "model.onnx"))


def test_a_fixed_batch_of_two_is_refused(exported_model: Path, tmp_path: Path) -> None:
    model = load_onnx(exported_model)
    for value in model.graph.input:
        value.type.tensor_type.shape.dim[0].dim_value = 2
    with pytest.raises(ModelSpecError, match=NOT_OURS + "graph: input 0"):
        Agent.load(save_onnx(model, tmp_path / "model.onnx"))


def overflowing_beyond_the_probe(
    exported_model: Path, tmp_path: Path, *, deterministic: bool = False
) -> Agent:
    """A truthful graph (no clip on the velocity) whose logits overflow for |v| > ~1e4."""
    model = load_onnx(exported_model)
    high = initializer(model, "clip_high").copy()
    low = initializer(model, "clip_low").copy()
    high[1], low[1] = 3e38, -3e38
    set_initializer(model, "clip_high", high)
    set_initializer(model, "clip_low", low)
    weight = initializer(model, "layer0.weight").copy()
    weight[:, 1] = 1e34
    set_initializer(model, "layer0.weight", weight)
    return Agent.load(
        save_onnx(model, tmp_path / "model.onnx"), seed=0, deterministic=deterministic
    )


@pytest.mark.parametrize("deterministic", [False, True])
def test_nan_row_at_run_time_raises_instead_of_action_0(
    exported_model: Path, tmp_path: Path, deterministic: bool
) -> None:
    agent = overflowing_beyond_the_probe(exported_model, tmp_path, deterministic=deterministic)
    fine = np.array([0.0, 1.0, 0.0, 0.0], np.float32)
    assert agent.act(fine) in (0, 1)
    bad = np.array([0.0, 1e6, 0.0, 0.0], np.float32)
    with pytest.raises(PolicyOutputError, match="probabilities are NaN for this observation"):
        agent.act(bad)
    with pytest.raises(PolicyOutputError, match="probabilities are NaN"):
        agent.act_batch(np.stack([fine, bad, fine]))
    with pytest.raises(PolicyOutputError, match="probabilities are NaN"):
        agent.probs(bad)


def lie_on_one_observation(model: onnx.ModelProto, output: str, trigger: float) -> None:
    """``output`` + 5 where the first observation value is exactly ``trigger``.

    It takes nodes pgdeploy does not write, so the file never loads.
    """
    reroute(
        model,
        output,
        [
            constant("col0", np.array(0, np.int64)),
            constant("trigger", np.array(trigger, np.float32)),
            constant("five", np.array(5, np.int64)),
            helper.make_node("Gather", ["obs", "col0"], ["first"], axis=1),
            helper.make_node("Equal", ["first", "trigger"], ["hit"]),
            helper.make_node("Cast", ["hit"], ["hit_int"], to=TensorProto.INT64),
            helper.make_node("Mul", ["hit_int", "five"], ["lie"]),
            helper.make_node("Add", ["raw", "lie"], [output]),
        ],
    )


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("fast_path", [True, False])
def test_an_action_lie_on_one_observation_is_refused_at_load_and_checked_at_run_time(
    exported_model: Path, tmp_path: Path, deterministic: bool, fast_path: bool
) -> None:
    model = load_onnx(exported_model)
    output = "greedy_action" if deterministic else "sampled_action"
    lie_on_one_observation(model, output, 1.25)
    path = save_onnx(model, tmp_path / "model.onnx")
    with pytest.raises(ModelSpecError, match=NOT_OURS):
        Agent.load(path, seed=0, deterministic=deterministic, fast_path=fast_path)
    with pytest.raises(PolicyOutputError, match=r"returned action 5, expected 0..1"):
        from pgdeploy.runtime.output_checks import check_batch_outputs

        check_batch_outputs(np.array([0, 5]), np.full((2, 2), 0.5, np.float32), ((0, 2),))


def test_constant_of_type_int_outputs_declared_float_is_refused(
    exported_model: Path, tmp_path: Path
) -> None:
    model = load_onnx(exported_model)
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    reroute(model, "probs", [helper.make_node("Cast", ["raw"], ["probs"], to=TensorProto.DOUBLE)])
    with pytest.raises(ModelSpecError, match=NOT_OURS):
        Agent.load(save_onnx(model, tmp_path / "model.onnx"))


def test_run_time_check_follows_action_heads() -> None:
    """Heads with a start (Discrete(n, start)) and several heads (MultiDiscrete)."""
    from pgdeploy.runtime.output_checks import check_batch_outputs

    probs = np.full((2, 5), 0.5, np.float32)
    check_batch_outputs(np.array([3, 4]), probs[:, :2], ((3, 2),))
    with pytest.raises(PolicyOutputError, match=r"returned action 2, expected 3..4"):
        check_batch_outputs(np.array([3, 2]), probs[:, :2], ((3, 2),))
    heads = ((0, 2), (1, 3))
    check_batch_outputs(np.array([[1, 3], [0, 1]]), probs, heads)
    with pytest.raises(PolicyOutputError, match=r"returned action \[1 4\], expected 0..1, 1..3"):
        check_batch_outputs(np.array([[0, 1], [1, 4]]), probs, heads)
