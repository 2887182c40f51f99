"""Checks for chapter 2: grad_outputs, VJPs, forward mode and double backward.

Each check runs the student's function on inputs of its own and recognises the
usual mistakes: ``grad_outputs`` with the input's shape, ignoring the weights
(``grad_outputs=ones``), reading an accumulated ``.grad`` instead of calling
``torch.autograd.grad``, a derivative with no history (a missing
``create_graph``, or the forum's ``x.grad``), ``J v`` versus ``v^T J``
confusion, a covariance without centring, ``(row, column)`` order, and samplers
that do not let gradients reach the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from gradbook.exercises._core import ExerciseFailed, Passed, answer_tensor, attempt, fail, passed
from gradbook.moments import pixel_grid, spatial_moments
from gradbook.vjp import dot_product_test, jvp, vjp

F64 = torch.float64


def _randn(seed: int, *shape: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _close(a: Tensor, b: Tensor, tol: float = 1e-9) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.detach(), b.detach(), rtol=tol, atol=tol))


def _cause(error: ExerciseFailed) -> str:
    return str(error.__cause__ or "")


# Exercise 2.1 ------------------------------------------------------------------------

_SHAPE_HINT = (
    "grad_outputs must have the shape of the *output* y: it stands for dL/dy, one weight "
    "per entry of y. A tensor with the input's shape does not fit."
)


def _outer(x: Tensor) -> Tensor:
    """The forum's function, y = outer(x, x): (n,) -> (n, n)."""
    return torch.outer(x, x)


def check_weighted_grad(weighted_grad: Callable[[Callable, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 2.1: ``weighted_grad(f, x, w)`` is ``d/dx sum(w * f(x))``, i.e. ``w^T J``."""
    name = "Exercise 2.1 (grad_outputs)"

    def call(f, x, w):
        try:
            return attempt(name, weighted_grad, f, x, w)
        except ExerciseFailed as error:
            cause = _cause(error)
            if "Mismatch in shape" in cause or ("shape" in cause and "grad_output" in cause):
                fail(name, _SHAPE_HINT)
            if "tangent" in cause.lower() or "forward gradient" in cause:
                fail(
                    name,
                    "you called a forward-mode JVP (J t, whose tangent t has the input's "
                    "shape). grad_outputs asks for the other product, w^T J, with w shaped "
                    "like the output.",
                )
            raise

    # Case 1: the forum's outer product, with weights that are not all ones.
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64, requires_grad=True)
    x.grad = torch.full_like(x, 100.0)  # left over from an earlier step
    w = _randn(1, 4, 4)
    expected = vjp(_outer, x.detach(), w)
    got = answer_tensor(name, call(_outer, x, w), "the gradient")
    if got.shape != x.shape:
        fail(
            name,
            "the result is dL/dx: expected the input's "
            f"shape {tuple(x.shape)}, got {tuple(got.shape)}.",
        )
    if _close(got, expected + 100.0):
        fail(
            name,
            "you returned x.grad after backward(): .grad accumulates, so it still holds what "
            "was there before (here 100 from an earlier step). Call torch.autograd.grad, which "
            "returns the gradient without touching .grad.",
        )
    if _close(got, vjp(_outer, x.detach(), torch.ones(4, 4, dtype=F64))):
        fail(
            name,
            "you ignored w: that is grad_outputs=ones (the "
            "gradient of y.sum()). Pass w as grad_outputs.",
        )
    if not _close(got, expected):
        fail(
            name,
            "not w^T J for f = outer. Pass f(x) as outputs, x as inputs and w as grad_outputs.",
        )
    # Case 2: a square, non-symmetric Jacobian separates w^T J from J w.
    a = _randn(2, 5, 5)
    x2 = _randn(3, 5).requires_grad_(True)
    w2 = _randn(4, 5)

    def f2(t):
        return torch.tanh(a @ t)

    got2 = answer_tensor(name, call(f2, x2, w2), "the gradient")
    if _close(got2, jvp(f2, x2.detach(), w2)):
        fail(
            name,
            "you computed J w (a Jacobian-vector product, forward mode), the transpose of what "
            "grad_outputs gives: w^T J, which sums over the outputs.",
        )
    if not _close(got2, vjp(f2, x2.detach(), w2)):
        fail(
            name,
            "right for the outer product but not for f(x) "
            "= tanh(A x): use f itself, not a formula.",
        )
    return passed(name, "w^T J, with w shaped like the output.")


# Exercise 2.2 ------------------------------------------------------------------------


def _z_reference(y_fn, w0: list[float], x0: list[float]) -> tuple[Tensor, Tensor, Tensor]:
    w = torch.tensor(w0, dtype=F64, requires_grad=True)
    x = torch.tensor(x0, dtype=F64, requires_grad=True)
    (ell,) = torch.autograd.grad(y_fn(w, x).sum(), x, create_graph=True)
    z = (w[2] * x + ell**2).sum()
    gw, gx = torch.autograd.grad(z, (w, x))
    return gw, gx, ell.detach()


def check_double_backward(
    z_gradients: Callable[[Callable, Tensor, Tensor], tuple[Tensor, Tensor]],
) -> Passed:
    """Exercise 2.2: ``z_gradients(y_fn, w, x)`` returns ``(dz/dw, dz/dx)`` for
    ``z = w[2] * x + (dy/dx)^2`` with ``y = y_fn(w, x)``."""
    name = "Exercise 2.2 (double backward)"

    def seed_y(w, x):
        return w[0] * x + w[1]

    def curved_y(w, x):
        return w[0] * torch.sin(w[1] * x)

    for y_fn, w0, x0, label in [
        (seed_y, [2.0, 1.0, 3.0], [0.5], "the forum's y = w0 x + w1"),
        (curved_y, [1.5, -0.7, 2.0], [0.8], "y = w0 sin(w1 x)"),
    ]:
        w = torch.tensor(w0, dtype=F64, requires_grad=True)
        x = torch.tensor(x0, dtype=F64, requires_grad=True)
        result = attempt(name, z_gradients, y_fn, w, x)
        if not isinstance(result, tuple | list) or len(result) != 2:
            fail(name, "return a pair (gradient with respect to w, gradient with respect to x).")
        gw = answer_tensor(name, result[0], "the gradient with respect to w")
        gx = answer_tensor(name, result[1], "the gradient with respect to x")
        if gw.shape != w.shape or gx.shape != x.shape:
            fail(
                name,
                f"expected shapes {tuple(w.shape)} and {tuple(x.shape)}, "
                f"got {tuple(gw.shape)} and {tuple(gx.shape)}.",
            )
        ref_w, ref_x, ell = _z_reference(y_fn, w0, x0)
        explicit_w = torch.tensor([0.0, 0.0, x0[0]], dtype=F64)  # only the w2 * x term
        if _close(gw, explicit_w):
            fail(
                name,
                "dz/dw only has the w2 * x term: dy/dx reached z as a constant with no history "
                "(x.grad after backward() is detached; torch.autograd.grad without "
                "create_graph=True is too). Keep the derivative in the graph.",
            )
        if _close(gx, ref_x + ell):
            fail(
                name,
                "dz/dx is too large by exactly dy/dx: x.grad still held dy/dx from the first "
                "backward when the second one added to it. Take dy/dx with torch.autograd.grad "
                "(it leaves x.grad alone) or start from a clean .grad.",
            )
        if _close(gw, ref_w + _first_grad(y_fn, w0, x0)):
            fail(
                name,
                "dz/dw is too large by dy/dw: w.grad still held the gradient of y from the "
                "first backward. Take dy/dx with torch.autograd.grad, which leaves .grad alone.",
            )
        if not _close(gw, ref_w) or not _close(gx, ref_x):
            if y_fn is curved_y:
                fail(
                    name,
                    f"right for the forum's y but not for {label}: compute dy/dx with autograd "
                    "instead of writing down its formula (such as l = w[0]).",
                )
            fail(
                name,
                f"for {label} expected dz/dw = {ref_w.tolist()}, dz/dx = {ref_x.tolist()}; "
                f"got {gw.tolist()}, {gx.tolist()}.",
            )
    return passed(name, "dy/dx stayed in the graph, so z's gradient reaches w through it.")


def _first_grad(y_fn, w0, x0) -> Tensor:
    w = torch.tensor(w0, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(y_fn(w, torch.tensor(x0, dtype=F64)).sum(), w)
    return g


# Exercise 2.3 ------------------------------------------------------------------------


class _Softsign(torch.autograd.Function):
    """x / (1 + |x|) with a differentiable backward but no forward-mode formula."""

    @staticmethod
    def forward(x):
        return x / (1 + x.abs())

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return grad_out / (1 + x.abs()) ** 2


def _mix(t: Tensor) -> Tensor:
    """(2, 3) -> (4,), non-square Jacobian, via a custom Function without a jvp."""
    a = _randn(20, 4, 6)
    return _Softsign.apply(a @ t.reshape(-1)) * (1 + t[0, 0])


def check_jvp_from_vjps(jvp_via_vjps: Callable[[Callable, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 2.3: ``jvp_via_vjps(f, x, t)`` is ``J t`` from two reverse-mode passes."""
    name = "Exercise 2.3 (a JVP from two VJPs)"

    def call(f, x, t):
        try:
            return attempt(name, jvp_via_vjps, f, x, t)
        except ExerciseFailed as error:
            cause = _cause(error)
            if "does not require grad" in cause or "appears to not have been used" in cause:
                fail(
                    name,
                    "the first VJP, u^T J, has no graph: build it with create_graph=True so "
                    "that it can be differentiated with respect to u.",
                )
            if "jvp" in cause.lower() or "forward" in cause.lower():
                fail(
                    name,
                    "this f has a backward but no forward-mode formula, so forward mode "
                    "(torch.func.jvp, dual numbers) fails: build J t from two backward passes.",
                )
            raise

    # square, non-symmetric: J t and t^T J have the same shape but differ
    a = _randn(10, 5, 5)

    def square(t):
        return _Softsign.apply(a @ t)

    x, t = _randn(11, 5), _randn(12, 5)
    got = answer_tensor(name, call(square, x, t), "J t")
    with torch.no_grad():
        s = 1 / (1 + (a @ x).abs()) ** 2  # independent: the dense Jacobian is diag(s) A
    jac = s[:, None] * a
    if _close(got, jac.T @ t):
        fail(
            name,
            "you returned t^T J (a VJP with t as grad_outputs); "
            "J t is its transpose, and needs a second pass.",
        )
    if not _close(got, jac @ t):
        fail(name, "not J t for f(x) = softsign(A x); compare with the dense Jacobian diag(s) A.")
    # non-square: the result has the output's shape
    x2, t2 = _randn(21, 2, 3), _randn(22, 2, 3)
    got2 = answer_tensor(name, call(_mix, x2, t2), "J t")
    out_shape = _mix(x2).shape
    if got2.shape != out_shape:
        fail(name, f"J t has the output's shape {tuple(out_shape)}, got {tuple(got2.shape)}.")
    discrepancy = dot_product_test(_mix, x2, jvp_fn=lambda tt: call(_mix, x2, tt).detach())
    if discrepancy > 1e-10:
        fail(
            name,
            "the dot-product test <v, J t> = <v^T J, t> "
            f"fails: relative discrepancy {discrepancy:.1e}.",
        )
    return passed(
        name, "J t from two VJPs, and the dot-product test agrees (discrepancy below 1e-10)."
    )


# Exercise 2.4 ------------------------------------------------------------------------


def check_moments(moments: Callable[[Tensor], tuple[Tensor, Tensor]]) -> Passed:
    """Exercise 2.4: ``moments(p)`` gives the mean ``(2,)`` and covariance ``(2, 2)`` of an
    ``(H, W)`` map in ``(x, y) = (column, row)`` order, differentiably."""
    name = "Exercise 2.4 (moments of an activation map)"
    gen = torch.Generator().manual_seed(40)
    p = torch.rand(5, 7, generator=gen, dtype=F64) ** 3
    p = (p / p.sum()).requires_grad_(True)
    result = attempt(name, moments, p)
    if not isinstance(result, tuple | list) or len(result) != 2:
        fail(name, "return a pair (mean, covariance).")
    mean = answer_tensor(name, result[0], "the mean")
    cov = answer_tensor(name, result[1], "the covariance")
    if mean.shape != (2,) or cov.shape != (2, 2):
        fail(
            name,
            f"expected shapes (2,) and (2, 2), got {tuple(mean.shape)} and {tuple(cov.shape)}.",
        )
    ref_mean, ref_cov = spatial_moments(p.detach())
    u = pixel_grid(5, 7).reshape(-1, 2)
    if _close(mean, ref_mean.flip(0)):
        fail(name, "the mean is in (row, column) order: the convention is (x, y) = (column, row).")
    if _close(mean, u.mean(0)):
        fail(name, "that is the plain average of the pixel coordinates: weight each pixel by p.")
    if not _close(mean, ref_mean):
        fail(
            name,
            "the mean should be sum p u over the pixels; "
            f"expected {ref_mean.tolist()}, got {mean.tolist()}.",
        )
    second = torch.einsum("k,ki,kj->ij", p.detach().reshape(-1), u, u)
    if _close(cov, second):
        fail(
            name,
            "that is E[u u^T], the covariance without centring: subtract the mean (u - mu) first.",
        )
    if _close(cov, ref_cov.flip(0, 1)):
        fail(
            name,
            "the covariance is in (row, column) order: "
            "Sigma[0, 0] is var(x), the column's variance.",
        )
    if _close(cov, torch.cov(u.T)) or _close(cov, torch.cov(u.T, correction=0)):
        fail(name, "that is the unweighted covariance of the pixel grid: weight each pixel by p.")
    if not _close(cov, ref_cov):
        fail(name, "the covariance should be sum p (u - mu)(u - mu)^T over the pixels.")
    if not (mean.requires_grad and cov.requires_grad):
        fail(
            name,
            "the result is not differentiable (no graph back to p): stay in torch operations on p.",
        )
    (g,) = torch.autograd.grad(mean[0], p)
    if not torch.allclose(g, pixel_grid(5, 7)[..., 0]):
        fail(
            name,
            "the gradient of the mean's x with respect to p should be each pixel's column index.",
        )
    return passed(name, "weighted, centred, (x, y) order and differentiable.")


# Exercise 2.5 ------------------------------------------------------------------------


def check_sample_normal(sample_normal: Callable[[Tensor, Tensor, int], Tensor]) -> Passed:
    """Exercise 2.5: ``sample_normal(mu, var, n)`` draws ``(n, d)`` samples of
    ``N(mu, diag(var))`` through which gradients reach ``mu`` and ``var``."""
    name = "Exercise 2.5 (sampling with gradients)"
    n = 200_000
    mu = torch.tensor([0.5, -2.0, 3.0], dtype=F64, requires_grad=True)
    var = torch.tensor([4.0, 0.25, 1.0], dtype=F64, requires_grad=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2024)
        z = answer_tensor(name, attempt(name, sample_normal, mu, var, n), "the samples")
    if z.shape != (n, 3):
        fail(name, f"expected shape (n, d) = ({n}, 3), got {tuple(z.shape)}.")
    zs = z.detach()
    std = var.detach().sqrt()
    if not torch.all((zs.mean(0) - mu.detach()).abs() < 6 * std / math.sqrt(n)):
        fail(name, f"the sample mean {zs.mean(0).tolist()} is not close to mu = {mu.tolist()}.")
    if torch.allclose(zs.std(0), var.detach(), rtol=0.02) and not torch.allclose(
        zs.std(0), std, rtol=0.02
    ):
        fail(
            name,
            "var is the variance, but you used it as the "
            "standard deviation: the scale is sqrt(var).",
        )
    if torch.allclose(zs.std(0), var.detach() ** 2, rtol=0.02):
        fail(name, "the spread is var^2: the standard deviation is sqrt(var).")
    if not torch.allclose(zs.std(0), std, rtol=0.02):
        fail(
            name,
            f"the sample standard deviation {zs.std(0).tolist()} "
            f"should be sqrt(var) = {std.tolist()}.",
        )
    if not z.requires_grad:
        fail(
            name,
            "no gradient reaches mu or var: .sample() (or a detached draw) cuts the graph. "
            "Write z as a differentiable function of mu, var and parameter-free noise.",
        )
    loss = z.mean(0).sum() + (z**2).mean(0).sum()  # E = sum mu + sum (mu^2 + var)
    g_mu, g_var = torch.autograd.grad(loss, (mu, var), allow_unused=True)
    missing = [
        label for label, g in (("mu", g_mu), ("var", g_var)) if g is None or g.abs().max() == 0
    ]
    if missing and "Normal" in type(z.grad_fn).__name__:
        fail(
            name,
            "the gradient with respect to mu and var is zero: torch.normal(mean, std) has a "
            "grad_fn but passes no gradient to its parameters. Reparameterise: "
            "z = mu + scale * noise.",
        )
    if missing:
        fail(
            name,
            f"no gradient reaches {' and '.join(missing)}: it entered z detached (or as a "
            "constant). Write z as a differentiable function of mu and var.",
        )
    # d/dmu E[z + z^2] = 1 + 2 mu, d/dvar = 1
    if not torch.allclose(g_mu, 1 + 2 * mu.detach(), rtol=0.05, atol=0.05):
        fail(
            name,
            "the gradient with respect to mu is off: expected "
            f"about {(1 + 2 * mu.detach()).tolist()}.",
        )
    if not torch.allclose(g_var, torch.ones(3, dtype=F64), rtol=0.05, atol=0.05):
        fail(
            name,
            "the gradient with respect to var is off "
            "(expected about 1 each): the scale is sqrt(var).",
        )
    return passed(name, "reparameterised: z = mu + sqrt(var) * noise lets gradients reach both.")
