"""Chapter 3 checks: they fail on the known mistakes and pass on the reference answers."""

from __future__ import annotations

import pytest
import torch

from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch03 import (
    check_choose_mode,
    check_hessian,
    check_jacobian_rows,
    check_jacobian_vmap,
)

# Exercise 3.1: the row loop -----------------------------------------------------


def rows_reference(f, x):
    x = x.detach().requires_grad_(True)
    y = f(x)
    rows = [torch.autograd.grad(y[i], x, retain_graph=True)[0] for i in range(len(y))]
    return torch.stack(rows)


def rows_forgetting_retain_graph(f, x):
    x = x.detach().requires_grad_(True)
    y = f(x)
    return torch.stack([torch.autograd.grad(y[i], x)[0] for i in range(len(y))])


def rows_accumulating_grad(f, x):
    x = x.detach().requires_grad_(True)
    y = f(x)
    rows = []
    for i in range(len(y)):
        y[i].backward(retain_graph=True)
        rows.append(x.grad.clone())
    return torch.stack(rows)


def rows_stacked_as_columns(f, x):
    return rows_reference(f, x).T


def rows_of_the_sum(f, x):
    x = x.detach().requires_grad_(True)
    y = f(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    return g.expand(len(y), -1).clone()


def rows_without_requires_grad(f, x):
    y = f(x)
    return torch.stack([torch.autograd.grad(y[i], x, retain_graph=True)[0] for i in range(len(y))])


def test_rows_reference_passes(capsys):
    assert check_jacobian_rows(rows_reference)
    assert "PASSED Exercise 3.1" in capsys.readouterr().out


def test_rows_fresh_graph_per_row_also_passes():
    def fresh(f, x):
        rows = []
        for i in range(f(x).numel()):
            leaf = x.detach().requires_grad_(True)
            rows.append(torch.autograd.grad(f(leaf)[i], leaf)[0])
        return torch.stack(rows)

    assert check_jacobian_rows(fresh)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (rows_forgetting_retain_graph, "retain_graph"),
        (rows_accumulating_grad, "accumulate in x.grad"),
        (rows_stacked_as_columns, "transpose of the Jacobian"),
        (rows_of_the_sum, r"gradient of the \*sum\*"),
        (rows_without_requires_grad, "make x require gradients"),
        (lambda f, x: rows_reference(f, x)[:, :1], "expected shape"),
        (lambda f, x: 2 * rows_reference(f, x), "the Jacobian is wrong"),
        (lambda f, x: rows_reference(f, x).tolist(), "torch.Tensor"),
    ],
)
def test_rows_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_jacobian_rows(wrong)


# Exercise 3.2: vmap over one-hot cotangents -----------------------------------------


def vmap_reference(f, x):
    out, pullback = torch.func.vjp(f, x)
    (J,) = torch.func.vmap(pullback)(torch.eye(out.numel(), dtype=out.dtype))
    return J


def vmap_over_tangents(f, x):
    """One-hot *tangents* through jvp: columns, stacked as rows -> J^T."""
    return torch.func.vmap(lambda t: torch.func.jvp(f, (x,), (t,))[1])(
        torch.eye(x.numel(), dtype=x.dtype)
    )


def vmap_with_input_sized_cotangents(f, x):
    _, pullback = torch.func.vjp(f, x)
    (J,) = torch.func.vmap(pullback)(torch.eye(x.numel(), dtype=x.dtype))
    return J


def test_vmap_reference_passes(capsys):
    assert check_jacobian_vmap(vmap_reference)
    assert "PASSED Exercise 3.2" in capsys.readouterr().out


def test_vmap_jacrev_passes():
    assert check_jacobian_vmap(lambda f, x: torch.func.jacrev(f)(x))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (vmap_over_tangents, r"you returned J\^T.*one-hot tangents"),
        (vmap_with_input_sized_cotangents, "shape of the \\*output\\*"),
        (lambda f, x: vmap_reference(f, x).T, r"you returned J\^T"),
        (lambda f, x: vmap_reference(f, x).cumsum(0), "accumulate"),
        (lambda f, x: -vmap_reference(f, x), "the Jacobian is wrong"),
    ],
)
def test_vmap_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_jacobian_vmap(wrong)


# Exercise 3.3: forward or reverse -----------------------------------------------


def choose_reference(n_in, n_out):
    return "fwd" if n_out > n_in else "rev"


def test_choose_reference_passes(capsys):
    assert check_choose_mode(choose_reference)
    assert "PASSED Exercise 3.3" in capsys.readouterr().out


def test_choose_accepts_the_function_names():
    assert check_choose_mode(lambda n_in, n_out: "jacfwd" if n_out > n_in else "jacrev")


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # passes counted per input for reverse mode: exactly backwards
        (lambda n_in, n_out: "rev" if n_out > n_in else "fwd", "swapped"),
        # the arguments read in the wrong order: the same contradiction
        (lambda n_out, n_in: "fwd" if n_out > n_in else "rev", "swapped"),
        (lambda n_in, n_out: "rev", "always answer 'rev'"),
        (lambda n_in, n_out: "fwd", "always answer 'fwd'"),
        # right for extreme shapes, wrong for moderately tall ones
        (lambda n_in, n_out: "fwd" if n_out > 60 * n_in else "rev", "contradicts the shape"),
        (lambda n_in, n_out: "sideways", "return 'fwd' or 'rev'"),
        (lambda n_in, n_out: n_out > n_in, "return 'fwd' or 'rev'"),
    ],
)
def test_choose_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_choose_mode(wrong)


# Exercise 3.4: the Hessian ------------------------------------------------------


def hessian_reference(f, x):
    return torch.func.jacfwd(torch.func.jacrev(f))(x)


def hessian_double_backward(f, x):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    return torch.stack([torch.autograd.grad(g[i], x, retain_graph=True)[0] for i in range(len(g))])


def hessian_detached_gradient(f, x):
    """The seed's pattern: take x.grad after backward, then differentiate it again."""
    x = x.detach().requires_grad_(True)
    f(x).backward()
    g = x.grad
    return torch.stack([torch.autograd.grad(g[i], x)[0] for i in range(len(g))])


def test_hessian_reference_passes(capsys):
    assert check_hessian(hessian_reference)
    assert "PASSED Exercise 3.4" in capsys.readouterr().out


@pytest.mark.parametrize("good", [hessian_double_backward, lambda f, x: torch.func.hessian(f)(x)])
def test_hessian_other_correct_answers_pass(good):
    assert check_hessian(good)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (hessian_detached_gradient, "has no graph"),
        (lambda f, x: torch.func.grad(f)(x), "that is the gradient"),
        (lambda f, x: torch.outer(torch.func.grad(f)(x), torch.func.grad(f)(x)), "outer product"),
        (lambda f, x: torch.zeros(5, 5, dtype=x.dtype), "zero or not finite"),
        (lambda f, x: hessian_reference(f, x)[:3], "expected shape"),
        (lambda f, x: hessian_reference(f, x) + 1e-3, "not the Hessian"),
    ],
)
def test_hessian_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_hessian(wrong)
