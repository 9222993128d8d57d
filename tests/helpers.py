"""Test helpers shared by several test modules."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from pgdeploy.runtime.network import PolicyNetwork
from pgdeploy.training.policy import SoftmaxPolicy, network_from_policy


def perturbed_graph(
    *, layer: int, index: tuple[int, int], delta: float = 1e-3
) -> Callable[[SoftmaxPolicy], PolicyNetwork]:
    """A stand-in for ``network_from_policy`` (what the ONNX graph is built from) with ONE
    weight off by ``delta``; patch it into ``pgdeploy.export.source``.

    ``layer`` indexes the MLP's Linear layers (0 first, -1 last), ``index`` the weight.
    """

    def build(policy: SoftmaxPolicy) -> PolicyNetwork:
        network = network_from_policy(policy)
        layers = [(w.copy(), b) for w, b in network.layers]
        layers[layer][0][index] += np.float32(delta)
        return dataclasses.replace(network, layers=tuple(layers))

    return build
