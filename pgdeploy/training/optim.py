"""A minimal Adam.

Why not ``torch.optim.Adam``: constructing any ``torch.optim`` optimiser imports
``torch._dynamo``, which costs about as much again as ``import torch`` itself, for a
training run that otherwise takes about as long (docs/performance.md). This is the same update
rule (Kingma & Ba, with bias correction; no weight decay, no amsgrad); a test checks it
matches ``torch.optim.Adam`` step for step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from pgdeploy.errors import CheckpointError


class Adam:
    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps = lr, betas, eps
        self.step_count = 0
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        beta1, beta2 = self.betas
        bias1 = 1 - beta1**self.step_count
        bias2_sqrt = (1 - beta2**self.step_count) ** 0.5
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / bias1)

    def state_dict(self) -> dict[str, object]:
        return {"step": self.step_count, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`, refusing anything that does not fit these parameters.

        Every moment must be a tensor with the parameter's shape and dtype, one per parameter:
        ``copy_`` would broadcast a wrong shape and ``zip`` would drop a missing tensor.
        Moments must be finite and second moments >= 0. Nothing is changed unless the whole
        state fits.
        """
        missing = sorted({"step", "exp_avg", "exp_avg_sq"} - set(state))
        if missing:
            raise CheckpointError(f"optimizer state lacks {missing}")
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2**53:
            shown = repr(step) if not isinstance(step, int) or step < 2**64 else "a huge integer"
            raise CheckpointError(
                f"optimizer state 'step' must be an integer in [0, 2**53), got {shown[:60]}"
            )
        moments = [self._checked_moments(name, state[name]) for name in ("exp_avg", "exp_avg_sq")]
        self.step_count = step
        for mine, saved in zip((self.exp_avg, self.exp_avg_sq), moments, strict=True):
            for dst, src in zip(mine, saved, strict=True):
                dst.copy_(src)

    def _checked_moments(self, name: str, saved: Any) -> list[torch.Tensor]:
        if not isinstance(saved, (list, tuple)) or len(saved) != len(self.params):
            got = len(saved) if isinstance(saved, (list, tuple)) else type(saved).__name__
            raise CheckpointError(
                f"optimizer state {name!r} must hold {len(self.params)} tensors, one per "
                f"parameter, got {got}"
            )
        for index, (param, value) in enumerate(zip(self.params, saved, strict=True)):
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(
                    f"optimizer state {name}[{index}] is a {type(value).__name__}, "
                    "expected a tensor"
                )
            if value.shape != param.shape or value.dtype != param.dtype:
                raise CheckpointError(
                    f"optimizer state {name}[{index}] has shape {tuple(value.shape)} and dtype "
                    f"{value.dtype}, expected {tuple(param.shape)} and {param.dtype}"
                )
            # NaN or negative second moments would turn the first step's weights into NaN.
            if not bool(torch.isfinite(value).all()) or (
                name == "exp_avg_sq" and bool((value < 0).any())
            ):
                need = "finite and >= 0" if name == "exp_avg_sq" else "finite"
                raise CheckpointError(f"optimizer state {name}[{index}] must be {need}")
        return list(saved)
