"""Checks for chapter 6, rotations and SO(3).

Each check takes the student's function, runs it on inputs of its own and
recognises the usual mistakes: a transposed ``hat``, the ``(1 - cos t)/t^2``
cancellation and the single ``torch.where`` of the textbook exponential (the
forum's ``exp``), ``torch.sinc`` taken for ``sin(x)/x``, an ``acos``-based
logarithm near pi, a reflection (or the inverse rotation) returned by Kabsch,
a Gauss-Newton step whose correction is applied on the wrong side, and a fit
near a half turn that goes through the rotation vector of its start.

While the student's function runs, the ``gradbook.so3`` functions that solve the
exercise (and the private ones they are built from) are disabled
(:func:`~gradbook.exercises._core.forbid`), so that delegating to them is caught.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from gradbook import so3
from gradbook.exercises._core import (
    ExerciseFailed,
    ExerciseNotAttempted,
    Passed,
    answer_tensor,
    attempt,
    blame_earlier_stub,
    close,
    fail,
    forbid,
    passed,
    randn,
)

F64 = torch.float64
_AXIS = (0.36, -0.48, 0.8)

#: The functions of the earlier exercises, by the names the notebook gives them.
_EARLIER = {
    "hat": "Exercise 6.1",
    "vee": "Exercise 6.1",
    "exp": "Exercise 6.2",
    "log": "Exercise 6.3",
    "kabsch": "Exercise 6.4",
    "gn_step": "Exercise 6.5",
}

#: What each exercise asks the student to write, and what in gradbook does it.
_SOLVERS: dict[str, tuple[Callable[..., Any], ...]] = {
    "hat_vee": (so3.hat, so3.vee),
    "exp": (so3.exp_map, so3._assemble, so3._half_angle_terms),
    "log": (so3.log_map, so3._quaternion_from_matrix, so3._markley_map, so3._build_markley_map),
    "kabsch": (so3.kabsch, so3._svd_rotation, so3.project_to_so3, so3.fit_rotation),
    "gn_step": (so3.fit_rotation,),
    "fit": (so3.kabsch, so3._svd_rotation, so3.project_to_so3, so3.fit_rotation),
}


class _MatrixExpCalled(BaseException):
    """Raised by ``torch.linalg.matrix_exp`` while a Rodrigues exercise runs."""


@contextlib.contextmanager
def _no_matrix_exp() -> Iterator[None]:
    """``torch.linalg.matrix_exp`` (and its aliases) raise within the block."""

    def disabled(*args: object, **kwargs: object) -> None:
        raise _MatrixExpCalled

    saved = [
        (torch.linalg, "matrix_exp", torch.linalg.matrix_exp),
        (torch, "matrix_exp", torch.matrix_exp),
        (torch.Tensor, "matrix_exp", torch.Tensor.matrix_exp),
    ]
    try:
        for owner, attribute, _ in saved:
            setattr(owner, attribute, disabled)
        yield
    finally:
        for owner, attribute, original in saved:
            setattr(owner, attribute, original)


def _run(
    exercise: str, solvers: str, answer: Callable[..., Any], *args: Any, rodrigues: bool = False
) -> Any:
    """``attempt`` with the solving gradbook functions disabled (and, for ``rodrigues``,
    ``torch.linalg.matrix_exp``).

    A stub of an *earlier* exercise that the answer calls is reported as such (solve
    that one first), not as this exercise being unattempted.
    """
    try:
        with (
            forbid(*_SOLVERS[solvers]),
            _no_matrix_exp() if rodrigues else contextlib.nullcontext(),
        ):
            return attempt(exercise, answer, *args)
    except _MatrixExpCalled:
        fail(
            exercise,
            "torch.linalg.matrix_exp sums a general series for any matrix; the exercise is "
            "the closed form of Rodrigues' formula, written so that it stays accurate and "
            "differentiable at small angles. Write it yourself.",
        )
    except ExerciseNotAttempted as error:
        blame_earlier_stub(exercise, answer, error, _EARLIER)
        raise


# ----------------------------------------------------------------------------- 6.1


def check_hat_vee(hat: Callable[[Tensor], Tensor], vee: Callable[[Tensor], Tensor]) -> Passed:
    """Exercise 6.1: ``hat(v)`` is ``[v]x`` for ``(..., 3)``, ``vee`` inverts it."""
    name = "Exercise 6.1 (hat and vee)"
    v = randn(0, 5, 3)
    expected = so3.hat(v)
    batch_hint = (
        "index the components with v[..., 0] (or v.unbind(-1)), not v[0] or "
        "`x, y, z = v`, so that leading dimensions are a batch."
    )
    try:
        got = _run(name, "hat_vee", hat, v)
    except ExerciseFailed as error:
        if isinstance(error.__cause__, (ValueError, RuntimeError, IndexError)):
            fail(name, f"hat fails on a (5, 3) batch ({error.__cause__}): {batch_hint}")
        raise
    if isinstance(got, Tensor) and tuple(got.shape) != (5, 3, 3):
        fail(
            name, f"hat of a (5, 3) batch should be (5, 3, 3), got {tuple(got.shape)}: {batch_hint}"
        )
    K = answer_tensor(name, got, "hat(v)", (5, 3, 3))
    if close(K, expected.mT, rtol=0, atol=1e-12):
        fail(
            name,
            "your matrix is the transpose of [v]x (every sign flipped): hat(v) @ x must be "
            "the cross product v x x, yours gives x x v.",
        )
    if not close(K, -K.mT, rtol=0, atol=1e-12):
        fail(name, "hat(v) must be skew-symmetric (K^T = -K), with zeros on the diagonal.")
    if not close(K, expected, rtol=0, atol=1e-12):
        fail(
            name,
            "hat(v) @ x is not the cross product v x x: compare a few rows of "
            "hat(v) @ x[..., None] with torch.linalg.cross(v, x) yourself.",
        )
    single = answer_tensor(
        name, _run(name, "hat_vee", hat, v[0]), "hat of a single (3,) vector", (3, 3)
    )
    if not close(single, expected[0], rtol=0, atol=1e-12):
        fail(name, "hat works on a batch but not on a single vector of shape (3,).")
    w = answer_tensor(name, _run(name, "hat_vee", vee, expected), "vee(K)", (5, 3))
    if close(w, -v, rtol=0, atol=1e-12):
        fail(name, "vee returns -v: read v_1 from K[2, 1] (below the diagonal), not K[1, 2].")
    if not close(w, v, rtol=0, atol=1e-12):
        fail(name, "vee(hat(v)) should give back v.")
    return passed(name, "hat(v) @ x == cross(v, x) for batches and single vectors; vee inverts it.")


# ----------------------------------------------------------------------------- 6.2


def _generator_jacobian(exp: Callable[[Tensor], Tensor], name: str) -> Tensor:
    """The derivatives of the three generator entries of ``exp`` at ``v = 0``, as rows."""
    v0 = torch.zeros(3, dtype=F64, requires_grad=True)
    R0 = answer_tensor(name, _run(name, "exp", exp, v0, rodrigues=True), "Exp(0)", (3, 3))
    if not bool(torch.isfinite(R0).all()):
        fail(
            name,
            "Exp(0) contains NaN: at v = 0 the formula divides 0 by 0. Write the "
            "coefficients without dividing by the angle there.",
        )
    if not close(R0.detach(), torch.eye(3, dtype=F64), rtol=0, atol=1e-15):
        fail(name, "Exp(0) should be the identity.")
    if not R0.requires_grad:
        fail(name, "Exp(v) does not depend on v through autograd: use torch operations only.")
    rows = []
    for i, j in [(2, 1), (0, 2), (1, 0)]:
        (grad,) = torch.autograd.grad(R0[i, j], v0, retain_graph=True, allow_unused=True)
        rows.append(torch.zeros(3, dtype=F64) if grad is None else grad)
    return torch.stack(rows)


def check_exp(exp: Callable[[Tensor], Tensor]) -> Passed:
    """Exercise 6.2: a stable ``exp(v)``, ``(..., 3) -> (..., 3, 3)``, exact at and near 0."""
    name = "Exercise 6.2 (a stable exponential map)"
    v = randn(10, 6, 3) * 1.2
    expected = so3.exp_map(v)
    got = _run(name, "exp", exp, v, rodrigues=True)
    got = answer_tensor(name, got, "Exp(v) of a (6, 3) batch", (6, 3, 3))
    if not close(got, expected, rtol=0, atol=1e-12):
        t = v.norm(dim=-1)[..., None, None]
        K = so3.hat(v)
        eye = torch.eye(3, dtype=F64)
        normalised = eye + torch.sinc(t) * K + 0.5 * torch.sinc(t / 2) ** 2 * K @ K
        if close(got, normalised, rtol=0, atol=1e-9):
            fail(
                name,
                "torch.sinc(x) is the normalised sinc, sin(pi x)/(pi x), not sin(x)/x: "
                "pass x / pi.",
            )
        if close(got, expected.mT, rtol=0, atol=1e-12):
            fail(name, "you returned Exp(-v) (the transpose): check the sign of the [v]x term.")
        if close(got, eye + K + 0.5 * K @ K, rtol=0, atol=1e-12):
            fail(
                name,
                "you used the small-angle series for every angle: I + K + K^2/2 is only the "
                "start of Exp's series. Use the closed form above a small angle.",
            )
        worst = (got.detach() - expected).abs().max().item()
        fail(
            name,
            f"not Exp(v) for random v (largest entry error {worst:.2e}); check Rodrigues' formula.",
        )
    jac = _generator_jacobian(exp, name)
    if not bool(torch.isfinite(jac).all()):
        fail(
            name,
            "the gradient at v = 0 is NaN although the value is fine: a single torch.where "
            "selects the value, but autograd still differentiates the unused branch, which "
            "divides by zero there (0 * inf = NaN). Give that branch a safe argument too, or "
            "use a series in t^2.",
        )
    if not close(jac, torch.eye(3, dtype=F64), rtol=0, atol=1e-12):
        fail(name, "at v = 0, dExp/dv_i should be the generator [e_i]x; your derivative is not.")
    for dtype, t in [(torch.float32, 1e-4), (torch.float64, 1e-9)]:
        small = (torch.tensor(_AXIS, dtype=F64) * t).to(dtype)
        ref = so3.exp_map(small.double())
        R = answer_tensor(name, _run(name, "exp", exp, small, rodrigues=True), "Exp(v)", (3, 3))
        if R.dtype != dtype:
            fail(
                name, f"Exp of a {str(dtype)[6:]} vector should be {str(dtype)[6:]}, got {R.dtype}."
            )
        sym, sym_ref = 0.5 * (R + R.mT).detach().double(), 0.5 * (ref + ref.mT)
        off = ~torch.eye(3, dtype=torch.bool)
        relative = ((sym - sym_ref)[off].abs().max() / sym_ref[off].abs().max()).item()
        # the textbook formula loses this part entirely (relative error 1); float32
        # rounding of entries of size t alone leaves up to ~1e-2 of it
        if not math.isfinite(relative) or relative > 0.1:
            fail(
                name,
                f"at angle {t:g} in {str(dtype)[6:]} the K^2 term of Exp(v) is lost: "
                "(1 - cos t) / t^2 subtracts two nearly equal numbers and comes out 0 (its "
                "value is 1/2). Use 1 - cos t = 2 sin^2(t/2).",
            )
    return passed(
        name,
        "matches Exp(v) for random v, is the identity with the generators as derivatives at 0, "
        "and keeps its K^2 term at 1e-4 in float32 and 1e-9 in float64.",
    )


# ----------------------------------------------------------------------------- 6.3


def check_log(log: Callable[[Tensor], Tensor]) -> Passed:
    """Exercise 6.3: ``log(R)``, ``(..., 3, 3) -> (..., 3)`` with angle in ``[0, pi]``."""
    name = "Exercise 6.3 (the logarithm near pi)"
    v = randn(20, 6, 3)
    v = v / v.norm(dim=-1, keepdim=True) * torch.linspace(0.1, 3.0, 6, dtype=F64)[:, None]
    axis = torch.tensor(_AXIS, dtype=F64)
    half_turn = 2 * torch.outer(axis, axis) - torch.eye(3, dtype=F64)  # angle pi
    near_pi = [
        (math.pi - 1e-5, so3.exp_map(axis * (math.pi - 1e-5))),
        (math.pi - 1e-9, so3.exp_map(axis * (math.pi - 1e-9))),
        (math.pi, half_turn),
    ]
    tiny = axis * 1e-9
    R_tiny = so3.exp_map(tiny)
    got = _run(name, "log", log, so3.exp_map(v))
    got = answer_tensor(name, got, "Log(R) of a (6, 3, 3) batch", (6, 3))
    if close(got, -v, rtol=0, atol=1e-9):
        fail(name, "you returned -v, the inverse rotation's vector: check the sign of vee.")
    if not close(got, v, rtol=0, atol=1e-9):
        worst = (got.detach() - v).abs().max().item()
        fail(name, f"Log(Exp(v)) is not v for angles in (0, 3] (largest error {worst:.2e}).")
    for angle, R in near_pi:
        out = answer_tensor(name, _run(name, "log", log, R), "Log(R)", (3,)).detach()
        ref = axis * angle
        error = min((out - ref).abs().max().item(), (out + ref).abs().max().item())
        if not math.isfinite(error) or error > 1e-6:
            fail(
                name,
                f"wrong near pi (angle pi - {math.pi - angle:.0e}: error {error:.1e}). The "
                "axis taken from the antisymmetric part (R - R^T)/(2 sin t) is lost when "
                "sin t -> 0, and acos((tr R - 1)/2) is ill-conditioned there: near pi the "
                "axis lives in the symmetric part. Go through a quaternion (largest diagonal "
                "entry first) and atan2.",
            )
    out = answer_tensor(name, _run(name, "log", log, R_tiny), "Log(R)", (3,))
    if not close(out, tiny, rtol=0, atol=1e-15):
        fail(name, "wrong near the identity (angle 1e-9): avoid dividing by sin t there.")
    eye = torch.eye(3, dtype=F64, requires_grad=True)
    out = answer_tensor(name, _run(name, "log", log, eye), "Log(I)", (3,))
    if not close(out.detach(), torch.zeros(3, dtype=F64), rtol=0, atol=0.0):
        fail(name, "Log(I) should be exactly 0 (and not NaN).")
    if out.requires_grad:
        (grad,) = torch.autograd.grad(out.sum(), eye, allow_unused=True)
        if grad is not None and not bool(torch.isfinite(grad).all()):
            fail(
                name,
                "the value at the identity is right but its gradient is NaN: acos has an "
                "infinite slope at 1, and a single torch.where still differentiates 0/0.",
            )
    return passed(
        name,
        "Log(Exp(v)) == v for angles up to 3, at pi - 1e-5, pi - 1e-9, pi and 1e-9, and a "
        "finite gradient at the identity.",
    )


# ----------------------------------------------------------------------------- 6.4


def check_kabsch(kabsch: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 6.4: ``kabsch(p, q)``: the rotation minimising ``sum_i |q_i - R p_i|^2``."""
    name = "Exercise 6.4 (the Kabsch rotation)"
    p = randn(30, 40, 3) + torch.tensor([2.0, -1.0, 0.5], dtype=F64)  # not centred
    R_true = so3.exp_map(torch.tensor([0.4, -0.9, 1.3], dtype=F64))
    q = p @ R_true.mT + 0.3 * randn(31, 40, 3)
    expected = so3.kabsch(p, q)
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=F64))
    pm = randn(32, 8, 3)
    qm = pm @ (R_true @ mirror).mT  # points whose best orthogonal fit is a reflection
    expected_mirror = so3.kabsch(pm, qm)
    got = answer_tensor(name, _run(name, "kabsch", kabsch, p, q), "R", (3, 3)).detach()
    if close(got, expected.mT, rtol=0, atol=1e-9):
        fail(
            name,
            "you returned the inverse rotation (the transpose), which maps q onto p: check "
            "which of p and q goes on which side of M = sum_i q_i p_i^T.",
        )
    centred = so3.kabsch(p - p.mean(0), q - q.mean(0))
    if close(got, centred, rtol=0, atol=1e-9):
        fail(
            name,
            "you centred the points: that fits a rotation *and* a translation. The problem "
            "here has no translation, so use the points as they are.",
        )
    if not close(got, expected, rtol=0, atol=1e-9):
        orthogonality, _ = so3.rotation_error(got)
        if not math.isfinite(orthogonality.item()) or orthogonality.item() > 1e-6:
            fail(name, "R is not orthogonal: build it from the SVD factors U and V only.")
        fail(name, "not the least-squares rotation for noisy points.")
    got = answer_tensor(name, _run(name, "kabsch", kabsch, pm, qm), "R", (3, 3)).detach()
    if torch.linalg.det(got).item() < 0:
        fail(
            name,
            "for mirrored data you returned a reflection (det R = -1). U V^T is only the best "
            "*orthogonal* matrix; the best rotation gives up the least: it changes the sign of "
            "the singular direction with the smallest singular value.",
        )
    if not close(got, expected_mirror, rtol=0, atol=1e-9):
        fail(name, "a rotation, but not the best one for mirrored data.")
    return passed(
        name,
        "the least-squares rotation for noisy, uncentred points, and a rotation (not a "
        "reflection) for mirrored ones.",
    )


# ----------------------------------------------------------------------------- 6.5


def _gn_reference(R: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    eye = torch.eye(3, dtype=p.dtype)
    H = (p * p).sum() * eye - p.mT @ p
    g = -torch.linalg.cross(p, q @ R, dim=-1).sum(0)
    delta = -torch.linalg.solve(H, g)
    return delta, R @ so3.exp_map(delta)


def check_gn_step(gn_step: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 6.5: one Gauss-Newton step ``R -> R Exp(delta)`` for ``sum_i |R p_i - q_i|^2``."""
    name = "Exercise 6.5 (a Gauss-Newton step on SO(3))"
    p = randn(40, 25, 3)
    R_true = so3.exp_map(torch.tensor([0.7, 0.2, -0.5], dtype=F64))
    q = p @ R_true.mT + 0.01 * randn(41, 25, 3)
    R = so3.exp_map(torch.tensor([0.9, -0.6, 0.3], dtype=F64))  # far from both
    delta, expected = _gn_reference(R, p, q)
    got = _run(name, "gn_step", gn_step, R.clone(), p, q)
    got = answer_tensor(name, got, "the new R", (3, 3)).detach()
    orthogonality, det = so3.rotation_error(got)
    if not (orthogonality.item() <= 1e-9 and det.item() <= 1e-9):
        fail(
            name,
            "the new R is not a rotation: R + R [delta]x is only a first-order step; apply "
            "the correction as R @ Exp(delta).",
        )
    if close(got, so3.exp_map(delta) @ R, rtol=0, atol=1e-9):
        fail(
            name,
            "left/right confusion: delta solves the system for a correction on the right "
            "(residual Jacobian -R [p_i]x), but you applied it on the left, Exp(delta) @ R.",
        )
    if close(got, R @ so3.exp_map(R @ delta), rtol=0, atol=1e-9):
        fail(
            name,
            "left/right confusion: your delta is the correction in the global frame (residual "
            "Jacobian -[R p_i]x, a left update), but you applied it on the right, R @ Exp(delta). "
            "Use one convention for both.",
        )

    def cost(M: Tensor) -> float:
        return float(((p @ M.mT - q) ** 2).sum())

    if cost(got) >= cost(R):
        fail(name, "the step increases the cost: check the sign of J^T r (solve H delta = -g).")
    if close(got, so3.kabsch(p, q), rtol=0, atol=1e-9):
        fail(name, "this is the least-squares rotation itself, not one Gauss-Newton step from R.")
    if not close(got, expected, rtol=0, atol=1e-9):
        fail(
            name,
            "not the Gauss-Newton step: with J_i = -R [p_i]x, H = sum_i J_i^T J_i "
            "and g = sum_i J_i^T (R p_i - q_i); solve H delta = -g.",
        )
    return passed(name, "the new R is one Gauss-Newton step from R, and a rotation.")


# ----------------------------------------------------------------------------- 6.6


def _half_turn(axis: Tensor) -> Tensor:
    """The rotation by exactly pi about ``axis`` (unit): ``2 a a^T - I``."""
    return 2 * torch.outer(axis, axis) - torch.eye(3, dtype=axis.dtype)


def _fit_cases() -> list[tuple[str, Tensor, Tensor, Tensor]]:
    """``(description, p, q, R0)``: targets near a half turn, starts at or near one."""
    axis = torch.tensor(_AXIS, dtype=F64)
    tilted = axis + torch.tensor([0.15, 0.1, 0.05], dtype=F64)
    tilted = tilted / tilted.norm()
    p = randn(60, 30, 3)
    cases = []
    # the target a little short of a half turn, the start exactly a half turn
    R_true = so3.exp_map(axis * (math.pi - 1e-3))
    q = p @ R_true.mT + 0.02 * randn(61, 30, 3)
    cases.append(("started at a half turn", p, q, _half_turn(tilted)))
    # the start's rotation vector points the other way: the answer is across the wrap at pi
    R_true = so3.exp_map(axis * (math.pi - 0.05))
    q = p @ R_true.mT + 0.02 * randn(62, 30, 3)
    R0 = so3.exp_map(-axis * (math.pi - 0.04)) @ so3.exp_map(
        torch.tensor([0.1, -0.1, 0.05]).double()
    )
    cases.append(("started across the wrap at pi", p, q, R0))
    return cases


def check_fit_near_half_turn(fit: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 6.6: ``fit(p, q, R0)``, the least-squares rotation by local updates from R0."""
    name = "Exercise 6.6 (Stretch: a fit started near a half turn)"
    for description, p, q, R0 in _fit_cases():
        expected = so3.kabsch(p, q)

        def cost(M: Tensor, p: Tensor = p, q: Tensor = q) -> float:
            return float(((p @ M.mT - q) ** 2).sum())

        got = _run(name, "fit", fit, p.clone(), q.clone(), R0.clone())
        got = answer_tensor(name, got, "R", (3, 3)).detach().to(F64)
        if not bool(torch.isfinite(got).all()):
            fail(
                name,
                f"{description}: R has NaN entries. Did you take the rotation vector of the "
                "start, Log(R0)? At a half turn R0 - R0^T vanishes, and the acos route "
                "divides 0 by 0 there. With R = R0 Exp(delta), delta starts at 0 and Log of "
                "R0 is never needed.",
            )
        orthogonality, det = so3.rotation_error(got)
        if not (orthogonality.item() <= 1e-8 and det.item() <= 1e-8):
            fail(
                name,
                f"{description}: R is not a rotation (|R^T R - I| = {orthogonality.item():.1e}): "
                "update with R @ Exp(delta), not R + R [delta]x.",
            )
        if close(got, R0, rtol=0, atol=1e-12):
            fail(name, f"{description}: R is still R0: the loop never updated it.")
        if close(got, expected, rtol=0, atol=1e-8):
            continue
        if close(got, expected.mT, rtol=0, atol=1e-6):
            fail(name, f"{description}: you fitted the inverse rotation, which maps q onto p.")
        distance = so3.geodesic_distance(got, expected).item()
        if distance > 1.0:
            fail(
                name,
                f"{description}: R is {distance:.2g} rad from the least-squares rotation, "
                "stuck far away although the start was close. Did the fit start from "
                "somewhere else than R0, e.g. from the rotation vector v0 = Log(R0)? At a "
                "half turn R0 - R0^T vanishes and the acos route returns v0 = 0, the "
                "identity, from which the fit stalls at a stationary point of the cost. "
                "With R = R0 Exp(delta), delta starts at 0 and R0 is used as it is.",
            )
        if cost(got) < cost(R0) and distance < 1e-2:
            fail(
                name,
                f"{description}: on the way but not there: R is {distance:.1e} rad from the "
                "least-squares rotation (need 1e-8). Iterate until the step is negligible; "
                "Gauss-Newton needs only a few steps from here.",
            )
        fail(
            name,
            f"{description}: R is {distance:.2g} rad from the least-squares rotation. Does "
            "each step lower the cost? Compute delta for a correction on the right, apply it "
            "on the right (R @ Exp(delta)), and start every step from the current R.",
        )
    return passed(
        name,
        "from a start exactly at a half turn and one across the wrap at pi, R agrees with the "
        "least-squares rotation to 1e-8.",
    )
