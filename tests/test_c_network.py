"""The C target computes :mod:`pgdeploy.runtime.network`'s function, for every choice in it.

Two classes of check:

- every activation of ``ACTIVATIONS`` and both heads of ``HEADS``, over a structured
  observation (clipped, normalised, norm-clipped and one-hot columns) and one or two
  action heads with starts, against a numpy reference written from network.py's
  docstring (so any producer of a PolicyNetwork, such as an importer, gets working C);
- the constant-column family of issue 23 (a column fixed at a non-zero constant, tiny and
  huge variances, large means under ``normalize_obs``) exports to C through the full
  verified path within the grounded tolerance, with a ratio <= 0.1.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from pgdeploy.export import export_policy_c
from pgdeploy.export.c.compile import CHarness
from pgdeploy.export.c.source import c_sources
from pgdeploy.export.observations import VerificationPlan
from pgdeploy.runtime.network import ACTIVATIONS, HEADS, PolicyNetwork
from pgdeploy.runtime.sampling import inverse_cdf
from pgdeploy.spec import PolicySpec
from pgdeploy.training.policy import SoftmaxPolicy

CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc, gcc or clang) on PATH")
F32 = np.float32

#: Box(1), Discrete(3), Box(2), Discrete(2, start=3): columns 0, 2, 3 continuous.
TUPLE_OBS = {
    "type": "tuple",
    "spaces": [
        {"type": "box", "shape": [1]},
        {"type": "discrete", "n": 3},
        {"type": "box", "shape": [2]},
        {"type": "discrete", "n": 2, "start": 3},
    ],
}


def _activation(name: str, v: npt.NDArray[np.float32], alpha: float) -> npt.NDArray[np.float32]:
    """network.py's activations in float32 numpy (gelu's erf in float64, then rounded)."""
    with np.errstate(over="ignore"):
        if name == "relu":
            return np.where(v < 0, F32(0), v)
        if name == "tanh":
            return np.tanh(v)
        if name == "elu":
            return np.where(v > 0, v, np.expm1(v))
        if name == "leaky_relu":
            return np.where(v > 0, v, v * F32(alpha))
        if name == "silu":
            return (v / (F32(1) + np.exp(-v))).astype(F32)
        if name == "gelu":
            erf = np.vectorize(math.erf)(v.astype(np.float64) / math.sqrt(2))
            return (v.astype(np.float64) * 0.5 * (1 + erf)).astype(F32)
    raise AssertionError(name)


def numpy_reference(
    spec: PolicySpec, net: PolicyNetwork, obs: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(logits, probs) of network.py's docstring, step by step, in float32."""
    layout = spec.obs_layout
    x = obs[:, list(layout.continuous_columns)]
    x = np.minimum(np.maximum(x, net.clip_low), net.clip_high)
    if net.obs_mean is not None and net.obs_std is not None:
        x = (x - net.obs_mean) / net.obs_std
        if net.norm_clip is not None:
            x = np.clip(x, -F32(net.norm_clip), F32(net.norm_clip))
    onehot = (obs[:, list(layout.onehot_columns)] == np.asarray(layout.onehot_values, F32)).astype(
        F32
    )
    h = np.concatenate([x, onehot], axis=1).astype(F32)
    for i, (weight, bias) in enumerate(net.layers):
        h = (h @ weight.T + bias).astype(F32)
        if i + 1 < len(net.layers):
            h = _activation(net.activation, h, net.activation_alpha)
    probs = np.empty_like(h)
    offset = 0
    for n in spec.action_layout.nvec:
        z = h[:, offset : offset + n]
        if net.head == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            probs[:, offset : offset + n] = e / e.sum(axis=1, keepdims=True)
        else:
            probs[:, offset : offset + n] = np.eye(n, dtype=F32)[z.argmax(axis=1)]
        offset += n
    return h, probs


def _network(
    spec: PolicySpec, activation: str, head: str, rng: np.random.Generator, **kwargs: Any
) -> PolicyNetwork:
    n_cont, widths = len(spec.obs_layout.continuous_columns), [spec.obs_layout.n_features, 16, 8]
    layers = []
    for n_in, n_out in zip(widths, [*widths[1:], spec.n_actions], strict=True):
        weight = rng.normal(0, 1.5 / math.sqrt(n_in), (n_out, n_in)).astype(F32)
        layers.append((weight, rng.normal(0, 0.3, n_out).astype(F32)))
    return PolicyNetwork(
        clip_low=np.full(n_cont, -3, F32),
        clip_high=np.full(n_cont, 2.5, F32),
        layers=tuple(layers),
        activation=activation,
        activation_alpha=0.2,
        head=head,
        **kwargs,
    )


def _run_c(
    spec: PolicySpec, net: PolicyNetwork, folder: Path, obs: Any, uniforms: Any
) -> tuple[npt.NDArray[Any], ...]:
    for name, data in c_sources(spec, net).files().items():
        (folder / name).write_bytes(data)
    assert CC is not None
    heads = spec.action_layout.n_branches
    harness = CHarness.build(CC, folder, spec.obs_dim, spec.n_actions, heads)
    out = harness(torch.from_numpy(obs), torch.from_numpy(uniforms))
    return tuple(t.numpy().reshape(len(obs), -1) for t in out)


def _spec(nvec: tuple[int, ...], start: tuple[int, ...]) -> PolicySpec:
    kind = "discrete" if len(nvec) == 1 else "multi_discrete"
    return PolicySpec(
        "tests.tiny_envs:Encoded-v0",
        5,
        sum(nvec),
        obs_low=(-math.inf,) * 5,
        obs_high=(math.inf,) * 5,
        observation_space=TUPLE_OBS,
        action_space={"type": kind, "nvec": list(nvec), "start": list(start)},
    )


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_and_head_matches_the_numpy_reference(
    tmp_path: Path, activation: str, head: str
) -> None:
    rng = np.random.default_rng(ACTIVATIONS.index(activation) * 10 + HEADS.index(head))
    multi = (activation + head).__len__() % 2 == 0  # half the cases with two heads
    spec = _spec((2, 3), (1, -1)) if multi else _spec((3,), (2,))
    net = _network(
        spec,
        activation,
        head,
        rng,
        obs_mean=np.array([0.5, -1.0, 2.0], F32),
        obs_std=np.array([0.7, 1e-4, 3.0], F32),
        norm_clip=4.0,
    )
    n = 3000
    obs = rng.normal(0, 2, size=(n, 5)).astype(F32)
    obs[:, 1] = rng.integers(-1, 4, size=n)  # -1 and 3: outside Discrete(3), all zeros
    obs[:, 4] = rng.integers(2, 6, size=n)
    obs[:, 2] = -1.0 + rng.normal(0, 3e-4, size=n).astype(F32)  # around the tiny-std mean
    uniforms = rng.random((n, spec.action_layout.n_branches), dtype=F32)
    probs, greedy, sampled = _run_c(spec, net, tmp_path, obs, uniforms)
    logits, ref = numpy_reference(spec, net, obs)

    offset = 0
    for h, (size, start) in enumerate(
        zip(spec.action_layout.nvec, spec.action_layout.start, strict=True)
    ):
        part = slice(offset, offset + size)
        assert float(np.abs(probs[:, part] - ref[:, part]).max()) <= 1e-5, (activation, head)
        top2 = np.sort(logits[:, part], axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-4
        assert clear.mean() > 0.95
        np.testing.assert_array_equal(greedy[clear, h], ref[clear, part].argmax(axis=1) + start)
        u = uniforms[:, h]
        if head == "argmax":
            np.testing.assert_array_equal(probs[clear, part], ref[clear, part])  # one-hot
            np.testing.assert_array_equal(sampled[:, h], greedy[:, h])
        else:
            cdf = np.cumsum(ref[:, part][:, :-1], axis=1)
            clear = (np.abs(cdf - u[:, None]) > 1e-5).all(axis=1)
            expected = inverse_cdf(ref[:, part], u)[clear] + start
            np.testing.assert_array_equal(sampled[clear, h], expected)
        assert len(np.unique(greedy[:, h])) >= 2  # the rows do not all pick one action
        offset += size


@pytest.mark.parametrize("head", HEADS)
def test_ties_go_to_the_first_maximum_as_torch_argmax(tmp_path: Path, head: str) -> None:
    spec = _spec((3,), (2,))
    net = _network(spec, "relu", head, np.random.default_rng(0))
    last_weight = np.zeros_like(net.layers[-1][0])
    tied = ((last_weight, np.array([1.0, 3.0, 3.0], F32)),)
    net = PolicyNetwork(**{**net.__dict__, "layers": net.layers[:-1] + tied})
    obs = np.zeros((4, 5), F32)
    probs, greedy, sampled = _run_c(spec, net, tmp_path, obs, np.full((4, 1), 0.99, F32))
    logits = torch.from_numpy(numpy_reference(spec, net, obs)[0])
    assert (greedy[:, 0] == int(logits.argmax(dim=1)[0]) + 2).all()  # torch: index 1
    assert (greedy[:, 0] == 3).all()
    if head == "argmax":
        np.testing.assert_array_equal(probs, np.tile([0.0, 1.0, 0.0], (4, 1)))
        assert (sampled[:, 0] == 3).all()


#: Continuous column statistics of the family (mean, variance), and the rows' spread:
#: the issue's column fixed at 5.0 (variance 0), tiny and huge variances, large means.
CONSTANT_FAMILY = {
    "fixed at 5.0": [(5.0, 0.0), (0.1, 0.8)],
    "fixed at -300, tiny variance": [(-300.0, 0.0), (2.0, 1e-12), (0.0, 1.0)],
    "huge variance, large means": [(1e6, 1e-6), (0.0, 1e10), (-4e4, 25.0), (7.0, 0.0)],
}


def _family_policy(stats: list[tuple[float, float]], layout: bool) -> SoftmaxPolicy:
    n = len(stats)
    space: dict[str, Any] | None = None
    obs_dim = n
    if layout:  # the same columns beside a Discrete(4) one, in a Tuple
        space = {
            "type": "tuple",
            "spaces": [{"type": "box", "shape": [n]}, {"type": "discrete", "n": 4}],
        }
        obs_dim = n + 1
    spec = PolicySpec(
        "tests.tiny_envs:Constant-v0",
        obs_dim,
        3,
        obs_low=(-math.inf,) * obs_dim,
        obs_high=(math.inf,) * obs_dim,
        observation_space=space,
    )
    torch.manual_seed(len(stats))
    policy = SoftmaxPolicy(spec, hidden_sizes=(32, 16))
    with torch.no_grad():
        policy.obs_mean.copy_(torch.tensor([m for m, _ in stats]))
        policy.obs_var.copy_(torch.tensor([v for _, v in stats]))
        policy.obs_count.fill_(1e6)
        for module in policy.net:
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(3.0)  # confident enough that probabilities are not flat
    return policy.eval()


@pytest.mark.parametrize("layout", [False, True], ids=["box", "tuple"])
@pytest.mark.parametrize("family", list(CONSTANT_FAMILY))
def test_constant_column_family_exports_within_a_tenth_of_the_tolerance(
    tmp_path: Path, family: str, layout: bool
) -> None:
    policy = _family_policy(CONSTANT_FAMILY[family], layout)
    plan = VerificationPlan(None, 2048, 0)
    report = export_policy_c(policy, tmp_path, plan=plan)
    assert report.check is not None and len(report.builds) == 6
    for build in report.builds:
        assert build.check.passed, build
        assert build.check.max_tolerance_ratio <= 0.1, (family, build.build.name, build.check)
    print(
        f"{family} ({'tuple' if layout else 'box'}): ratio {report.check.max_tolerance_ratio:.3g}"
    )
