"""The PyTorch-side counterpart of :class:`pgdeploy.runtime.Agent`, for parity checks.

It follows the runtime's contract exactly (same observation checks, same uniform stream,
same inverse-CDF rule) but computes with a torch callable: the training policy, the
deployable module, or a loaded TorchScript file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from pgdeploy.runtime.observations import ObservationChecker
from pgdeploy.runtime.sampling import SeedLike, UniformStream
from pgdeploy.spec import PolicySpec
from pgdeploy.training.policy import SoftmaxPolicy

GraphFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class TorchAgent:
    """act / act_batch / probs over ``graph(obs, uniform) -> (probs, greedy, sampled)``."""

    def __init__(
        self,
        graph: GraphFn,
        spec: PolicySpec,
        *,
        seed: SeedLike = None,
        deterministic: bool = False,
    ) -> None:
        self.graph = graph
        self.spec = spec
        self.deterministic = deterministic
        self.checker = ObservationChecker(spec, "reject")
        self._stream = UniformStream(seed)
        self._heads = spec.action_layout.n_branches

    @classmethod
    def from_policy(cls, policy: SoftmaxPolicy, **kwargs: Any) -> TorchAgent:
        return cls(policy.act_outputs, policy.spec, **kwargs)

    def run_graph(
        self, obs_batch: Any, uniforms: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The graph's outputs for raw rows (n, obs_dim) and uniforms (n,) or (n, heads)."""
        batch = torch.from_numpy(self.checker.as_batch(obs_batch))
        u = torch.from_numpy(np.asarray(uniforms, np.float32).reshape(len(batch), self._heads))
        with torch.inference_mode():
            probs, greedy, sampled = self.graph(batch, u)
        return probs.numpy(), greedy.numpy(), sampled.numpy()

    def rows(self, obs_batch: Any) -> npt.NDArray[np.float32]:
        """Raw rows for a batch as the env (vector env) returns it."""
        layout = self.spec.obs_layout
        return (
            np.asarray(obs_batch, np.float32) if layout.plain else layout.flatten_batch(obs_batch)
        )

    def act_batch(self, obs_batch: Any) -> npt.NDArray[np.int64]:
        return self.act_rows(self.rows(obs_batch))

    def act_rows(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.int64]:
        """Actions for raw rows (n, obs_dim): (n,) or (n, heads)."""
        n = len(rows) * self._heads
        uniforms = np.zeros(n, np.float32) if self.deterministic else self._stream.take(n)
        _, greedy, sampled = self.run_graph(rows, uniforms)
        return greedy if self.deterministic else sampled

    def act(self, obs: Any) -> Any:
        """The env's action for one observation as the env returns it (see Agent.act)."""
        layout = self.spec.obs_layout
        row = self.checker.as_row(obs if layout.plain else layout.flatten(obs))
        actions = self.act_rows(row[np.newaxis, :])
        return actions[0] if self.spec.action_layout.multi else int(actions[0])

    def probs(self, obs: Any) -> npt.NDArray[np.float32]:
        """Probabilities for graph rows: (n_actions,) for one row, (n, n_actions) for a batch."""
        single = np.ndim(obs) == 1
        batch = self.checker.as_row(obs)[np.newaxis, :] if single else obs
        probs = self.run_graph(batch, np.zeros(len(batch) * self._heads, np.float32))[0]
        return probs[0] if single else probs
