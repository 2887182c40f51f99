"""Checks for chapter 7, learning vector-Jacobian products of a black box.

Each check runs the student's function on inputs of its own and recognises the
usual mistakes: inverting the rank-deficient ``dx dx^T`` (or ``dX^T dX``)
instead of taking a pseudo-inverse, treating probes taken at different points
as secants of one Jacobian, adding up one-probe estimates of non-orthogonal
probes, a wrong normalisation, a transposed Jacobian, Broyden updates that
forget the residual or the old estimate, finite-difference steps too large
(truncation error) or too small (rounding error), and autograd Functions whose
backward returns the wrong shape or ignores ``ctx.needs_input_grad``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from gradbook.blackbox import EvaluationCounter
from gradbook.exercises._core import ExerciseFailed, Passed, answer_tensor, attempt, fail, passed

_PINV_HINT = (
    "The pseudo-inverse (torch.linalg.pinv, or torch.linalg.lstsq) handles every number "
    "of probes; a plain inverse exists only in special cases."
)


def _randn(seed: int, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _tensor(name: str, value: object, what: str) -> Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    return answer_tensor(name, value, what).detach().to(torch.float64)


def _close(a: Tensor, b: Tensor, rtol: float = 1e-7) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=rtol * b.abs().max()))


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
    across = _randn(seed, dx.numel())
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
    dx, df = 3.0 * _randn(0, m), _randn(1, n)  # ||dx|| far from 1: norm vs norm^2 shows
    expected = torch.outer(df, dx) / (dx @ dx)
    try:
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
    return passed(name, "J = df dx^T / ||dx||^2, whose VJP is the forum's own heuristic.")


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
    return answers


def check_secant_vjp(secant_vjp: Callable[[Callable, Tensor, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 7.2: ``secant_vjp(fun, x, g, dX)`` is ``g^T dF dX^+`` with probes taken at ``x``."""
    name = "Exercise 7.2 (the VJP from k probes)"
    m = 4
    x = _randn(10, m)
    g = _randn(11, 3)
    cases = [
        ("k = m = 4 probes", 0.05 * _randn(12, m, m)),
        ("k = 2 probes, fewer than the m = 4 inputs", 0.05 * _randn(13, m, 2)),
        ("k = 7 probes, more than the m = 4 inputs", 0.05 * _randn(14, m, 7)),
    ]
    for label, dX in cases:
        answers = _secant_reference(_bumpy, x, g, dX)
        counted = EvaluationCounter(_bumpy, record=True)
        try:
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
        if got.shape != (m,):
            fail(
                name,
                f"the VJP g^T J has one entry per input, shape ({m},); got {tuple(got.shape)} "
                f"({label}).",
            )
        if _close(got, answers["right"]):
            continue
        points = np.array(counted.points)
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
        if label.startswith("k = m"):
            fail(name, "your VJP is wrong even with as many probes as inputs: g^T (dF dX^-1).")
        fail(
            name,
            f"right with as many probes as inputs, wrong with {label}: the inverse you use "
            "exists only when k = m (or on one side of it). " + _PINV_HINT,
        )
    return passed(name, "g^T dF dX^+ for any number of probes, all taken at the same x.")


# ---------------------------------------------------------------------------
# Exercise 7.3


def check_broyden_step(broyden_step: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 7.3: ``broyden_step(J, dx, df)`` is Broyden's update of ``J``."""
    name = "Exercise 7.3 (Broyden's update)"
    n, m = 3, 5
    J, dx, df = _randn(20, n, m), 2.5 * _randn(21, m), _randn(22, n)
    expected = J + torch.outer(df - J @ dx, dx) / (dx @ dx)
    try:
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
            "you replaced J by the one-probe estimate: everything J knew about the directions "
            "orthogonal to dx is lost. Correct J, do not replace it.",
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
    return passed(name, "the smallest change to J that satisfies the newest secant.")


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
    return passed(name, "gradcheck passes, and inputs that need no gradient cost nothing.")
