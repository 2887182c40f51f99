"""Tests of gradbook.named_gradients against the closed-form gradients of the mean-squared error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gradbook.named_gradients import named_grad

# ------------------------------------------------------------------------------ named_grad


def _linear_data(generator, n=20):
    x = torch.randn(n, generator=generator, dtype=torch.float64)
    y = 3.0 * x - 1.0 + 0.1 * torch.randn(n, generator=generator, dtype=torch.float64)
    return x, y


def test_named_grad_matches_closed_form_mse(device, generator):
    x, y = _linear_data(generator)
    x, y = x.to(device), y.to(device)
    w = torch.tensor(0.5, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.tensor(0.2, dtype=torch.float64, device=device, requires_grad=True)
    n = x.numel()
    cost = ((x * w + b - y) ** 2).sum() / (2 * n)
    grads = named_grad(cost, {"W": w, "b": b})
    # closed form, computed in NumPy: dC/dW = mean((pred - y) x), dC/db = mean(pred - y)
    xn, yn = x.cpu().numpy(), y.cpu().numpy()
    residual = 0.5 * xn + 0.2 - yn
    assert list(grads) == ["W", "b"]
    assert grads["W"].item() == pytest.approx(np.mean(residual * xn), rel=1e-13)
    assert grads["b"].item() == pytest.approx(np.mean(residual), rel=1e-13)
    # torch.autograd.grad returns the gradients in the order of its inputs
    gb, gw = torch.autograd.grad(((x * w + b - y) ** 2).sum() / (2 * n), [b, w])
    assert gb.item() == pytest.approx(grads["b"].item(), rel=1e-15)
    assert gw.item() == pytest.approx(grads["W"].item(), rel=1e-15)


def test_named_grad_on_a_module(generator):
    x, y = _linear_data(generator)
    model = nn.Linear(1, 1).double()
    with torch.no_grad():
        model.weight.fill_(0.5)
        model.bias.fill_(0.2)
    cost = ((model(x[:, None])[:, 0] - y) ** 2).sum() / (2 * x.numel())
    grads = named_grad(cost, model)
    residual = 0.5 * x.numpy() + 0.2 - y.numpy()
    assert list(grads) == ["weight", "bias"]
    assert grads["weight"].shape == (1, 1)
    assert grads["weight"].item() == pytest.approx(np.mean(residual * x.numpy()), rel=1e-13)
    assert grads["bias"].item() == pytest.approx(np.mean(residual), rel=1e-13)


def test_named_grad_bad_input():
    w = torch.tensor(1.0, requires_grad=True)
    data = torch.ones(3)
    with pytest.raises(
        ValueError, match=r"output: expected a scalar \(one element\), got shape \(3,\)"
    ):
        named_grad(w * data, {"w": w})
    with pytest.raises(ValueError, match=r"inputs\['X'\]: expected a tensor that requires grad"):
        named_grad((w * data).sum(), {"w": w, "X": data})
    with pytest.raises(
        TypeError, match=r"inputs: expected a mapping name -> tensor or an nn.Module, got list"
    ):
        named_grad((w * data).sum(), [w])
    with pytest.raises(TypeError, match=r"inputs\['w'\]: expected a torch.Tensor, got float"):
        named_grad((w * data).sum(), {"w": 1.0})
