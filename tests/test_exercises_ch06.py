"""Chapter 6 checks: they fail on the known mistakes (the forum's among them), pass on answers."""

from __future__ import annotations

import pytest
import torch

from gradbook import so3
from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch06 import check_exp, check_gn_step, check_hat_vee, check_kabsch, check_log

# Exercise 6.1 -----------------------------------------------------------------


def ref_hat(v):
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


def ref_vee(K):
    return torch.stack([K[..., 2, 1], K[..., 0, 2], K[..., 1, 0]], dim=-1)


def test_hat_vee_reference_passes(capsys):
    assert check_hat_vee(ref_hat, ref_vee)
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
    K = so3.hat(v)
    return torch.eye(3, dtype=v.dtype) + A * K + B * (K @ K)


def forum_exp(v):
    """The forum's formula in torch: textbook coefficients, one `where` at exactly 0."""
    t = v.norm(dim=-1)[..., None, None]
    K = so3.hat(v)
    eye = torch.eye(3, dtype=v.dtype)
    R = eye + torch.sin(t) / t * K + (1 - torch.cos(t)) / t**2 * (K @ K)
    return torch.where(t == 0, eye, R)


def textbook_exp_no_where(v):
    t = v.norm(dim=-1)[..., None, None]
    K = so3.hat(v)
    return torch.eye(3, dtype=v.dtype) + torch.sin(t) / t * K + (1 - torch.cos(t)) / t**2 * (K @ K)


def safe_only_at_zero_exp(v):
    """Gradient-safe at exactly 0, but (1 - cos t)/t^2 everywhere else."""
    t2 = (v * v).sum(-1)[..., None, None]
    zero = t2 == 0
    t2_safe = torch.where(zero, torch.ones_like(t2), t2)
    t = torch.sqrt(t2_safe)
    A = torch.where(zero, 1 - t2 / 6, torch.sin(t) / t)
    B = torch.where(zero, 0.5 - t2 / 24, (1 - torch.cos(t)) / t2_safe)
    K = so3.hat(v)
    return torch.eye(3, dtype=v.dtype) + A * K + B * (K @ K)


def normalised_sinc_exp(v):
    t = v.norm(dim=-1)[..., None, None]
    K = so3.hat(v)
    return torch.eye(3, dtype=v.dtype) + torch.sinc(t) * K + 0.5 * torch.sinc(t / 2) ** 2 * (K @ K)


def test_exp_reference_passes(capsys):
    assert check_exp(ref_exp)
    assert check_exp(so3.exp_map)
    assert "PASSED Exercise 6.2" in capsys.readouterr().out


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
    ],
)
def test_exp_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_exp(wrong)


# Exercise 6.3 -----------------------------------------------------------------


def ref_log(R):
    r = R
    tr = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    rows = torch.stack(
        [
            torch.stack(
                [
                    1 + 2 * r[..., 0, 0] - tr,
                    r[..., 0, 1] + r[..., 1, 0],
                    r[..., 0, 2] + r[..., 2, 0],
                    r[..., 2, 1] - r[..., 1, 2],
                ],
                -1,
            ),
            torch.stack(
                [
                    r[..., 0, 1] + r[..., 1, 0],
                    1 + 2 * r[..., 1, 1] - tr,
                    r[..., 1, 2] + r[..., 2, 1],
                    r[..., 0, 2] - r[..., 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    r[..., 0, 2] + r[..., 2, 0],
                    r[..., 1, 2] + r[..., 2, 1],
                    1 + 2 * r[..., 2, 2] - tr,
                    r[..., 1, 0] - r[..., 0, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    r[..., 2, 1] - r[..., 1, 2],
                    r[..., 0, 2] - r[..., 2, 0],
                    r[..., 1, 0] - r[..., 0, 1],
                    1 + tr,
                ],
                -1,
            ),
        ],
        -2,
    )
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


def acos_log(R):
    """The textbook inverse: acos of the trace, axis from the antisymmetric part."""
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    theta = torch.acos(cos.clamp(-1, 1))
    scale = torch.where(theta == 0, torch.ones_like(theta), theta / torch.sin(theta))
    return scale[..., None] * so3.vee(R)


def nan_gradient_log(R):
    """Right values everywhere, but sqrt(0) and 0/0 in the unused branch at the identity."""
    q = so3._quaternion_from_matrix(R)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., 3:] < 0, -q, q)
    n = q[..., :3].norm(dim=-1)
    scale = torch.where(n == 0, torch.full_like(n, 2.0), 2 * torch.atan2(n, q[..., 3]) / n)
    return scale[..., None] * q[..., :3]


def test_log_reference_passes(capsys):
    assert check_log(ref_log)
    assert check_log(so3.log_map)
    assert "PASSED Exercise 6.3" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (acos_log, "wrong near pi"),
        (nan_gradient_log, "its gradient is NaN"),
        (lambda R: -ref_log(R), "you returned -v"),
        (lambda R: so3.vee(R), "Log\\(Exp\\(v\\)\\) is not v"),
        (lambda R: ref_log(R)[..., :2], "of shape \\(6, 3\\)"),
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


def naive_kabsch(p, q):
    U, _, Vh = torch.linalg.svd(q.mT @ p)
    return U @ Vh


def test_kabsch_reference_passes(capsys):
    assert check_kabsch(ref_kabsch)
    assert check_kabsch(so3.kabsch)
    assert "PASSED Exercise 6.4" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (naive_kabsch, "reflection \\(det R = -1\\)"),
        (lambda p, q: ref_kabsch(q, p), "inverse rotation"),  # the forum's comment vs its code
        (lambda p, q: ref_kabsch(p - p.mean(0), q - q.mean(0)), "you centred the points"),
        (lambda p, q: q.mT @ p, "not orthogonal"),
        (lambda p, q: torch.eye(3, dtype=p.dtype), "not the least-squares rotation"),
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
    J = -R @ so3.hat(p)  # (N, 3, 3): d(R Exp(d) p_i)/dd at d = 0
    r = p @ R.mT - q
    return R @ so3.exp_map(solve_delta(J, r))


def applied_on_the_left(R, p, q):
    J = -R @ so3.hat(p)
    return so3.exp_map(solve_delta(J, p @ R.mT - q)) @ R


def left_delta_on_the_right(R, p, q):
    J = -so3.hat(p @ R.mT)  # the Jacobian of Exp(d) R p_i: a left update
    return R @ so3.exp_map(solve_delta(J, p @ R.mT - q))


def uphill(R, p, q):
    J = -R @ so3.hat(p)
    return R @ so3.exp_map(-solve_delta(J, p @ R.mT - q))


def first_order_only(R, p, q):
    J = -R @ so3.hat(p)
    return R + R @ so3.hat(solve_delta(J, p @ R.mT - q))


def consistent_left_update(R, p, q):
    """Left model and left update: the same Gauss-Newton step, so it must pass."""
    J = -so3.hat(p @ R.mT)
    return so3.exp_map(solve_delta(J, p @ R.mT - q)) @ R


def test_gn_step_reference_passes(capsys):
    assert check_gn_step(ref_gn_step)
    assert check_gn_step(consistent_left_update)
    assert "PASSED Exercise 6.5" in capsys.readouterr().out


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
            lambda R, p, q: R @ so3.exp_map(0.5 * so3.log_map(R.mT @ so3.kabsch(p, q))),
            "not the Gauss-Newton step",
        ),
    ],
)
def test_gn_step_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_gn_step(wrong)
