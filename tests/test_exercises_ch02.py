"""Chapter 2 checks: the reference and correct alternatives pass; the known mistakes (the
forum's first) fail with a message naming the misconception."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch02 import (
    check_adjoint_test,
    check_gradient_penalty,
    check_jvp_from_vjps,
    check_moments,
    check_sample_mvn,
    check_weighted_grad,
)
from gradbook.jacobian import jacobian_loop
from gradbook.moments import spatial_moments
from gradbook.vjp import dot_product_test, jacobian_explicit, jvp_double_backward, vjp

F64 = torch.float64

# Exercise 2.1 -----------------------------------------------------------------------


def weighted_grad(f, x, w):
    (g,) = torch.autograd.grad(f(x), x, grad_outputs=w)
    return g


def backward_on_a_clean_grad(f, x, w):
    x.grad = None
    f(x).backward(w)
    return x.grad


@pytest.mark.parametrize(
    "answer",
    [
        weighted_grad,
        lambda f, x, w: torch.func.vjp(f, x.detach())[1](w)[0],
        backward_on_a_clean_grad,
    ],
)
def test_weighted_grad_correct_answers_pass(answer, capsys):
    assert check_weighted_grad(answer)
    assert "PASSED Exercise 2.1" in capsys.readouterr().out


def read_dot_grad(f, x, w):
    f(x).backward(w)
    return x.grad


def jvp_when_possible(f, x, w):
    if w.shape == x.shape:
        return torch.func.jvp(f, (x.detach(),), (w,))[1]
    return weighted_grad(f, x, w)


def row_by_row(f, x, w):
    y = f(x)
    rows = [torch.autograd.grad(entry, x, retain_graph=True)[0] for entry in y.reshape(-1).unbind()]
    return w.reshape(-1) @ torch.stack(rows)


def formula(f, x, w):
    if f(x).ndim == 2:
        return (w + w.T) @ x.detach()
    return x.detach()


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
        (row_by_row, "row by row"),
        (
            lambda f, x, w: torch.einsum(
                "jk,jki->i", w, torch.autograd.functional.jacobian(f, x.detach())
            ),
            "dense Jacobian",
        ),
        (lambda f, x, w: vjp(f, x, w), "write it yourself: this is what gradbook.vjp.vjp"),
        (lambda f, x, w: weighted_grad(f, x, w).reshape(1, -1), "input's shape"),
        (lambda f, x, w: w @ x.detach(), r"not w\^T J"),  # half of (w + w^T) x
        (formula, "use f itself"),
        (lambda f, x, w: None, "torch.Tensor"),
    ],
)
def test_weighted_grad_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_weighted_grad(wrong)


# Exercise 2.2 -----------------------------------------------------------------------


def gradient_penalty(f, x):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    return ((g.norm(dim=1) - 1) ** 2).mean()


def penalty_with_func(f, x):
    per_sample = torch.func.vmap(torch.func.grad(lambda xi: f(xi[None])[0]))(x)
    return ((per_sample.norm(dim=1) - 1) ** 2).mean()


def penalty_with_ones(f, x):
    x.requires_grad_(True)
    out = f(x)
    (g,) = torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out), create_graph=True)
    return (((g**2).sum(1).sqrt() - 1) ** 2).sum() / len(x)


@pytest.mark.parametrize("answer", [gradient_penalty, penalty_with_func, penalty_with_ones])
def test_gradient_penalty_correct_answers_pass(answer, capsys):
    assert check_gradient_penalty(answer)
    assert "PASSED Exercise 2.2" in capsys.readouterr().out


def forum_style(f, x):
    """The question's recipe: backward(), read x.grad, declare it requires grad."""
    x.requires_grad_(True)
    f(x).sum().backward()
    g = x.grad
    g.requires_grad = True
    return ((g.norm(dim=1) - 1) ** 2).mean()


def without_create_graph(f, x):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).sum(), x)
    return ((g.norm(dim=1) - 1) ** 2).mean()


def backward_create_graph(f, x):
    x.requires_grad_(True)
    f(x).sum().backward(create_graph=True)
    return ((x.grad.norm(dim=1) - 1) ** 2).mean()


def penalty_from(transform):
    def answer(f, x):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
        return transform(g)

    return answer


def finite_differences(f, x, h=1e-6):
    columns = []
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = h
        columns.append((f(x + e) - f(x - e)) / (2 * h))
    g = torch.stack(columns, 1)
    return ((g.norm(dim=1) - 1) ** 2).mean()


def from_the_mean(f, x):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x).mean(), x, create_graph=True)
    return ((g.norm(dim=1) - 1) ** 2).mean()


def x_without_grad(f, x):
    (g,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    return ((g.norm(dim=1) - 1) ** 2).mean()


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (forum_style, "no history"),
        (without_create_graph, "no history"),
        (penalty_from(lambda g: ((g.detach().norm(dim=1) - 1) ** 2).mean()), "no history"),
        (backward_create_graph, r"wrote into the parameters' \.grad"),
        (from_the_mean, "divides every sample's gradient by the batch size"),
        (penalty_from(lambda g: (g.norm() - 1) ** 2), "one norm for the whole batch"),
        (penalty_from(lambda g: (((g**2).sum(1) - 1) ** 2).mean()), "squared norm"),
        (penalty_from(lambda g: ((g.norm(dim=1) - 1) ** 2).sum()), "take their mean"),
        (penalty_from(lambda g: (g.norm(dim=1) - 1).mean()), "squares the distance"),
        (penalty_from(lambda g: (g.norm(dim=1) - 1) ** 2), "one number"),
        (finite_differences, "finite differences"),
        (x_without_grad, "plain tensor"),
        (
            lambda f, x: ((torch.func.jacrev(f)(x).sum(1).norm(dim=1) - 1) ** 2).mean(),
            "dense Jacobian",
        ),
        (lambda f, x: 0.0, "torch.Tensor"),
    ],
)
def test_gradient_penalty_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_gradient_penalty(wrong)


# Exercise 2.3 -----------------------------------------------------------------------


def jvp_via_vjps(f, x, t):
    x = x.detach().requires_grad_(True)
    out = f(x)
    u = torch.zeros_like(out, requires_grad=True)
    (pullback,) = torch.autograd.grad(out, x, grad_outputs=u, create_graph=True)
    (push,) = torch.autograd.grad(pullback, u, grad_outputs=t)
    return push


def jvp_with_ones(f, x, t):
    x = x.detach().requires_grad_(True)
    out = f(x)
    u = torch.ones_like(out).requires_grad_(True)
    (pullback,) = torch.autograd.grad(out, x, grad_outputs=u, create_graph=True)
    return torch.autograd.grad(pullback, u, grad_outputs=t)[0]


def jvp_with_func_vjp(f, x, t):
    out, pullback = torch.func.vjp(f, x)
    _, pullback_of_pullback = torch.func.vjp(lambda u: pullback(u)[0], torch.zeros_like(out))
    return pullback_of_pullback(t)[0]


@pytest.mark.parametrize("answer", [jvp_via_vjps, jvp_with_ones, jvp_with_func_vjp])
def test_jvp_from_vjps_correct_answers_pass(answer, capsys):
    assert check_jvp_from_vjps(answer)
    assert "PASSED Exercise 2.3" in capsys.readouterr().out


def only_one_vjp(f, x, t):
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(f(x), x, grad_outputs=t)[0]


def no_create_graph(f, x, t):
    x = x.detach().requires_grad_(True)
    out = f(x)
    u = torch.zeros_like(out, requires_grad=True)
    (pullback,) = torch.autograd.grad(out, x, grad_outputs=u)
    return torch.autograd.grad(pullback, u, grad_outputs=t)[0]


def u_without_requires_grad(f, x, t):
    x = x.detach().requires_grad_(True)
    out = f(x)
    u = torch.zeros_like(out)
    (pullback,) = torch.autograd.grad(out, x, grad_outputs=u, create_graph=True)
    return torch.autograd.grad(pullback, u, grad_outputs=t)[0]


def x_without_requires_grad(f, x, t):
    out = f(x)
    u = torch.zeros_like(out, requires_grad=True)
    (pullback,) = torch.autograd.grad(out, x, grad_outputs=u, create_graph=True)
    return torch.autograd.grad(pullback, u, grad_outputs=t)[0]


def first_vjp_with_t(f, x, t):
    x = x.detach().requires_grad_(True)
    out = f(x)
    u = torch.zeros_like(out, requires_grad=True)
    (pullback,) = torch.autograd.grad(out, x, grad_outputs=torch.ones_like(out), create_graph=True)
    return torch.autograd.grad(pullback, u, grad_outputs=t)[0]


def forward_mode(f, x, t):
    return torch.func.jvp(f, (x,), (t,))[1]


def dual_numbers(f, x, t):
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        return fwad.unpack_dual(f(fwad.make_dual(x, t))).tangent


def central_difference(f, x, t, h=1e-5):
    return (f(x + h * t) - f(x - h * t)) / (2 * h)


def dense_jacobian(f, x, t):
    jac = torch.autograd.functional.jacobian(f, x)
    return jac.reshape(-1, x.numel()) @ t.reshape(-1)


def jacobian_by_hand(f, x, t):
    x = x.detach().requires_grad_(True)
    out = f(x).reshape(-1)
    rows = [
        torch.autograd.grad(out[k], x, retain_graph=True)[0].reshape(-1) for k in range(len(out))
    ]
    return torch.stack(rows) @ t.reshape(-1)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (only_one_vjp, r"t\^T J"),
        (no_create_graph, "create_graph=True"),
        (u_without_requires_grad, "create u with requires_grad=True"),
        (x_without_requires_grad, "x arrives as a plain tensor"),
        (first_vjp_with_t, "grad_outputs=u"),
        (forward_mode, "no forward-mode formula"),
        (dual_numbers, "no forward-mode formula"),
        (central_difference, "finite difference"),
        (lambda f, x, t: (f(x + 1e-7 * t) - f(x)) / 1e-7, "finite difference"),
        (dense_jacobian, "dense Jacobian"),
        (
            lambda f, x, t: jacobian_loop(f, x).reshape(-1, x.numel()) @ t.reshape(-1),
            "dense Jacobian",
        ),
        (  # the earlier name of jacobian_loop, still importable from gradbook.vjp
            lambda f, x, t: jacobian_explicit(f, x).reshape(-1, x.numel()) @ t.reshape(-1),
            "dense Jacobian",
        ),
        (jacobian_by_hand, "one VJP at a time"),
        (lambda f, x, t: torch.autograd.functional.jvp(f, x, t)[1], "write it yourself"),
        (jvp_double_backward, "write it yourself"),
        (lambda f, x, t: jvp_via_vjps(f, x, t).flatten()[:-1], "output's shape|not J t"),
        (lambda f, x, t: jvp_via_vjps(f, x, t) * (1 + 1e-9), "to 1e-12"),
    ],
)
def test_jvp_from_vjps_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_jvp_from_vjps(wrong)


# Exercise 2.4 -----------------------------------------------------------------------


def grid(h, w, dtype=F64):
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([cols, rows], -1).reshape(-1, 2).to(dtype)


def moments(p):
    u = grid(*p.shape, dtype=p.dtype)
    q = p.reshape(-1)
    mean = q @ u
    d = u - mean
    return mean, (q[:, None] * d).T @ d


def moments_by_torch_cov(p):
    u = grid(*p.shape, dtype=p.dtype)
    q = p.reshape(-1)
    return q @ u, torch.cov(u.T, correction=0, aweights=q)


def moments_by_axes(p):
    h, w = p.shape
    xs = torch.arange(w, dtype=p.dtype)
    ys = torch.arange(h, dtype=p.dtype)
    mx, my = (p.sum(0) * xs).sum(), (p.sum(1) * ys).sum()
    dx, dy = xs - mx, ys - my
    vxx = (p.sum(0) * dx**2).sum()
    vyy = (p.sum(1) * dy**2).sum()
    vxy = (p * dy[:, None] * dx[None, :]).sum()
    return torch.stack([mx, my]), torch.stack([torch.stack([vxx, vxy]), torch.stack([vxy, vyy])])


@pytest.mark.parametrize("answer", [moments, moments_by_torch_cov, moments_by_axes])
def test_moments_correct_answers_pass(answer, capsys):
    assert check_moments(answer)
    assert "PASSED Exercise 2.4" in capsys.readouterr().out


def forum_moments(activation_map):
    """The forum answer with its `#` read as `@`: E[uu^T] - mu mu^T, one pass."""
    h, w = activation_map.shape
    range_h, range_w = torch.arange(h), torch.arange(w)
    idxs = torch.stack([range_w[None].repeat(h, 1), range_h[:, None].repeat(1, w)])
    map_flat = activation_map.view(-1)
    idxs_flat = idxs.reshape(2, -1).T.to(activation_map.dtype)
    mean = (map_flat[:, None] * idxs_flat).sum(0)
    mats = idxs_flat[:, :, None] @ idxs_flat[:, None, :]
    second_moments = (map_flat[:, None, None] * mats).sum(0)
    return mean, second_moments - mean[:, None] @ mean[None]


def not_centred(p):
    u, q = grid(*p.shape, dtype=p.dtype), p.reshape(-1)
    return q @ u, (q[:, None] * u).T @ u


def row_column(p):
    mean, cov = moments(p)
    return mean.flip(0), cov.flip(0, 1)


def cov_row_column(p):
    mean, cov = moments(p)
    return mean, cov.flip(0, 1)


def unweighted(p):
    u = grid(*p.shape, dtype=p.dtype)
    return u.mean(0), torch.cov(u.T)


def through_numpy(p):
    mean, cov = moments(p.detach())
    return torch.tensor(np.asarray(mean)), torch.tensor(np.asarray(cov))


def float64_grid(p):
    u, q = grid(*p.shape), p.reshape(-1)
    mean = q @ u
    d = u - mean
    return mean, (q[:, None] * d).T @ d


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (forum_moments, "float32"),
        (not_centred, "without centring"),
        (row_column, r"\(row, column\) order"),
        (cov_row_column, r"covariance is in \(row, column\) order"),
        (unweighted, "weight each pixel by p"),
        (lambda p: (moments(p)[0], torch.cov(grid(*p.shape).T)), "unweighted covariance"),
        (through_numpy, "not differentiable"),
        (float64_grid, "same dtype|dtype"),
        (lambda p: (moments(p)[0] + 1, moments(p)[1]), "p-weighted sum"),
        (lambda p: (moments(p)[0], 2 * moments(p)[1]), r"sum p \(u - mu\)"),
        (lambda p: moments(p)[0], "return a pair"),
        (spatial_moments, "write it yourself"),
    ],
)
def test_moments_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_moments(wrong)


# Exercise 2.5 -----------------------------------------------------------------------


def sample_mvn(mu, cov, n):
    factor = torch.linalg.cholesky(cov)
    noise = torch.randn(n, mu.shape[0], dtype=mu.dtype)
    return mu + noise @ factor.T


def sample_by_eigh(mu, cov, n):
    values, vectors = torch.linalg.eigh(cov)
    root = vectors @ torch.diag(values.sqrt()) @ vectors.T
    return mu + torch.randn(n, len(mu), dtype=mu.dtype) @ root


def sample_columns(mu, cov, n):
    factor = torch.linalg.cholesky(cov)
    return (mu[:, None] + factor @ torch.randn(len(mu), n, dtype=mu.dtype)).T


@pytest.mark.parametrize("answer", [sample_mvn, sample_by_eigh, sample_columns])
def test_sample_mvn_correct_answers_pass(answer, capsys):
    assert check_sample_mvn(answer)
    assert "PASSED Exercise 2.5" in capsys.readouterr().out


def with_factor(make_factor, noise_shape=None, right=True):
    def answer(mu, cov, n):
        factor = make_factor(cov)
        noise = torch.randn(*(noise_shape or (n, len(mu))), dtype=mu.dtype)
        return mu + (noise @ factor.T if right else noise @ factor)

    return answer


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the forum's randn_like(mu) * sigma + mu, with one draw shared by all coordinates
        (
            lambda mu, cov, n: mu + torch.randn(n, 1, dtype=mu.dtype) * cov.diagonal().sqrt(),
            "perfectly correlated",
        ),
        (
            lambda mu, cov, n: (
                mu
                + torch.randn(n, 1, dtype=mu.dtype)
                @ torch.ones(1, 3, dtype=mu.dtype)
                @ torch.linalg.cholesky(cov).T
            ),
            "perfectly correlated",
        ),
        (with_factor(lambda cov: cov), "cov itself as the factor"),
        (with_factor(torch.linalg.cholesky, right=False), "wrong side"),
        (with_factor(lambda cov: torch.diag(cov.diagonal().sqrt())), "dropped the covariances"),
        (with_factor(lambda cov: torch.diag(cov.diagonal())), "variances as standard deviations"),
        (with_factor(lambda cov: cov.sqrt()), "elementwise square root"),
        (with_factor(lambda cov: torch.linalg.cholesky(cov.detach())), "no gradient reaches cov"),
        (lambda mu, cov, n: sample_mvn(mu.detach(), cov, n), "no gradient reaches mu"),
        (lambda mu, cov, n: sample_mvn(mu, cov, n).detach(), "no gradient reaches mu or cov"),
        (lambda mu, cov, n: MultivariateNormal(mu, cov).sample((n,)), "write it yourself"),
        (lambda mu, cov, n: MultivariateNormal(mu, cov).rsample((n,)), "write it yourself"),
        (lambda mu, cov, n: sample_mvn(mu, cov, 1).expand(n, -1), "every sample is the same"),
        (lambda mu, cov, n: sample_mvn(mu, cov, n).T, "one sample per row"),
        (lambda mu, cov, n: sample_mvn(mu, cov, n) + 1, "sample mean"),
    ],
)
def test_sample_mvn_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_sample_mvn(wrong)


# Stretch exercise -------------------------------------------------------------------


def relative_discrepancy(f, vjp_fn, x):
    out = f(x)
    v = torch.randn_like(out)
    t = torch.randn_like(x)
    _, jt = torch.func.jvp(f, (x,), (t,))
    vj = vjp_fn(v)
    a, b = (v * jt).sum(), (vj * t).sum()
    return ((a - b).abs() / (v.norm() * jt.norm() + vj.norm() * t.norm())).item()


def discrepancy_by_double_vjp(f, vjp_fn, x):
    x = x.detach().requires_grad_(True)
    out = f(x)
    v, t = torch.randn_like(out), torch.randn_like(x)
    u = torch.zeros_like(out, requires_grad=True)
    (pullback,) = torch.autograd.grad(out, x, grad_outputs=u, create_graph=True)
    (jt,) = torch.autograd.grad(pullback, u, grad_outputs=t)
    a, b = (v * jt).sum(), (vjp_fn(v) * t).sum()
    return (a - b).abs() / torch.maximum(a.abs(), b.abs())


def discrepancy_over_trials(f, vjp_fn, x, trials=3):
    return max(relative_discrepancy(f, vjp_fn, x) for _ in range(trials))


@pytest.mark.parametrize(
    "answer", [relative_discrepancy, discrepancy_by_double_vjp, discrepancy_over_trials]
)
def test_adjoint_test_correct_answers_pass(answer, capsys):
    assert check_adjoint_test(answer)
    assert "PASSED Exercise 2.6 (Stretch" in capsys.readouterr().out


def measure(combine, probes=None, jt_of=None):
    def answer(f, vjp_fn, x):
        out = f(x)
        v, t = probes(out, x) if probes else (torch.randn_like(out), torch.randn_like(x))
        jt = jt_of(f, vjp_fn, x, t) if jt_of else torch.func.jvp(f, (x,), (t,))[1]
        vj = vjp_fn(v)
        return float(combine(v, jt, vj, t))

    return answer


def absolute(v, jt, vj, t):
    return ((v * jt).sum() - (vj * t).sum()).abs()


def signed(v, jt, vj, t):
    a, b = (v * jt).sum(), (vj * t).sum()
    return (a - b) / (v.norm() * jt.norm() + vj.norm() * t.norm())


def relative(v, jt, vj, t):
    return signed(v, jt, vj, t).abs()


def jt_by_central_difference(f, vjp_fn, x, t, h=1e-5):
    return (f(x + h * t) - f(x - h * t)) / (2 * h)


def jt_from_the_backward(f, vjp_fn, x, t):
    out = f(x)
    rows = []
    for k in range(out.numel()):
        e = torch.zeros(out.numel(), dtype=out.dtype)
        e[k] = 1
        rows.append(vjp_fn(e.reshape(out.shape)).reshape(-1))
    return (torch.stack(rows) @ t.reshape(-1)).reshape(out.shape)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (measure(absolute), "depends on the scale"),
        (measure(signed), "negative"),
        (measure(relative, jt_of=jt_by_central_difference), "points other than x"),
        (measure(relative, jt_of=jt_from_the_backward), "compares it with\\s+itself"),
        (
            measure(relative, probes=lambda out, x: (torch.ones_like(out), torch.ones_like(x))),
            "orthogonal to your probe",
        ),
        (
            measure(relative, probes=lambda out, x: (torch.randn_like(x), torch.randn_like(x))),
            "output's shape",
        ),
        (
            lambda f, vjp_fn, x: dot_product_test(f, x, vjp_fn=vjp_fn),
            "write it yourself: this is what gradbook.vjp.dot_product_test",
        ),
        (lambda f, vjp_fn, x: relative_discrepancy(f, vjp_fn, x) < 1e-12, "as a number"),
        (lambda f, vjp_fn, x: torch.zeros(2), "one number"),
    ],
)
def test_adjoint_test_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_adjoint_test(wrong)
