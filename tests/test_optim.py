"""pgdeploy's Adam is torch.optim.Adam without the torch._dynamo import: same numbers."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from pgdeploy.errors import CheckpointError
from pgdeploy.training.optim import Adam


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def loss_of(model: torch.nn.Module, step: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(step)
    x = torch.randn(32, 4, generator=gen)
    y = torch.randn(32, 2, generator=gen)
    return ((model(x) - y) ** 2).mean()


def test_adam_matches_torch_adam_step_for_step() -> None:
    ours_model = make_model()
    ref_model = copy.deepcopy(ours_model)
    ours = Adam(ours_model.parameters(), lr=0.03)
    ref = torch.optim.Adam(ref_model.parameters(), lr=0.03)
    for step in range(25):
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad()
            loss_of(model, step).backward()
            opt.step()
        for p, q in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_resumes_identically() -> None:
    model = make_model()
    opt = Adam(model.parameters(), lr=0.01)
    for step in range(3):
        opt.zero_grad()
        loss_of(model, step).backward()
        opt.step()
    twin = copy.deepcopy(model)
    twin_opt = Adam(twin.parameters(), lr=0.01)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    for m, o in ((model, opt), (twin, twin_opt)):
        o.zero_grad()
        loss_of(m, 99).backward()
        o.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_parameters_without_grad_are_left_alone() -> None:
    model = make_model()
    frozen = model[0].weight
    frozen_before = frozen.detach().clone()
    opt = Adam(model.parameters(), lr=0.1)
    opt.zero_grad()
    loss_of(model, 0).backward()
    frozen.grad = None
    opt.step()
    torch.testing.assert_close(frozen.detach(), frozen_before, rtol=0, atol=0)


def fitted_state() -> tuple[Adam, dict[str, object]]:
    model = make_model()
    opt = Adam(model.parameters(), lr=0.01)
    loss_of(model, 0).backward()
    opt.step()
    return Adam(make_model().parameters(), lr=0.01), opt.state_dict()


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda s: s.pop("exp_avg_sq"), r"optimizer state lacks \['exp_avg_sq'\]"),
        (lambda s: s["exp_avg"].pop(), r"'exp_avg' must hold 4 tensors, one per parameter, got 3"),
        (
            lambda s: s["exp_avg"].__setitem__(0, torch.zeros(1)),
            r"exp_avg\[0\] has shape \(1,\) and dtype torch.float32, expected \(16, 4\)",
        ),
        (
            lambda s: s["exp_avg_sq"].__setitem__(1, torch.zeros(16, dtype=torch.float64)),
            r"exp_avg_sq\[1\] has shape \(16,\) and dtype torch.float64, expected \(16,\) and "
            r"torch.float32",
        ),
        (lambda s: s["exp_avg"].__setitem__(2, [0.0] * 32), r"exp_avg\[2\] is a list"),
        (
            lambda s: s.__setitem__("step", -1),
            r"'step' must be an integer in \[0, 2\*\*53\), got -1",
        ),
    ],
)
def test_load_state_dict_refuses_what_does_not_fit(corrupt: Any, message: str) -> None:
    fresh, state = fitted_state()
    state = {k: list(v) if isinstance(v, list) else v for k, v in state.items()}
    corrupt(state)
    before = [m.clone() for m in fresh.exp_avg]
    with pytest.raises(CheckpointError, match=message):
        fresh.load_state_dict(state)
    assert fresh.step_count == 0  # nothing changed
    assert all(torch.equal(a, b) for a, b in zip(before, fresh.exp_avg, strict=True))


def test_load_state_dict_round_trips() -> None:
    fresh, state = fitted_state()
    fresh.load_state_dict(state)
    assert fresh.step_count == 1
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.exp_avg_sq, state["exp_avg_sq"], strict=True)
    )  # type: ignore[call-overload]
