"""Chapter 1 checks: the reference and correct alternatives pass; the known mistakes (the
forum's first) fail with a message naming the misconception."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch01 import (
    check_dot,
    check_is_orthogonal,
    check_orthogonal_part,
    check_project_batch,
    check_sphere_descent,
)
from gradbook.projection import (
    cosine,
    inner,
    is_orthogonal,
    orthogonal_component,
    parallel_component,
    sphere_step,
)

# Exercise 1.1 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        lambda a, b: torch.dot(a.flatten(), b.flatten()),
        lambda a, b: (a * b).sum(),
        lambda a, b: torch.tensordot(a, b, dims=a.ndim),
        # sum over channels of trace(A_c B_c^T): the same sum of pairwise products
        lambda a, b: (a @ b.transpose(-1, -2)).diagonal(dim1=-2, dim2=-1).sum(),
    ],
)
def test_dot_correct_answers_pass(answer, capsys):
    assert check_dot(answer)
    assert "PASSED Exercise 1.1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda a, b: a @ b, "batched matrix product"),  # the forum's `orth_vector @ img_grad`
        (lambda a, b: a.flatten() @ b, "batched matrix product"),
        (lambda a, b: torch.dot(a, b), "torch.dot only accepts 1-D"),
        (lambda a, b: a * b, "multiply, then add"),
        (lambda a, b: (a * b).sum(dim=0), "one number"),
        (lambda a, b: (a * b).mean(), "mean of the products"),
        (lambda a, b: a.norm() * b.norm(), "Cauchy-Schwarz"),
        (lambda a, b: (a * a).sum(), "second argument"),
        (lambda a, b: (a @ b).sum(), "not the inner product"),
        (lambda a, b: inner(a, b), "write it yourself: this is what gradbook.projection.inner"),
        (lambda a, b: [1.0], "torch.Tensor"),
    ],
)
def test_dot_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_dot(wrong)


# Exercise 1.2 -----------------------------------------------------------------------


def reference_orthogonal(g, x):
    nn = (x * x).sum()
    if nn == 0:
        return g.clone()
    return g - (g * x).sum() / nn * x


def safe_where(g, x):
    nn = (x * x).sum()
    return g - (g * x).sum() / torch.where(nn > 0, nn, torch.ones_like(nn)) * x


def through_unit_vector(g, x):
    if (x == 0).all():
        return g
    u = x / x.norm()
    return g - (g * u).sum() * u


def unguarded(g, x):
    return g - (g * x).sum() / (x * x).sum() * x


def guard_on(test):
    def answer(g, x):
        return g.clone() if test(x) else unguarded(g, x)

    return answer


def where_trap(g, x):
    nn = (x * x).sum()
    return torch.where(nn > 0, g - (g * x).sum() / nn * x, g)


def coefficient_as_number(g, x):
    nn = (x * x).sum().item()
    if nn == 0:
        return g.clone()
    return g - (g * x).sum().item() / nn * x


def without_grad(g, x):
    with torch.no_grad():
        return reference_orthogonal(g, x)


def in_place(g, x):
    nn = (x * x).sum()
    if nn == 0:
        return g
    if g.requires_grad:  # an in-place edit of a leaf is an error; the values show it already
        return g - (g * x).sum() / nn * x
    g -= (g * x).sum() / nn * x
    return g


@pytest.mark.parametrize("answer", [reference_orthogonal, safe_where, through_unit_vector])
def test_orthogonal_correct_answers_pass(answer, capsys):
    assert check_orthogonal_part(answer)
    assert "PASSED Exercise 1.2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the forum's mix-up: orthogonal to the gradient instead of the image
        (lambda g, x: reference_orthogonal(x, g), "orthogonal to the gradient"),
        # the textbook formula without a guard: 0/0 for a zero image
        (unguarded, "NaN"),
        # the guard tests the sum (or mean): wrong for an image whose entries cancel
        (guard_on(lambda x: x.sum() == 0), "add up to 0"),
        (guard_on(lambda x: x.mean() == 0), "add up to 0"),
        # an epsilon instead of a guard: wrong for small images
        (lambda g, x: g - (g * x).sum() / ((x * x).sum() + 1e-12) * x, "epsilon"),
        (lambda g, x: g - (g * x).sum() / (x * x).sum().clamp_min(1e-12) * x, "epsilon"),
        # the value is guarded, the gradient is not
        (where_trap, "gradient through it is NaN"),
        (coefficient_as_number, "left the graph"),
        (without_grad, "has no gradient"),
        (lambda g, x: g - (g * x).sum() / x.norm() * x, r"\|\|x\|\|\^2 \(the squared norm\)"),
        (lambda g, x: g - (g * x).sum() * x, r"did not divide by \|\|x\|\|\^2"),
        (lambda g, x: (g * x).sum() / (x * x).sum() * x, "what is left of g"),
        (lambda g, x: g + (g * x).sum() / (x * x).sum() * x, "the sign"),
        (
            lambda g, x: g - (g * x).sum((1, 2), keepdim=True) / (x * x).sum((1, 2), True) * x,
            "each channel separately",
        ),
        (
            lambda g, x: torch.zeros_like(g) if (x == 0).all() else unguarded(g, x),
            "unchanged",
        ),
        (lambda g, x: reference_orthogonal(g, x).flatten(), "shape"),
        (in_place, "in place"),
        (orthogonal_component, "write it yourself"),
        (lambda g, x: g - parallel_component(g, x), "write it yourself"),
    ],
)
def test_orthogonal_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_orthogonal_part(wrong)


def test_forbidden_functions_work_again_after_the_check():
    with pytest.raises(ExerciseFailed):
        check_orthogonal_part(orthogonal_component)
    g, x = torch.ones(3, dtype=torch.float64), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.equal(orthogonal_component(g, x), torch.tensor([0.0, 1.0, 1.0], dtype=g.dtype))


# Exercise 1.3 -----------------------------------------------------------------------


def reference_is_orth(u, v, tol=1e-5):
    nu, nv = u.norm(), v.norm()
    if nu == 0 or nv == 0:
        return True
    return bool(((u / nu) * (v / nv)).sum().abs() <= tol)


def by_cosine_similarity(u, v):
    return bool(F.cosine_similarity(u.flatten(), v.flatten(), dim=0).abs() < 1e-6)


def by_angle(u, v):
    nu, nv = u.norm(), v.norm()
    if nu * nv == 0:
        return True
    c = ((u * v).sum() / (nu * nv)).clamp(-1, 1)
    return abs(torch.acos(c).item() - math.pi / 2) < 1e-5


@pytest.mark.parametrize("answer", [reference_is_orth, by_cosine_similarity, by_angle])
def test_is_orthogonal_correct_answers_pass(answer, capsys):
    assert check_is_orthogonal(answer)
    assert "PASSED Exercise 1.3" in capsys.readouterr().out


def unguarded_cosine(u, v):
    return bool(((u * v).sum() / (u.norm() * v.norm())).abs() < 1e-5)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda u, v: bool((u * v).sum() == 0), "exact `== 0`"),  # the forum's assertion
        (lambda u, v: bool(u @ v == 0), "batched matrix product"),
        (lambda u, v: torch.allclose((u * v).sum(), torch.tensor(0.0)), "exact `== 0`"),
        (lambda u, v: bool((u * v).sum().abs() < 1e-3), "scale-free"),
        (lambda u, v: bool((u * v).sum().abs() < 1e3), "Normalise first"),
        (lambda u, v: True, "Normalise first"),
        (lambda u, v: reference_is_orth(u, v, tol=1e-2), "tolerance is far above rounding"),
        (unguarded_cosine, "zero tensor is orthogonal"),
        (lambda u, v: (u * v) == 0, "return one True or False"),
        (lambda u, v: bool(is_orthogonal(u, v)), "write it yourself"),
        (lambda u, v: bool(cosine(u, v).abs() < 1e-5), "write it yourself"),
    ],
)
def test_is_orthogonal_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_is_orthogonal(wrong)


# Exercise 1.4 -----------------------------------------------------------------------


def reference_batch(g, x):
    dims = (1, 2, 3)
    dot = (g * x).sum(dim=dims, keepdim=True)
    nn = (x * x).sum(dim=dims, keepdim=True)
    return g - dot / torch.where(nn > 0, nn, torch.ones_like(nn)) * x


def flattened_batch(g, x):
    gf, xf = g.reshape(len(g), -1), x.reshape(len(x), -1)
    nn = (xf * xf).sum(1)
    coefficient = (gf * xf).sum(1) / torch.where(nn > 0, nn, 1.0)
    return g - coefficient.view(-1, 1, 1, 1) * x


def einsum_batch(g, x):
    dot = torch.einsum("bchw,bchw->b", g, x)
    nn = torch.einsum("bchw,bchw->b", x, x)
    safe = nn.masked_fill(nn == 0, 1.0)
    return g - (dot / safe)[:, None, None, None] * x


@pytest.mark.parametrize("answer", [reference_batch, flattened_batch, einsum_batch])
def test_batch_correct_answers_pass(answer, capsys):
    assert check_project_batch(answer)
    assert "PASSED Exercise 1.4" in capsys.readouterr().out


def per_channel(g, x):
    dot = (g * x).sum(dim=(2, 3), keepdim=True)
    nn = (x * x).sum(dim=(2, 3), keepdim=True)
    return g - dot / torch.where(nn > 0, nn, torch.ones_like(nn)) * x


def loop_over_samples(g, x):
    return torch.stack([reference_orthogonal(gi, xi) for gi, xi in zip(g, x, strict=True)])


def batch_guard(g, x):
    nn = (x * x).sum((1, 2, 3), keepdim=True)
    if (nn == 0).any():
        return g.clone()
    return g - (g * x).sum((1, 2, 3), keepdim=True) / nn * x


def batch_where_trap(g, x):
    nn = (x * x).sum((1, 2, 3), keepdim=True)
    return torch.where(nn > 0, g - (g * x).sum((1, 2, 3), keepdim=True) / nn * x, g)


def no_keepdim(g, x):
    nn = (x * x).sum((1, 2, 3))
    return g - (g * x).sum((1, 2, 3)) / torch.where(nn > 0, nn, 1.0) * x


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (reference_orthogonal, "whole batch as one vector"),
        (per_channel, "each channel separately"),
        (lambda g, x: reference_batch(g, x[:1].expand_as(x)), "first image"),
        (
            lambda g, x: (
                g - (g * x).sum((1, 2, 3), keepdim=True) / (x * x).sum((1, 2, 3), keepdim=True) * x
            ),
            "NaN",
        ),
        (batch_guard, "whole batch unchanged"),
        (batch_where_trap, "gradient through it is NaN"),
        (loop_over_samples, "loops over the samples"),
        (no_keepdim, "keepdim=True"),
        (lambda g, x: reference_batch(g, x)[0], "shape"),
        (lambda g, x: g.sub_(reference_batch(g, x) - g) if not g.requires_grad else g, "in place"),
        (lambda g, x: orthogonal_component(g, x, dims=(1, 2, 3)), "write it yourself"),
    ],
)
def test_batch_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_project_batch(wrong)


# Stretch exercise -------------------------------------------------------------------


def reference_descent(loss_fn, x0, lr, steps):
    radius = x0.norm()
    x = x0.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(x), x)
        x = x.detach()
        g_perp = g - (g * x).sum() / (x * x).sum() * x
        y = x - lr * g_perp
        x = y * (radius / y.norm())
    return x


def descent_with_backward(loss_fn, x0, lr, steps):
    x = x0.clone().requires_grad_(True)
    radius = x0.norm()
    for _ in range(steps):
        x.grad = None
        loss_fn(x).backward()
        with torch.no_grad():
            u = x / x.norm()
            x -= lr * (x.grad - (x.grad * u).sum() * u)
            x *= radius / x.norm()
    return x.detach()


def descent_with_func(loss_fn, x0, lr, steps):
    x = x0.clone()
    for _ in range(steps):
        g = torch.func.grad(loss_fn)(x)
        y = x - lr * (g - (g * x).sum() / (x * x).sum() * x)
        x = y / y.norm() * x0.norm()
    return x


@pytest.mark.parametrize("answer", [reference_descent, descent_with_backward, descent_with_func])
def test_sphere_descent_correct_answers_pass(answer, capsys):
    assert check_sphere_descent(answer)
    assert "PASSED Exercise 1.5 (Stretch" in capsys.readouterr().out


def descent(step):
    def answer(loss_fn, x0, lr, steps):
        x = x0.clone()
        for _ in range(steps):
            x.requires_grad_(True)
            (g,) = torch.autograd.grad(loss_fn(x), x)
            x = step(x.detach(), g, lr, x0.norm())
        return x

    return answer


def tangent(g, x):
    return g - (g * x).sum() / (x * x).sum() * x


def accumulating(loss_fn, x0, lr, steps):
    x = x0.clone().requires_grad_(True)
    for _ in range(steps):
        loss_fn(x).backward()
        with torch.no_grad():
            x -= lr * tangent(x.grad, x)
            x *= x0.norm() / x.norm()
    return x.detach()


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (descent(lambda x, g, lr, r: x - lr * tangent(g, x)), "left the sphere"),
        (
            descent(lambda x, g, lr, r: (x - lr * tangent(g, x)) / (x - lr * tangent(g, x)).norm()),
            "norm 1",
        ),
        (descent(lambda x, g, lr, r: (x - lr * g) * r / (x - lr * g).norm()), "whole Euclidean"),
        (
            descent(
                lambda x, g, lr, r: (x + lr * tangent(g, x)) * r / (x + lr * tangent(g, x)).norm()
            ),
            "uphill",
        ),
        (descent(lambda x, g, lr, r: x - lr * g), "plain gradient step"),
        (accumulating, r"\.grad accumulates"),
        (lambda loss_fn, x0, lr, steps: x0, "distinct point"),
        (descent(lambda x, g, lr, r: sphere_step(x, g, lr)), "write it yourself"),
        (descent(lambda x, g, lr, r: orthogonal_component(g, x)), "write it yourself"),
    ],
)
def test_sphere_descent_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_sphere_descent(wrong)
