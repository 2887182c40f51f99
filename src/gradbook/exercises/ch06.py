"""Checks for chapter 6, rotations and SO(3).

Each check takes the student's function, runs it on inputs of its own and
recognises the usual mistakes: a transposed ``hat``, the ``(1 - cos t)/t^2``
cancellation and the single ``torch.where`` of the textbook exponential (the
forum's ``exp``), ``torch.sinc`` taken for ``sin(x)/x``, an ``acos``-based
logarithm near pi, a reflection (or the inverse rotation) returned by Kabsch,
and a Gauss-Newton step whose correction is applied on the wrong side.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from gradbook import so3
from gradbook.exercises._core import ExerciseFailed, Passed, answer_tensor, attempt, fail, passed

_AXIS = (0.36, -0.48, 0.8)


def _randn(seed: int, *shape: int, dtype: torch.dtype = torch.float64) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _close(a: Tensor, b: Tensor, atol: float) -> bool:
    return bool(torch.isfinite(a).all()) and bool(((a - b).abs() <= atol).all())


# ---------------------------------------------------------------------------


def check_hat_vee(hat: Callable[[Tensor], Tensor], vee: Callable[[Tensor], Tensor]) -> Passed:
    """Exercise 6.1: ``hat(v)`` is ``[v]x`` for ``(..., 3)``, ``vee`` inverts it."""
    name = "Exercise 6.1 (hat and vee)"
    v = _randn(0, 5, 3)
    x = _randn(1, 5, 3)
    expected = so3.hat(v)
    batch_hint = (
        "index the components with v[..., 0] (or v.unbind(-1)), not v[0] or "
        "`x, y, z = v`, so that leading dimensions are a batch."
    )
    try:
        got = attempt(name, hat, v)
    except ExerciseFailed as error:
        if isinstance(error.__cause__, (ValueError, RuntimeError, IndexError)):
            fail(name, f"hat fails on a (5, 3) batch ({error.__cause__}): {batch_hint}")
        raise
    if isinstance(got, Tensor) and tuple(got.shape) != (5, 3, 3):
        fail(
            name, f"hat of a (5, 3) batch should be (5, 3, 3), got {tuple(got.shape)}: {batch_hint}"
        )
    K = answer_tensor(name, got, "hat(v)", (5, 3, 3))
    if _close(K, expected.mT, 1e-12):
        fail(
            name,
            "your matrix is the transpose of [v]x (every sign flipped): hat(v) @ x must be "
            "the cross product v x x, yours gives x x v.",
        )
    if not _close(K, -K.mT, 1e-12):
        fail(name, "hat(v) must be skew-symmetric (K^T = -K), with zeros on the diagonal.")
    if not _close(K, expected, 1e-12):
        crossed = (K @ x.unsqueeze(-1)).squeeze(-1)
        fail(
            name,
            "hat(v) @ x is not the cross product v x x (compare with torch.linalg.cross); "
            f"for example row 0 gives {crossed[0].tolist()}.",
        )
    single = answer_tensor(name, attempt(name, hat, v[0]), "hat of a single (3,) vector", (3, 3))
    if not _close(single, expected[0], 1e-12):
        fail(name, "hat works on a batch but not on a single vector of shape (3,).")
    w = answer_tensor(name, attempt(name, vee, expected), "vee(K)", (5, 3))
    if _close(w, -v, 1e-12):
        fail(name, "vee returns -v: read v_1 from K[2, 1] (below the diagonal), not K[1, 2].")
    if not _close(w, v, 1e-12):
        fail(name, "vee(hat(v)) should give back v.")
    return passed(name, "hat(v) @ x == cross(v, x) for batches, and vee inverts it.")


# ---------------------------------------------------------------------------


def _generator_jacobian(exp: Callable[[Tensor], Tensor], name: str) -> Tensor:
    v0 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    R0 = answer_tensor(name, attempt(name, exp, v0), "Exp(0)", (3, 3))
    if not bool(torch.isfinite(R0).all()):
        fail(
            name,
            "Exp(0) contains NaN: at v = 0 the formula divides 0 by 0. Write the "
            "coefficients without dividing by the angle there.",
        )
    if not _close(R0.detach(), torch.eye(3, dtype=torch.float64), 1e-15):
        fail(name, "Exp(0) should be the identity.")
    if not R0.requires_grad:
        fail(name, "Exp(v) does not depend on v through autograd: use torch operations only.")
    rows = []
    for i, j in [(2, 1), (0, 2), (1, 0)]:
        (grad,) = torch.autograd.grad(R0[i, j], v0, retain_graph=True, allow_unused=True)
        rows.append(torch.zeros(3, dtype=torch.float64) if grad is None else grad)
    return torch.stack(rows)


def check_exp(exp: Callable[[Tensor], Tensor]) -> Passed:
    """Exercise 6.2: a stable ``exp(v)``, ``(..., 3) -> (..., 3, 3)``, exact at and near 0."""
    name = "Exercise 6.2 (a stable exponential map)"
    v = _randn(10, 6, 3) * 1.2
    got = answer_tensor(name, attempt(name, exp, v), "Exp(v) of a (6, 3) batch", (6, 3, 3))
    expected = so3.exp_map(v)
    if not _close(got, expected, 1e-12):
        t = v.norm(dim=-1)[..., None, None]
        K = so3.hat(v)
        normalised = (
            torch.eye(3, dtype=v.dtype) + torch.sinc(t) * K + 0.5 * torch.sinc(t / 2) ** 2 * K @ K
        )
        if _close(got, normalised, 1e-9):
            fail(
                name,
                "torch.sinc(x) is the normalised sinc, sin(pi x)/(pi x), not sin(x)/x: "
                "pass x / pi.",
            )
        if _close(got, expected.mT, 1e-12):
            fail(name, "you returned Exp(-v) (the transpose): check the sign of the [v]x term.")
        worst = (got - expected).abs().max().item()
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
    if not _close(jac, torch.eye(3, dtype=torch.float64), 1e-12):
        fail(name, "at v = 0, dExp/dv_i should be the generator [e_i]x; your derivative is not.")
    for dtype, t in [(torch.float32, 1e-4), (torch.float64, 1e-9)]:
        small = (torch.tensor(_AXIS, dtype=torch.float64) * t).to(dtype)
        R = answer_tensor(name, attempt(name, exp, small), "Exp(v)", (3, 3))
        ref = so3.exp_map(small.double())
        sym, sym_ref = 0.5 * (R + R.mT).double(), 0.5 * (ref + ref.mT)
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
    return passed(name, "accurate for every angle, with the right derivative at 0.")


# ---------------------------------------------------------------------------


def check_log(log: Callable[[Tensor], Tensor]) -> Passed:
    """Exercise 6.3: ``log(R)``, ``(..., 3, 3) -> (..., 3)`` with angle in ``[0, pi]``."""
    name = "Exercise 6.3 (the logarithm near pi)"
    v = _randn(20, 6, 3)
    v = v / v.norm(dim=-1, keepdim=True) * torch.linspace(0.1, 3.0, 6, dtype=torch.float64)[:, None]
    got = attempt(name, log, so3.exp_map(v))
    got = answer_tensor(name, got, "Log(R) of a (6, 3, 3) batch", (6, 3))
    if _close(got, -v, 1e-9):
        fail(name, "you returned -v, the inverse rotation's vector: check the sign of vee.")
    if not _close(got, v, 1e-9):
        worst = (got - v).abs().max().item()
        fail(name, f"Log(Exp(v)) is not v for angles in (0, 3] (largest error {worst:.2e}).")
    axis = torch.tensor(_AXIS, dtype=torch.float64)
    half_turn = 2 * torch.outer(axis, axis) - torch.eye(3, dtype=torch.float64)  # angle pi
    for angle, R in [
        (math.pi - 1e-5, so3.exp_map(axis * (math.pi - 1e-5))),
        (math.pi - 1e-9, so3.exp_map(axis * (math.pi - 1e-9))),
        (math.pi, half_turn),
    ]:
        out = answer_tensor(name, attempt(name, log, R), "Log(R)", (3,))
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
    tiny = axis * 1e-9
    out = answer_tensor(name, attempt(name, log, so3.exp_map(tiny)), "Log(R)", (3,))
    if not _close(out, tiny, 1e-15):
        fail(name, "wrong near the identity (angle 1e-9): avoid dividing by sin t there.")
    eye = torch.eye(3, dtype=torch.float64, requires_grad=True)
    out = answer_tensor(name, attempt(name, log, eye), "Log(I)", (3,))
    if not _close(out.detach(), torch.zeros(3, dtype=torch.float64), 0.0):
        fail(name, "Log(I) should be exactly 0 (and not NaN).")
    if out.requires_grad:
        (grad,) = torch.autograd.grad(out.sum(), eye, allow_unused=True)
        if grad is not None and not bool(torch.isfinite(grad).all()):
            fail(
                name,
                "the value at the identity is right but its gradient is NaN: acos has an "
                "infinite slope at 1, and a single torch.where still differentiates 0/0.",
            )
    return passed(name, "accurate at 0, in between and at pi.")


# ---------------------------------------------------------------------------


def check_kabsch(kabsch: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 6.4: ``kabsch(p, q)``: the rotation minimising ``sum_i |q_i - R p_i|^2``."""
    name = "Exercise 6.4 (the Kabsch rotation)"
    p = _randn(30, 40, 3) + torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)  # not centred
    R_true = so3.exp_map(torch.tensor([0.4, -0.9, 1.3], dtype=torch.float64))
    q = p @ R_true.mT + 0.3 * _randn(31, 40, 3)
    got = answer_tensor(name, attempt(name, kabsch, p, q), "R", (3, 3))
    expected = so3.kabsch(p, q)
    if _close(got, expected.mT, 1e-9):
        fail(
            name,
            "you returned the inverse rotation (the transpose), which maps q onto p. With "
            "M = sum_i q_i p_i^T = U S V^T the answer is U diag(1, 1, d) V^T.",
        )
    centred = so3.kabsch(p - p.mean(0), q - q.mean(0))
    if _close(got, centred, 1e-9) and not _close(got, expected, 1e-9):
        fail(
            name,
            "you centred the points: that fits a rotation *and* a translation. The problem "
            "here has no translation, so use the points as they are.",
        )
    if not _close(got, expected, 1e-9):
        orthogonality, _ = so3.rotation_error(got)
        if orthogonality.item() > 1e-6:
            fail(name, "R is not orthogonal: build it from the SVD factors U and V only.")
        fail(name, "not the least-squares rotation for noisy points.")
    # points whose best orthogonal fit is a reflection
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    pm = _randn(32, 8, 3)
    qm = pm @ (R_true @ mirror).mT
    got = answer_tensor(name, attempt(name, kabsch, pm, qm), "R", (3, 3))
    if torch.linalg.det(got).item() < 0:
        fail(
            name,
            "for mirrored data you returned a reflection (det R = -1). U V^T is only the best "
            "*orthogonal* matrix; the best rotation flips the last singular direction: "
            "U diag(1, 1, det(U V^T)) V^T.",
        )
    if not _close(got, so3.kabsch(pm, qm), 1e-9):
        fail(name, "a rotation, but not the best one for mirrored data.")
    return passed(name, "the least-squares rotation, never a reflection.")


# ---------------------------------------------------------------------------


def _gn_reference(R: Tensor, p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    eye = torch.eye(3, dtype=p.dtype)
    H = (p * p).sum() * eye - p.mT @ p
    g = -torch.linalg.cross(p, q @ R, dim=-1).sum(0)
    delta = -torch.linalg.solve(H, g)
    return delta, R @ so3.exp_map(delta)


def check_gn_step(gn_step: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 6.5: one Gauss-Newton step ``R -> R Exp(delta)`` for ``sum_i |R p_i - q_i|^2``."""
    name = "Exercise 6.5 (a Gauss-Newton step on SO(3))"
    p = _randn(40, 25, 3)
    R_true = so3.exp_map(torch.tensor([0.7, 0.2, -0.5], dtype=torch.float64))
    q = p @ R_true.mT + 0.01 * _randn(41, 25, 3)
    R = so3.exp_map(torch.tensor([0.9, -0.6, 0.3], dtype=torch.float64))  # far from both
    delta, expected = _gn_reference(R, p, q)
    got = answer_tensor(name, attempt(name, gn_step, R.clone(), p, q), "the new R", (3, 3))
    orthogonality, det = so3.rotation_error(got)
    if orthogonality.item() > 1e-9 or det.item() > 1e-9:
        fail(
            name,
            "the new R is not a rotation: R + R [delta]x is only a first-order step; apply "
            "the correction as R @ Exp(delta).",
        )
    if _close(got, so3.exp_map(delta) @ R, 1e-9):
        fail(
            name,
            "left/right confusion: delta solves the system for a correction on the right "
            "(residual Jacobian -R [p_i]x), but you applied it on the left, Exp(delta) @ R.",
        )
    if _close(got, R @ so3.exp_map(R @ delta), 1e-9):
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
    if _close(got, R @ so3.exp_map(-delta), 1e-9) or not _close(got, expected, 1e-9):
        fail(
            name,
            "not the Gauss-Newton step: with J_i = -R [p_i]x, H = sum_i [p_i]x^T [p_i]x "
            "and g = sum_i J_i^T (R p_i - q_i); solve H delta = -g.",
        )
    return passed(name, "the Gauss-Newton step, applied on the right, stays on SO(3).")
