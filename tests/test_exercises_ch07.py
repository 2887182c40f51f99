"""Chapter 7 checks fail on the known mistakes (the forum's among them), pass on the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch07 import (
    check_broyden_step,
    check_fd_function,
    check_one_probe_jacobian,
    check_secant_vjp,
)

# Exercise 7.1 -----------------------------------------------------------------


def one_probe_reference(dx, df):
    return torch.outer(df, dx) / (dx @ dx)


def test_one_probe_reference_passes(capsys):
    assert check_one_probe_jacobian(one_probe_reference)
    assert "PASSED Exercise 7.1" in capsys.readouterr().out


def test_one_probe_pinv_passes():
    assert check_one_probe_jacobian(lambda dx, df: df[:, None] @ torch.linalg.pinv(dx[:, None]))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the forum's right inverse dx^T (dx dx^T)^-1: singular, or noise through rounding
        (
            lambda dx, df: df[:, None] @ dx[None, :] @ torch.linalg.inv(torch.outer(dx, dx)),
            "dx dx\\^T|rank-one matrix",
        ),
        (
            lambda dx, df: torch.from_numpy(np.outer(df, dx) @ np.linalg.inv(np.outer(dx, dx))),
            "dx dx\\^T|rank-one matrix",
        ),
        (lambda dx, df: torch.outer(dx, df) / (dx @ dx), "the transpose"),
        (lambda dx, df: torch.outer(df, dx) / dx.norm(), "normalisation"),
        # spread df equally over the inputs: J dx = df holds, but J is not minimal
        (lambda dx, df: torch.outer(df, 1 / dx) / dx.numel(), "orthogonal to dx"),
        (lambda dx, df: torch.outer(df, dx), "normalisation|secant condition"),
        (lambda dx, df: 0.5 * torch.outer(df, dx) / (dx @ dx), "secant condition J dx = df"),
        (lambda dx, df: (torch.outer(df, dx) / (dx @ dx)).numpy().tolist(), "torch.Tensor"),
    ],
)
def test_one_probe_mistakes_are_named(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_one_probe_jacobian(wrong)


# Exercise 7.2 -----------------------------------------------------------------


def secant_reference(fun, x, g, dX):
    fx = fun(x)
    dF = torch.stack([fun(x + dX[:, i]) - fx for i in range(dX.shape[1])], dim=1)
    return g @ dF @ torch.linalg.pinv(dX)


def secant_lstsq(fun, x, g, dX):
    fx = fun(x)
    dF = torch.stack([fun(x + dX[:, i]) - fx for i in range(dX.shape[1])], dim=1)
    return g @ torch.linalg.lstsq(dX.T, dF.T).solution.T


def _dF(fun, x, dX):
    fx = fun(x)
    return torch.stack([fun(x + dX[:, i]) - fx for i in range(dX.shape[1])], dim=1)


def right_inverse(fun, x, g, dX):  # the forum's dX^T (dX dX^T)^-1
    return g @ _dF(fun, x, dX) @ dX.T @ torch.linalg.inv(dX @ dX.T)


def left_inverse(fun, x, g, dX):  # (dX^T dX)^-1 dX^T: fine for k <= m only
    return g @ _dF(fun, x, dX) @ torch.linalg.inv(dX.T @ dX) @ dX.T


def square_inverse(fun, x, g, dX):
    return g @ _dF(fun, x, dX) @ torch.linalg.inv(dX)


def walking_probes(fun, x, g, dX):
    points = [x]
    for i in range(dX.shape[1]):
        points.append(points[-1] + dX[:, i])
    values = [fun(p) for p in points]
    dF = torch.stack([values[i + 1] - values[i] for i in range(dX.shape[1])], dim=1)
    return g @ dF @ torch.linalg.pinv(dX)


def no_subtraction(fun, x, g, dX):
    plus = torch.stack([fun(x + dX[:, i]) for i in range(dX.shape[1])], dim=1)
    return g @ plus @ torch.linalg.pinv(dX)


def summed_one_probe(fun, x, g, dX):
    dF = _dF(fun, x, dX)
    return sum(
        g @ torch.outer(dF[:, i], dX[:, i]) / (dX[:, i] @ dX[:, i]) for i in range(dX.shape[1])
    )


def averaged_one_probe(fun, x, g, dX):
    return summed_one_probe(fun, x, g, dX) / dX.shape[1]


def jacobian_vector(fun, x, g, dX):  # J g instead of g^T J: wrong shape
    return (_dF(fun, x, dX) @ torch.linalg.pinv(dX)) @ torch.ones(dX.shape[0], dtype=x.dtype)


def test_secant_reference_passes(capsys):
    assert check_secant_vjp(secant_reference)
    assert check_secant_vjp(secant_lstsq)
    assert "PASSED Exercise 7.2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (right_inverse, "fewer than the m = 4 inputs.*(singular|pseudo-inverse|huge)"),
        (left_inverse, "more than the m = 4 inputs.*(singular|pseudo-inverse|huge)"),
        (square_inverse, "non-square matrix"),
        (walking_probes, "different point"),
        (no_subtraction, "f\\(x \\+ dx_i\\) - f\\(x\\)"),
        (summed_one_probe, "orthogonal probes"),
        (averaged_one_probe, "orthogonal probes"),
        (jacobian_vector, "one entry per input"),
    ],
)
def test_secant_mistakes_are_named(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_secant_vjp(wrong)


# Exercise 7.3 -----------------------------------------------------------------


def broyden_reference(J, dx, df):
    return J + torch.outer(df - J @ dx, dx) / (dx @ dx)


def test_broyden_reference_passes(capsys):
    assert check_broyden_step(broyden_reference)
    assert "PASSED Exercise 7.3" in capsys.readouterr().out


def in_place(J, dx, df):
    J += torch.outer(df - J @ dx, dx) / (dx @ dx)
    return J


def test_broyden_in_place_also_passes():
    assert check_broyden_step(in_place)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda J, dx, df: torch.outer(df, dx) / (dx @ dx), "replaced J"),
        (lambda J, dx, df: J + torch.outer(df, dx) / (dx @ dx), "residual df - J dx"),
        (lambda J, dx, df: J + torch.outer(df - J @ dx, dx) / dx.norm(), "normalisation"),
        (
            lambda J, dx, df: J + 0.5 * torch.outer(df - J @ dx, dx) / (dx @ dx),
            "newest secant condition",
        ),
        (lambda J, dx, df: J + torch.outer(dx, df - J @ dx) / (dx @ dx), "outer product"),
        (
            lambda J, dx, df: J + torch.outer(df - J @ dx, torch.ones_like(dx)) / dx.sum(),
            "orthogonal to dx",
        ),
    ],
)
def test_broyden_mistakes_are_named(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_broyden_step(wrong)


# Exercise 7.4 -----------------------------------------------------------------


def make_fd_factory(
    step=1e-6,
    method="central",
    honour_needs=True,
    transpose=False,
    numpy_out=False,
    keep_dtype=True,
):
    """The reference (defaults) and its mistakes, one switch each."""

    def make_fd_function(fun):
        def to_numpy(t):
            return t.detach().cpu().double().numpy()

        def vjp(f_of, point, g):
            h = step * np.maximum(1.0, np.abs(point))
            columns = []
            f0 = f_of(point)
            for j in range(point.size):
                e = np.zeros_like(point)
                e[j] = h[j]
                if method == "central":
                    columns.append((f_of(point + e) - f_of(point - e)) / (2 * h[j]))
                else:
                    columns.append((f_of(point + e) - f0) / h[j])
            J = np.stack(columns, axis=1)
            return J @ np.ones(J.shape[1]) if transpose else g @ J

        class FD(torch.autograd.Function):
            @staticmethod
            def forward(x, y):
                out = np.asarray(fun(to_numpy(x), to_numpy(y)))
                if numpy_out:
                    return out
                return torch.as_tensor(out).to(x.device, x.dtype if keep_dtype else torch.float64)

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(*inputs)

            @staticmethod
            def backward(ctx, grad_output):
                x, y = ctx.saved_tensors
                xn, yn, g = to_numpy(x), to_numpy(y), to_numpy(grad_output)
                gx = gy = None
                if ctx.needs_input_grad[0] or not honour_needs:
                    gx = torch.as_tensor(vjp(lambda v: fun(v, yn), xn, g)).to(x.dtype)
                if ctx.needs_input_grad[1] or not honour_needs:
                    gy = torch.as_tensor(vjp(lambda v: fun(xn, v), yn, g)).to(y.dtype)
                return gx, gy

        return FD.apply

    return make_fd_function


def test_fd_function_reference_passes(capsys):
    assert check_fd_function(make_fd_factory())
    assert check_fd_function(make_fd_factory(step=1.5e-8, method="forward"))
    assert "PASSED Exercise 7.4" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (make_fd_factory(step=1e-2, method="forward"), "too large"),
        (make_fd_factory(step=3e-2, method="central"), "too large"),
        (make_fd_factory(step=1e-12, method="forward"), "too small"),
        (make_fd_factory(step=1e-11, method="central"), "too small"),
        (make_fd_factory(transpose=True), "wrong shape|one gradient per forward input"),
        (make_fd_factory(honour_needs=False), "ignores ctx.needs_input_grad"),
        (make_fd_factory(numpy_out=True), "return a tensor"),
        (make_fd_factory(keep_dtype=False), "keep the input's dtype"),
    ],
)
def test_fd_function_mistakes_are_named(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_fd_function(wrong)
