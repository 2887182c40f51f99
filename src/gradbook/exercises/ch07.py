"""Checks for chapter 7, learning vector-Jacobian products of a black box.

Each check runs the student's function on inputs of its own and recognises the
usual mistakes: inverting the rank-deficient ``dx dx^T`` (or ``dX^T dX``)
instead of taking a pseudo-inverse, treating probes taken at different points
as secants of one Jacobian, adding up one-probe estimates of non-orthogonal
probes, a wrong normalisation, a transposed Jacobian, Broyden updates that
forget the residual or the old estimate, finite-difference steps too large
(truncation error) or too small (rounding error), autograd Functions whose
backward returns the wrong shape or ignores ``ctx.needs_input_grad``, random
directions that are shared by all dimensions or not of unit variance, and a
training loop that never reaches the black box's backward. Every check rejects
an answer that merely calls the ``gradbook.blackbox`` function solving it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from gradbook.blackbox import (
    EvaluationCounter,
    broyden_update,
    finite_difference_jacobian,
    fit_through_blackbox,
    gradiator,
    rank_one_jacobian,
    secant_jacobian,
    wrap_blackbox,
)
from gradbook.blackbox import spsa_vjp as _library_spsa_vjp
from gradbook.exercises._core import (
    ExerciseFailed,
    Passed,
    answer_tensor,
    attempt,
    close,
    fail,
    forbid,
    passed,
    randn,
)

_PINV_HINT = (
    "The pseudo-inverse (torch.linalg.pinv, or torch.linalg.lstsq) handles every number "
    "of probes; a plain inverse exists only in special cases."
)


def _tensor(name: str, value: object, what: str) -> Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    return answer_tensor(name, value, what).detach().to(torch.float64)


def _close(a: Tensor, b: Tensor, rtol: float = 1e-9) -> bool:
    """``close`` with the absolute tolerance scaled to ``b``'s largest entry."""
    return close(a, b, rtol=rtol, atol=rtol * float(b.abs().max()))


def _secant_mistake(new: Tensor, old: Tensor, dx: Tensor, df: Tensor, seed: int) -> str | None:
    """What is wrong with ``new`` as the smallest change to ``old`` with ``new dx = df``.

    ``new`` and ``old`` are ``(n, m)``, ``dx`` is ``(m,)``, ``df`` is ``(n,)``; the
    right answer is ``old + (df - old dx) dx^T / (dx^T dx)`` (``old = 0``: the
    one-probe estimate). Returns ``"normalisation"`` when ``new dx`` misses ``df``
    by a factor ``||dx||^{+-1}`` on the correction, ``"secant"`` when it misses
    otherwise, ``"orthogonal"`` when ``new`` differs from ``old`` on a direction
    orthogonal to ``dx`` (drawn from ``seed``), and ``None`` when all hold.
    """
    image, before = new @ dx, old @ dx
    norm = dx.norm()
    if _close(image, before + (df - before) * norm) or _close(image, before + (df - before) / norm):
        return "normalisation"
    if not _close(image, df):
        return "secant"
    across = randn(seed, dx.numel())
    across = across - (across @ dx) / (dx @ dx) * dx
    if not bool(torch.allclose(new @ across, old @ across, atol=1e-9)):
        return "orthogonal"
    return None


def _inverse_failure(error: ExerciseFailed) -> bool:
    cause = error.__cause__
    text = f"{type(cause).__name__} {cause}".lower()
    words = ("singular", "invertib", "linalgerror", "square matri")
    return any(word in text for word in words)


# ---------------------------------------------------------------------------
# Exercise 7.1


def check_one_probe_jacobian(one_probe_jacobian: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 7.1: ``one_probe_jacobian(dx, df)`` is the minimum-norm ``J`` with ``J dx = df``."""
    name = "Exercise 7.1 (the one-probe estimate)"
    m, n = 5, 3
    dx, df = 3.0 * randn(0, m), randn(1, n)  # ||dx|| far from 1: norm vs norm^2 shows
    expected = torch.outer(df, dx) / (dx @ dx)
    try:
        with forbid(rank_one_jacobian, secant_jacobian):
            got = attempt(name, one_probe_jacobian, dx.clone(), df.clone())
    except ExerciseFailed as error:
        if _inverse_failure(error):
            fail(
                name,
                "you tried to invert dx dx^T, an (m, m) matrix of rank one: it has no inverse "
                "(the forum's obstacle). The column dx does have a pseudo-inverse, "
                "dx^+ = (dx^T dx)^-1 dx^T, whose inverse is of a positive number. " + _PINV_HINT,
            )
        raise
    got = _tensor(name, got, "the Jacobian")
    if not bool(torch.isfinite(got).all()) or got.abs().max() > 1e6 * expected.abs().max():
        fail(
            name,
            "your Jacobian is huge or not finite: inverting the rank-one matrix dx dx^T only "
            "'works' through rounding, and the result is noise. " + _PINV_HINT,
        )
    if got.shape == (m, n):
        fail(
            name,
            f"your Jacobian has shape {(m, n)}, the transpose: J[i, j] = d f_i / d x_j, so J is "
            f"(n, m) = {(n, m)} and J dx has the shape of df.",
        )
    if got.shape != (n, m):
        fail(name, f"expected a Jacobian of shape (n, m) = {(n, m)}, got {tuple(got.shape)}.")
    mistake = _secant_mistake(got, torch.zeros(n, m, dtype=got.dtype), dx, df, seed=2)
    if mistake == "normalisation":
        fail(
            name,
            "J dx is df times a power of ||dx||: check the normalisation. The secant condition "
            "J dx = df must hold exactly, which fixes the division (by dx^T dx = ||dx||^2).",
        )
    if mistake == "secant":
        fail(name, "your J does not satisfy the secant condition J dx = df.")
    if mistake == "orthogonal":
        fail(
            name,
            "your J satisfies J dx = df but also acts on directions orthogonal to dx, about which "
            "one probe says nothing. The minimum-norm estimate is zero there.",
        )
    if not _close(got, expected):
        fail(name, "your J is not the minimum-norm solution of J dx = df.")
    return passed(name, "J dx = df holds, J is zero across dx, and J has the smallest norm.")


# ---------------------------------------------------------------------------
# Exercise 7.2


def _bumpy(x: Tensor) -> Tensor:
    """The check's black box ``R^4 -> R^3``, curved enough that far-apart probes disagree."""
    W = torch.tensor(
        [[1.0, -2.0, 0.5, 1.5], [0.3, 1.0, -1.0, 2.0], [-1.2, 0.4, 2.0, -0.5]],
        dtype=x.dtype,
        device=x.device,
    )
    return torch.sin(2.0 * (W @ x)) + 0.5 * (W @ x) ** 2


def _secant_reference(fun: Callable, x: Tensor, g: Tensor, dX: Tensor) -> dict[str, Tensor]:
    """The right answer and the answers of the known mistakes, for these probes.

    Probing along a walk is recognised from the points the student evaluated, not
    from its answer (see :func:`check_secant_vjp`).
    """
    fx = fun(x)
    plus = torch.stack([fun(x + dX[:, i]) for i in range(dX.shape[1])], dim=1)
    dF = plus - fx[:, None]
    answers = {
        "right": g @ dF @ torch.linalg.pinv(dX),
        "no f(x)": g @ plus @ torch.linalg.pinv(dX),
    }
    rank_one = [torch.outer(dF[:, i], dX[:, i]) / (dX[:, i] @ dX[:, i]) for i in range(dX.shape[1])]
    answers["sum"] = g @ sum(rank_one)
    answers["mean"] = g @ (sum(rank_one) / len(rank_one))
    answers["first"] = g @ rank_one[0]
    answers["last"] = g @ rank_one[-1]
    return answers


_AFFINE_A = torch.tensor(
    [[2.0, -1.0, 0.5, 3.0], [0.25, 4.0, -2.0, 1.0], [-3.0, 0.5, 1.5, -0.75]], dtype=torch.float64
)


def _affine(x: Tensor) -> Tensor:
    """A linear black box ``R^4 -> R^3``: every secant is exact, so ``k >= m`` probes give J."""
    return _AFFINE_A.to(x.dtype) @ x + torch.tensor([1.0, -2.0, 0.5], dtype=x.dtype)


def _secant_attempt(name: str, secant_vjp: Callable, fun: Callable, x, g, dX, label: str):
    """The student's VJP for these probes, with an impossible inverse named; ``(got, points)``."""
    counted = EvaluationCounter(fun, record=True)
    try:
        with forbid(secant_jacobian, rank_one_jacobian, finite_difference_jacobian):
            got = attempt(name, secant_vjp, counted, x.clone(), g.clone(), dX.clone())
    except ExerciseFailed as error:
        if _inverse_failure(error):
            fail(
                name,
                f"with {label} your code tries to invert a singular or non-square matrix: "
                "dX itself is square only when k = m, dX dX^T (m x m) has rank k when "
                "k < m, and dX^T dX (k x k) has rank m when k > m. " + _PINV_HINT,
            )
        raise
    got = _tensor(name, got, "the VJP")
    if got.shape != (x.numel(),):
        fail(
            name,
            f"the VJP g^T J has one entry per input, shape ({x.numel()},); got "
            f"{tuple(got.shape)} ({label}).",
        )
    return got, np.array(counted.points)


def _inexact_message(label: str, error: float) -> str:
    return (
        f"with {label} your VJP is off by {error:.1e} (relative) from the least-squares "
        "solution of the secant conditions, which the pseudo-inverse gives exactly: k >= m "
        "independent probes determine J exactly, up to rounding (about 1e-15). A ridge "
        "penalty, float32 arithmetic or an iterative solver leave more."
    )


def check_secant_vjp(secant_vjp: Callable[[Callable, Tensor, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 7.2: ``secant_vjp(fun, x, g, dX)`` is ``g^T dF dX^+`` with probes taken at ``x``."""
    name = "Exercise 7.2 (the VJP from k probes)"
    m = 4
    x = randn(10, m)
    g = randn(11, 3)
    cases = [
        ("k = m = 4 probes", 0.05 * randn(12, m, m)),
        ("k = 2 probes, fewer than the m = 4 inputs", 0.05 * randn(13, m, 2)),
        ("k = 7 probes, more than the m = 4 inputs", 0.05 * randn(14, m, 7)),
    ]
    for label, dX in cases:
        answers = _secant_reference(_bumpy, x, g, dX)
        got, points = _secant_attempt(name, secant_vjp, _bumpy, x, g, dX, label)
        if _close(got, answers["right"]):
            continue
        walked = (x[:, None] + torch.cumsum(dX, dim=1)).T.numpy()
        if len(points) and any(np.allclose(p, walked[-1]) for p in points) and dX.shape[1] > 1:
            fail(
                name,
                "you probed along a walk x, x + dx_1, x + dx_1 + dx_2, ...: each secant then "
                "describes the Jacobian at a different point, and stacking them mixes different "
                "Jacobians. Take every probe from the same x: f(x + dx_i) - f(x).",
            )
        if _close(got, answers["no f(x)"]):
            fail(name, "a secant needs the change of the output, df_i = f(x + dx_i) - f(x).")
        if _close(got, answers["first"]) or _close(got, answers["last"]):
            fail(
                name,
                "your VJP uses one probe only: that is the forum's one-probe heuristic "
                "J1 = df dx^T / ||dx||^2, which knows nothing across dx. With k probes, solve "
                "all k secant conditions together: J dX = dF.",
            )
        if _close(got, answers["sum"]) or _close(got, answers["mean"]):
            fail(
                name,
                "you combined one-probe estimates, one per probe, by adding or averaging them. "
                "That is right only for orthogonal probes: non-orthogonal probes share "
                "directions, which are then counted several times. Solve all secant conditions "
                "together: J dX = dF.",
            )
        if not bool(torch.isfinite(got).all()) or got.norm() > 1e4 * answers["right"].norm():
            fail(
                name,
                f"with {label} your VJP is huge or not finite: an inverse of a rank-deficient "
                "matrix 'succeeded' through rounding. " + _PINV_HINT,
            )
        error = float((got - answers["right"]).norm() / answers["right"].norm())
        if error < 1e-2:
            fail(name, _inexact_message(label, error))
        if label.startswith("k = m"):
            fail(name, "your VJP is wrong even with as many probes as inputs: g^T (dF dX^-1).")
        fail(
            name,
            f"right with as many probes as inputs, wrong with {label}: the inverse you use "
            "exists only when k = m (or on one side of it). " + _PINV_HINT,
        )
    # exactness: on a linear black box every secant is exact, and k >= m independent
    # probes determine J; only rounding may remain
    exact = g @ _AFFINE_A
    for label, dX in [
        ("k = m = 4 unit-sized probes", randn(15, m, m)),
        ("k = 6 unit-sized probes", randn(16, m, 6)),
    ]:
        got, _ = _secant_attempt(name, secant_vjp, _affine, x, g, dX, label)
        error = float((got - exact).norm() / exact.norm())
        if not error <= 1e-10:
            fail(name, _inexact_message(f"a linear black box and {label}", error))
    return passed(
        name,
        "right for k < m, k = m and k > m probes taken at x, and exact on a linear black box.",
    )


# ---------------------------------------------------------------------------
# Exercise 7.3


def check_broyden_step(broyden_step: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 7.3: ``broyden_step(J, dx, df)`` is Broyden's update of ``J``."""
    name = "Exercise 7.3 (Broyden's update)"
    n, m = 3, 5
    J, dx, df = randn(20, n, m), 2.5 * randn(21, m), randn(22, n)
    expected = J + torch.outer(df - J @ dx, dx) / (dx @ dx)
    try:
        with forbid(broyden_update):
            got = attempt(name, broyden_step, J.clone(), dx.clone(), df.clone())
    except ExerciseFailed as error:
        cause = str(error.__cause__ or "")
        if "size of tensor" in cause or "must match" in cause or "shape" in cause:
            fail(
                name,
                "a shape mismatch: the correction is an (n, m) outer product, (column of the "
                "output's size) times (row of the input's size), the shape of J.",
            )
        raise
    got = _tensor(name, got, "the updated Jacobian")
    if got.shape != (n, m):
        fail(name, f"the update must keep J's shape {(n, m)}, got {tuple(got.shape)}.")
    one_probe = torch.outer(df, dx) / (dx @ dx)
    if _close(got, one_probe):
        fail(
            name,
            "you replaced J by the one-probe estimate (the forum's heuristic "
            "J1 = df dx^T / ||dx||^2): everything J knew about the directions orthogonal to "
            "dx is lost. Correct J, do not replace it.",
        )
    if _close(got, J + one_probe):
        fail(
            name,
            "you added the whole df: the correction must use the residual df - J dx, what J "
            "still gets wrong along dx (otherwise J dx = df fails as soon as J is not zero).",
        )
    mistake = _secant_mistake(got, J, dx, df, seed=23)
    if mistake == "normalisation":
        fail(
            name,
            "the new J misses the secant condition by a power of ||dx||: check the "
            "normalisation (divide by dx^T dx).",
        )
    if mistake == "secant":
        fail(name, "the updated J must satisfy the newest secant condition J_new dx = df.")
    if mistake == "orthogonal":
        fail(
            name,
            "your update also changes J on directions orthogonal to dx. The smallest change "
            "that satisfies the secant condition leaves them alone.",
        )
    if not _close(got, expected):
        fail(name, "close, but not Broyden's update.")
    return passed(name, "J_new dx = df holds, J is unchanged across dx, and the change is minimal.")


# ---------------------------------------------------------------------------
# Exercise 7.4


def _curved(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth and strongly curved, ``R^4 x R^3 -> R^3``: truncation error shows for large steps."""
    return np.array(
        [np.sin(3 * x[0]) * y[0] + x[1] ** 3, np.exp(x[2]) - np.cos(2 * y[1]), x @ x[::-1] * y[2]]
    )


def _curved_jacobians(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Jx, Jy = np.zeros((3, x.size)), np.zeros((3, y.size))
    Jx[0, 0], Jx[0, 1] = 3 * np.cos(3 * x[0]) * y[0], 3 * x[1] ** 2
    Jy[0, 0] = np.sin(3 * x[0])
    Jx[1, 2], Jy[1, 1] = np.exp(x[2]), 2 * np.sin(2 * y[1])
    Jx[2] = 2 * x[::-1] * y[2]
    Jy[2, 2] = x @ x[::-1]
    return Jx, Jy


_A = np.array([[1.0, 2.0, -1.0, 0.5], [0.5, -1.5, 2.0, 1.0], [2.0, 0.0, 1.0, -1.0]])
_B = np.array([[0.5, 1.0, 0.0, -1.0, 2.0, 0.3], [1.0, -0.5, 1.5, 0.0, 0.2, 1.0]])
_B = np.vstack([_B, 0.5 * _B[0] - _B[1]])


def _linear(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear with values near 300: only rounding error shows."""
    return 300.0 + _A @ x + _B[:, : y.size] @ y


def _run(name: str, function: Callable, *args: object) -> object:
    """``attempt``, with torch's messages about a Function's backward turned into hints."""
    try:
        return attempt(name, function, *args)
    except ExerciseFailed as error:
        text = str(error.__cause__ or error)
        if "invalid gradient at index" in text or "expected shape compatible" in text:
            fail(
                name,
                "backward returned a gradient of the wrong shape. It must return one gradient "
                "per forward input, each of that input's shape: g^T J (shape (m,)), not J g "
                f"or a Jacobian. torch says: {text.splitlines()[0]}",
            )
        if "incorrect number of gradients" in text:
            fail(name, "backward must return exactly one value (or None) per forward input.")
        raise


def _vjp_error(make: Callable, fun: Callable, x: np.ndarray, y: np.ndarray, Jx, Jy, name: str):
    """Relative VJP error of the student's Function on ``fun`` at ``(x, y)``."""
    apply = _run(name, make, fun)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y, requires_grad=True)
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    out = _run(name, apply, xt, yt)
    gx, gy = _run(name, torch.autograd.grad, out, (xt, yt), g)
    exact = np.concatenate([g.numpy() @ Jx, g.numpy() @ Jy])
    got = np.concatenate([gx.detach().numpy(), gy.detach().numpy()])
    return float(np.linalg.norm(got - exact) / np.linalg.norm(exact))


def check_fd_function(make_fd_function: Callable[[Callable], Callable]) -> Passed:
    """Exercise 7.4: an honest ``autograd.Function`` for a NumPy black box ``f(x, y)``."""
    name = "Exercise 7.4 (a finite-difference autograd.Function)"
    with forbid(wrap_blackbox, gradiator, finite_difference_jacobian):
        _fd_function_checks(name, make_fd_function)
    return passed(name, "gradcheck passes, and inputs that need no gradient cost nothing.")


def _fd_function_checks(name: str, make_fd_function: Callable[[Callable], Callable]) -> None:
    """Fail with the first misconception :func:`check_fd_function` finds."""
    x = np.array([0.3, -0.7, 0.4, 0.9])
    y = np.array([1.2, 0.5, -0.8])
    apply = _run(name, make_fd_function, _curved)
    if not callable(apply):
        fail(name, f"make_fd_function must return a function, got {type(apply).__name__}.")
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.tensor(y, requires_grad=True)
    out = _run(name, apply, xt, yt)
    if not isinstance(out, Tensor):
        fail(
            name,
            f"the forward returned {type(out).__name__}: return a tensor (torch.as_tensor(...)); "
            "autograd only tracks tensors, so nothing upstream would get a gradient.",
        )
    if out.shape != (3,) or not np.allclose(out.detach().numpy(), _curved(x, y), rtol=1e-12):
        fail(name, "the forward must return fun(x, y) as a tensor of the output's shape.")
    if not out.requires_grad:
        fail(name, "the output does not require grad: return the Function's .apply.")
    # gradcheck, with the misconceptions recognised from torch's errors
    ok = bool(
        _run(
            name,
            lambda: torch.autograd.gradcheck(apply, (xt, yt), raise_exception=False),
        )
    )
    # name the step's mistake: rounding shows on a linear box, truncation on a curved one
    Jx, Jy = _curved_jacobians(x, y)
    err_curved = _vjp_error(make_fd_function, _curved, x, y, Jx, Jy, name)
    xl, yl = np.array([1.0, -2.0, 0.5, 0.25]), np.array([0.3, 0.2, -0.1, 0.5, 1.0, -1.0])
    err_linear = _vjp_error(make_fd_function, _linear, xl, yl, _A, _B, name)
    if err_linear > 1e-5:
        fail(
            name,
            f"on a linear black box (values near 300) your VJP is off by {err_linear:.1e}: "
            "there is no truncation error there, so this is rounding error, about "
            "u |f| / h with u = 1e-16. The step is too small.",
        )
    if err_curved > 1e-3 or (not ok and err_curved > 1e-5):
        fail(
            name,
            f"exact on a linear black box but off by {err_curved:.1e} on a curved one: "
            "truncation error, about h |f''| / 2 for forward differences and h^2 |f'''| / 6 "
            "for central ones. The step is too large.",
        )
    if not ok:
        fail(name, "your VJP does not match gradcheck's numerical Jacobian.")
    # needs_input_grad: no evaluations for an input that needs no gradient
    y_long = np.linspace(-1.0, 1.0, 6)
    for label, x_grad in (("y", True), ("x", False)):
        counted = EvaluationCounter(lambda a, b: _linear(a, b) + np.sin(a).sum() * b[:3].sum())
        apply = _run(name, make_fd_function, counted)
        xt = torch.tensor(x, requires_grad=x_grad)
        yt = torch.tensor(y_long, requires_grad=not x_grad)
        out = _run(name, apply, xt, yt)
        before = counted.calls
        _run(name, out.sum().backward)
        spent = counted.calls - before
        needed = x.size if x_grad else y_long.size
        if spent > 2 * needed + 1:
            fail(
                name,
                f"only {'x' if x_grad else 'y'} needs a gradient, but the backward spent {spent} "
                f"black-box evaluations (at most {2 * needed + 1} are needed): it ignores "
                f"ctx.needs_input_grad and differentiates {label} too. Each evaluation may be "
                f"a simulation; return None for {label} and skip its probes.",
            )
    # dtype preserved
    x32 = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    y32 = torch.tensor(y, dtype=torch.float32)
    out32 = _run(name, _run(name, make_fd_function, _curved), x32, y32)
    if out32.dtype != torch.float32:
        fail(name, f"a float32 input gave a {out32.dtype} output: keep the input's dtype.")
    _run(name, out32.sum().backward)
    if x32.grad is None or x32.grad.dtype != torch.float32:
        fail(name, "the gradient of a float32 input must be float32.")


# ---------------------------------------------------------------------------
# Exercise 7.5

_SPSA_A = randn(30, 3, 6)
_SPSA_B = randn(31, 3)


def _spsa_box(x: Tensor) -> Tensor:
    """A linear black box ``R^6 -> R^3``: central and one-sided differences are both exact."""
    return _SPSA_A.to(x.dtype) @ x + _SPSA_B.to(x.dtype)


def _spsa_run(name: str, spsa_vjp: Callable, fun: Callable, x, g, k: int, c: float, seed: int):
    """One call of the student's estimator with a fresh generator seeded ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    got = attempt(name, spsa_vjp, fun, x.clone(), g.clone(), k, c, generator)
    got = _tensor(name, got, "the VJP estimate")
    if got.shape != (x.numel(),):
        fail(
            name,
            f"the estimate of g^T J has one entry per input, shape ({x.numel()},); got "
            f"{tuple(got.shape)}.",
        )
    return got


def _direction_mistake(points: np.ndarray, x: np.ndarray, c: float) -> str | None:
    """What is wrong with the perturbation directions read off the evaluated points.

    Every evaluation at ``x + c u`` (or ``x - c u``) with ``u != 0`` gives ``+-u``;
    their second moment must be ``E[u u^T] = I``: independent entries across
    dimensions (``E[u_i u_j] = E[u_i] E[u_j] = 0``, so of mean zero) and of unit
    variance. Returns ``"shared"``, ``"mean"``, ``"variance"``, ``"correlated"`` or
    ``None``; the thresholds are about five standard errors of the sample moments.
    """
    steps = (points - x[None, :]) / c
    steps = steps[np.linalg.norm(steps, axis=1) > 1e-9]
    if len(steps) < 100:
        return None
    count, m = steps.shape
    spread = steps.max(axis=1) - steps.min(axis=1)
    if np.mean(spread <= 1e-9 * np.abs(steps).max(axis=1)) > 0.5:
        return "shared"
    second = steps.T @ steps / count
    diagonal = np.diag(second)
    off = second[~np.eye(m, dtype=bool)]
    noise = 6.0 / np.sqrt(count)
    if off.min() > noise:  # E[u_i u_j] = E[u]^2 > 0: independent entries of nonzero mean
        return "mean"
    if np.abs(diagonal - 1.0).max() > min(0.5, 5 * noise):
        return "variance"
    if np.abs(off).max() > noise:
        return "correlated"
    return None


def check_spsa_vjp(
    spsa_vjp: Callable[[Callable, Tensor, Tensor, int, float, torch.Generator], Tensor],
) -> Passed:
    """Exercise 7.5: ``spsa_vjp(fun, x, g, num_samples, c, generator)``, unbiased SPSA.

    Directions are read off the points the student's code evaluates: their
    second moment must be ``E[u u^T] = I``; the mean over 1000 seeds must match
    ``g^T J`` within five standard errors; ``k`` samples must cut the mean squared
    error about ``k``-fold.
    """
    name = "Exercise 7.5 (SPSA: random simultaneous perturbations)"
    m = 6
    x, g = randn(32, m), randn(33, 3)
    v = g @ _SPSA_A
    c = 1e-3
    with forbid(_library_spsa_vjp):
        counted = EvaluationCounter(_spsa_box)
        first = _spsa_run(name, spsa_vjp, counted, x, g, 1, c, seed=0)
        if counted.calls > 3:
            fail(
                name,
                f"one sample spent {counted.calls} black-box evaluations: SPSA needs two (f at "
                "x + c u and x - c u) whatever m is; it never probes the inputs one by one.",
            )
        if not _close(_spsa_run(name, spsa_vjp, _spsa_box, x, g, 1, c, seed=0), first, 1e-12):
            fail(
                name,
                "two calls with identically seeded generators gave different estimates: draw "
                "the directions from the generator you are given (generator=generator), so "
                "that a run can be repeated.",
            )
        if _close(_spsa_run(name, spsa_vjp, _spsa_box, x, g, 1, c, seed=1), first, 1e-12):
            fail(name, "different generators gave the same estimate: draw random directions.")
        # one sample per seed: the directions' statistics, and the mean over seeds
        seeds = 1000
        recorded = EvaluationCounter(_spsa_box, record=True)
        singles = torch.stack(
            [_spsa_run(name, spsa_vjp, recorded, x, g, 1, c, seed=s) for s in range(seeds)]
        )
        mistake = _direction_mistake(np.array(recorded.points), x.numpy(), c)
        if mistake == "shared":
            fail(
                name,
                "every entry of your direction u is the same number: one random draw shared by "
                "all dimensions (randn(1) or randn(k, 1) broadcast). The entries must be "
                "independent across dimensions, E[u u^T] = I, or the estimate only ever sees "
                "the sum of the gradient's entries.",
            )
        if mistake == "mean":
            fail(
                name,
                "the entries of your directions do not have mean zero (torch.rand draws from "
                "[0, 1)): use Rademacher signs (+1 or -1 with equal probability) or standard "
                "normal entries, so that E[u u^T] = I.",
            )
        if mistake == "variance":
            fail(
                name,
                "the entries of your directions do not have unit variance (scaled, or "
                "normalised to unit length?): E[u u^T] must be I, or the estimate is scaled. "
                "The size of the step belongs in c, not in u.",
            )
        if mistake == "correlated":
            fail(
                name,
                "the entries of your directions are correlated across dimensions: E[u u^T] "
                "must be I, with independent entries.",
            )
        mean = singles.mean(dim=0)
        scale = float(mean @ v / (v @ v))
        bias = float((mean - v).norm() / v.norm())
        allowed = 5.0 * float(np.sqrt((m + 1) / seeds))  # five standard errors
        if bias > allowed:
            if abs(scale - 2.0) < 0.4:
                fail(
                    name,
                    "averaged over many seeds your estimate is twice g^T J: a central "
                    "difference f(x + c u) - f(x - c u) spans 2c, so divide by 2c.",
                )
            if abs(scale - 0.5) < 0.15:
                fail(
                    name,
                    "averaged over many seeds your estimate is half of g^T J: check the "
                    "division by the step (c for a one-sided difference, 2c for a central one).",
                )
            if abs(scale - 1 / m) < 0.1:
                fail(
                    name,
                    f"averaged over many seeds your estimate is about g^T J / {m}, one m-th: "
                    "you divided each sample by ||u||^2, as the forum's one-probe heuristic "
                    "J1 = df dx^T / ||dx||^2 does. That heuristic is right along u but not "
                    "unbiased; the simultaneous-perturbation sample is not normalised, since "
                    "E[u u^T] = I already.",
                )
            if scale < 0:
                fail(name, "averaged over many seeds your estimate points against g^T J: a sign.")
            fail(
                name,
                f"averaged over {seeds} seeds your estimate misses g^T J by {bias:.2f} "
                f"(relative), more than chance allows ({allowed:.2f}): it is biased. Each "
                "sample is (g^T df / step) u with E[u u^T] = I.",
            )
        # k samples: the average of k independent samples, whose error shrinks like 1/k
        k, runs = 16, 80
        counted = EvaluationCounter(_spsa_box)
        batches = torch.stack(
            [_spsa_run(name, spsa_vjp, counted, x, g, k, c, seed=10_000 + s) for s in range(runs)]
        )
        if counted.calls > runs * (2 * k + 1):
            fail(
                name,
                f"{k} samples spent {counted.calls // runs} evaluations per call: 2 per sample "
                "(f(x) once more at most) is all it takes.",
            )
        if abs(float(batches.mean(dim=0) @ v / (v @ v)) - k) < 0.3 * k:
            fail(
                name,
                f"with num_samples = {k} your estimate is about {k} times g^T J: you added the "
                "samples. Average them.",
            )
        error_one = float(((singles - v) ** 2).sum(dim=1).mean() / (v @ v))
        error_k = float(((batches - v) ** 2).sum(dim=1).mean() / (v @ v))
        if error_k > 0.3 * error_one:
            fail(
                name,
                f"with num_samples = {k} the mean squared error is {error_k / error_one:.2f} "
                "times that of one sample, not about 1/16: average k samples, each with a "
                "direction of its own.",
            )
    return passed(
        name,
        "directions with E[u u^T] = I, unbiased over 1000 seeds, error shrinking with the samples.",
    )


# ---------------------------------------------------------------------------
# Exercise 7.6 (stretch)


def _box(z: np.ndarray) -> np.ndarray:
    """The stretch's NumPy black box ``R^3 -> R^4``."""
    z = np.asarray(z, dtype=np.float64)
    return np.array(
        [
            np.sin(2.0 * z[0]) + z[1] ** 2,
            z[0] * z[2],
            np.exp(z[1]) - z[2],
            np.cos(z[2]) + z[0] * z[1],
        ]
    )


def _box_jacobian(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return np.array(
        [
            [2.0 * np.cos(2.0 * z[0]), 2.0 * z[1], 0.0],
            [z[2], 0.0, z[0]],
            [0.0, np.exp(z[1]), -1.0],
            [z[1], z[0], -np.sin(z[2])],
        ]
    )


def _as_array(a: object) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu()
    return np.asarray(a, dtype=np.float64)


class _CountedVJP:
    """A VJP ``(z, g) -> g^T J(z)`` counting its calls: exact, central differences or rank one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.calls = 0

    def __call__(self, z: object, g: object) -> np.ndarray:
        self.calls += 1
        z, g = _as_array(z), _as_array(g)
        if self.kind == "exact":
            return g @ _box_jacobian(z)
        if self.kind == "rank one":  # one probe: the forum's heuristic
            dz = 1e-6 * np.random.default_rng(0).standard_normal(z.size)
            return g @ np.outer(_box(z + dz) - _box(z), dz) / (dz @ dz)
        h = np.finfo(np.float64).eps ** (1 / 3)
        columns = [(_box(z + h * e) - _box(z - h * e)) / (2 * h) for e in np.eye(z.size)]
        return g @ np.stack(columns, axis=1)


_THETA_TRUE = np.array([0.5, -0.3, 0.8])
_STRETCH_STEPS = 200
_STRETCH_TARGET = 1e-8


def _model_loss(theta: np.ndarray, target: np.ndarray) -> float:
    """The model of the stretch, computed independently: ``mean((box(tanh theta) - target)^2)``."""
    return float(np.mean((_box(np.tanh(theta)) - target) ** 2))


def _layer_checks(name: str, make_layer: Callable) -> None:
    """The layer: value, gradient, gradcheck with an accurate and with a rank-one VJP, dtype."""
    hints = {
        "Can't call numpy() on Tensor that requires grad": (
            "your layer hands the black box (or the VJP) a tensor that requires grad: convert "
            "at the border, z.detach().cpu().numpy()."
        ),
        "does not require grad": (
            "the layer's output is not connected to its input: return the output of your "
            "Function's .apply, not the black box's array."
        ),
    }
    exact = _CountedVJP("exact")
    layer = attempt(name, make_layer, _box, exact, hints=hints)
    if not callable(layer):
        fail(name, f"make_layer must return a function, got {type(layer).__name__}.")
    z0 = np.array([0.3, -0.2, 0.5])
    z = torch.tensor(z0, requires_grad=True)
    out = attempt(name, layer, z, hints=hints)
    if not isinstance(out, Tensor):
        fail(
            name,
            f"the layer returned {type(out).__name__}, the forum's first bug: autograd only "
            "tracks tensors, so nothing upstream would get a gradient. Return a tensor.",
        )
    if out.shape != (4,) or not np.allclose(out.detach().numpy(), _box(z0), rtol=1e-12):
        fail(name, "the layer's forward must return fun(z) as a tensor of the output's shape.")
    if not out.requires_grad:
        fail(name, hints["does not require grad"])
    g = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    (grad,) = attempt(name, torch.autograd.grad, out, z, g, hints=hints)
    if exact.calls == 0:
        fail(name, "the layer's backward never called the vjp it was given.")
    reference = torch.from_numpy(g.numpy() @ _box_jacobian(z0))
    if not _close(grad.detach().to(torch.float64), reference, 1e-12):
        if _close(grad.detach().to(torch.float64), torch.from_numpy(_box_jacobian(z0).sum(0))):
            fail(
                name,
                "the backward ignores grad_output: it must return vjp(z, grad_output), the VJP "
                "of the cotangent autograd passes in, not of a vector of ones.",
            )
        fail(name, "the backward must return vjp(z, grad_output), as a tensor of z's shape.")
    z = torch.tensor(z0, requires_grad=True)
    accurate = attempt(name, make_layer, _box, _CountedVJP("central"))
    if not attempt(
        name, torch.autograd.gradcheck, accurate, (z,), raise_exception=False, hints=hints
    ):
        fail(name, "gradcheck fails on your layer with an accurate (central-difference) VJP.")
    rank_one = attempt(name, make_layer, _box, _CountedVJP("rank one"))
    if attempt(name, torch.autograd.gradcheck, rank_one, (z,), raise_exception=False):
        fail(
            name,
            "gradcheck passes on your layer even with a rank-one VJP (one probe, the forum's "
            "heuristic): your layer does not use the vjp it is given.",
        )
    z32 = torch.tensor(z0, dtype=torch.float32, requires_grad=True)
    out32 = attempt(name, layer, z32, hints=hints)
    if not isinstance(out32, Tensor) or out32.dtype != torch.float32:
        fail(name, "a float32 input must give a float32 output: keep the input's dtype.")
    (grad32,) = attempt(name, torch.autograd.grad, out32.sum(), z32, hints=hints)
    if grad32.dtype != torch.float32:
        fail(name, "the gradient of a float32 input must be float32.")


def check_training(make_layer: Callable, fit: Callable) -> Passed:
    """Exercise 7.6: a layer around a NumPy black box with a given VJP, and a fit through it.

    ``make_layer(fun, vjp)`` returns ``apply(z)``; ``fit(layer, theta0, target,
    steps)`` returns ``(theta, losses)`` after training ``theta`` so that
    ``layer(tanh(theta))`` matches ``target`` (mean squared error).
    """
    name = "Exercise 7.6 (Stretch: training through a black box)"
    with forbid(wrap_blackbox, gradiator, fit_through_blackbox):
        _layer_checks(name, make_layer)
        target = _box(np.tanh(_THETA_TRUE))
        theta0 = np.full(3, 0.2)
        start = _model_loss(theta0, target)
        vjp = _CountedVJP("central")
        layer = attempt(name, make_layer, _box, vjp)
        result = attempt(
            name,
            fit,
            layer,
            torch.from_numpy(theta0.copy()),
            torch.from_numpy(target.copy()),
            _STRETCH_STEPS,
            hints={
                "does not require grad": (
                    "the loss has no graph back to theta: something between theta and the loss "
                    "is detached, or the black box was called outside the layer."
                )
            },
        )
    if not isinstance(result, tuple | list) or len(result) != 2:
        fail(name, "fit must return a pair (theta, losses).")
    theta, losses = result
    theta = _tensor(name, theta, "theta")
    if theta.shape != (3,):
        fail(name, f"expected theta of shape (3,), got {tuple(theta.shape)}.")
    losses = [float(loss) for loss in losses]
    if len(losses) != _STRETCH_STEPS:
        fail(name, f"expected one loss per step, {_STRETCH_STEPS}, got {len(losses)}.")
    if vjp.calls < _STRETCH_STEPS:
        fail(
            name,
            f"the layer's backward ran {vjp.calls} times in {_STRETCH_STEPS} steps: every step "
            "must call loss.backward() through the layer, with the model layer(tanh(theta)).",
        )
    if not abs(losses[0] - start) <= 1e-9 * start:
        fail(
            name,
            "the first loss is not the model's loss at theta0: the prediction is "
            "layer(torch.tanh(theta)) and the loss the mean squared error to target.",
        )
    final = _model_loss(theta.numpy(), target)
    if not final <= _STRETCH_TARGET:
        fail(
            name,
            f"after {_STRETCH_STEPS} steps the model's loss at your theta is {final:.1e} "
            f"(from {start:.1e}), not below {_STRETCH_TARGET:.0e}. Zero the gradients before "
            "each backward, step the optimiser after it, and return the trained theta.",
        )
    return passed(
        name,
        "the layer passes gradcheck with an accurate VJP and fails it with a rank-one one; "
        f"training through it brought the loss below {_STRETCH_TARGET:.0e}.",
    )
