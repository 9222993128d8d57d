"""Test helpers shared by several test modules."""

from __future__ import annotations

from collections.abc import Callable

import torch

from pgdeploy.training.policy import DeployablePolicy, SoftmaxPolicy


def perturbed_graph(
    *, layer: int, index: tuple[int, int], delta: float = 1e-3
) -> Callable[[SoftmaxPolicy], DeployablePolicy]:
    """A stand-in for ``DeployablePolicy`` whose graph has ONE weight off by ``delta``.

    ``layer`` indexes the MLP's Linear layers (0 first, -1 last), ``index`` the weight.
    """

    def build(policy: SoftmaxPolicy) -> DeployablePolicy:
        graph = DeployablePolicy(policy)
        linears = [m for m in graph.net if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            linears[layer].weight[index] += delta
        return graph

    return build
