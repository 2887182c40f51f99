"""Chapter 3 checks: correct answers pass, the known mistakes fail with the misconception named.

The references here are independent of the checks: the Kronecker identity
``vec(A X B) = (B^T kron A) vec X`` for 3.1, the MLP's hand-derived Jacobian
(inside the checks) for 3.2 and 3.4, and a hand-written Hessian for 3.3.
"""

from __future__ import annotations

import math

import pytest
import torch

from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch03 import (
    check_hvp,
    check_jacfwd_weights,
    check_jacobian_in_budget,
    check_vec_jacobian,
)
from gradbook.jacobian import hessian, jacobian, jacobian_fwd_explicit, jacobian_loop

# Exercise 3.1: the Jacobian of a matrix function, vec layout -----------------------


def vec_reference(F, X):
    J = torch.func.jacrev(F)(X)
    p, q, m, n = J.shape
    return J.permute(1, 0, 3, 2).reshape(p * q, m * n)


def vec_through_transposes(F, X):
    """Differentiate vec F(X) as a function of vec X directly: vec M = M.mT.reshape(-1)."""
    m, n = X.shape

    def flat(v):
        return F(v.reshape(n, m).mT).mT.reshape(-1)

    return torch.func.jacfwd(flat)(X.mT.reshape(-1))


def vec_by_columns(F, X):
    """One JVP per entry of vec X, in vec order, with gradbook's 4-D Jacobian avoided."""
    m, n = X.shape
    columns = []
    for col in range(n):
        for row in range(m):
            E = torch.zeros_like(X)
            E[row, col] = 1
            columns.append(torch.func.jvp(F, (X,), (E,))[1].mT.reshape(-1))
    return torch.stack(columns, dim=1)


def vec_row_major(F, X):
    J = torch.func.jacrev(F)(X)
    return J.reshape(J.shape[0] * J.shape[1], -1)


def test_vec_kron_identity_agrees_with_reference():
    """The reference layout is the textbook one: vec(A X B) = (B^T kron A) vec X."""
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    B = torch.randn(2, 5, generator=gen, dtype=torch.float64)
    X = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    assert torch.allclose(vec_reference(lambda Y: A @ Y @ B, X), torch.kron(B.mT.contiguous(), A))


def test_vec_reference_passes(capsys):
    assert check_vec_jacobian(vec_reference)
    out = capsys.readouterr().out
    assert "PASSED Exercise 3.1" in out
    assert "permute" not in out and "kron" not in out


@pytest.mark.parametrize(
    "good",
    [
        vec_through_transposes,
        vec_by_columns,
        lambda F, X: jacobian(F, X).permute(1, 0, 3, 2).flatten(2).flatten(0, 1),
    ],
)
def test_vec_other_correct_answers_pass(good):
    assert check_vec_jacobian(good)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # torch's natural flattening: the row-major layout, not vec's
        (vec_row_major, "row-major order"),
        (lambda F, X: vec_row_major(F, X).mT, "transpose of the row-major"),
        (lambda F, X: vec_reference(F, X).mT, "you returned the transpose"),
        (
            lambda F, X: torch.func.jacrev(F)(X).permute(1, 0, 2, 3).flatten(2).flatten(0, 1),
            "its columns follow the row-major flattening of X",
        ),
        (
            lambda F, X: torch.func.jacrev(F)(X).permute(0, 1, 3, 2).flatten(2).flatten(0, 1),
            "its rows follow the row-major flattening of F",
        ),
        (lambda F, X: torch.func.jacrev(F)(X), "4-D array"),
        (
            lambda F, X: torch.func.jacrev(F)(X).reshape(X.numel(), -1),
            r"reshape keeps the memory order|expected shape",
        ),
        (lambda F, X: 2 * vec_reference(F, X), "the Jacobian is wrong"),
        (lambda F, X: vec_reference(F, X).numpy(), "torch.Tensor"),
    ],
)
def test_vec_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_vec_jacobian(wrong)


# Exercise 3.2: a Jacobian within a memory budget ----------------------------------


def chunk_for(f, x, budget_bytes):
    m = f(x).numel()
    per_vjp = (m + x.numel()) * x.element_size()
    chunk = budget_bytes // per_vjp
    if chunk < 1:
        raise ValueError(f"budget_bytes: {budget_bytes} bytes do not hold one VJP ({per_vjp})")
    return chunk


def budget_reference(f, x, budget_bytes):
    return torch.func.jacrev(f, chunk_size=chunk_for(f, x, budget_bytes))(x)


def budget_by_hand(f, x, budget_bytes):
    """vmap of the pullback over slices of the identity, chunk by chunk."""
    chunk = chunk_for(f, x, budget_bytes)
    out, pullback = torch.func.vjp(f, x)
    eye = torch.eye(out.numel(), dtype=x.dtype)
    rows = [torch.func.vmap(pullback)(eye[i : i + chunk])[0] for i in range(0, len(eye), chunk)]
    return torch.cat(rows)


def budget_gradbook(f, x, budget_bytes):
    return jacobian(f, x, "rev", chunk_size=chunk_for(f, x, budget_bytes))


def budget_with(chunk_of):
    """An answer that computes its chunk with ``chunk_of(m, n, size, budget)``."""

    def answer(f, x, budget_bytes):
        m = f(x).numel()
        chunk = chunk_of(m, x.numel(), x.element_size(), budget_bytes)
        return torch.func.jacrev(f, chunk_size=chunk)(x)

    return answer


def test_budget_reference_passes(capsys):
    assert check_jacobian_in_budget(budget_reference)
    assert "PASSED Exercise 3.2" in capsys.readouterr().out


@pytest.mark.parametrize("good", [budget_by_hand, budget_gradbook])
def test_budget_other_correct_answers_pass(good):
    assert check_jacobian_in_budget(good)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the scan pattern: one row at a time, safe but m passes
        (lambda f, x, budget: jacobian_loop(f, x), "one row at a time"),
        (lambda f, x, budget: torch.func.jacrev(f)(x), "in one batch: pass a chunk_size"),
        (
            lambda f, x, budget: torch.autograd.functional.jacobian(f, x, vectorize=True),
            "legacy batching",
        ),
        (budget_with(lambda m, n, size, b: b // (m + n)), "count bytes, not entries"),
        (budget_with(lambda m, n, size, b: b // (m * size)), "only the cotangent"),
        (budget_with(lambda m, n, size, b: b // (n * size)), "only the gradient"),
        (budget_with(lambda m, n, size, b: math.ceil(b / ((m + n) * size))), "rounded up"),
        (budget_with(lambda m, n, size, b: b // ((m + n) * 8)), "not 8"),
        (
            budget_with(lambda m, n, size, b: max(1, b // ((m + n) * size) - 1)),
            "a larger one fits",
        ),
        (
            lambda f, x, budget: torch.func.jacfwd(f)(x),
            "no VJP reached f: that is forward mode",
        ),
        (
            lambda f, x, budget: (budget_reference(f, x, budget), torch.func.jacrev(f)(x))[0],
            "in one batch",
        ),
        (lambda f, x, budget: budget_reference(f, x, budget).mT, "the transpose"),
        # no guard: a chunk of 0 reaches jacrev, whose error does not name the budget
        (
            lambda f, x, budget: torch.func.jacrev(
                f, chunk_size=budget // ((f(x).numel() + x.numel()) * x.element_size())
            )(x),
            "Raise it yourself",
        ),
        # no guard, and a chunk of at least 1 whatever the budget
        (
            budget_with(lambda m, n, size, b: max(1, b // ((m + n) * size))),
            "yet your function returned a result",
        ),
    ],
)
def test_budget_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_jacobian_in_budget(wrong)


# Exercise 3.3: a Hessian-vector product without the Hessian ---------------------


def hvp_forward_over_reverse(f, x, v):
    return torch.func.jvp(torch.func.grad(f), (x,), (v,))[1]


def hvp_reverse_over_reverse(f, x, v):
    _, pullback = torch.func.vjp(torch.func.grad(f), x)
    return pullback(v)[0]


def hvp_double_backward(f, x, v):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    return torch.autograd.grad(g @ v, x)[0]


def hvp_detached_gradient(f, x, v):
    """The seed's pattern: read x.grad after backward and differentiate it again."""
    x = x.detach().requires_grad_(True)
    f(x).backward()
    return torch.autograd.grad(x.grad @ v, x)[0]


def hvp_batched_rows(f, x, v):
    """H by one batched second pass over the identity (legacy batching), then H v."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    eye = torch.eye(x.numel(), dtype=x.dtype)
    (H,) = torch.autograd.grad(g, x, eye, is_grads_batched=True)
    return H @ v


def hvp_central_difference(f, x, v, eps=1e-5):
    grad = torch.func.grad(f)
    return (grad(x + eps * v) - grad(x - eps * v)) / (2 * eps)


def test_hvp_hand_hessian_is_the_hessian():
    """The hand-written Hessian of the check's function agrees with autodiff on a small size."""
    from gradbook.exercises.ch03 import _HvpProblem

    problem = _HvpProblem(7, 12)
    H = torch.func.hessian(lambda z: problem.f(z))(problem.x)
    assert torch.allclose(problem.hessian_times(problem.x, problem.v), H @ problem.v)
    assert torch.allclose(problem.hessian_diagonal(problem.x), torch.diagonal(H))


def test_hvp_reference_passes(capsys):
    assert check_hvp(hvp_forward_over_reverse)
    assert "PASSED Exercise 3.3" in capsys.readouterr().out


@pytest.mark.parametrize("good", [hvp_reverse_over_reverse, hvp_double_backward])
def test_hvp_other_correct_answers_pass(good):
    assert check_hvp(good)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (hvp_detached_gradient, "has no graph"),
        # forming H, by the library's functions and by hand (the scan pattern batched)
        (lambda f, x, v: torch.func.hessian(f)(x) @ v, "forms the whole n x n Hessian"),
        (lambda f, x, v: hessian(f, x) @ v, "forms the whole n x n Hessian"),
        (
            lambda f, x, v: torch.autograd.functional.hessian(f, x) @ v,
            "forms the whole n x n Hessian",
        ),
        (
            lambda f, x, v: torch.func.jacfwd(torch.func.jacrev(f))(x) @ v,
            "that is the whole Hessian",
        ),
        (lambda f, x, v: torch.autograd.functional.hvp(f, x, v)[1], "write it yourself"),
        (hvp_batched_rows, "that is the whole Hessian"),
        (hvp_central_difference, "finite differences"),
        (
            lambda f, x, v: (torch.func.grad(f)(x + 1e-7 * v) - torch.func.grad(f)(x)) / 1e-7,
            "finite differences",
        ),
        (lambda f, x, v: torch.func.grad(f)(x) * v, "gradient times v entry by entry"),
        (lambda f, x, v: torch.func.grad(f)(x) @ v, "directional derivative"),
        (lambda f, x, v: hvp_forward_over_reverse(f, v, x), "evaluated the Hessian at v"),
        (lambda f, x, v: torch.func.grad(f)(x), "that is the gradient"),
        (
            lambda f, x, v: hvp_double_backward(f, x, v) + 1e-3 * v,
            "not H v",
        ),
    ],
)
def test_hvp_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_hvp(wrong)


def test_hvp_row_loop_is_caught_as_forming_h():
    """The scan pattern itself: one gradient of g_i per row, i.e. H row by row."""

    def rows(f, x, v):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(x), x, create_graph=True)
        H = torch.stack([torch.autograd.grad(g[i], x, retain_graph=True)[0] for i in range(50)])
        return torch.cat([H @ v, hvp_double_backward(f, x, v)[50:]])

    with pytest.raises(ExerciseFailed, match="that is the whole Hessian"):
        check_hvp(rows)


# Exercise 3.4 (stretch): forward mode with the weights as inputs ----------------


def weights_reference(f, x, params):
    zeros = {key: torch.zeros_like(value) for key, value in params.items()}

    def column(tangent):
        return torch.func.jvp(f, (x, params), (tangent, zeros))[1]

    return torch.func.vmap(column)(torch.eye(x.numel(), dtype=x.dtype)).mT


def weights_loop(f, x, params):
    zeros = {key: torch.zeros_like(value) for key, value in params.items()}
    columns = [torch.func.jvp(f, (x, params), (e, zeros))[1] for e in torch.eye(x.numel())]
    return torch.stack(columns, dim=1)


def weights_as_tuple(f, x, params):
    keys = list(params)

    def g(z, *values):
        return f(z, dict(zip(keys, values, strict=True)))

    zeros = tuple(torch.zeros_like(params[key]) for key in keys)
    values = tuple(params[key] for key in keys)
    push = torch.func.vmap(lambda t: torch.func.jvp(g, (x, *values), (t, *zeros))[1])
    return push(torch.eye(x.numel(), dtype=x.dtype)).mT


def weights_with_tangents(make):
    def answer(f, x, params):
        tangents = {key: make(value) for key, value in params.items()}
        push = torch.func.vmap(lambda t: torch.func.jvp(f, (x, params), (t, tangents))[1])
        return push(torch.eye(x.numel(), dtype=x.dtype)).mT

    return answer


def test_weights_reference_passes(capsys):
    assert check_jacfwd_weights(weights_reference)
    assert "PASSED Exercise 3.4 (Stretch" in capsys.readouterr().out


@pytest.mark.parametrize("good", [weights_loop, weights_as_tuple])
def test_weights_other_correct_answers_pass(good):
    assert check_jacfwd_weights(good)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda f, x, p: torch.func.jacfwd(lambda z: f(z, p))(x), "captured by a closure"),
        (lambda f, x, p: torch.func.jacfwd(f, argnums=0)(x, p), "left out by argnums"),
        (lambda f, x, p: jacobian(lambda z: f(z, p), x, "fwd"), "ZeroTensors"),
        (lambda f, x, p: torch.func.jacrev(f)(x, p), "that is reverse mode"),
        (lambda f, x, p: torch.func.jacfwd(f, argnums=(0, 1))(x, p)[0], r"argnums=\(0, 1\)"),
        (lambda f, x, p: torch.func.jacfwd(f, argnums=(0, 1))(x, p), r"argnums=\(0, 1\)"),
        (lambda f, x, p: weights_reference(f, x, p).mT, "you returned J\\^T"),
        (weights_with_tangents(torch.ones_like), "tangents zero"),
        (weights_with_tangents(lambda value: torch.zeros(())), "tangent must have"),
        (jacobian_fwd_explicit, "write it yourself"),
    ],
)
def test_weights_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_jacfwd_weights(wrong)
