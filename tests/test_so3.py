"""gradbook.so3 against independent references: scipy's Rotation, matrix_exp, mpmath, roma.

The float64 accuracy target of the chapter is a maximum entry error of 5e-15
against scipy in every regime (angle ~ 0, uniform, pi - 1e-8 .. pi - 1e-2, pi).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import roma
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from gradbook.so3 import (
    ROTATION_TOL,
    FitInfo,
    exp_map,
    exp_map_derivative,
    fit_rotation,
    forum_points,
    geodesic_distance,
    hat,
    is_rotation,
    kabsch,
    left_jacobian,
    left_jacobian_inv,
    log_map,
    project_to_so3,
    right_jacobian,
    right_jacobian_inv,
    rotation_error,
    vee,
)

F64_TOL = 5e-15  # the chapter's accuracy target in float64
PI = math.pi

# ---------------------------------------------------------------------------
# data


def unit_axes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, 3))
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def regime_vectors(regime: str, n: int = 200, seed: int = 0) -> np.ndarray:
    """Rotation vectors (float64, numpy) whose angles lie in one regime."""
    axes = unit_axes(n, seed)
    rng = np.random.default_rng(seed + 1)
    if regime == "zero":
        angles = np.concatenate([[0.0], 10.0 ** rng.uniform(-16, -3, n - 1)])
    elif regime == "threshold":  # around the switch between series and closed form
        angles = np.concatenate(
            [
                0.05 * (1 + rng.uniform(-1e-3, 1e-3, n // 2)),
                0.5 * (1 + rng.uniform(-1e-3, 1e-3, n - n // 2)),
            ]
        )
    elif regime == "uniform":
        return Rotation.random(n, rng=seed).as_rotvec()
    elif regime == "near_pi":
        angles = PI - 10.0 ** rng.uniform(-8, -2, n)
    elif regime == "pi":
        angles = np.full(n, PI)
    else:  # pragma: no cover
        raise ValueError(regime)
    return axes * angles[:, None]


REGIMES = ["zero", "threshold", "uniform", "near_pi", "pi"]


def to(x, device, dtype=torch.float64):
    return torch.as_tensor(np.asarray(x), dtype=torch.float64).to(device=device, dtype=dtype)


def same_rotvec(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Entry error between rotation vectors, allowing v ~ -v at angle pi."""
    direct = np.abs(a - b).max(axis=-1)
    at_pi = np.abs(np.linalg.norm(b, axis=-1) - PI) < 1e-6
    flipped = np.abs(a + b).max(axis=-1)
    return np.where(at_pi, np.minimum(direct, flipped), direct)


# ---------------------------------------------------------------------------
# hat and vee


def test_hat_is_the_cross_product(device, dtype, generator):
    v = torch.randn(4, 5, 3, generator=generator, dtype=torch.float64).to(device, dtype)
    x = torch.randn(4, 5, 3, generator=generator, dtype=torch.float64).to(device, dtype)
    K = hat(v)
    assert K.shape == (4, 5, 3, 3) and K.dtype == dtype and K.device.type == device.type
    expected = torch.linalg.cross(v, x, dim=-1)
    torch.testing.assert_close((K @ x.unsqueeze(-1)).squeeze(-1), expected)
    torch.testing.assert_close(K.mT, -K, rtol=0, atol=0)


def test_vee_inverts_hat_exactly_and_takes_the_skew_part(device, generator):
    v = torch.randn(10, 3, generator=generator, dtype=torch.float64).to(device)
    assert torch.equal(vee(hat(v)), v)
    M = torch.randn(10, 3, 3, generator=generator, dtype=torch.float64).to(device)
    torch.testing.assert_close(vee(M), vee(0.5 * (M - M.mT)), rtol=0, atol=1e-15)
    torch.testing.assert_close(hat(vee(M)), 0.5 * (M - M.mT), rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("fn", "arg", "error", "message"),
    [
        (hat, torch.zeros(3, 2), ValueError, r"v: expected shape \(\.\.\., 3\), got \(3, 2\)"),
        (hat, torch.zeros(3, dtype=torch.int64), TypeError, "v: expected a floating-point"),
        (hat, [0.0, 1.0, 2.0], TypeError, "v: expected a torch.Tensor, got list"),
        (vee, torch.zeros(3), ValueError, r"K: expected shape \(\.\.\., 3, 3\), got \(3,\)"),
        (exp_map, torch.zeros(4), ValueError, r"v: expected shape \(\.\.\., 3\), got \(4,\)"),
        (log_map, torch.zeros(2, 3), ValueError, r"R: expected shape \(\.\.\., 3, 3\)"),
        (log_map, torch.eye(3, dtype=torch.int32), TypeError, "R: expected a floating-point"),
        (right_jacobian, torch.zeros(2), ValueError, "v: expected shape"),
        (left_jacobian_inv, np.zeros(3), TypeError, "v: expected a torch.Tensor, got ndarray"),
        (left_jacobian, torch.zeros(3, 1), ValueError, r"v: expected shape \(\.\.\., 3\)"),
        (right_jacobian_inv, [0.0] * 3, TypeError, "v: expected a torch.Tensor, got list"),
        (exp_map_derivative, torch.zeros(2), ValueError, r"v: expected shape \(\.\.\., 3\)"),
        (rotation_error, torch.zeros(3), ValueError, r"R: expected shape \(\.\.\., 3, 3\)"),
        (project_to_so3, torch.eye(3).long(), TypeError, "M: expected a floating-point"),
        (is_rotation, torch.zeros(2, 2), ValueError, r"R: expected shape \(\.\.\., 3, 3\)"),
    ],
)
def test_bad_input_is_named(fn, arg, error, message):
    with pytest.raises(error, match=message):
        fn(arg)


def test_bad_second_arguments_are_named():
    eye = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"R2: expected shape \(\.\.\., 3, 3\)"):
        geodesic_distance(eye, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"R1: expected a torch\.Tensor"):
        geodesic_distance("I", eye)
    for tol in (-1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tol: expected a finite number >= 0"):
            is_rotation(eye, tol=tol)
        with pytest.raises(ValueError, match="tol: expected a finite number >= 0"):
            log_map(eye, tol=tol)
    with pytest.raises(TypeError, match="tol: expected a number >= 0, got str"):
        is_rotation(eye, tol="1e-8")


def test_empty_batches(device, dtype):
    v = torch.zeros(0, 3, device=device, dtype=dtype)
    R = torch.zeros(0, 3, 3, device=device, dtype=dtype)
    assert exp_map(v).shape == (0, 3, 3)
    assert log_map(R).shape == (0, 3)
    assert right_jacobian(v).shape == (0, 3, 3)
    for jacobian in (left_jacobian, right_jacobian_inv, left_jacobian_inv):
        assert jacobian(v).shape == (0, 3, 3)
    assert exp_map_derivative(v).shape == (0, 3, 3, 3)
    assert hat(v).shape == (0, 3, 3) and vee(R).shape == (0, 3)
    assert is_rotation(R).shape == (0,)
    assert [e.shape for e in rotation_error(R)] == [(0,), (0,)]
    assert project_to_so3(R).shape == (0, 3, 3)
    assert geodesic_distance(R, R).shape == (0,)


# ---------------------------------------------------------------------------
# exp: accuracy


@pytest.mark.parametrize("regime", REGIMES)
def test_exp_matches_scipy_to_5e_15_in_float64(device, regime):
    v = regime_vectors(regime)
    expected = Rotation.from_rotvec(v).as_matrix()
    got = exp_map(to(v, device)).cpu().numpy()
    assert np.abs(got - expected).max() <= F64_TOL


@pytest.mark.parametrize("regime", REGIMES)
def test_exp_matches_matrix_exp_of_hat(device, regime):
    """A second, unrelated reference: the matrix exponential (scaling and squaring)."""
    v = to(regime_vectors(regime, n=50), device)
    expected = torch.linalg.matrix_exp(hat(v))
    torch.testing.assert_close(exp_map(v), expected, rtol=0, atol=2e-15)


@pytest.mark.parametrize("regime", REGIMES)
def test_exp_float32_matches_scipy(device, regime):
    v = regime_vectors(regime)
    expected = Rotation.from_rotvec(v).as_matrix()
    got = exp_map(to(v, device, torch.float32)).double().cpu().numpy()
    assert np.abs(got - expected).max() <= 5e-7


def test_exp_beats_the_textbook_formula_and_roma_near_zero():
    """The textbook B = (1 - cos t)/t^2 is 0 in float32 at t = 1e-4; roma's first-order branch
    is off by ~t^2/2 below 1e-6. Both are measured, so this test fails if either stops being so."""
    t = torch.tensor(1e-4, dtype=torch.float32)
    assert ((1 - torch.cos(t)) / t**2).item() == 0.0  # the failure the chapter shows
    v = regime_vectors("zero", n=400, seed=5)
    v = v[np.linalg.norm(v, axis=1) > 1e-7]
    expected = Rotation.from_rotvec(v).as_matrix()
    ours = np.abs(exp_map(torch.from_numpy(v)).numpy() - expected).max()
    theirs = np.abs(roma.rotvec_to_rotmat(torch.from_numpy(v)).numpy() - expected).max()
    assert ours <= F64_TOL < 1e-14 < theirs


@pytest.mark.parametrize(("dtype", "angle"), [(torch.float32, 1e-4), (torch.float64, 1e-9)])
def test_exp_keeps_the_second_order_term_at_tiny_angles(device, dtype, angle):
    """The off-diagonal symmetric part of Exp(v) is B v v^T with B ~ 1/2; the textbook
    (1 - cos t)/t^2 is exactly 0 at these angles and would lose it entirely."""
    v = torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64) * angle
    R = exp_map(v.to(device, dtype)).double().cpu()
    symmetric = 0.5 * (R + R.mT)
    expected = 0.5 * torch.outer(v, v)  # B = 1/2 - t^2/24: the correction is below 1e-9
    off = ~torch.eye(3, dtype=torch.bool)
    relative = (symmetric - expected)[off].abs().max() / expected[off].abs().max()
    # float32: the part is a difference of entries of size 1e-4 (ulp 7e-12), about 1e-9
    assert relative.item() < (5e-2 if dtype == torch.float32 else 1e-5)


def test_exp_is_a_rotation(device, dtype, generator):
    v = (torch.randn(100, 3, generator=generator, dtype=torch.float64) * 3).to(device, dtype)
    orthogonality, det = rotation_error(exp_map(v))
    bound = 1e-6 if dtype == torch.float32 else 4e-15
    assert orthogonality.max().item() <= bound and det.max().item() <= bound


# ---------------------------------------------------------------------------
# log: accuracy


@pytest.mark.parametrize("regime", REGIMES)
def test_log_matches_scipy_to_5e_15_in_float64(device, regime):
    R = Rotation.from_rotvec(regime_vectors(regime)).as_matrix()
    expected = Rotation.from_matrix(R).as_rotvec()
    got = log_map(to(R, device)).cpu().numpy()
    assert same_rotvec(got, expected).max() <= F64_TOL
    assert (np.linalg.norm(got, axis=-1) <= PI + 1e-15).all()


@pytest.mark.parametrize("regime", REGIMES)
def test_log_float32_matches_scipy(device, regime):
    R = Rotation.from_rotvec(regime_vectors(regime)).as_matrix()
    expected = Rotation.from_matrix(R).as_rotvec()
    got = log_map(to(R, device, torch.float32)).double().cpu().numpy()
    assert same_rotvec(got, expected).max() <= 2e-6


@pytest.mark.parametrize("regime", REGIMES)
def test_exp_log_round_trip(device, dtype, regime):
    v = to(regime_vectors(regime, n=100), device, dtype)
    R = exp_map(v)
    torch.testing.assert_close(
        exp_map(log_map(R)), R, rtol=0, atol=2e-6 if dtype == torch.float32 else 2e-15
    )


def test_log_of_identity_and_of_half_turns_exactly(device, dtype):
    assert torch.equal(
        log_map(torch.eye(3, device=device, dtype=dtype)),
        torch.zeros(3, device=device, dtype=dtype),
    )
    half_turns = torch.diag_embed(
        torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=dtype)
    ).to(device)
    got = log_map(half_turns)
    torch.testing.assert_close(
        got.abs(),
        PI * torch.eye(3, device=device, dtype=dtype),
        rtol=0,
        atol=1e-6 if dtype == torch.float32 else 1e-15,
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=3, max_size=3).filter(
        lambda a: np.linalg.norm(a) > 1e-3
    ),
    st.floats(0, PI - 1e-6),
)
def test_property_log_inverts_exp(axis, angle):
    axis = np.asarray(axis) / np.linalg.norm(axis)
    v = torch.from_numpy(axis * angle)
    torch.testing.assert_close(log_map(exp_map(v)), v, rtol=0, atol=1e-14)
    torch.testing.assert_close(
        exp_map(v) @ exp_map(-v), torch.eye(3, dtype=torch.float64), rtol=0, atol=4e-15
    )


# ---------------------------------------------------------------------------
# log: validation


def test_log_rejects_a_reflection():
    R = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"det = -1: a reflection"):
        log_map(R)


def test_log_rejects_a_non_orthogonal_matrix_and_names_the_batch_index():
    R = torch.eye(3, dtype=torch.float64).repeat(2, 3, 1, 1)
    R[1, 2] = R[1, 2] * 1.001
    with pytest.raises(
        ValueError,
        match=r"R: expected rotation matrices .* got 1 that are not at batch index \(1, 2\): "
        r"orthogonality error 0\.002",
    ):
        log_map(R)


def test_log_keeps_gradients_after_a_first_call_in_inference_mode():
    """log_map caches a constant matrix per dtype and device; it must not be an inference tensor."""
    import gradbook.so3 as so3_module

    so3_module._MARKLEY_CACHE.clear()
    v = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    with torch.inference_mode():
        log_map(exp_map(v))
    R = exp_map(v).requires_grad_(True)
    (gradient,) = torch.autograd.grad(log_map(R).sum(), R)
    assert torch.isfinite(gradient).all()


def test_log_tolerance_is_documented_and_can_be_changed():
    assert ROTATION_TOL[torch.float64] == 1e-8 and ROTATION_TOL[torch.float32] == 1e-4
    R = exp_map(torch.tensor([0.3, 0.2, -0.1], dtype=torch.float64))
    slightly_off = R * (1 + 1e-6)
    with pytest.raises(ValueError, match="orthogonality error"):
        log_map(slightly_off)
    torch.testing.assert_close(log_map(slightly_off, tol=1e-5), log_map(R), rtol=0, atol=1e-6)
    assert torch.isfinite(log_map(slightly_off * 3, check=False)).all()
    assert log_map(R.float() * (1 + 1e-5)).dtype == torch.float32  # within float32's 1e-4


def test_fast_check_agrees_with_the_exact_errors(generator):
    """log_map's cheap test must never accept what rotation_error rejects (and vice versa)."""
    R = exp_map(torch.randn(400, 3, generator=generator, dtype=torch.float64))
    noise = torch.randn(400, 3, 3, generator=generator, dtype=torch.float64)
    scales = 10.0 ** torch.linspace(-12, -1, 400, dtype=torch.float64)
    M = R + scales[:, None, None] * noise
    for tol in (1e-8, 1e-6, 1e-4):
        exact = is_rotation(M, tol)
        for i in range(0, 400, 7):
            try:
                log_map(M[i], tol=tol)
                accepted = True
            except ValueError:
                accepted = False
            assert accepted == bool(exact[i])


def test_is_rotation_and_rotation_error(device):
    eye = torch.eye(3, dtype=torch.float64, device=device)
    assert is_rotation(eye).item()
    assert not is_rotation(-eye).item()
    assert not is_rotation(
        torch.full((3, 3), float("nan"), device=device, dtype=torch.float64)
    ).item()
    o, d = rotation_error(2 * eye)
    assert o.item() == 3.0 and d.item() == 7.0


def test_project_to_so3_gives_the_nearest_rotation(generator):
    R = exp_map(torch.randn(20, 3, generator=generator, dtype=torch.float64))
    M = R + 1e-3 * torch.randn(20, 3, 3, generator=generator, dtype=torch.float64)
    P = project_to_so3(M)
    assert is_rotation(P, 1e-14).all()
    # nearer to M than R is, and than any of a few perturbed rotations
    assert ((P - M).norm(dim=(-2, -1)) <= (R - M).norm(dim=(-2, -1)) + 1e-15).all()
    for k in range(5):
        Q = P @ exp_map(1e-3 * torch.randn(20, 3, generator=generator, dtype=torch.float64))
        assert ((P - M).norm(dim=(-2, -1)) <= (Q - M).norm(dim=(-2, -1))).all(), k


# ---------------------------------------------------------------------------
# gradients: finite everywhere, correct by gradcheck


EDGE_ANGLES = [0.0, 1e-12, 1e-6, 1e-3, 0.05, 0.4999, 0.5001, 1.0, 2.5, PI - 1e-3, PI - 1e-8]


@pytest.mark.parametrize("angle", EDGE_ANGLES)
def test_exp_gradcheck(angle):
    v = torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64) * angle
    v.requires_grad_(True)
    assert torch.autograd.gradcheck(exp_map, (v,), eps=1e-6, atol=1e-8)
    assert torch.autograd.gradgradcheck(exp_map, (v,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("angle", [0.0, PI])
def test_exp_gradients_are_finite_at_zero_and_pi(device, dtype, angle):
    v = (torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64) * angle).to(device, dtype)
    v.requires_grad_(True)
    (grad,) = torch.autograd.grad(
        exp_map(v).square().sum() + exp_map(v)[0, 1], v, create_graph=True
    )
    assert torch.isfinite(grad).all()
    (second,) = torch.autograd.grad(grad.sum(), v)
    assert torch.isfinite(second).all()


def test_exp_derivative_at_zero_is_the_generators(device, dtype):
    v = torch.zeros(3, device=device, dtype=dtype, requires_grad=True)
    J = torch.autograd.functional.jacobian(exp_map, v)  # (3, 3, 3): dR_jk / dv_i at [j, k, i]
    torch.testing.assert_close(
        J.permute(2, 0, 1), hat(torch.eye(3, device=device, dtype=dtype)), rtol=0, atol=0
    )


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, 0.02, 0.3, 1.0, 2.0, PI - 1e-3])
def test_log_gradcheck(angle):
    R = exp_map(torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64) * angle).requires_grad_(True)

    def log_unchecked(M):
        return log_map(M, check=False)

    assert torch.autograd.gradcheck(log_unchecked, (R,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(log_unchecked, (R,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-6, 0.05, 1.0, 3.0, PI - 1e-6])
def test_log_of_exp_has_the_identity_jacobian(angle):
    """d Log(Exp(v)) / dv = I for |v| < pi: exact derivative of both maps together."""
    v = torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64) * angle
    J = torch.autograd.functional.jacobian(lambda x: log_map(exp_map(x)), v)
    tol = 1e-12 if angle < 3 else 2e-9  # conditioning of Log grows like 1/(pi - t)
    torch.testing.assert_close(J, torch.eye(3, dtype=torch.float64), rtol=0, atol=tol)


@pytest.mark.parametrize("angle", [0.0, PI])
def test_log_gradients_are_finite_at_zero_and_pi(device, dtype, angle):
    R = exp_map(torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64) * angle).to(device, dtype)
    R.requires_grad_(True)
    (grad,) = torch.autograd.grad(log_map(R).square().sum() + log_map(R)[0], R, create_graph=True)
    assert torch.isfinite(grad).all()
    (second,) = torch.autograd.grad(grad.sum(), R)
    assert torch.isfinite(second).all()


def test_jvp_vjp_adjoint_identity(generator):
    """<vjp(u), t> == <u, jvp(t)> for exp and log, at random points and at 0."""
    for v in (
        torch.randn(5, 3, generator=generator, dtype=torch.float64),
        torch.zeros(5, 3, dtype=torch.float64),
    ):
        t = torch.randn(5, 3, generator=generator, dtype=torch.float64)
        u = torch.randn(5, 3, 3, generator=generator, dtype=torch.float64)
        _, jvp_out = torch.func.jvp(exp_map, (v,), (t,))
        _, vjp_fn = torch.func.vjp(exp_map, v)
        (vjp_out,) = vjp_fn(u)
        assert abs((vjp_out * t).sum() - (u * jvp_out).sum()).item() < 1e-12
        R = exp_map(v)
        T = torch.randn(5, 3, 3, generator=generator, dtype=torch.float64)
        w = torch.randn(5, 3, generator=generator, dtype=torch.float64)

        def log_unchecked(M):
            return log_map(M, check=False)

        _, jvp_out = torch.func.jvp(log_unchecked, (R,), (T,))
        _, vjp_fn = torch.func.vjp(log_unchecked, R)
        (vjp_out,) = vjp_fn(w)
        assert abs((vjp_out * T).sum() - (w * jvp_out).sum()).item() < 1e-12


def test_torch_func_vmap_and_jacrev_work(generator):
    v = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(torch.func.vmap(exp_map)(v), exp_map(v))
    J = torch.func.vmap(torch.func.jacrev(exp_map))(v)  # (4, 3, 3, 3)
    torch.testing.assert_close(J.permute(0, 3, 1, 2), exp_map_derivative(v), rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------
# Jacobians


def scipy_exp(v):
    return Rotation.from_rotvec(v).as_matrix()


def scipy_log(R):
    return Rotation.from_matrix(R).as_rotvec()


JAC_POINTS = [
    np.zeros(3),
    np.array([1e-7, 0, 0]),
    np.array([0.02, -0.01, 0.03]),
    np.array([0.3, -0.2, 0.1]),
    np.array([1.0, 2.0, -0.5]),
    np.array([0.0, 0.0, PI - 1e-3]),
]


@pytest.mark.parametrize("v", JAC_POINTS, ids=lambda v: f"t={np.linalg.norm(v):.3g}")
def test_jacobians_against_central_differences_with_scipy(v):
    """J_r: Log(Exp(v)^T Exp(v + h e_i)) / h; J_l: Log(Exp(v + h e_i) Exp(v)^T) / h; and
    J_l^{-1}, J_r^{-1}: Log(Exp(h e_i) Exp(v)), Log(Exp(v) Exp(h e_i)) - v; all in scipy."""
    h = 1e-6
    R = scipy_exp(v)
    jr, jl, jl_inv, jr_inv = (np.zeros((3, 3)) for _ in range(4))
    for i in range(3):
        e = np.zeros(3)
        e[i] = h
        jr[:, i] = (scipy_log(R.T @ scipy_exp(v + e)) - scipy_log(R.T @ scipy_exp(v - e))) / (2 * h)
        jl[:, i] = (scipy_log(scipy_exp(v + e) @ R.T) - scipy_log(scipy_exp(v - e) @ R.T)) / (2 * h)
        jl_inv[:, i] = (scipy_log(scipy_exp(e) @ R) - scipy_log(scipy_exp(-e) @ R)) / (2 * h)
        jr_inv[:, i] = (scipy_log(R @ scipy_exp(e)) - scipy_log(R @ scipy_exp(-e))) / (2 * h)
    vt = torch.from_numpy(v)
    tol = 1e-8 if np.linalg.norm(v) < 3 else 1e-5
    np.testing.assert_allclose(right_jacobian(vt).numpy(), jr, atol=tol)
    np.testing.assert_allclose(left_jacobian(vt).numpy(), jl, atol=tol)
    np.testing.assert_allclose(left_jacobian_inv(vt).numpy(), jl_inv, atol=tol)
    np.testing.assert_allclose(right_jacobian_inv(vt).numpy(), jr_inv, atol=tol)


def mp_jacobian_coefficients(t: float) -> tuple[float, float, float, float]:
    """A, B, C, D at angle t in 50-digit arithmetic (series at exactly 0)."""
    mpmath.mp.dps = 50
    t = mpmath.mpf(t)
    if t == 0:
        return 1.0, 0.5, 1 / 6, 1 / 12
    a = mpmath.sin(t) / t
    b = (1 - mpmath.cos(t)) / t**2
    c = (t - mpmath.sin(t)) / t**3
    d = (1 - t / 2 * mpmath.cot(t / 2)) / t**2
    return float(a), float(b), float(c), float(d)


@pytest.mark.parametrize(
    "angle",
    [0.0, 1e-10, 1e-5, 0.01, 0.0499999, 0.0500001, 0.2, 0.4999, 0.5001, 1.5, 3.0, PI - 1e-9, PI],
)
def test_jacobians_against_50_digit_coefficients(device, angle):
    axis = torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64)
    v = (axis * angle).to(device)
    a, b, c, d = mp_jacobian_coefficients(angle)
    K = hat(v)
    eye = torch.eye(3, dtype=torch.float64, device=device)
    cot_term = 1 - d * angle**2
    expected = {
        right_jacobian: eye - b * K + c * K @ K,
        left_jacobian: eye + b * K + c * K @ K,
        left_jacobian_inv: cot_term * eye - 0.5 * K + d * (v[:, None] * v[None, :]),
        right_jacobian_inv: cot_term * eye + 0.5 * K + d * (v[:, None] * v[None, :]),
    }
    for fn, ref in expected.items():
        torch.testing.assert_close(fn(v), ref, rtol=0, atol=4e-15, msg=fn.__name__)
    torch.testing.assert_close(exp_map(v), eye + a * K + b * K @ K, rtol=0, atol=4e-15)


@pytest.mark.parametrize("angle", [0.0, 1e-8, 0.3, 2.0, PI])
def test_jacobian_identities(device, dtype, angle):
    v = (torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64) * angle).to(device, dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    eye = torch.eye(3, device=device, dtype=dtype)
    jr, jl = right_jacobian(v), left_jacobian(v)
    torch.testing.assert_close(jl, jr.mT, rtol=0, atol=tol)
    torch.testing.assert_close(jl, right_jacobian(-v), rtol=0, atol=tol)
    torch.testing.assert_close(jl, exp_map(v) @ jr, rtol=0, atol=tol)
    torch.testing.assert_close(jl @ left_jacobian_inv(v), eye, rtol=0, atol=tol)
    torch.testing.assert_close(jr @ right_jacobian_inv(v), eye, rtol=0, atol=tol)


@pytest.mark.parametrize("v", JAC_POINTS, ids=lambda v: f"t={np.linalg.norm(v):.3g}")
def test_exp_derivative_formula_against_autograd(v):
    """dR/dv_i = R [J_r e_i]x, against torch's autograd of exp_map."""
    vt = torch.from_numpy(v)
    J = torch.autograd.functional.jacobian(exp_map, vt).permute(2, 0, 1)
    torch.testing.assert_close(exp_map_derivative(vt), J, rtol=0, atol=1e-14)


@pytest.mark.parametrize("v", JAC_POINTS, ids=lambda v: f"t={np.linalg.norm(v):.3g}")
def test_exp_derivative_formula_against_scipy_differences(v):
    """dR/dv_i by central differences of scipy's Rotation.from_rotvec: no torch involved."""
    h = 1e-6

    def rotvec_matrix(w):
        return Rotation.from_rotvec(w).as_matrix()

    expected = np.stack(
        [
            (
                Rotation.from_rotvec(v + h * e).as_matrix()
                - Rotation.from_rotvec(v - h * e).as_matrix()
            )
            / (2 * h)
            for e in np.eye(3)
        ]
    )
    got = exp_map_derivative(torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8)


def test_jacobians_gradcheck(generator):
    for v in (
        torch.zeros(3, dtype=torch.float64),
        torch.randn(2, 3, generator=generator, dtype=torch.float64),
    ):
        v = v.requires_grad_(True)
        for fn in (right_jacobian, left_jacobian, left_jacobian_inv, right_jacobian_inv):
            assert torch.autograd.gradcheck(fn, (v,), eps=1e-6, atol=1e-8), fn.__name__


# ---------------------------------------------------------------------------
# geodesic distance


@pytest.mark.parametrize("regime", REGIMES)
def test_geodesic_distance_is_the_angle(device, regime):
    v = regime_vectors(regime, n=100)
    R1 = Rotation.random(100, rng=3)
    R2 = R1 * Rotation.from_rotvec(v)
    got = geodesic_distance(to(R1.as_matrix(), device), to(R2.as_matrix(), device)).cpu().numpy()
    np.testing.assert_allclose(got, np.linalg.norm(v, axis=1), rtol=0, atol=2e-15)
    np.testing.assert_allclose(got, (R1.inv() * R2).magnitude(), rtol=0, atol=2e-15)


def test_geodesic_distance_broadcasts_and_has_finite_gradients(device, dtype, generator):
    R1 = exp_map(torch.randn(4, 1, 3, generator=generator, dtype=torch.float64)).to(device, dtype)
    R2 = exp_map(torch.randn(5, 3, generator=generator, dtype=torch.float64)).to(device, dtype)
    assert geodesic_distance(R1, R2).shape == (4, 5)
    with pytest.raises(ValueError, match="R2: shape"):
        geodesic_distance(R1, torch.eye(3, dtype=dtype, device=device).repeat(3, 2, 1, 1))
    for angle in (0.0, PI):
        v = (torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64) * angle).to(device, dtype)
        R = exp_map(v).requires_grad_(True)
        (grad,) = torch.autograd.grad(
            geodesic_distance(torch.eye(3, device=device, dtype=dtype), R), R
        )
        assert torch.isfinite(grad).all()


def test_geodesic_distance_gradcheck():
    for angle in (1e-3, 1.0, 3.0):
        v = torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64) * angle
        R1 = torch.eye(3, dtype=torch.float64).requires_grad_(True)
        R2 = exp_map(v).requires_grad_(True)
        assert torch.autograd.gradcheck(geodesic_distance, (R1, R2), eps=1e-7, atol=1e-7)


# ---------------------------------------------------------------------------
# Kabsch


def test_kabsch_matches_scipy_align_vectors(device, generator):
    p = torch.randn(30, 3, generator=generator, dtype=torch.float64)
    R = exp_map(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    q = p @ R.mT + 0.1 * torch.randn(30, 3, generator=generator, dtype=torch.float64)
    w = torch.rand(30, generator=generator, dtype=torch.float64)
    for weights in (None, w):
        got = kabsch(p.to(device), q.to(device), None if weights is None else weights.to(device))
        expected, _ = Rotation.align_vectors(
            q.numpy(), p.numpy(), weights=None if weights is None else weights.numpy()
        )
        np.testing.assert_allclose(got.cpu().numpy(), expected.as_matrix(), rtol=0, atol=1e-13)


def test_kabsch_never_returns_a_reflection(device):
    """Mirror images: the plain SVD answer U V^T has det = -1; kabsch must not return it."""
    p = torch.tensor(
        [[1.0, 0.1, 0.2], [0.0, 1.0, 0.3], [0.2, 0.1, 1.5], [1.0, 1.0, -0.4]], dtype=torch.float64
    )
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    q = p @ (exp_map(torch.tensor([0.2, 0.3, -0.1], dtype=torch.float64)) @ mirror).mT
    U, _, Vh = torch.linalg.svd(q.mT @ p)
    assert torch.linalg.det(U @ Vh).item() == pytest.approx(-1.0)  # the naive answer reflects
    R = kabsch(p.to(device), q.to(device)).cpu()
    assert torch.linalg.det(R).item() == pytest.approx(1.0, abs=1e-14)
    expected, _ = Rotation.align_vectors(q.numpy(), p.numpy())
    np.testing.assert_allclose(R.numpy(), expected.as_matrix(), rtol=0, atol=1e-13)

    def cost(M):
        return ((p @ M.mT - q) ** 2).sum().item()

    gen = torch.Generator().manual_seed(3)
    for _ in range(50):  # no nearby rotation does better
        assert cost(R) <= cost(
            R @ exp_map(0.05 * torch.randn(3, generator=gen, dtype=torch.float64))
        )


def test_kabsch_batched_equals_one_by_one_and_weights_select_points(generator):
    p = torch.randn(4, 10, 3, generator=generator, dtype=torch.float64)
    q = torch.randn(4, 10, 3, generator=generator, dtype=torch.float64)
    R = kabsch(p, q)
    assert R.shape == (4, 3, 3)
    for b in range(4):
        torch.testing.assert_close(R[b], kabsch(p[b], q[b]), rtol=0, atol=1e-14)
    w = torch.zeros(10, dtype=torch.float64)
    w[:5] = 1.0
    torch.testing.assert_close(kabsch(p, q, w), kabsch(p[:, :5], q[:, :5]), rtol=0, atol=1e-14)


def test_kabsch_recovers_an_exact_rotation_of_planar_points(device, dtype):
    """Planar points (rank M = 2): the determinant fixes the otherwise free sign."""
    g = torch.Generator().manual_seed(1)
    p = torch.randn(8, 3, generator=g, dtype=torch.float64)
    p[:, 2] = 0
    R = exp_map(torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64))
    got = kabsch(p.to(device, dtype), (p @ R.mT).to(device, dtype))
    torch.testing.assert_close(
        got.cpu().double(), R, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-13
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            (torch.zeros(5, 2), torch.zeros(5, 2)),
            r"p: expected points of shape \(\.\.\., N, 3\), got \(5, 2\)",
        ),
        (
            (torch.zeros(5, 3), torch.zeros(4, 3)),
            r"q: expected the shape of p, \(5, 3\), got \(4, 3\)",
        ),
        ((torch.zeros(0, 3), torch.zeros(0, 3)), "p: expected at least one point"),
        (
            (torch.zeros(5, 3), torch.zeros(5, 3), torch.ones(4)),
            r"weights: expected a shape that broadcasts to \(5,\)",
        ),
        (
            (torch.zeros(5, 3), torch.zeros(5, 3), -torch.ones(5)),
            "weights: expected finite, non-negative",
        ),
        ((torch.zeros(5, 3), torch.zeros(5, 3, dtype=torch.float64)), "q: expected p's dtype"),
    ],
)
def test_kabsch_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        kabsch(*args)


# ---------------------------------------------------------------------------
# fit_rotation


def scipy_fit(p: np.ndarray, q: np.ndarray):
    """scipy.optimize.least_squares on the 3n-vector residual with its analytic Jacobian,
    written here with scipy and numpy only: d(R p_i)/dv = -R [p_i]x J_r(v)."""

    def skew(a):
        return np.cross(a[..., None, :], -np.eye(3))  # [a]x, row-wise

    def jr(v):
        t = np.linalg.norm(v)
        if t < 1e-6:
            return np.eye(3) - 0.5 * skew(v)
        K = skew(v)
        return np.eye(3) - (1 - np.cos(t)) / t**2 * K + (t - np.sin(t)) / t**3 * K @ K

    def residual(v):
        return (p @ scipy_exp(v).T - q).ravel()

    def jacobian(v):
        return (-scipy_exp(v) @ skew(p) @ jr(v)).reshape(-1, 3)

    return least_squares(residual, np.zeros(3), jacobian)


def test_skew_helper_of_the_reference_is_hat():
    a = np.array([[0.3, -1.2, 2.0]])
    np.testing.assert_allclose(
        np.cross(a[..., None, :], -np.eye(3))[0], hat(torch.from_numpy(a[0])).numpy()
    )


@pytest.mark.parametrize("noise", [True, False], ids=["seed-data", "noise-free"])
@pytest.mark.parametrize("method", ["lm", "gn"])
def test_fit_reaches_kabsch_in_no_more_evaluations_than_scipy(noise, method):
    p, q = forum_points(noise)
    R, info = fit_rotation(torch.from_numpy(p), torch.from_numpy(q), method=method)
    R_kabsch = kabsch(torch.from_numpy(p), torch.from_numpy(q))
    assert geodesic_distance(R, R_kabsch).item() <= 1e-9
    assert (R - R_kabsch).abs().max().item() <= 1e-9
    reference = scipy_fit(p, q)
    assert info.evaluations <= reference.nfev
    assert bool(info.converged) and info.message == "converged"
    assert float(info.cost) == pytest.approx(reference.cost, rel=1e-9, abs=1e-20)
    assert info["iterations"] == info.iterations and set(info) >= {
        "iterations",
        "evaluations",
        "cost",
    }


def test_fit_handles_half_turns_batches_weights_and_starts(device, dtype):
    g = torch.Generator().manual_seed(7)
    p = torch.randn(3, 20, 3, generator=g, dtype=torch.float64)
    targets = torch.tensor(
        [[0.0, 0.0, PI - 1e-6], [2.0, -1.0, 1.5], [1e-9, 0.0, 0.0]], dtype=torch.float64
    )
    q = p @ exp_map(targets).mT + 1e-3 * torch.randn(3, 20, 3, generator=g, dtype=torch.float64)
    w = torch.rand(3, 20, generator=g, dtype=torch.float64) + 0.1
    p, q, w = p.to(device, dtype), q.to(device, dtype), w.to(device, dtype)
    R, info = fit_rotation(p, q, w)
    expected = kabsch(p, q, w)
    tol = 1e-5 if dtype == torch.float32 else 1e-9
    assert geodesic_distance(R, expected).max().item() <= tol
    assert info.cost.shape == (3,) and bool(info.converged.all())
    R2, _ = fit_rotation(p, q, w, R0=expected)  # starting at the answer
    assert geodesic_distance(R2, expected).max().item() <= tol


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"method": "bfgs"}, ValueError, "method: expected 'lm' or 'gn', got 'bfgs'"),
        ({"max_iterations": -1}, ValueError, "max_iterations: expected an int >= 0, got -1"),
        ({"max_iterations": True}, TypeError, "max_iterations: expected an int >= 0, got bool"),
        (
            {"R0": torch.eye(3, dtype=torch.float64) * 2},
            ValueError,
            r"R0: expected rotation matrices .*Project it with gradbook\.so3\.project_to_so3\.$",
        ),
        (
            {"R0": torch.eye(3, dtype=torch.float64).repeat(2, 1, 1)},
            ValueError,
            r"R0: expected shape \(3, 3\)",
        ),
    ],
)
def test_fit_bad_options(kwargs, error, message):
    p, q = (torch.from_numpy(a) for a in forum_points())
    with pytest.raises(error, match=message):
        fit_rotation(p, q, **kwargs)


def test_fit_from_a_float32_start_for_float64_points():
    """A float32 R0 is a rotation to 1e-4 only; the fit must still return a float64 rotation."""
    p, q = (torch.from_numpy(a) for a in forum_points())
    R0 = exp_map(torch.tensor([0.31, -0.19, 0.1], dtype=torch.float64)).float()
    R, _ = fit_rotation(p, q, R0=R0)
    assert R.dtype == torch.float64 and bool(is_rotation(R))
    expected = Rotation.align_vectors(q.numpy(), p.numpy())[0].as_matrix()
    torch.testing.assert_close(R, torch.from_numpy(expected), rtol=0, atol=1e-9)
    log_map(R)  # a float64 rotation: no error


def test_fit_callback_sees_every_evaluated_rotation():
    p, q = (torch.from_numpy(a) for a in forum_points())
    seen = []
    R, info = fit_rotation(p, q, callback=seen.append)
    assert len(seen) == info.evaluations
    torch.testing.assert_close(seen[0], torch.eye(3, dtype=torch.float64), rtol=0, atol=0)
    assert any(torch.equal(R, rotation) for rotation in seen)
    # with every step accepted, the k-th evaluated rotation is the fit stopped after k - 1 steps
    assert all(b < a for a, b in zip(info.history, info.history[1:], strict=False))
    for k in range(1, 4):
        R_k, _ = fit_rotation(p, q, max_iterations=k)
        torch.testing.assert_close(seen[k], R_k, rtol=0, atol=0)


def test_fit_callback_must_be_callable():
    p, q = (torch.from_numpy(a) for a in forum_points())
    with pytest.raises(TypeError, match="callback: expected a callable or None, got list"):
        fit_rotation(p, q, callback=[])


def test_fit_rejects_collinear_points():
    p = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [-1.0, -2.0, -3.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="lie on one line"):
        fit_rotation(p, p)


def test_fit_info_fields():
    p, q = (torch.from_numpy(a) for a in forum_points())
    _, info = fit_rotation(p, q, max_iterations=1)
    assert isinstance(info, FitInfo)
    assert info.iterations == 1 and info.evaluations == 2 and not bool(info.converged)
    assert "max_iterations" in info.message
    assert len(info.history) == 2 and info.history[1] < info.history[0]
    with pytest.raises(KeyError):
        info["nope"]


def test_forum_points_are_the_questions_data():
    rng = np.random.RandomState(1001)  # the question's own steps, written out again
    p1 = rng.randn(100, 3, 1)
    R = Rotation.from_rotvec([0.3, -0.2, 0.1]).as_matrix()
    clean = (R @ p1)[..., 0]
    noisy = clean + rng.randn(100, 3, 1)[..., 0] * 1e-2
    got_p1, got_clean = forum_points(noise=False)
    np.testing.assert_array_equal(got_p1, p1[..., 0])
    np.testing.assert_array_equal(got_clean, clean)
    np.testing.assert_array_equal(forum_points()[1], noisy)
    with pytest.raises(TypeError, match="noise: expected True or False, got int"):
        forum_points(1)


# ---------------------------------------------------------------------------
# docstring promises on their hardest inputs

HARD_ANGLES = [0.0, 1e-8, 0.05, 0.4999, 0.5001, 1.0, PI - 1e-7, PI]


def test_exp_second_derivatives_at_zero_are_exact(device, dtype):
    """ "All derivatives are exact at 0": the series I + K + K^2/2 + ... gives
    d^2 Exp / dv_i dv_j = ([e_i]x [e_j]x + [e_j]x [e_i]x) / 2 at v = 0, to the last bit."""
    v = torch.zeros(3, device=device, dtype=dtype)
    second = torch.func.jacfwd(torch.func.jacrev(exp_map))(v)  # (3, 3, i, j)
    E = hat(torch.eye(3, device=device, dtype=dtype))  # E[i] = [e_i]x
    expected = 0.5 * (E[:, None] @ E[None, :] + E[None, :] @ E[:, None])  # (i, j, 3, 3)
    assert torch.equal(second.permute(2, 3, 0, 1), expected)


@pytest.mark.parametrize("angle", HARD_ANGLES)
def test_jacobians_in_float32_against_50_digit_coefficients(device, angle):
    """ "Every function works in float32": at the series/closed-form switch (0.5 rad in
    float32), next to 0 and up to pi, within a few float32 roundings of the exact value."""
    axis = torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64)
    v64 = axis * angle
    v = v64.to(device, torch.float32)
    t = float(torch.linalg.vector_norm(v.double()))  # the angle float32 actually holds
    _, b, c, d = mp_jacobian_coefficients(t)
    K = hat(v.double().cpu())
    vv = v.double().cpu()[:, None] * v.double().cpu()[None, :]
    eye = torch.eye(3, dtype=torch.float64)
    expected = {
        right_jacobian: eye - b * K + c * K @ K,
        left_jacobian: eye + b * K + c * K @ K,
        left_jacobian_inv: (1 - d * t**2) * eye - 0.5 * K + d * vv,
        right_jacobian_inv: (1 - d * t**2) * eye + 0.5 * K + d * vv,
    }
    for fn, ref in expected.items():
        got = fn(v)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.cpu().double(), ref, rtol=0, atol=1e-6, msg=fn.__name__)


@pytest.mark.parametrize("angle", [0.0, PI - 1e-7, PI])
def test_jacobian_gradients_are_finite_at_zero_and_pi(device, dtype, angle):
    """ "Values *and* gradients are finite at angle 0 and at angle pi", for the Jacobians and
    exp_map_derivative too (first and second derivatives)."""
    v = (torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64) * angle).to(device, dtype)
    for fn in (right_jacobian, left_jacobian, left_jacobian_inv, right_jacobian_inv):
        x = v.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(x).square().sum() + fn(x)[0, 1], x, create_graph=True)
        (second,) = torch.autograd.grad(grad.sum(), x)
        assert torch.isfinite(grad).all() and torch.isfinite(second).all(), fn.__name__
    x = v.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(exp_map_derivative(x).sum(), x)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("angle", [PI - 1e-7, PI])
def test_jacobians_gradcheck_at_pi(angle):
    v = (torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64) * angle).requires_grad_(True)
    for fn in (right_jacobian, left_jacobian, left_jacobian_inv, right_jacobian_inv):
        assert torch.autograd.gradcheck(fn, (v,), eps=1e-6, atol=1e-8), fn.__name__


@pytest.mark.parametrize("angle", [0.0, 1e-8, 0.3, 2.0, PI - 1e-7, PI])
def test_geodesic_distance_gradient_norm_at_every_angle(dtype, angle):
    """The gradient in R2 has Frobenius norm sqrt(cos^2 t / 2 + 3 sin^2 t / 4) (d = atan2(|s|, c)
    with s = vee(M), c = (tr M - 1)/2, and |s|^2 + c^2 = 1); at the kinks 0 and pi, with
    R1 and R2 the same rotation computed two ways, rounding picks a one-sided gradient."""
    v = torch.tensor([0.3, -1.1, 0.7], dtype=torch.float64)
    axis = torch.tensor([0.36, -0.48, 0.8], dtype=torch.float64)
    R1 = exp_map(v.to(dtype))
    half = exp_map((v / 2).to(dtype))  # R1 again, up to rounding: M is not exactly symmetric
    R2 = (half @ half @ exp_map((axis * angle).to(dtype))).requires_grad_(True)
    (grad,) = torch.autograd.grad(geodesic_distance(R1, R2), R2)
    expected = math.sqrt(math.cos(angle) ** 2 / 2 + 3 * math.sin(angle) ** 2 / 4)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.isfinite(grad).all()
    assert abs(torch.linalg.matrix_norm(grad).item() - expected) < tol
    assert torch.linalg.matrix_norm(grad).item() <= math.sqrt(3) / 2 + tol


def test_geodesic_distance_gradient_is_zero_where_m_is_exactly_symmetric(dtype):
    R = exp_map(torch.tensor([0.3, -1.1, 0.7], dtype=dtype))
    half_turn = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=dtype))
    for R1, R2, angle in ((R, R, 0.0), (torch.eye(3, dtype=dtype), half_turn, PI)):
        R2 = R2.clone().requires_grad_(True)
        d = geodesic_distance(R1, R2)
        (grad,) = torch.autograd.grad(d, R2)
        assert abs(d.item() - angle) < 1e-6
        assert grad.abs().max().item() < 1e-18


def test_kabsch_and_fit_rotation_accept_empty_batches(dtype):
    """ "Every leading dimension is a batch dimension (an empty batch is fine)"."""
    p = torch.zeros(0, 5, 3, dtype=dtype)
    assert kabsch(p, p).shape == (0, 3, 3)
    R, info = fit_rotation(p, p)
    assert R.shape == (0, 3, 3) and info.cost.shape == (0,) and info.converged.shape == (0,)
    assert info.iterations == 0
