"""Checks for chapter 3, Jacobians with scan and vmap.

Each check runs the student's function on problems whose derivatives are known
in closed form and recognises the usual mistakes:

- 3.1, the Jacobian of a matrix function in the column-stacking ``vec`` layout:
  torch's row-major flattening, one side stacked by rows and the other by
  columns, the transpose, the 4-D array left unreshaped;
- 3.2, a reverse-mode Jacobian within a memory budget: entries counted instead
  of bytes, only one of the two vectors of a VJP counted, a chunk rounded up,
  one row at a time, all rows at once, no clear error when not even one VJP fits;
- 3.3, a Hessian-vector product: forming the Hessian (by any route: the check
  counts the directions pushed through the function), finite differences of
  the gradient, the gradient times ``v``, a detached gradient, the point and
  the direction swapped;
- 3.4 (stretch), forward mode with the weights as inputs: weights captured by a
  closure (the ``ZeroTensor`` path the chapter measures), reverse mode, the
  weights differentiated too, nonzero tangents for the weights, ``vmap`` of
  JVPs left transposed.

The checks watch *how* an answer computes, not only what it returns, with two
private probes: an identity :class:`torch.autograd.Function` on the input whose
derivative passes count the directions (cotangents or tangents) that go
through the function, batched or not, and a profiler hook that sees the Python
reference kernels (``torch._refs``) that forward mode runs for captured tensors.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch._refs
from torch import Tensor

from gradbook.exercises._core import (
    ExerciseFailed,
    Passed,
    answer_tensor,
    attempt,
    close,
    diagnose,
    fail,
    forbid,
    one_thread,
    passed,
    randn,
)
from gradbook.jacobian import (
    hessian,
    jacobian_fwd_explicit,
    make_tanh_mlp,
    tanh_mlp,
    tanh_mlp_jacobian,
)

_ROWS_ARE_OUTPUTS = (
    "rows of the Jacobian belong to the entries of the output, columns to the entries of the input."
)


# --------------------------------------------------------------------------- probes

_DIRECTIONS: list[tuple[str, int]] = []


def _legacy_batched(t: Tensor) -> bool:
    """True inside the legacy batching of ``torch.autograd.functional`` (``vectorize=True``)
    and ``autograd.grad(..., is_grads_batched=True)``, which hides the batch size."""
    check = getattr(torch._C._functorch, "is_legacy_batchedtensor", None)
    return bool(check(t)) if check is not None else False


class _Tally(torch.autograd.Function):
    """The identity; every application records how many directions it carries.

    Applied to a batched tensor (inside ``vmap``) it records the batch size,
    otherwise 1. Its own derivatives apply it again, so second-order passes are
    counted too.
    """

    @staticmethod
    def forward(t: Tensor) -> Tensor:
        _DIRECTIONS.append(("legacy", 0) if _legacy_batched(t) else ("pass", 1))
        return t.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return _Tally.apply(grad)

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor) -> Tensor:
        return _Tally.apply(tangent)

    @staticmethod
    def vmap(info: Any, in_dims: tuple, t: Tensor) -> tuple[Tensor, Any]:
        _DIRECTIONS.append(("pass", info.batch_size))
        return t.clone(), in_dims[0]


class _Probe(torch.autograd.Function):
    """The identity on the input of a check's function: it counts the cotangents
    (reverse passes) and tangents (forward passes) that reach it."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        _DIRECTIONS.append(("rev", 0))
        if _legacy_batched(grad):
            _DIRECTIONS.append(("legacy", 0))
        return _Tally.apply(grad)

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor) -> Tensor:
        _DIRECTIONS.append(("fwd", 0))
        return _Tally.apply(tangent)

    @staticmethod
    def vmap(info: Any, in_dims: tuple, x: Tensor) -> tuple[Tensor, Any]:
        return x.clone(), in_dims[0]


class _Record:
    """What one run of a student's answer did to a probed function."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.reverse = False
        self.forward = False
        self.refs: set[str] = set()
        self.legacy = False

    @property
    def directions(self) -> int:
        return sum(self.batches)


@contextmanager
def _watch(refs: bool = False) -> Iterator[_Record]:
    """Record the directions through :class:`_Probe` (and the ``torch._refs`` ops run)."""
    record = _Record()
    _DIRECTIONS.clear()
    previous = sys.getprofile()
    folder = str(Path(torch._refs.__file__).parent)

    def profile(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(folder):
            if code.co_name in torch._refs.__all__:
                record.refs.add(code.co_name)

    if refs:
        sys.setprofile(profile)
    try:
        yield record
    finally:
        if refs:
            sys.setprofile(previous)
        for kind, size in _DIRECTIONS:
            if kind == "pass":
                record.batches.append(size)
            elif kind == "rev":
                record.reverse = True
            elif kind == "legacy":
                record.legacy = True
            else:
                record.forward = True
        _DIRECTIONS.clear()


def _relative_error(got: Tensor, expected: Tensor) -> float:
    got = got.detach().to(expected.dtype)
    return ((got - expected).norm() / expected.norm()).item()


# --------------------------------------------------------------------------- 3.1


def _vec_problems() -> list[tuple[str, Callable[[Tensor], Tensor], Tensor]]:
    """``(label, F, X)``: a non-square linear map, an inverse, a nonlinear Gram matrix."""
    A, B = randn(310, 4, 3), randn(311, 2, 5)
    X1 = randn(312, 3, 2)
    X2 = 2 * torch.eye(3, dtype=torch.float64) + 0.3 * randn(313, 3, 3)
    X3 = randn(314, 4, 2)
    return [
        ("F(X) = A X B with X of shape (3, 2)", lambda X: A @ X @ B, X1),
        ("F(X) = X^-1 with X of shape (3, 3)", torch.linalg.inv, X2),
        ("F(X) = X^T tanh(X) with X of shape (4, 2)", lambda X: X.mT @ torch.tanh(X), X3),
    ]


@one_thread
def check_vec_jacobian(vec_jacobian: Callable[[Callable, Tensor], Tensor]) -> Passed:
    """Exercise 3.1: ``vec_jacobian(F, X)``, the Jacobian of ``vec F(X)`` in ``vec X``.

    ``vec`` stacks the columns of a matrix, so the answer has shape
    ``(F(X).numel(), X.numel())`` and entry ``[i + j p, k + l m] = dF_ij / dX_kl``
    for ``F(X)`` of shape ``(p, q)`` and ``X`` of shape ``(m, n)``.
    """
    name = "Exercise 3.1 (the Jacobian of a matrix function)"
    for label, F, X in _vec_problems():
        J4 = torch.func.jacrev(F)(X)  # (p, q, m, n)
        p, q, m, n = J4.shape
        expected = J4.permute(1, 0, 3, 2).reshape(p * q, m * n)
        got = attempt(name, vec_jacobian, F, X.clone())
        got = answer_tensor(name, got, "the Jacobian")
        if close(got, expected, rtol=1e-10, atol=1e-12):
            continue
        if got.shape == J4.shape:
            fail(
                name,
                f"on {label} you returned the 4-D array of shape {tuple(J4.shape)} (jacrev's "
                f"layout); the exercise asks for the matrix that acts on vec X, of shape "
                f"(F(X).numel(), X.numel()) = ({p * q}, {m * n}).",
            )
        row_major = J4.reshape(p * q, m * n)
        diagnose(
            name,
            got,
            [
                (
                    row_major,
                    f"on {label} your matrix is in torch's row-major order: reshape(-1) "
                    "stacks the *rows* of a matrix, and vec stacks its *columns*. Both the "
                    "output and the input index must follow vec.",
                ),
                (
                    J4.permute(1, 0, 2, 3).reshape(p * q, m * n),
                    f"on {label} the rows of your matrix follow vec F (columns stacked), but "
                    "its columns follow the row-major flattening of X: vec X stacks X's "
                    "columns too.",
                ),
                (
                    J4.permute(0, 1, 3, 2).reshape(p * q, m * n),
                    f"on {label} the columns of your matrix follow vec X (columns stacked), "
                    "but its rows follow the row-major flattening of F(X): vec F stacks "
                    "F's columns too.",
                ),
                (
                    expected.mT,
                    f"on {label} you returned the transpose: " + _ROWS_ARE_OUTPUTS,
                ),
                (
                    row_major.mT,
                    f"on {label} you returned the transpose of the row-major matrix: "
                    + _ROWS_ARE_OUTPUTS
                    + " And vec stacks columns, not rows.",
                ),
                (
                    J4.reshape(m * n, p * q),
                    f"on {label} you reshaped the (p, q, m, n) array to (X.numel(), "
                    "F(X).numel()): a reshape keeps the memory order, so that mixes "
                    "output and input indices. " + _ROWS_ARE_OUTPUTS,
                ),
            ],
            rtol=1e-10,
            atol=1e-12,
        )
        if got.shape != expected.shape:
            fail(
                name,
                f"on {label} expected shape ({p * q}, {m * n}), i.e. (F(X).numel(), "
                f"X.numel()), got {tuple(got.shape)}.",
            )
        fail(
            name,
            f"on {label} the Jacobian is wrong (relative error "
            f"{_relative_error(got, expected):.1e}).",
        )
    return passed(
        name,
        "three matrix functions (non-square, inverse, nonlinear), rows and columns in vec order.",
    )


# --------------------------------------------------------------------------- 3.2


def _budget_problem(
    seed: int, dtype: torch.dtype
) -> tuple[Callable[[Tensor], Tensor], Tensor, Tensor]:
    """A tanh MLP ``R^80 -> R^64`` with the probe on its input, ``x`` and its Jacobian."""
    g = torch.Generator().manual_seed(seed)
    params = make_tanh_mlp(80, 64, hidden=16, generator=g, dtype=dtype)
    x = torch.randn(80, generator=g, dtype=dtype)

    def f(z: Tensor) -> Tensor:
        return tanh_mlp(params, _Probe.apply(z))

    return f, x, tanh_mlp_jacobian(params, x)


def _budget_mistakes(budget: int, m: int, n: int, size: int) -> list[tuple[int, str]]:
    """``(largest batch, why)`` for the usual wrong chunk sizes, most specific first."""
    return [
        (m, f"all {m} VJPs ran in one batch: pass a chunk_size to jacrev."),
        (
            budget // (m + n),
            f"count bytes, not entries: every entry takes x.element_size() = {size} bytes.",
        ),
        (
            budget // (m * size),
            "you counted only the cotangent (m entries); every VJP also produces a "
            "gradient of x's shape (n entries).",
        ),
        (
            budget // (n * size),
            "you counted only the gradient (n entries); every VJP also carries a "
            "cotangent of the output's shape (m entries).",
        ),
        (
            -(-budget // ((m + n) * size)),
            "you rounded up: a VJP that does not fit entirely does not fit, so round down.",
        ),
        (
            budget // ((m + n) * 8),
            f"an entry of x's dtype takes x.element_size() = {size} bytes here, not 8.",
        ),
        (1, "you computed one row at a time: within the budget, but m separate passes."),
    ]


@one_thread
def check_jacobian_in_budget(
    jacobian_in_budget: Callable[[Callable, Tensor, int], Tensor],
) -> Passed:
    """Exercise 3.2: ``jacobian_in_budget(f, x, budget_bytes)``: reverse mode, chunked.

    A batch of ``k`` VJPs is modelled as ``k (m + n)`` entries of ``x``'s dtype
    (a cotangent and a gradient per VJP); the largest ``k`` within the budget
    is the chunk; not even one VJP fitting is a ``ValueError`` naming the budget.
    """
    name = "Exercise 3.2 (a Jacobian within a memory budget)"
    cases = [
        (321, torch.float64, 5, 100),  # (seed, dtype, VJPs that fit, spare bytes)
        (322, torch.float32, 7, 3),
        (323, torch.float64, 100, 0),  # more than m: everything fits at once
    ]
    for seed, dtype, fit, spare in cases:
        f, x, J = _budget_problem(seed, dtype)
        m, n = J.shape
        size = x.element_size()
        per_vjp = (m + n) * size
        budget = fit * per_vjp + spare
        where = f"with x in {dtype} (m = {m} outputs, n = {n} inputs, budget {budget} bytes)"
        with _watch() as record:
            got = attempt(name, jacobian_in_budget, f, x.clone(), budget)
        got = answer_tensor(name, got, "the Jacobian")
        if record.forward and not record.reverse:
            fail(
                name,
                "no VJP reached f: that is forward mode. The budget is about reverse mode's "
                "batch of VJPs (jacrev's chunk_size).",
            )
        if record.legacy:
            fail(
                name,
                "your VJPs ran through the legacy batching of torch.autograd.functional "
                "(vectorize=True) or autograd.grad(..., is_grads_batched=True), all m at once "
                "and with no chunk_size: use torch.func.jacrev's chunk_size, or vmap the "
                "pullback of torch.func.vjp over one chunk of cotangents at a time.",
            )
        biggest = max(record.batches, default=0)
        allowed = min(fit, m)
        if biggest != allowed:
            reason = next(
                (
                    why
                    for chunk, why in _budget_mistakes(budget, m, n, size)
                    if biggest == min(max(chunk, 1), m)
                ),
                "count what one VJP holds again: m + n entries of x's dtype.",
            )
            verdict = (
                f"a batch of {biggest} VJPs ran, more than the budget holds"
                if biggest > allowed
                else f"your largest batch was {biggest} VJPs, and a larger one fits (the "
                "largest chunk within the budget is the fastest)"
            )
            fail(name, f"{where} {verdict}: {reason}")
        if record.directions > m:
            fail(
                name,
                f"{where} {record.directions} VJPs ran for {m} rows: compute every row once "
                "(no extra full Jacobian to compare with).",
            )
        tolerance = 1e-10 if dtype == torch.float64 else 1e-4
        if not close(got, J, rtol=tolerance, atol=tolerance * 1e-2):
            if close(got, J.mT, rtol=tolerance, atol=tolerance * 1e-2):
                fail(name, f"{where} you returned the transpose: " + _ROWS_ARE_OUTPUTS)
            if got.shape != J.shape:
                fail(name, f"{where} expected shape {tuple(J.shape)}, got {tuple(got.shape)}.")
            fail(
                name,
                f"{where} the Jacobian is wrong (relative error {_relative_error(got, J):.1e}).",
            )
    f, x, J = _budget_problem(324, torch.float64)
    too_small = sum(J.shape) * x.element_size() - 1
    try:
        got = jacobian_in_budget(f, x.clone(), too_small)
    except ValueError as error:
        if "budget" not in str(error):
            fail(
                name,
                f"with a budget of {too_small} bytes not even one VJP fits, and your code "
                f"raised ValueError: {error}. Raise it yourself, with a message that names "
                "the budget, before asking for a chunk of 0.",
            )
    except Exception as error:
        fail(
            name,
            f"with a budget of {too_small} bytes not even one VJP fits: raise a ValueError "
            f"that names the budget (your code raised {type(error).__name__}: {error}).",
        )
    else:
        fail(
            name,
            f"with a budget of {too_small} bytes not even one VJP fits, yet your function "
            "returned a result: raise a ValueError that names the budget instead of "
            "exceeding it.",
        )
    return passed(
        name,
        "float64 and float32, the largest chunk within each budget, every row once, and a "
        "ValueError when one VJP does not fit.",
    )


# --------------------------------------------------------------------------- 3.3


class _HvpProblem:
    """``f(x) = logsumexp(x) + ||B x||^2 / 2 + sum(x^4) / 4`` with the probe on its input.

    Its Hessian is ``diag(p) - p p^T + B^T B + 3 diag(x^2)``, ``p = softmax(x)``,
    applied here to vectors by hand (never formed).
    """

    def __init__(self, seed: int, n: int) -> None:
        self.B = randn(seed, 40, n) / math.sqrt(n)
        self.x = randn(seed + 1, n)
        self.v = randn(seed + 2, n)

    def f(self, z: Tensor) -> Tensor:
        z = _Probe.apply(z)
        return torch.logsumexp(z, 0) + 0.5 * (self.B @ z).square().sum() + 0.25 * z.pow(4).sum()

    def gradient(self, at: Tensor) -> Tensor:
        return torch.softmax(at, 0) + self.B.mT @ (self.B @ at) + at.pow(3)

    def hessian_times(self, at: Tensor, direction: Tensor) -> Tensor:
        p = torch.softmax(at, 0)
        B = self.B
        return p * direction - p * (p @ direction) + B.mT @ (B @ direction) + 3 * at**2 * direction

    def hessian_diagonal(self, at: Tensor) -> Tensor:
        p = torch.softmax(at, 0)
        return p - p * p + self.B.square().sum(0) + 3 * at**2


_NO_GRAPH = (
    "the gradient you differentiate again has no graph: it must itself be differentiable "
    "(create_graph=True, or torch.func.grad inside the outer transform), not a detached "
    "value such as x.grad."
)
_HVP_HINTS = {
    "does not require grad": _NO_GRAPH,
    "does not have a grad_fn": _NO_GRAPH,
    "a second time": (
        "the first backward pass freed the graph: keep it for the second pass "
        "(create_graph=True keeps it and makes the gradient differentiable)."
    ),
}


@one_thread
def check_hvp(hvp: Callable[[Callable, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 3.3: ``hvp(f, x, v)`` is ``H(x) v`` for a scalar ``f``, without forming ``H``."""
    name = "Exercise 3.3 (a Hessian-vector product without the Hessian)"
    n = 1000
    for seed in (330, 340):
        problem = _HvpProblem(seed, n)
        x, v = problem.x, problem.v
        Hv = problem.hessian_times(x, v)
        grad = problem.gradient(x)
        with _watch() as record:
            try:
                with forbid(
                    hessian,
                    torch.func.hessian,
                    torch.autograd.functional.hessian,
                    torch.autograd.functional.hvp,
                    torch.autograd.functional.vhp,
                ):
                    got = attempt(name, hvp, problem.f, x.clone(), v.clone(), hints=_HVP_HINTS)
            except ExerciseFailed as error:
                text = str(error)
                if "write it yourself" not in text:
                    raise
                which = text.split("this is what ", 1)[1].split(" does", 1)[0]
                if which.endswith(("hvp", "vhp")):
                    fail(
                        name,
                        f"write it yourself: {which} is the library's Hessian-vector "
                        "product, and the exercise is to build it from a gradient and one "
                        "more derivative pass.",
                    )
                fail(
                    name,
                    f"{which} forms the whole n x n Hessian (here {n} x {n}, n derivative "
                    "passes) to multiply it by one vector: the exercise is to get H v from "
                    "two passes without forming H.",
                )
        got = answer_tensor(name, got, "H v")
        if record.directions > 8 or record.legacy:
            fail(
                name,
                f"{'a batch of' if record.legacy else record.directions} directions went "
                f"through f for one product: that is the whole Hessian ({n} x {n}, one "
                "derivative pass per row or column, batched or not), formed and then "
                "multiplied by v. H v needs a gradient and one more derivative pass in the "
                "direction v.",
            )
        if got.shape != Hv.shape:
            if got.numel() == 1 and close(got.reshape(()), grad @ v):
                fail(
                    name,
                    "that is the directional derivative g . v (a number); H v is the "
                    "derivative of the whole gradient in the direction v, a vector of x's "
                    "shape.",
                )
            fail(name, f"expected H v of shape {tuple(Hv.shape)}, got {tuple(got.shape)}.")
        error = _relative_error(got, Hv)
        if error <= 1e-11:
            continue
        diagnose(
            name,
            got,
            [
                (
                    grad * v,
                    "that is the gradient times v entry by entry: no second derivative. "
                    "Differentiate the gradient (or g . v) once more.",
                ),
                (
                    grad,
                    "that is the gradient; H v is the derivative of the gradient in the "
                    "direction v.",
                ),
                (
                    problem.hessian_times(v, x),
                    "you evaluated the Hessian at v and multiplied it by x: x is the point, "
                    "v the direction.",
                ),
                (
                    problem.hessian_diagonal(x) * v,
                    "only the diagonal of H is in your answer: H couples the entries "
                    "(logsumexp and ||B x||^2 have off-diagonal second derivatives).",
                ),
            ],
            rtol=1e-8,
            atol=1e-10,
        )
        if error < 1e-5:
            fail(
                name,
                f"close but not exact (relative error {error:.1e}): finite differences of the "
                "gradient? Autodiff gives H v to rounding, about 1e-15 here; a difference "
                "quotient cannot get below about 1e-10.",
            )
        fail(name, f"not H v (relative error {error:.1e}).")
    return passed(
        name,
        f"H v to rounding at n = {n}, at most a few derivative passes, the Hessian never formed.",
    )


# --------------------------------------------------------------------------- 3.4


def _weights_problem(seed: int) -> tuple[Callable, Tensor, dict[str, Tensor], Tensor]:
    """A tall tanh MLP ``f(x, params)``, ``R^6 -> R^20``, with the probe on ``x``."""
    g = torch.Generator().manual_seed(seed)
    params = make_tanh_mlp(6, 20, hidden=16, generator=g)
    x = torch.randn(6, generator=g, dtype=torch.float64)

    def f(z: Tensor, weights: dict[str, Tensor]) -> Tensor:
        return tanh_mlp(weights, _Probe.apply(z))

    return f, x, params, tanh_mlp_jacobian(params, x)


@one_thread
def check_jacfwd_weights(
    jacfwd_weights: Callable[[Callable, Tensor, dict[str, Tensor]], Tensor],
) -> Passed:
    """Exercise 3.4: ``jacfwd_weights(f, x, params)``: forward mode, weights as primals."""
    name = "Exercise 3.4 (Stretch: forward mode with the weights as inputs)"
    for seed in (350, 351):
        f, x, params, J = _weights_problem(seed)
        n = x.numel()
        saved = {key: value.clone() for key, value in params.items()}
        with _watch(refs=True) as record:
            with forbid(jacobian_fwd_explicit):
                got = attempt(
                    name,
                    jacfwd_weights,
                    f,
                    x.clone(),
                    params,
                    hints={
                        "Expected dict": "each tangent must have the structure of its primal: "
                        "a dict of zeros for the dict of weights.",
                        "shape": "each tangent must have its primal's shape: the weights' "
                        "tangents are zeros of the weights' shapes.",
                        "different size": "each tangent must have its primal's shape: the "
                        "weights' tangents are zeros of the weights' shapes.",
                    },
                )
        if any(not torch.equal(params[key], saved[key]) for key in params):
            fail(name, "your function changed the weights: leave params alone.")
        if record.reverse and not record.forward:
            fail(
                name,
                "that is reverse mode (VJPs reached f): the exercise is forward mode, one JVP "
                "per input, which is the cheap mode for this tall Jacobian.",
            )
        if record.directions > n:
            fail(
                name,
                f"{record.directions} tangents went through f for an input of {n} entries: "
                "you also differentiated with respect to the weights (argnums=(0, 1)?). "
                "They are inputs of the JVP only so that their tangent can be a dense zero.",
            )
        if record.refs:
            ops = ", ".join(f"torch._refs.{op}" for op in sorted(record.refs))
            fail(
                name,
                f"your forward pass ran {ops}: the weights reached f without tangents "
                "(captured by a closure, or left out by argnums), so PyTorch stood in "
                "ZeroTensors and ran a Python meta kernel for every operation with them. "
                "Pass the weights to jvp as primals, with dense zero tangents.",
            )
        if isinstance(got, (tuple, list)):
            fail(
                name,
                "you returned several Jacobians (with respect to x and to the weights?): "
                "return the Jacobian in x alone, one tensor of shape (m, n).",
            )
        got = answer_tensor(name, got, "the Jacobian")
        if close(got, J, rtol=1e-12, atol=1e-14):
            continue
        if close(got, J.mT, rtol=1e-12, atol=1e-14):
            fail(
                name,
                "you returned J^T: vmap stacks the JVPs along dim 0, and each JVP with a "
                "one-hot tangent is a *column* of J. " + _ROWS_ARE_OUTPUTS,
            )
        if got.shape == J.shape:
            fail(
                name,
                "the Jacobian is wrong (relative error "
                f"{_relative_error(got, J):.1e}): are the weights' tangents zero? A nonzero "
                "tangent also moves the weights, and adds their derivative to every column.",
            )
        fail(name, f"expected shape {tuple(J.shape)} (m, n), got {tuple(got.shape)}.")
    return passed(
        name,
        "the Jacobian to rounding, forward mode, n tangents, no Python meta kernels.",
    )
