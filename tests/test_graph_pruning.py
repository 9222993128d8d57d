"""The graph cut down to some outputs computes them exactly as the whole graph does.

The agent's single-step path runs such a cut (see pgdeploy.runtime.graph_pruning), so
the cut must keep every value bit for bit, pass the loader's own checks, and give way to
the whole graph whenever it cannot stand in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from pgdeploy.runtime.graph_pruning import prune_to_outputs

import pgdeploy.runtime.model_file as model_file
from pgdeploy.runtime import Agent, UniformStream, inverse_cdf
from pgdeploy.runtime.onnx_graph import read_graph
from pgdeploy.spec import GREEDY_OUTPUT, OUTPUT_NAMES, PROBS_OUTPUT, SAMPLED_OUTPUT

SUBSETS = [
    [PROBS_OUTPUT, SAMPLED_OUTPUT],
    [PROBS_OUTPUT, GREEDY_OUTPUT],
    [PROBS_OUTPUT],
    [SAMPLED_OUTPUT],
    list(OUTPUT_NAMES),
]


def assert_prunes_exactly(
    path: Path, rows: np.ndarray, uniforms: np.ndarray, *, sorted_nodes: bool = True
) -> None:
    """Every output subset of the graph at ``path`` matches the whole graph on ``rows``.

    ``onnx.checker`` also passes each cut, unless the file's nodes are not ``sorted_nodes``
    (the checker refuses such a graph, the file's own included).
    """
    data = path.read_bytes()
    whole = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    feeds = {"obs": rows, "uniform": uniforms}
    for outputs in SUBSETS:
        pruned = prune_to_outputs(data, outputs)
        if sorted_nodes:
            onnx.checker.check_model(onnx.load_from_string(pruned), full_check=True)
        read_graph(pruned, source="the pruned graph")  # the loader's limits and op list
        session = ort.InferenceSession(pruned, providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == outputs
        names = {i.name for i in session.get_inputs()}
        got = session.run(outputs, {k: v for k, v in feeds.items() if k in names})
        for name, value, want in zip(outputs, got, whole.run(outputs, feeds), strict=True):
            np.testing.assert_array_equal(value, want, err_msg=f"{outputs}: {name}")


@pytest.mark.parametrize("fixture", ["exported_model", "exported_normalized_model"])
def test_every_output_subset_matches_the_whole_graph(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    path = Path(request.getfixturevalue(fixture)) / "model.onnx"
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 2, size=(4096, 4)).astype(np.float32)
    assert_prunes_exactly(path, rows, rng.random((4096, 1), dtype=np.float32))


def test_each_cut_drops_what_its_outputs_do_not_need(exported_model: Path) -> None:
    data = (exported_model / "model.onnx").read_bytes()
    whole = onnx.load_from_string(data)

    def ops(outputs: list[str]) -> list[str]:
        return [
            n.op_type for n in onnx.load_from_string(prune_to_outputs(data, outputs)).graph.node
        ]

    every = [n.op_type for n in whole.graph.node]
    assert ops([PROBS_OUTPUT, SAMPLED_OUTPUT]) == [op for op in every if op != "ArgMax"]
    greedy = onnx.load_from_string(prune_to_outputs(data, [PROBS_OUTPUT, GREEDY_OUTPUT]))
    assert [n.op_type for n in greedy.graph.node][-1] == "ArgMax"
    assert {"MatMul", "LessOrEqual", "Cast", "ReduceSum"}.isdisjoint(
        n.op_type for n in greedy.graph.node
    )
    assert [i.name for i in greedy.graph.input] == ["obs"]  # no uniform to feed
    assert {i.name for i in greedy.graph.initializer} < {i.name for i in whole.graph.initializer}
    assert greedy.metadata_props == whole.metadata_props
    assert ops(list(OUTPUT_NAMES)) == every


def test_an_output_the_graph_lacks_is_a_value_error(exported_model: Path) -> None:
    data = (exported_model / "model.onnx").read_bytes()
    with pytest.raises(ValueError, match=r"no output \['logits'\]"):
        prune_to_outputs(data, [PROBS_OUTPUT, "logits"])


@pytest.mark.parametrize("deterministic", [False, True])
def test_the_agent_acts_on_the_cut_graph_exactly_as_on_the_whole(
    exported_model: Path, deterministic: bool
) -> None:
    agent = Agent.load(exported_model / "model.onnx", seed=4, deterministic=deterministic)
    assert agent.uses_fast_path and agent.runs_pruned_graph
    obs = np.random.default_rng(2).uniform(-0.2, 0.2, size=(500, 4)).astype(np.float32)
    actions = [agent.act(row) for row in obs]
    probs = agent.probs(obs)  # the whole graph
    if deterministic:
        np.testing.assert_array_equal(actions, probs.argmax(axis=1))
    else:
        np.testing.assert_array_equal(actions, inverse_cdf(probs, UniformStream(4).take(500)))


@pytest.mark.parametrize("cut", [b"not a graph", "another model"])
def test_a_cut_that_cannot_stand_in_gives_way_to_the_whole_graph(
    exported_model: Path,
    exported_normalized_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    cut: bytes | str,
) -> None:
    """A cut that fails to build, or returns other values on the probe batch, is not used."""
    other = (exported_normalized_model / "model.onnx").read_bytes()
    replacement = other if cut == "another model" else cut
    monkeypatch.setattr(model_file, "prune_to_outputs", lambda data, outputs: replacement)
    agent = Agent.load(exported_model / "model.onnx", seed=4)
    assert agent.uses_fast_path and not agent.runs_pruned_graph
    obs = np.random.default_rng(2).uniform(-0.2, 0.2, size=(200, 4)).astype(np.float32)
    actions = [agent.act(row) for row in obs]
    np.testing.assert_array_equal(
        actions, inverse_cdf(agent.probs(obs), UniformStream(4).take(200))
    )


def test_what_the_agent_was_loaded_with_is_fixed(exported_model: Path) -> None:
    """The single-step graph is cut to one action output, so the mode cannot change later
    (assigning it used to leave act_batch sampling at u = 0: a silently wrong action); the
    act closure also holds the model's buffers and the checker's bounds."""
    agent = Agent.load(exported_model / "model.onnx", seed=0)
    for name, value in (("deterministic", True), ("model", None), ("checker", None)):
        with pytest.raises(AttributeError):
            setattr(agent, name, value)
    assert agent.deterministic is False


def test_large_graphs_run_whole(exported_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above PRUNE_MAX_ELEMENTS weights the file's bytes are not kept and nothing is cut."""
    monkeypatch.setattr(model_file, "PRUNE_MAX_ELEMENTS", 1000)  # CartPole's MLP has ~900
    small = Agent.load(exported_model / "model.onnx")
    monkeypatch.setattr(model_file, "PRUNE_MAX_ELEMENTS", 100)
    large = Agent.load(exported_model / "model.onnx")
    assert small.runs_pruned_graph and small.model.data
    assert not large.runs_pruned_graph and large.model.data == b""
    assert large.uses_fast_path


def test_nodes_out_of_topological_order_are_pruned_alike(
    exported_model: Path, tmp_path: Path
) -> None:
    """onnxruntime sorts a graph whose nodes are listed out of order; the cut must too."""
    model = onnx.load(str(exported_model / "model.onnx"))
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    rng = np.random.default_rng(3)
    rows = rng.normal(0, 2, size=(512, 4)).astype(np.float32)
    uniforms = rng.random((512, 1), dtype=np.float32)
    assert_prunes_exactly(path, rows, uniforms, sorted_nodes=False)
    assert Agent.load(path, seed=0).runs_pruned_graph
