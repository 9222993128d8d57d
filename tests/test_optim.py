"""pgdeploy's Adam is torch.optim.Adam without the torch._dynamo import: same numbers."""

from __future__ import annotations

import copy

import torch

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
