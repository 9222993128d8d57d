"""A PyTorch rebuild of the source library's actor, from the same weights, to verify against.

It follows the source's own order of operations, independently of the
:class:`~pgdeploy.runtime.network.PolicyNetwork` the importer derives: VecNormalize in
float64 as numpy does it, SB3's per-leaf preprocessing (one-hot in SB3's column order),
torch's own activation modules, ``Categorical(logits=...)`` probabilities per head, and
for DQN the one-hot of ``argmax`` Q (torch's first maximum on ties).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pgdeploy._optional import require

Layer = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]
_MODULES = {
    "relu": "ReLU",
    "tanh": "Tanh",
    "elu": "ELU",
    "leaky_relu": "LeakyReLU",
    "silu": "SiLU",
    "gelu": "GELU",
}


@dataclass(frozen=True)
class SourceActor:
    """What the source computes: its layers unpermuted, its preprocessing by leaf."""

    obs_tree: dict[str, Any]
    layers: tuple[Layer, ...]
    activation: str
    head: str  #: "softmax" or "argmax"
    nvec: tuple[int, ...]
    #: VecNormalize: (mean, var, epsilon, clip_obs), float64, or None.
    normalization: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, float] | None

    def module(self) -> Any:
        """A ``torch.nn.Module``: float32 (n, obs_dim) raw rows -> probabilities."""
        torch = require("torch", extra="train", feature="the PyTorch reference of an import")
        return _build(torch, self)


def _build(torch: Any, actor: SourceActor) -> Any:
    from pgdeploy.layout import ObsLayout

    nn = torch.nn
    layout = ObsLayout(actor.obs_tree)
    modules: list[Any] = []
    for i, (weight, bias) in enumerate(actor.layers):
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight))
            linear.bias.copy_(torch.from_numpy(bias))
        modules.append(linear)
        if i < len(actor.layers) - 1:
            modules.append(getattr(nn, _MODULES[actor.activation])())
    net = nn.Sequential(*modules).eval()

    class Reference(nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, obs: Any) -> Any:
            features = []
            for leaf in layout.leaves:
                part = obs[:, leaf.offset : leaf.offset + leaf.size]
                if leaf.kind in ("discrete", "multi_discrete"):
                    features += [
                        nn.functional.one_hot(part[:, j].long(), n).float()
                        for j, n in enumerate(leaf.nvec)
                    ]
                else:
                    if actor.normalization is not None:
                        mean, var, eps, clip = actor.normalization
                        x = part.double().numpy()
                        x = np.clip((x - mean) / np.sqrt(var + eps), -clip, clip)
                        part = torch.from_numpy(x.astype(np.float32))
                    features.append(part.float())
            logits = self.net(torch.cat(features, dim=1))
            heads = []
            for chunk in torch.split(logits, list(actor.nvec), dim=1):
                if actor.head == "argmax":
                    one = torch.zeros_like(chunk)
                    heads.append(one.scatter_(1, chunk.argmax(dim=1, keepdim=True), 1.0))
                else:
                    dist = torch.distributions.Categorical(logits=chunk)
                    heads.append(dist.probs)
            return torch.cat(heads, dim=1)

    return Reference().eval()
