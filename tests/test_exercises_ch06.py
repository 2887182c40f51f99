"""Chapter 6 checks: correct answers pass, the known mistakes (the forum's first) fail by name."""

from __future__ import annotations

import math

import pytest
import torch

from gradbook import so3
from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch06 import (
    check_exp,
    check_fit_near_half_turn,
    check_gn_step,
    check_hat_vee,
    check_kabsch,
    check_log,
)

F64 = torch.float64
LEVI_CIVITA = torch.zeros(3, 3, 3, dtype=F64)
for i, j, k in [(0, 1, 2), (1, 2, 0), (2, 0, 1)]:
    LEVI_CIVITA[i, j, k], LEVI_CIVITA[i, k, j] = 1.0, -1.0


def delegating(function):
    """An answer that only calls the gradbook function solving the exercise."""
    return lambda *args: function(*args)


# Exercise 6.1 -----------------------------------------------------------------


def ref_hat(v):
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


def ref_vee(K):
    return torch.stack([K[..., 2, 1], K[..., 0, 2], K[..., 1, 0]], dim=-1)


def hat_from_cross(v):
    """Column j of [v]x is v x e_j."""
    eye = torch.eye(3, dtype=v.dtype).expand(*v.shape[:-1], 3, 3)
    return torch.linalg.cross(v.unsqueeze(-2).expand_as(eye), eye, dim=-1).mT


def hat_levi_civita(v):
    return -torch.einsum("ijk,...k->...ij", LEVI_CIVITA.to(v.dtype), v)


def vee_antisymmetric(K):
    A = 0.5 * (K - K.mT)
    return torch.stack([A[..., 2, 1], A[..., 0, 2], A[..., 1, 0]], dim=-1)


@pytest.mark.parametrize(
    ("hat", "vee"),
    [(ref_hat, ref_vee), (hat_from_cross, vee_antisymmetric), (hat_levi_civita, ref_vee)],
)
def test_hat_vee_correct_answers_pass(hat, vee, capsys):
    assert check_hat_vee(hat, vee)
    assert "PASSED Exercise 6.1" in capsys.readouterr().out


def hat_unpacked(v):  # unpacks the first dimension: only works for one vector
    x, y, z = v
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero]).reshape(3, 3)


@pytest.mark.parametrize(
    ("hat", "vee", "message"),
    [
        (lambda v: ref_hat(v).mT, ref_vee, "transpose of \\[v\\]x"),
        (lambda v: ref_hat(v) + torch.eye(3, dtype=v.dtype), ref_vee, "skew-symmetric"),
        (hat_unpacked, ref_vee, "not v\\[0\\] or `x, y, z = v`"),
        (lambda v: ref_hat(v)[0] if v.ndim > 1 else ref_hat(v), ref_vee, "should be \\(5, 3, 3\\)"),
        (lambda v: ref_hat(v[..., [1, 0, 2]]), ref_vee, "not the cross product"),
        (
            ref_hat,
            lambda K: torch.stack([K[..., 1, 2], K[..., 2, 0], K[..., 0, 1]], -1),
            "vee returns -v",
        ),
        (ref_hat, lambda K: K[..., 0, :2], "vee\\(K\\) of shape"),
        (delegating(so3.hat), ref_vee, "write it yourself: this is what gradbook.so3.hat does"),
        (ref_hat, delegating(so3.vee), "write it yourself: this is what gradbook.so3.vee does"),
    ],
)
def test_hat_vee_mistakes_fail(hat, vee, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_hat_vee(hat, vee)


# Exercise 6.2 -----------------------------------------------------------------


def ref_exp(v):
    t2 = (v * v).sum(-1)[..., None, None]
    small = t2 < 1e-4
    t2_safe = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2_safe)
    A = torch.where(small, 1 - t2 / 6 + t2**2 / 120, torch.sin(t) / t)
    B = torch.where(small, 0.5 - t2 / 24 + t2**2 / 720, 2 * torch.sin(t / 2) ** 2 / t2_safe)
    K = ref_hat(v)
    return torch.eye(3, dtype=v.dtype) + A * K + B * (K @ K)


def exp_via_quaternion(v):
    """Through q = (sin(t/2)/t v, cos(t/2)), sin(t/2)/t from its series at small angles."""
    t2 = (v * v).sum(-1, keepdim=True)
    small = t2 < 1e-6
    t = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))
    s = torch.where(small, 0.5 - t2 / 48, torch.sin(t / 2) / t)
    w = torch.where(small, 1 - t2 / 8, torch.cos(t / 2))
    x, y, z = (s * v).unbind(-1)
    w = w[..., 0]
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, -1).unflatten(-1, (3, 3))


def exp_normalised_sinc_done_right(v):
    """torch.sinc with the argument divided by pi; the norm's gradient at 0 is 0."""
    t = v.norm(dim=-1)[..., None, None]
    K = ref_hat(v)
    eye = torch.eye(3, dtype=v.dtype)
    return eye + torch.sinc(t / math.pi) * K + 0.5 * torch.sinc(t / (2 * math.pi)) ** 2 * (K @ K)


@pytest.mark.parametrize("answer", [ref_exp, exp_via_quaternion, exp_normalised_sinc_done_right])
def test_exp_correct_answers_pass(answer, capsys):
    assert check_exp(answer)
    assert "PASSED Exercise 6.2" in capsys.readouterr().out


def forum_exp(v):
    """The forum's formula in torch: textbook coefficients, one `where` at exactly 0."""
    t = v.norm(dim=-1)[..., None, None]
    K = ref_hat(v)
    eye = torch.eye(3, dtype=v.dtype)
    R = eye + torch.sin(t) / t * K + (1 - torch.cos(t)) / t**2 * (K @ K)
    return torch.where(t == 0, eye, R)


def textbook_exp_no_where(v):
    t = v.norm(dim=-1)[..., None, None]
    K = ref_hat(v)
    return torch.eye(3, dtype=v.dtype) + torch.sin(t) / t * K + (1 - torch.cos(t)) / t**2 * (K @ K)


def safe_only_at_zero_exp(v):
    """Gradient-safe at exactly 0, but (1 - cos t)/t^2 everywhere else."""
    t2 = (v * v).sum(-1)[..., None, None]
    zero = t2 == 0
    t2_safe = torch.where(zero, torch.ones_like(t2), t2)
    t = torch.sqrt(t2_safe)
    A = torch.where(zero, 1 - t2 / 6, torch.sin(t) / t)
    B = torch.where(zero, 0.5 - t2 / 24, (1 - torch.cos(t)) / t2_safe)
    K = ref_hat(v)
    return torch.eye(3, dtype=v.dtype) + A * K + B * (K @ K)


def normalised_sinc_exp(v):
    t = v.norm(dim=-1)[..., None, None]
    K = ref_hat(v)
    return torch.eye(3, dtype=v.dtype) + torch.sinc(t) * K + 0.5 * torch.sinc(t / 2) ** 2 * (K @ K)


def series_everywhere_exp(v):
    K = ref_hat(v)
    return torch.eye(3, dtype=v.dtype) + K + 0.5 * (K @ K)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (forum_exp, "single torch.where"),  # the forum's exp
        (textbook_exp_no_where, "divides 0 by 0"),
        (safe_only_at_zero_exp, r"\(1 - cos t\) / t\^2 subtracts two nearly equal numbers"),
        (normalised_sinc_exp, "torch.sinc\\(x\\) is the normalised sinc"),
        (lambda v: ref_exp(v).mT, "Exp\\(-v\\)"),
        (lambda v: ref_exp(v).detach(), "does not depend on v through autograd"),
        (lambda v: ref_exp(v)[0], "of shape \\(6, 3, 3\\)"),
        (series_everywhere_exp, "small-angle series for every angle"),
        (lambda v: torch.linalg.matrix_exp(ref_hat(v)), "matrix_exp sums a general series"),
        (delegating(so3.exp_map), "write it yourself: this is what gradbook.so3.exp_map does"),
        (lambda v: ref_exp(v.double()), "should be float32"),
    ],
)
def test_exp_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_exp(wrong)


def test_matrix_exp_is_restored_after_the_check():
    with pytest.raises(ExerciseFailed):
        check_exp(lambda v: torch.linalg.matrix_exp(ref_hat(v)))
    K = ref_hat(torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64))
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    assert torch.allclose(torch.linalg.matrix_exp(K), expected, atol=1e-12)
    assert torch.allclose(K.matrix_exp(), expected, atol=1e-12)


# Exercise 6.3 -----------------------------------------------------------------


def quaternion_rows(r):
    """The rows of 4 q q^T, q = (x, y, z, w), from the entries of R (Shepperd/Markley)."""
    tr = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    s = [[r[..., i, j] + r[..., j, i] for j in range(3)] for i in range(3)]
    a = [r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]]
    rows = []
    for i in range(3):
        row = [s[i][j] if j != i else 1 + 2 * r[..., i, i] - tr for j in range(3)]
        rows.append(torch.stack([*row, a[i]], -1))
    rows.append(torch.stack([*a, 1 + tr], -1))
    return torch.stack(rows, -2)


def ref_log(R):
    rows = quaternion_rows(R)
    best = rows.diagonal(dim1=-2, dim2=-1).argmax(-1)
    q = torch.gather(rows, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., 3:] < 0, -q, q)
    qv, w = q[..., :3], q[..., 3]
    n2 = (qv * qv).sum(-1)
    small = n2 < 1e-6
    n = torch.sqrt(torch.where(small, torch.ones_like(n2), n2))
    scale = torch.where(small, 2 + n2 / 3 + 3 * n2**2 / 20, 2 * torch.atan2(n, w) / n)
    return scale[..., None] * qv


def log_one_hot(R):
    """The same quaternion, selected by a one-hot mask; the sign carried by the scale."""
    rows = quaternion_rows(R)
    best = rows.diagonal(dim1=-2, dim2=-1).argmax(-1)
    one_hot = torch.nn.functional.one_hot(best, 4).to(R.dtype)
    q = (one_hot[..., None] * rows).sum(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    qv, w = q[..., :3], q[..., 3]
    n2 = (qv * qv).sum(-1)
    small = n2 < 1e-8
    n = torch.sqrt(torch.where(small, torch.ones_like(n2), n2))
    scale = torch.where(small, 2 + n2 / 3, 2 * torch.atan2(n, w.abs()) / n)
    return (torch.where(w < 0, -scale, scale))[..., None] * qv


def acos_log(R):
    """The textbook inverse: acos of the trace, axis from the antisymmetric part."""
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    theta = torch.acos(cos.clamp(-1, 1))
    scale = torch.where(theta == 0, torch.ones_like(theta), theta / torch.sin(theta))
    return scale[..., None] * vee_antisymmetric(R)


def atan2_antisymmetric_log(R):
    """atan2 (fine near 0), but the axis still from the antisymmetric part (lost near pi)."""
    a = 0.5 * ref_vee(R - R.mT)
    s2 = (a * a).sum(-1)
    small = s2 < 1e-12
    s = torch.sqrt(torch.where(small, torch.ones_like(s2), s2))
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    scale = torch.where(small, 1 + s2 / 6, torch.atan2(s, cos) / s)
    return scale[..., None] * a


def nan_gradient_log(R):
    """Right values everywhere, but sqrt(0) and 0/0 in the unused branch at the identity."""
    rows = quaternion_rows(R)
    best = rows.diagonal(dim1=-2, dim2=-1).argmax(-1)
    q = torch.gather(rows, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., 3:] < 0, -q, q)
    n = q[..., :3].norm(dim=-1)
    scale = torch.where(n == 0, torch.full_like(n, 2.0), 2 * torch.atan2(n, q[..., 3]) / n)
    return scale[..., None] * q[..., :3]


def log_hybrid(R):
    """atan2 of the antisymmetric part below 2.5 rad, the quaternion route above."""
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    near_pi = (cos < math.cos(2.5))[..., None]
    return torch.where(near_pi, ref_log(R), atan2_antisymmetric_log(R))


@pytest.mark.parametrize("answer", [ref_log, log_one_hot, log_hybrid])
def test_log_correct_answers_pass(answer, capsys):
    assert check_log(answer)
    assert "PASSED Exercise 6.3" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (acos_log, "wrong near pi"),
        (atan2_antisymmetric_log, "wrong near pi"),
        (nan_gradient_log, "its gradient is NaN"),
        (lambda R: -ref_log(R), "you returned -v"),
        (lambda R: ref_vee(R), "Log\\(Exp\\(v\\)\\) is not v"),
        (lambda R: ref_log(R)[..., :2], "of shape \\(6, 3\\)"),
        (delegating(so3.log_map), "write it yourself: this is what gradbook.so3.log_map does"),
        (
            lambda R: 2 * so3._quaternion_from_matrix(R)[..., :3],
            "write it yourself: this is what gradbook.so3._quaternion_from_matrix does",
        ),
    ],
)
def test_log_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_log(wrong)


# Exercise 6.4 -----------------------------------------------------------------


def ref_kabsch(p, q):
    U, _, Vh = torch.linalg.svd(q.mT @ p)
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.diag(torch.stack([torch.ones_like(d), torch.ones_like(d), d]))
    return U @ D @ Vh


def kabsch_transposed_problem(p, q):
    """The SVD of M^T = sum_i p_i q_i^T, transposed back; the sign from det(U) det(V)."""
    U, _, Vh = torch.linalg.svd(torch.einsum("ni,nj->ij", p, q))
    d = torch.linalg.det(U) * torch.linalg.det(Vh)
    U = torch.cat([U[:, :2], U[:, 2:] * d], dim=1)
    return (U @ Vh).mT


def kabsch_scaled_columns(p, q):
    U, _, Vh = torch.linalg.svd(q.mT @ p / len(p))
    sign = torch.ones(3, dtype=p.dtype)
    sign[2] = torch.linalg.det(U @ Vh).sign()
    return (U * sign) @ Vh


@pytest.mark.parametrize("answer", [ref_kabsch, kabsch_transposed_problem, kabsch_scaled_columns])
def test_kabsch_correct_answers_pass(answer, capsys):
    assert check_kabsch(answer)
    assert "PASSED Exercise 6.4" in capsys.readouterr().out


def naive_kabsch(p, q):
    U, _, Vh = torch.linalg.svd(q.mT @ p)
    return U @ Vh


def kabsch_flips_first(p, q):
    U, _, Vh = torch.linalg.svd(q.mT @ p)
    d = torch.sign(torch.linalg.det(U @ Vh))
    return U @ torch.diag(torch.stack([d, torch.ones_like(d), torch.ones_like(d)])) @ Vh


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (naive_kabsch, "reflection \\(det R = -1\\)"),
        (lambda p, q: ref_kabsch(q, p), "inverse rotation"),  # the forum's comment vs its code
        (lambda p, q: ref_kabsch(p - p.mean(0), q - q.mean(0)), "you centred the points"),
        (lambda p, q: q.mT @ p, "not orthogonal"),
        (lambda p, q: torch.eye(3, dtype=p.dtype), "not the least-squares rotation"),
        (kabsch_flips_first, "not the best one for mirrored data"),
        (delegating(so3.kabsch), "write it yourself: this is what gradbook.so3.kabsch does"),
        (
            lambda p, q: so3.project_to_so3(q.mT @ p),
            "write it yourself: this is what gradbook.so3.project_to_so3 does",
        ),
    ],
)
def test_kabsch_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_kabsch(wrong)


# Exercise 6.5 -----------------------------------------------------------------


def solve_delta(J, r):
    H = (J.mT @ J).sum(0)
    g = (J.mT @ r.unsqueeze(-1)).squeeze(-1).sum(0)
    return -torch.linalg.solve(H, g)


def ref_gn_step(R, p, q):
    J = -R @ ref_hat(p)  # (N, 3, 3): d(R Exp(d) p_i)/dd at d = 0
    r = p @ R.mT - q
    return R @ ref_exp(solve_delta(J, r))


def consistent_left_update(R, p, q):
    """Left model and left update: the same Gauss-Newton step, so it must pass."""
    J = -ref_hat(p @ R.mT)
    return ref_exp(solve_delta(J, p @ R.mT - q)) @ R


def autograd_gn_step(R, p, q):
    """The Jacobian of the residuals in delta from autograd, at delta = 0."""

    def residuals(delta):
        return (p @ (R @ ref_exp(delta)).mT - q).reshape(-1)

    delta0 = torch.zeros(3, dtype=p.dtype)
    J = torch.func.jacfwd(residuals)(delta0)
    step = torch.linalg.lstsq(J, -residuals(delta0)[:, None]).solution[:, 0]
    return R @ ref_exp(step)


@pytest.mark.parametrize("answer", [ref_gn_step, consistent_left_update, autograd_gn_step])
def test_gn_step_correct_answers_pass(answer, capsys):
    assert check_gn_step(answer)
    assert "PASSED Exercise 6.5" in capsys.readouterr().out


def applied_on_the_left(R, p, q):
    J = -R @ ref_hat(p)
    return ref_exp(solve_delta(J, p @ R.mT - q)) @ R


def left_delta_on_the_right(R, p, q):
    J = -ref_hat(p @ R.mT)  # the Jacobian of Exp(d) R p_i: a left update
    return R @ ref_exp(solve_delta(J, p @ R.mT - q))


def uphill(R, p, q):
    J = -R @ ref_hat(p)
    return R @ ref_exp(-solve_delta(J, p @ R.mT - q))


def first_order_only(R, p, q):
    J = -R @ ref_hat(p)
    return R + R @ ref_hat(solve_delta(J, p @ R.mT - q))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (
            applied_on_the_left,
            "left/right confusion: delta solves the system for a correction on the right",
        ),
        (
            left_delta_on_the_right,
            "left/right confusion: your delta is the correction in the global frame",
        ),
        (uphill, "increases the cost"),
        (first_order_only, "not a rotation"),
        (
            lambda R, p, q: R @ ref_exp(0.5 * ref_log(R.mT @ ref_kabsch(p, q))),
            "not the Gauss-Newton step",
        ),
        (lambda R, p, q: ref_kabsch(p, q), "the least-squares rotation itself"),
        (
            lambda R, p, q: so3.fit_rotation(p, q, R0=R, method="gn", max_iterations=1)[0],
            "write it yourself: this is what gradbook.so3.fit_rotation does",
        ),
    ],
)
def test_gn_step_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_gn_step(wrong)


def test_gn_step_on_an_unsolved_exp_names_exercise_6_2():
    def exp(v):
        raise NotImplementedError("Exercise 6.2: write your solution here")

    def gn_step(R, p, q):
        J = -R @ ref_hat(p)
        return R @ exp(solve_delta(J, p @ R.mT - q))

    with pytest.raises(ExerciseFailed, match=r"`exp`, which is still the stub of Exercise 6\.2"):
        check_gn_step(gn_step)


# Exercise 6.6 (stretch) -------------------------------------------------------


def ref_fit(p, q, R0, iterations=30):
    R = R0
    for _ in range(iterations):
        R = ref_gn_step(R, p, q)
    return R


def fit_until_small_step(p, q, R0):
    """Left updates, stopped when the step is below 1e-13 rad."""
    R = R0
    for _ in range(100):
        J = -ref_hat(p @ R.mT)
        delta = solve_delta(J, p @ R.mT - q)
        R = ref_exp(delta) @ R
        if delta.norm() < 1e-13:
            break
    return R


def fit_autograd(p, q, R0):
    R = R0
    for _ in range(15):
        R = autograd_gn_step(R, p, q)
    return R


@pytest.mark.parametrize("answer", [ref_fit, fit_until_small_step, fit_autograd])
def test_fit_correct_answers_pass(answer, capsys):
    assert check_fit_near_half_turn(answer)
    assert "PASSED Exercise 6.6" in capsys.readouterr().out


def fit_plain_axis_angle(p, q, R0):
    """The global rotation vector v of R = Exp(v), from v = Log(R0), by gradient descent."""
    v = ref_log(R0).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([v], lr=0.01)
    for _ in range(100):
        loss = ((p @ ref_exp(v).mT - q) ** 2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return ref_exp(v.detach())


def fit_global_rotation_vector(p, q, R0):
    """Gauss-Newton on v of R = Exp(v), from v0 = textbook (acos) Log(R0)."""
    v = acos_log(R0)

    def residuals(v):
        return (p @ ref_exp(v).mT - q).reshape(-1)

    for _ in range(10):
        J = torch.func.jacfwd(residuals)(v)
        v = v + torch.linalg.lstsq(J, -residuals(v)[:, None]).solution[:, 0]
    return ref_exp(v)


def fit_additive(p, q, R0):
    R = R0
    for _ in range(30):
        J = -R @ ref_hat(p)
        R = R + R @ ref_hat(solve_delta(J, p @ R.mT - q))
    return R


def fit_never_updates(p, q, R0):
    R = R0
    for _ in range(30):
        J = -R @ ref_hat(p)
        delta = solve_delta(J, p @ R.mT - q)
        R0 @ ref_exp(delta)  # the result is dropped
    return R


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (fit_plain_axis_angle, "rad from the least-squares rotation"),
        (fit_global_rotation_vector, "started at a half turn: .* stuck far away.*Log\\(R0\\)"),
        (lambda p, q, R0: torch.full((3, 3), math.nan, dtype=F64), "Log\\(R0\\)"),
        (fit_additive, "not a rotation"),
        (fit_never_updates, "still R0"),
        (lambda p, q, R0: ref_gn_step(R0, p, q), "on the way but not there"),
        (lambda p, q, R0: ref_fit(q, p, R0), "inverse rotation"),
        (
            lambda p, q, R0: ref_fit(p, q, R0) @ ref_exp(torch.full((3,), 0.3, dtype=F64)),
            "rad from the least-squares",
        ),
        (lambda p, q, R0: so3.kabsch(p, q), "write it yourself: this is what gradbook.so3.kabsch"),
        (
            lambda p, q, R0: so3.fit_rotation(p, q, R0=R0)[0],
            "write it yourself: this is what gradbook.so3.fit_rotation",
        ),
    ],
)
def test_fit_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_fit_near_half_turn(wrong)
