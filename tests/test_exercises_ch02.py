"""Chapter 2 checks: they fail on the known mistakes (the forum's among them)
and pass on the references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch02 import (
    check_double_backward,
    check_jvp_from_vjps,
    check_moments,
    check_sample_normal,
    check_weighted_grad,
)

# Exercise 2.1 -----------------------------------------------------------------------


def weighted_grad(f, x, w):
    (g,) = torch.autograd.grad(f(x), x, grad_outputs=w)
    return g


def test_weighted_grad_reference_passes(capsys):
    assert check_weighted_grad(weighted_grad)
    assert "PASSED Exercise 2.1" in capsys.readouterr().out


def read_dot_grad(f, x, w):
    f(x).backward(w)
    return x.grad


def jvp_when_possible(f, x, w):
    if w.shape == x.shape:
        return torch.func.jvp(f, (x.detach(),), (w,))[1]
    return weighted_grad(f, x, w)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the forum's error: a "vector" with the input's shape
        (
            lambda f, x, w: torch.autograd.grad(f(x), x, grad_outputs=torch.ones_like(x))[0],
            r"shape of the \*output\*",
        ),
        (lambda f, x, w: weighted_grad(f, x, w.sum(0)), r"shape of the \*output\*"),
        (read_dot_grad, r"\.grad accumulates"),
        (lambda f, x, w: torch.autograd.grad(f(x).sum(), x)[0], "you ignored w"),
        (lambda f, x, w: torch.func.jvp(f, (x.detach(),), (w,))[1], "forward-mode JVP"),
        (jvp_when_possible, r"you computed J w"),
        (lambda f, x, w: weighted_grad(f, x, w).reshape(1, -1), "input's shape"),
        (lambda f, x, w: w @ x.detach(), "not w\\^T J"),  # half of (w + w^T) x
        (lambda f, x, w: None, "torch.Tensor"),
    ],
)
def test_weighted_grad_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_weighted_grad(wrong)


def test_weighted_grad_formula_for_outer_only_fails():
    def formula(f, x, w):
        if f(x).ndim == 2:
            return (w + w.T) @ x.detach()
        return x.detach()

    with pytest.raises(ExerciseFailed, match="use f itself"):
        check_weighted_grad(formula)


# Exercise 2.2 -----------------------------------------------------------------------


def z_gradients(y_fn, w, x):
    (ell,) = torch.autograd.grad(y_fn(w, x).sum(), x, create_graph=True)
    z = (w[2] * x + ell**2).sum()
    return torch.autograd.grad(z, (w, x))


def z_gradients_func(y_fn, w, x):
    from torch.func import grad

    def z_of(w, x):
        ell = grad(lambda w_, x_: y_fn(w_, x_).sum(), argnums=1)(w, x)
        return (w[2] * x + ell**2).sum()

    return grad(z_of, argnums=(0, 1))(w.detach(), x.detach())


@pytest.mark.parametrize("answer", [z_gradients, z_gradients_func])
def test_double_backward_references_pass(answer):
    assert check_double_backward(answer)


def forum_code(y_fn, w, x):
    """The question's code, run as written (with the w.grad.zero_() of the question)."""
    y = y_fn(w, x)
    y.sum().backward()
    ell = x.grad
    ell.requires_grad = True
    w.grad.zero_()
    z = (w[2] * x + ell**2).sum()
    z.backward()
    return w.grad, x.grad


def without_create_graph(y_fn, w, x):
    (ell,) = torch.autograd.grad(y_fn(w, x).sum(), x)
    z = (w[2] * x + ell**2).sum()
    return torch.autograd.grad(z, (w, x))


def backward_create_graph_then_read_grad(y_fn, w, x):
    y_fn(w, x).sum().backward(create_graph=True)
    ell = x.grad
    w.grad = None
    z = (w[2] * x + ell**2).sum()
    z.backward()
    return w.grad, x.grad


def forgot_to_clear_w_grad(y_fn, w, x):
    y_fn(w, x).sum().backward(create_graph=True)
    ell = x.grad.clone()
    x.grad = None
    z = (w[2] * x + ell**2).sum()
    z.backward()
    return w.grad, x.grad


def substituted_formula(y_fn, w, x):
    ell = w[0]  # "I know in this case I can replace l by w_0"
    z = (w[2] * x + ell**2).sum()
    return torch.autograd.grad(z, (w, x))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (forum_code, "no history"),
        (without_create_graph, "no history"),
        (backward_create_graph_then_read_grad, "x.grad still held dy/dx"),
        (forgot_to_clear_w_grad, "w.grad still held"),
        (substituted_formula, "instead of writing down its formula"),
        (lambda y_fn, w, x: z_gradients(y_fn, w, x)[0], "return a pair"),
        (lambda y_fn, w, x: (torch.zeros(2), torch.zeros(1)), "expected shapes"),
        (lambda y_fn, w, x: tuple(2 * g for g in z_gradients(y_fn, w, x)), "expected dz/dw"),
    ],
)
def test_double_backward_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_double_backward(wrong)


# Exercise 2.3 -----------------------------------------------------------------------


def jvp_via_vjps(f, x, t):
    x = x.detach().requires_grad_(True)
    out = f(x)
    u = torch.zeros_like(out, requires_grad=True)
    (pullback,) = torch.autograd.grad(out, x, grad_outputs=u, create_graph=True)
    (push,) = torch.autograd.grad(pullback, u, grad_outputs=t)
    return push


def test_jvp_from_vjps_reference_passes(capsys):
    assert check_jvp_from_vjps(jvp_via_vjps)
    assert "dot-product test" in capsys.readouterr().out


def only_one_vjp(f, x, t):
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(f(x), x, grad_outputs=t)[0]


def no_create_graph(f, x, t):
    x = x.detach().requires_grad_(True)
    out = f(x)
    u = torch.zeros_like(out, requires_grad=True)
    (pullback,) = torch.autograd.grad(out, x, grad_outputs=u)
    return torch.autograd.grad(pullback, u, grad_outputs=t)[0]


def forward_mode(f, x, t):
    return torch.func.jvp(f, (x,), (t,))[1]


def dual_numbers(f, x, t):
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        return fwad.unpack_dual(f(fwad.make_dual(x, t))).tangent


def single_sided_difference(f, x, t, h=1e-7):
    return (f(x + h * t) - f(x)) / h


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (only_one_vjp, r"t\^T J"),
        (no_create_graph, "create_graph=True"),
        (forward_mode, "no forward-mode formula"),
        (dual_numbers, "no forward-mode formula"),
        (single_sided_difference, "not J t"),
        (lambda f, x, t: jvp_via_vjps(f, x, t).flatten()[:-1], "output's shape|not J t"),
        (lambda f, x, t: jvp_via_vjps(f, x, t) * (1 + 1e-6 * (x.numel() == 6)), "dot-product test"),
    ],
)
def test_jvp_from_vjps_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_jvp_from_vjps(wrong)


# Exercise 2.4 -----------------------------------------------------------------------


def grid(h, w):
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([cols, rows], -1).reshape(-1, 2).to(torch.float64)


def moments(p):
    u = grid(*p.shape)
    q = p.reshape(-1)
    mean = q @ u
    d = u - mean
    return mean, (q[:, None] * d).T @ d


def forum_moments(activation_map):
    """The forum answer with its `#` read as `@` (E[uu^T] - mu mu^T), which is right."""
    h, w = activation_map.shape
    range_h, range_w = torch.arange(h), torch.arange(w)
    idxs = torch.stack([range_w[None].repeat(h, 1), range_h[:, None].repeat(1, w)])
    map_flat = activation_map.view(-1)
    idxs_flat = idxs.reshape(2, -1).T.to(activation_map.dtype)
    mean = (map_flat[:, None] * idxs_flat).sum(0)
    mats = idxs_flat[:, :, None] @ idxs_flat[:, None, :]
    second_moments = (map_flat[:, None, None] * mats).sum(0)
    return mean, second_moments - mean[:, None] @ mean[None]


@pytest.mark.parametrize("answer", [moments, forum_moments])
def test_moments_references_pass(answer):
    assert check_moments(answer)


def not_centred(p):
    u, q = grid(*p.shape), p.reshape(-1)
    return q @ u, (q[:, None] * u).T @ u


def row_column(p):
    mean, cov = moments(p)
    return mean.flip(0), cov.flip(0, 1)


def cov_row_column(p):
    mean, cov = moments(p)
    return mean, cov.flip(0, 1)


def unweighted(p):
    u = grid(*p.shape)
    return u.mean(0), torch.cov(u.T)


def through_numpy(p):
    mean, cov = moments(p.detach())
    return torch.tensor(np.asarray(mean)), torch.tensor(np.asarray(cov))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (not_centred, "without centring"),
        (row_column, r"\(row, column\) order"),
        (cov_row_column, r"covariance is in \(row, column\) order"),
        (unweighted, "weight each pixel by p"),
        (lambda p: (moments(p)[0], torch.cov(grid(*p.shape).T)), "unweighted covariance"),
        (through_numpy, "not differentiable"),
        (lambda p: (moments(p)[0] + 1, moments(p)[1]), "sum p u"),
        (lambda p: (moments(p)[0], 2 * moments(p)[1]), r"sum p \(u - mu\)"),
        (lambda p: moments(p)[0], "return a pair"),
    ],
)
def test_moments_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_moments(wrong)


# Exercise 2.5 -----------------------------------------------------------------------


def sample_normal(mu, var, n):
    eps = torch.randn(n, mu.shape[0], dtype=mu.dtype)
    return mu + var.sqrt() * eps


@pytest.mark.parametrize(
    "answer",
    [sample_normal, lambda mu, var, n: Normal(mu, var.sqrt()).rsample((n,))],
)
def test_sample_normal_references_pass(answer):
    assert check_sample_normal(answer)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda mu, var, n: Normal(mu, var.sqrt()).sample((n,)), "cuts the graph"),
        (
            lambda mu, var, n: torch.normal(mu.expand(n, -1), var.sqrt().expand(n, -1)),
            "torch.normal",
        ),
        # the forum's answer, fed the variance the question has
        (
            lambda mu, var, n: torch.randn(n, mu.shape[0], dtype=mu.dtype) * var + mu,
            "used it as the standard deviation",
        ),
        (lambda mu, var, n: torch.randn(n, mu.shape[0], dtype=mu.dtype) * var**2 + mu, "var\\^2"),
        (lambda mu, var, n: sample_normal(mu, var, n).T, "expected shape"),
        (lambda mu, var, n: sample_normal(mu, var, n) + 1, "sample mean"),
        (lambda mu, var, n: mu.detach() + var.sqrt() * torch.randn(n, 3, dtype=mu.dtype), "mu"),
    ],
)
def test_sample_normal_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_sample_normal(wrong)
