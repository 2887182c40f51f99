"""Checks for chapter 2: grad_outputs, VJPs, forward mode and double backward.

Each check runs the student's function on inputs of its own and recognises the
usual mistakes: ``grad_outputs`` with the input's shape, ignoring the weights
(``grad_outputs=ones``), reading an accumulated ``.grad`` instead of calling
``torch.autograd.grad``, a derivative with no history (a missing
``create_graph``, or the forum's ``x.grad``), per-sample gradients taken from a
mean, ``J t`` versus ``t^T J`` confusion, finite differences or a dense Jacobian
where exact products are asked for, a covariance without centring or in
``(row, column)`` order, samplers whose noise is shared across dimensions or
whose factor is not a square root of the covariance, and dot-product tests that
are not scale-free or that test a backward against itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NoReturn

import torch
import torch.autograd.functional as autograd_functional
import torch.func
from torch import Tensor
from torch.distributions import MultivariateNormal

from gradbook.exercises._core import (
    ExerciseFailed,
    Passed,
    answer_tensor,
    attempt,
    close,
    diagnose,
    fail,
    forbid,
    passed,
    randn,
)
from gradbook.jacobian import jacobian_loop
from gradbook.moments import pixel_grid, soft_argmax, spatial_moments, spatial_moments_one_pass
from gradbook.vjp import dot_product_test, jvp_double_backward, vjp, vjp_from_jacobian

F64 = torch.float64

#: Library functions that form a dense Jacobian (or the product this chapter asks for).
_JACOBIAN_BUILDERS = (
    autograd_functional.jacobian,
    autograd_functional.hessian,
    torch.func.jacrev,
    torch.func.jacfwd,
    jacobian_loop,  # also gradbook.vjp.jacobian_explicit, the same function
)
_JACOBIAN_NAMES = ("jacobian", "hessian", "jacrev", "jacfwd")


def _cause(error: ExerciseFailed) -> str:
    return str(error.__cause__ or "")


def _fail_from(name: str, message: str, error: ExerciseFailed) -> NoReturn:
    """Like ``fail``, keeping the student's exception as the cause (its frames are shown)."""
    raise ExerciseFailed(f"{name}: {message}") from error.__cause__


def _forming_jacobian(name: str, error: ExerciseFailed) -> None:
    """Turn the report of a forbidden Jacobian builder into this chapter's explanation."""
    message = str(error)
    if "write it yourself" in message and any(word in message for word in _JACOBIAN_NAMES):
        _fail_from(
            name,
            "you formed the dense Jacobian J: that is what this exercise avoids. One "
            "product with J costs a small multiple of f, whatever J's size; J itself "
            "costs one pass per row or column.",
            error,
        )


# Exercise 2.1 ------------------------------------------------------------------------

_SHAPE_HINT = (
    "grad_outputs must have the shape of the *output* y: it stands for dL/dy, one weight "
    "per entry of y. A tensor with the input's shape does not fit."
)


def _outer(x: Tensor) -> Tensor:
    """The forum's function, y = outer(x, x): (n,) -> (n, n)."""
    return torch.outer(x, x)


def _counting(f: Callable[[Tensor], Tensor], passes: list[int]) -> Callable[[Tensor], Tensor]:
    """``f`` with a hook on its output that counts the backward passes through it."""

    def counted(x: Tensor) -> Tensor:
        y = f(x)
        if y.requires_grad:
            y.register_hook(lambda grad: passes.append(1))
        return y

    return counted


def check_weighted_grad(weighted_grad: Callable[[Callable, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 2.1: ``weighted_grad(f, x, w)`` is ``d/dx sum(w * f(x))``, i.e. ``w^T J``."""
    name = "Exercise 2.1 (grad_outputs)"
    forward_hint = (
        "you called a forward-mode JVP (J t, whose tangent t has the input's shape). "
        "grad_outputs asks for the other product, w^T J, with w shaped like the output."
    )
    hints = {
        "Mismatch in shape": _SHAPE_HINT,
        "grad_output": _SHAPE_HINT,
        "tangent": forward_hint,
        "forward gradient": forward_hint,
    }

    def call(f, x, w):
        passes: list[int] = []
        try:
            with forbid(vjp, vjp_from_jacobian, *_JACOBIAN_BUILDERS):
                result = attempt(name, weighted_grad, _counting(f, passes), x, w, hints=hints)
        except ExerciseFailed as error:
            _forming_jacobian(name, error)
            raise
        got = answer_tensor(name, result, "the gradient")
        if len(passes) > 1:
            fail(
                name,
                f"your function ran {len(passes)} backward passes through f, one per "
                "output entry: that builds J row by row. One pass with grad_outputs=w "
                "gives w^T J directly.",
            )
        return got

    # Case 1: the forum's outer product, with weights that are not all ones.
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64, requires_grad=True)
    w = randn(1, 4, 4)
    x_plain = x.detach()
    expected = (w + w.T) @ x_plain  # d/dx_i sum_jk w_jk x_j x_k
    ones_variant = 2 * x_plain.sum() * torch.ones(4, dtype=F64)
    a = randn(2, 5, 5)
    x2 = randn(3, 5).requires_grad_(True)
    w2 = randn(4, 5)
    s2 = 1 - torch.tanh(a @ x2.detach()) ** 2
    jac2 = s2[:, None] * a  # the dense Jacobian of tanh(A x), by hand
    x.grad = torch.full_like(x, 100.0)  # left over from an earlier step
    got = call(_outer, x, w)
    if got.shape != x.shape:
        fail(
            name,
            "the result is dL/dx: expected the input's "
            f"shape {tuple(x.shape)}, got {tuple(got.shape)}.",
        )
    diagnose(
        name,
        got,
        [
            (
                expected + 100.0,
                "you returned x.grad after backward(): .grad accumulates, so it still holds "
                "what was there before (here 100 from an earlier step). Call "
                "torch.autograd.grad, which returns the gradient without touching .grad.",
            ),
            (
                ones_variant,
                "you ignored w: that is grad_outputs=ones (the gradient of y.sum()). Pass w "
                "as grad_outputs.",
            ),
        ],
    )
    if not close(got, expected, rtol=1e-9, atol=1e-9):
        fail(
            name,
            "not w^T J for f = outer. Pass f(x) as outputs, x as inputs and w as grad_outputs.",
        )
    # Case 2: a square, non-symmetric Jacobian separates w^T J from J w.
    got2 = call(lambda t: torch.tanh(a @ t), x2, w2)
    diagnose(
        name,
        got2,
        [
            (
                jac2 @ w2,
                "you computed J w (a Jacobian-vector product, forward mode), the transpose "
                "of what grad_outputs gives: w^T J, which sums over the outputs.",
            )
        ],
        rtol=1e-9,
        atol=1e-9,
    )
    if not close(got2, w2 @ jac2, rtol=1e-9, atol=1e-9):
        fail(
            name,
            "right for the outer product but not for f(x) = tanh(A x): use f itself, not a "
            "formula.",
        )
    return passed(
        name,
        "matches w^T J for outer(x, x) and for tanh(A x), in one backward pass through f.",
    )


# Exercise 2.2 ------------------------------------------------------------------------


class _Critic:
    """A small network ``f(x) = w2 . tanh(W1 x + b1)`` for ``x`` of shape ``(B, n)``, whose
    input gradient has a closed form: ``W1^T (w2 * (1 - tanh^2))`` per sample."""

    def __init__(self, seed: int, n: int, hidden: int) -> None:
        self.w1 = (0.7 * randn(seed, hidden, n)).requires_grad_(True)
        self.b1 = (0.3 * randn(seed + 1, hidden)).requires_grad_(True)
        self.w2 = randn(seed + 2, hidden).requires_grad_(True)
        self.at: Tensor | None = None  # the batch the check passes
        self.perturbed = False

    @property
    def parameters(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.w1, self.b1, self.w2

    def __call__(self, x: Tensor) -> Tensor:
        at = self.at
        if at is not None and tuple(x.shape) == tuple(at.shape):
            try:
                self.perturbed |= not torch.equal(x.detach(), at)
            except RuntimeError:  # inside a torch.func transform that cannot compare
                pass
        return torch.tanh(x @ self.w1.T + self.b1) @ self.w2

    def input_gradients(self, x: Tensor) -> Tensor:
        """``(B, n)``: the gradient of each sample's output, by hand (no double backward)."""
        s = 1 - torch.tanh(x @ self.w1.T + self.b1) ** 2
        return (s * self.w2) @ self.w1


def _penalty_of(per_sample_grads: Tensor) -> Tensor:
    return ((per_sample_grads.norm(dim=1) - 1) ** 2).mean()


def check_gradient_penalty(gradient_penalty: Callable[[Callable, Tensor], Tensor]) -> Passed:
    """Exercise 2.2: ``gradient_penalty(f, x)`` is ``mean_b (||d f(x)_b / d x_b|| - 1)^2`` for a
    batch ``x`` of shape ``(B, n)``, as a 0-d tensor differentiable in ``f``'s parameters."""
    name = "Exercise 2.2 (a gradient penalty)"
    critic = _Critic(50, 4, 6)
    x = randn(53, 5, 4)
    params = critic.parameters
    # the reference: the closed-form input gradient, differentiated once by autograd
    per_sample = critic.input_gradients(x)
    expected = _penalty_of(per_sample)
    expected_grads = torch.autograd.grad(expected, params)
    batch = x.shape[0]
    wrong_values = [
        (
            _penalty_of(per_sample / batch),
            "the gradient of f(x).mean() divides every sample's gradient by the batch size "
            "B. Differentiate the sum: each output depends only on its own sample, so the "
            "gradient of the sum holds every sample's own gradient.",
        ),
        (
            (per_sample.norm() - 1) ** 2,
            "one norm for the whole batch: take the norm of each sample's gradient (over "
            "dim 1), then average the per-sample penalties.",
        ),
        (
            (((per_sample**2).sum(1) - 1) ** 2).mean(),
            "that uses the squared norm ||g||^2: the penalty is on the norm itself.",
        ),
        (
            ((per_sample.norm(dim=1) - 1) ** 2).sum(),
            "you added up the per-sample penalties: take their mean over the batch.",
        ),
        (
            (per_sample.norm(dim=1) - 1).mean(),
            "the penalty squares the distance of each norm from 1 before averaging.",
        ),
    ]
    plain_x = (
        "x arrives as a plain tensor: make it require grad (x = "
        "x.detach().requires_grad_(True)) before computing f(x), so that autograd "
        "can differentiate with respect to it."
    )
    hints = {
        "does not require grad and does not have a grad_fn": plain_x,
        "One of the differentiated Tensors does not require grad": plain_x,
    }
    for p in params:
        p.grad = None
    critic.at = x
    with forbid(*_JACOBIAN_BUILDERS):
        try:
            result = attempt(name, gradient_penalty, critic, x.clone(), hints=hints)
        except ExerciseFailed as error:
            _forming_jacobian(name, error)
            raise
    penalty = answer_tensor(name, result, "the penalty")
    if penalty.numel() != 1:
        fail(name, f"the penalty is one number (a 0-d tensor), got shape {tuple(penalty.shape)}.")
    penalty = penalty.reshape(())
    if critic.perturbed:
        fail(
            name,
            "f was evaluated at inputs other than x: finite differences give an "
            "approximate gradient. Take it with autograd.",
        )
    diagnose(name, penalty.detach(), wrong_values, rtol=1e-9, atol=1e-12)
    if not close(penalty.detach(), expected, rtol=1e-9, atol=1e-12):
        fail(name, "not the penalty mean_b (||grad_x f(x)_b|| - 1)^2.")
    no_history = (
        "the value is right but the penalty does not reach the parameters: the input "
        "gradient entered it as a number with no history (x.grad after backward(), or "
        "torch.autograd.grad without create_graph=True), so the parameters only appear "
        "as constants. Keep the derivative in the graph."
    )
    if not penalty.requires_grad:
        fail(name, no_history)
    got_grads = torch.autograd.grad(penalty, params, allow_unused=True)
    if all(g is None or not g.any() for g in got_grads):
        fail(name, no_history)
    if any(p.grad is not None for p in params):
        fail(
            name,
            "your function wrote into the parameters' .grad: backward() accumulates there, "
            "so the training step that follows would add the gradient of f to its own. "
            "Take the input gradient with torch.autograd.grad, which returns it and leaves "
            ".grad alone.",
        )
    for label, got_g, ref_g in zip(("W1", "b1", "w2"), got_grads, expected_grads, strict=True):
        if got_g is None or not close(got_g, ref_g, rtol=1e-8, atol=1e-10):
            fail(
                name,
                f"the value is right but its gradient with respect to {label} is not: part "
                "of the input gradient left the graph (.detach(), .item(), torch.no_grad), "
                "or was computed without create_graph=True.",
            )
    return passed(
        name,
        "the value and its gradients with respect to all parameters match a closed-form "
        "input gradient, with the parameters' .grad left untouched.",
    )


# Exercise 2.3 ------------------------------------------------------------------------


class _Softsign(torch.autograd.Function):
    """x / (1 + |x|) with a differentiable backward but no forward-mode formula; counts
    how often its backward runs."""

    backward_calls = 0

    @staticmethod
    def forward(x):
        return x / (1 + x.abs())

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, grad_out):
        _Softsign.backward_calls += 1
        (x,) = ctx.saved_tensors
        return grad_out / (1 + x.abs()) ** 2


def _softsign_derivative(y: Tensor) -> Tensor:
    return 1 / (1 + y.abs()) ** 2


def check_jvp_from_vjps(jvp_via_vjps: Callable[[Callable, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 2.3: ``jvp_via_vjps(f, x, t)`` is ``J t``, exactly, from two reverse-mode passes
    (no forward mode, no finite differences, no dense Jacobian)."""
    name = "Exercise 2.3 (a JVP from two VJPs)"
    a = randn(10, 5, 5)  # square, non-symmetric: J t and t^T J have one shape but differ
    b = randn(20, 4, 6)
    x, t = randn(11, 5), randn(12, 5)
    x2, t2 = randn(21, 2, 3), randn(22, 2, 3)

    # dense Jacobians by hand, independent of autograd
    jac = _softsign_derivative(a @ x)[:, None] * a
    pre = b @ x2.reshape(-1)
    scale = 1 + x2[0, 0]
    jac2 = scale * _softsign_derivative(pre)[:, None] * b
    jac2[:, 0] += pre / (1 + pre.abs())  # d/dx2[0, 0] of the factor (1 + x2[0, 0])

    def call(f, x_, t_):
        points: list[Tensor] = []

        def recorded(z):
            points.append(z.detach().clone())
            return f(z)

        _Softsign.backward_calls = 0
        try:
            with forbid(jvp_double_backward, autograd_functional.jvp, *_JACOBIAN_BUILDERS):
                result = attempt(name, jvp_via_vjps, recorded, x_, t_)
        except ExerciseFailed as error:
            _forming_jacobian(name, error)
            cause = _cause(error)
            if "One of the differentiated Tensors does not require grad" in cause:
                _fail_from(
                    name,
                    "the second pass differentiates with respect to u, but u does not "
                    "require grad, so autograd did not record how u^T J depends on it: "
                    "create u with requires_grad=True.",
                    error,
                )
            if "appears to not have been used" in cause:
                _fail_from(
                    name,
                    "the second pass differentiates with respect to u, but u^T J was not "
                    "computed from u: take the first VJP with grad_outputs=u.",
                    error,
                )
            if "does not require grad and does not have a grad_fn" in cause:
                if _Softsign.backward_calls == 0:
                    _fail_from(
                        name,
                        "x arrives as a plain tensor: f(x) has no graph to run backward "
                        "through. Make a leaf that requires grad "
                        "(x.detach().requires_grad_(True)) before calling f.",
                        error,
                    )
                _fail_from(
                    name,
                    "the first VJP, u^T J, has no graph: build it with create_graph=True so "
                    "that it can be differentiated with respect to u.",
                    error,
                )
            if "jvp" in cause.lower() or "forward" in cause.lower():
                _fail_from(
                    name,
                    "this f has a backward but no forward-mode formula, so forward mode "
                    "(torch.func.jvp, dual numbers) fails: build J t from two backward passes.",
                    error,
                )
            raise
        got = answer_tensor(name, result, "J t")
        if any(not torch.equal(point, x_) for point in points):
            fail(
                name,
                "f was evaluated at points other than x: that is a finite difference, "
                "accurate to about 1e-10 at best. The exercise asks for J t exactly, from "
                "two reverse-mode passes.",
            )
        if _Softsign.backward_calls > 2:
            fail(
                name,
                f"f's backward ran {_Softsign.backward_calls} times: you built J (or its "
                "rows) one VJP at a time. Two passes suffice for J t, whatever the size.",
            )
        return got

    got = call(lambda z: _Softsign.apply(a @ z), x, t)
    diagnose(
        name,
        got,
        [
            (
                t @ jac,
                "you returned t^T J (a VJP with t as grad_outputs); J t is its transpose, "
                "and needs a second pass.",
            )
        ],
        rtol=1e-9,
        atol=1e-12,
    )
    if not close(got, jac @ t, rtol=1e-12, atol=1e-13):
        fail(name, "not J t for f(x) = softsign(A x), to 1e-12.")

    got2 = call(lambda z: _Softsign.apply(b @ z.reshape(-1)) * (1 + z[0, 0]), x2, t2)
    if got2.shape != (4,):
        fail(name, f"J t has the output's shape (4,), got {tuple(got2.shape)}.")
    if not close(got2, jac2 @ t2.reshape(-1), rtol=1e-12, atol=1e-13):
        fail(name, "right for a square f but not for f: (2, 3) -> (4,), to 1e-12.")
    return passed(
        name,
        "J t to 1e-12 for a square and a non-square f that have no forward-mode formula, "
        "with f evaluated only at x and its backward run at most twice.",
    )


# Exercise 2.4 ------------------------------------------------------------------------


def check_moments(moments: Callable[[Tensor], tuple[Tensor, Tensor]]) -> Passed:
    """Exercise 2.4: ``moments(p)`` gives the mean ``(2,)`` and covariance ``(2, 2)`` of an
    ``(H, W)`` map in ``(x, y) = (column, row)`` order, differentiably, and accurately in
    float32 when the mass sits far from the origin."""
    name = "Exercise 2.4 (moments of an activation map)"
    gen = torch.Generator().manual_seed(40)
    p = torch.rand(5, 7, generator=gen, dtype=F64) ** 3
    p = (p / p.sum()).requires_grad_(True)
    u = pixel_grid(5, 7).reshape(-1, 2)
    q = p.detach().reshape(-1)
    ref_mean = q @ u
    centred = u - ref_mean
    ref_cov = (q[:, None] * centred).T @ centred
    second = (q[:, None] * u).T @ u
    # a narrow peak far from the origin, for float32
    far = pixel_grid(6, 2048)
    peak = torch.exp(-((far - torch.tensor([2000.3, 2.6], dtype=F64)) ** 2).sum(-1) / 1.28)
    peak = peak / peak.sum()
    fq = peak.reshape(-1)
    far_flat = far.reshape(-1, 2)
    far_mean = fq @ far_flat
    far_cov = (fq[:, None] * (far_flat - far_mean)).T @ (far_flat - far_mean)
    hints = {
        "same dtype": (
            "the pixel coordinates and p have different dtypes: build the coordinates in "
            "p's dtype (torch.arange(..., dtype=p.dtype))."
        ),
    }

    def pair(result: object, shapes_of: str) -> tuple[Tensor, Tensor]:
        if not isinstance(result, tuple | list) or len(result) != 2:
            fail(name, "return a pair (mean, covariance).")
        mean = answer_tensor(name, result[0], "the mean")
        cov = answer_tensor(name, result[1], "the covariance")
        if mean.shape != (2,) or cov.shape != (2, 2):
            fail(
                name,
                f"{shapes_of}expected shapes (2,) and (2, 2), got {tuple(mean.shape)} "
                f"and {tuple(cov.shape)}.",
            )
        return mean, cov

    with forbid(spatial_moments, spatial_moments_one_pass, soft_argmax):
        mean, cov = pair(attempt(name, moments, p, hints=hints), "")
        diagnose(
            name,
            mean,
            [
                (
                    ref_mean.flip(0),
                    "the mean is in (row, column) order: the convention is (x, y) = (column, row).",
                ),
                (
                    u.mean(0),
                    "that is the plain average of the pixel coordinates: weight each pixel by p.",
                ),
            ],
        )
        if not close(mean, ref_mean, rtol=1e-9, atol=1e-12):
            fail(name, "the mean should be the p-weighted sum of the pixel coordinates.")
        diagnose(
            name,
            cov,
            [
                (
                    second,
                    "that is E[u u^T], the covariance without centring: subtract the mean "
                    "(u - mu) first.",
                ),
                (
                    ref_cov.flip(0, 1),
                    "the covariance is in (row, column) order: Sigma[0, 0] is var(x), the "
                    "column's variance.",
                ),
                (
                    torch.cov(u.T),
                    "that is the unweighted covariance of the pixel grid: weight each pixel by p.",
                ),
                (
                    torch.cov(u.T, correction=0),
                    "that is the unweighted covariance of the pixel grid: weight each pixel by p.",
                ),
            ],
        )
        if not close(cov, ref_cov, rtol=1e-9, atol=1e-12):
            fail(name, "the covariance should be sum p (u - mu)(u - mu)^T over the pixels.")
        if not (mean.requires_grad and cov.requires_grad):
            fail(
                name,
                "the result is not differentiable (no graph back to p): stay in torch "
                "operations on p.",
            )
        (g,) = torch.autograd.grad(mean[0], p)
        if not close(g, pixel_grid(5, 7)[..., 0], rtol=1e-9, atol=1e-12):
            fail(
                name,
                "the gradient of the mean's x with respect to p should be each pixel's "
                "column index.",
            )
        mean32, cov32 = pair(
            attempt(name, moments, peak.to(torch.float32), hints=hints), "for a float32 map: "
        )
        if not close(mean32, far_mean, rtol=1e-5, atol=1e-3):
            fail(name, "the mean of a float32 map far from the origin is off.")
        if not close(cov32, far_cov, rtol=1e-3, atol=1e-3):
            fail(
                name,
                "right in float64 but not in float32 for a narrow peak near x = 2000: "
                "E[u u^T] - mu mu^T subtracts two numbers near 4e6 to get a variance below "
                "1, and float32 keeps only 7 digits. Subtract the mean from the coordinates "
                "before forming the products.",
            )
    return passed(
        name,
        "mean and covariance in (x, y) order with the right gradient, in float64 and in "
        "float32 far from the origin.",
    )


# Exercise 2.5 ------------------------------------------------------------------------


def _covariance_matches(sample_cov: Tensor, cov: Tensor, n: int, sigmas: float = 6.0) -> bool:
    """Whether a sample covariance is consistent with ``cov``: every entry within ``sigmas``
    standard errors, ``sqrt((S_ii S_jj + S_ij^2) / n)`` for Gaussian samples."""
    diagonal = torch.diagonal(cov)
    se = ((diagonal[:, None] * diagonal[None, :] + cov**2) / n).sqrt()
    return bool(((sample_cov - cov).abs() <= sigmas * se + 1e-12).all())


def check_sample_mvn(sample_mvn: Callable[[Tensor, Tensor, int], Tensor]) -> Passed:
    """Exercise 2.5: ``sample_mvn(mu, cov, n)`` draws ``(n, d)`` samples of ``N(mu, cov)`` for a
    full covariance matrix, built from standard normal noise so that gradients reach ``mu``
    and ``cov``."""
    name = "Exercise 2.5 (sampling with a full covariance)"
    n = 200_000
    mu0 = torch.tensor([0.5, -2.0, 3.0], dtype=F64)
    chol = torch.tensor([[2.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.4, 0.45, 0.5]], dtype=F64)
    cov0 = chol @ chol.T  # correlations 0.6, -0.51 and 0.15
    std = torch.diagonal(cov0).sqrt()
    m = torch.tensor([[1.0, 0.2, 0.0], [0.2, 0.5, -0.1], [0.0, -0.1, 2.0]], dtype=F64)
    mu = mu0.clone().requires_grad_(True)
    cov = cov0.clone().requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2024)
        with forbid(MultivariateNormal.rsample):
            result = attempt(name, sample_mvn, mu, cov, n)
    z = answer_tensor(name, result, "the samples")
    if z.shape == (3, n):
        fail(name, f"expected shape (n, d) = ({n}, 3): one sample per row, got (3, {n}).")
    if z.shape != (n, 3):
        fail(name, f"expected shape (n, d) = ({n}, 3), got {tuple(z.shape)}.")
    zs = z.detach().to(F64)
    if not torch.isfinite(zs).all():
        fail(
            name,
            "the samples contain NaN: an elementwise square root of the covariance fails on "
            "its negative entries (and is not a matrix square root anyway). Use a factor L "
            "with L L^T = cov.",
        )
    if (zs[1:] == zs[:1]).all():
        fail(name, "every sample is the same: draw fresh noise for each of the n samples.")
    if not torch.all((zs.mean(0) - mu0).abs() < 6 * std / math.sqrt(n)):
        fail(name, "the sample mean is not close to mu.")
    sample_cov = torch.cov(zs.T)
    corr = sample_cov / torch.outer(sample_cov.diagonal().sqrt(), sample_cov.diagonal().sqrt())
    off_diagonal = ~torch.eye(3, dtype=torch.bool)
    if (corr[off_diagonal].abs() > 0.999).all():
        fail(
            name,
            "your coordinates are perfectly correlated: the same noise value is shared by "
            "all d coordinates of a sample (noise of shape (n, 1)). Draw independent noise "
            "for every coordinate, shape (n, d).",
        )
    wrong_covariances = [
        (
            cov0 @ cov0,
            "you used cov itself as the factor: the samples then have covariance cov "
            "cov^T = cov^2. The factor is a square root: L with L L^T = cov.",
        ),
        (
            chol.T @ chol,
            "with the factor on the wrong side (noise @ L) the covariance is L^T L, not "
            "L L^T = cov: transpose it.",
        ),
        (
            torch.diag(torch.diagonal(cov0)),
            "the coordinates came out uncorrelated: you used only the variances (the "
            "diagonal) and dropped the covariances between coordinates.",
        ),
        (
            torch.diag(torch.diagonal(cov0) ** 2),
            "you used the variances as standard deviations, and dropped the covariances "
            "between coordinates: the scale is a square root of cov.",
        ),
    ]
    for candidate, message in wrong_covariances:
        if _covariance_matches(sample_cov, candidate, n):
            fail(name, message)
    if not _covariance_matches(sample_cov, cov0, n):
        fail(
            name,
            "the sample covariance does not match cov (more than 6 standard errors off in "
            "some entry): the samples should be mu + L noise with L L^T = cov.",
        )
    if not z.requires_grad:
        fail(
            name,
            "no gradient reaches mu or cov: the draw has no graph (.sample(), a detached "
            "draw or torch.no_grad). Write z as a differentiable function of mu, cov and "
            "parameter-free noise.",
        )
    # d/dmu of c . mean(z) is c exactly; E[(z - mu)^T M (z - mu)] = tr(M cov) has gradient M
    c = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    (g_mu,) = torch.autograd.grad(
        (z.mean(0) * c.to(z.dtype)).sum(), mu, retain_graph=True, allow_unused=True
    )
    d = z - mu.detach().to(z.dtype)
    spread = torch.einsum("ni,ij,nj->n", d, m.to(z.dtype), d).mean()
    (g_cov,) = torch.autograd.grad(spread, cov, allow_unused=True)
    missing = [label for label, g in (("mu", g_mu), ("cov", g_cov)) if g is None or not g.any()]
    if missing:
        fail(
            name,
            f"no gradient reaches {' and '.join(missing)}: it entered the samples detached "
            "(or the factor was computed from a detached covariance). Keep it in the graph.",
        )
    if not close(g_mu, c, rtol=1e-6, atol=1e-6):
        fail(
            name,
            "the gradient of the sample mean with respect to mu should be exactly 1 per "
            "coordinate: mu should enter each sample once, added.",
        )
    if not close((g_cov + g_cov.T) / 2, m, rtol=0.0, atol=0.05):
        fail(
            name,
            "the gradient of E[(z - mu)^T M (z - mu)] with respect to cov is off (its "
            "symmetric part should be M): the factor must be a differentiable function of cov.",
        )
    return passed(
        name,
        "mean and full covariance within 6 standard errors of mu and cov, independent "
        "noise per coordinate, the exact gradient of the mean with respect to mu, and a "
        "Monte Carlo gradient of E[(z - mu)^T M (z - mu)] with respect to cov that matches M.",
    )


# Stretch exercise --------------------------------------------------------------------


def check_adjoint_test(
    adjoint_discrepancy: Callable[[Callable, Callable, Tensor], float | Tensor],
) -> Passed:
    """Stretch exercise: ``adjoint_discrepancy(f, vjp_fn, x)`` returns a scale-free relative
    discrepancy of ``<v, J t> = <vjp_fn(v), t>`` for random ``v`` and ``t``, with ``J t``
    computed from ``f`` exactly and independently of ``vjp_fn``."""
    name = "Exercise 2.6 (Stretch: the dot-product test)"
    a = randn(60, 6, 4)
    x = randn(61, 4)
    b = randn(62, 5, 6)
    x2 = randn(63, 2, 3)

    def make(scale: float, bug: str, matrix: Tensor, point: Tensor):
        """``(f, vjp_fn, calls)`` for ``f(t) = scale * tanh(M t)`` and a backward with ``bug``."""
        calls = {"f": [], "vjp": 0}

        def f(t: Tensor) -> Tensor:
            calls["f"].append(t.detach().clone())
            return scale * torch.tanh(matrix @ t.reshape(-1))

        y = torch.tanh(matrix @ point.reshape(-1))
        slope = 1 - y if bug == "1 - y" else 1 - y**2

        def vjp_fn(v: Tensor) -> Tensor:
            if not isinstance(v, Tensor) or v.shape != y.shape:
                got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
                raise ValueError(
                    f"vjp_fn: v must have the output's shape {tuple(y.shape)}, got {got}"
                )
            calls["vjp"] += 1
            out = scale * (matrix.T @ (v * slope))
            if bug == "orthogonal to ones":
                # an error <delta, t> that vanishes for t = ones: it hides from fixed probes
                out = out + 0.1 * scale * v.sum() * torch.tensor([1.0, -1.0, 0.0, 0.0], dtype=F64)
            return out.reshape(point.shape)

        return f, vjp_fn, calls

    def run(scale: float, bug: str, matrix: Tensor = a, point: Tensor = x) -> tuple[float, int]:
        f, vjp_fn, calls = make(scale, bug, matrix, point)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(7)
            with forbid(dot_product_test):
                result = attempt(
                    name,
                    adjoint_discrepancy,
                    f,
                    vjp_fn,
                    point.clone(),
                    hints={
                        "vjp_fn: v must have": (
                            "v is contracted with the output, so it has the output's shape; "
                            "t has the input's shape."
                        )
                    },
                )
        if isinstance(result, Tensor):
            if result.numel() != 1:
                fail(name, f"return one number, got a tensor of shape {tuple(result.shape)}.")
            result = result.item()
        if not isinstance(result, int | float) or isinstance(result, bool):
            fail(name, f"return the discrepancy as a number, got {type(result).__name__}.")
        if any(not torch.equal(seen, point) for seen in calls["f"]):
            fail(
                name,
                "f was evaluated at points other than x: a finite difference gives J t to "
                "about 1e-10 at best, so the test could not tell a correct backward from "
                "one wrong by less. Compute J t exactly (forward mode through f).",
            )
        return float(result), calls["vjp"]

    correct, _ = run(1.0, "")
    if not math.isfinite(correct):
        fail(name, "the discrepancy of a correct backward came out NaN or infinite.")
    if abs(correct) > 1e-12:
        fail(
            name,
            f"a correct backward got a discrepancy of {abs(correct):.1e}: a right pair "
            "agrees to rounding (about 1e-16 relative in float64).",
        )
    buggy, vjp_calls = run(1.0, "1 - y")
    flipped, _ = run(-1.0, "1 - y")  # the same probes: a signed difference changes sign
    if min(buggy, flipped) < 0:
        fail(name, "the discrepancy came out negative: return the size of the mismatch.")
    if buggy < 1e-6:
        if vjp_calls >= 6:
            fail(
                name,
                f"a wrong backward passed, and vjp_fn was called {vjp_calls} times: you "
                "computed J t from the backward under test, so the test compares it with "
                "itself. J t must come from f.",
            )
        fail(name, "a backward with the slip tanh' = 1 - y (instead of 1 - y^2) passed.")
    hidden, _ = run(1.0, "orthogonal to ones")
    if hidden < 1e-6:
        fail(
            name,
            "a backward whose error is orthogonal to your probe passed: with fixed v and t "
            "(all ones, say) any error orthogonal to them hides. Draw v and t at random.",
        )
    large, _ = run(1e8, "")
    small, _ = run(1e-8, "1 - y")
    if abs(large) > 1e-12 or small < 1e-6:
        fail(
            name,
            "your discrepancy depends on the scale of f: a correct backward of 1e8 f, or a "
            "wrong one of 1e-8 f, is judged differently from f itself. Divide by a product "
            "of norms so that the number is relative.",
        )
    correct2, _ = run(1.0, "", b, x2)
    buggy2, _ = run(1.0, "1 - y", b, x2)
    if abs(correct2) > 1e-12 or buggy2 < 1e-6:
        fail(name, "right for f: (4,) -> (6,) but not for f: (2, 3) -> (5,).")
    return passed(
        name,
        "a correct backward judged at rounding level and wrong ones caught, at scales 1e-8 "
        "to 1e8, for a vector and a non-vector input.",
    )
