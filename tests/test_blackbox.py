"""gradbook.blackbox against independent references.

References used: the closed-form Jacobian of the test function and autograd on a
torch twin of it; exact difference quotients of polynomials; scipy's
minimum-norm least squares (``scipy.linalg.lstsq``, gelsd); dense Kronecker
formulations of Broyden's minimal change; closed-form (weighted) ridge
regression; the variance formula of random-direction estimators; SciPy's
``solve_ivp`` (a different integrator) for the pendulum; ``gradcheck``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from gradbook.blackbox import (
    SPSA,
    DrivenPendulum,
    EvaluationCounter,
    FiniteDifferences,
    JacobianTracker,
    RecursiveLeastSquares,
    broyden_update,
    default_step,
    finite_difference_jacobian,
    fit_through_blackbox,
    gradiator,
    rank_one_jacobian,
    secant_jacobian,
    smooth_test_function,
    spsa_vjp,
    vjp_relative_error,
    wrap_blackbox,
)

F = smooth_test_function(m=6, n=4, seed=3)  # small: fast tests


def torch_twin(x: torch.Tensor) -> torch.Tensor:
    """The test function written again in torch, for autograd's Jacobian."""
    A, B, b = (torch.as_tensor(a, dtype=x.dtype, device=x.device) for a in (F.A, F.B, F.b))
    return torch.tanh(A @ x + b) + 0.1 * (B @ x) ** 2


def autograd_jacobian(x: np.ndarray) -> np.ndarray:
    return torch.autograd.functional.jacobian(torch_twin, torch.as_tensor(x)).numpy()


def rand(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------------
# The test function itself


def test_test_function_jacobian_matches_autograd():
    for seed in range(3):
        x = rand(seed, 6)
        np.testing.assert_allclose(F.jacobian(x), autograd_jacobian(x), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(F(x), torch_twin(torch.as_tensor(x)).numpy(), rtol=1e-14)


def test_chapter_function_has_the_announced_shape():
    f = smooth_test_function()
    assert f.shape == (10, 20) and f(f.x0).shape == (10,) and f.jacobian(f.x0).shape == (10, 20)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"m": 0}, ValueError, "m: expected an int >= 1, got 0"),
        ({"n": 2.5}, TypeError, "n: expected an int >= 1, got float"),
        ({"seed": -1}, ValueError, "seed: expected an int >= 0, got -1"),
        ({"seed": "zero"}, TypeError, "seed: expected an int >= 0, got str"),
    ],
)
def test_smooth_test_function_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        smooth_test_function(**kwargs)


# ---------------------------------------------------------------------------
# Finite differences


@pytest.mark.parametrize(
    ("method", "tol"), [("forward", 1e-6), ("backward", 1e-6), ("central", 1e-9)]
)
def test_fd_jacobian_numpy_matches_autograd(method, tol):
    x = rand(0, 6)
    J = finite_difference_jacobian(F, x, method=method)
    assert isinstance(J, np.ndarray) and J.shape == (4, 6)
    np.testing.assert_allclose(J, autograd_jacobian(x), atol=tol)


def test_fd_errors_have_the_predicted_size():
    """Default steps: forward ~ sqrt(u), central ~ u^(2/3) (to a factor of 100)."""
    x = rand(1, 6)
    J = autograd_jacobian(x)
    err_fwd = np.abs(finite_difference_jacobian(F, x, method="forward") - J).max()
    err_cen = np.abs(finite_difference_jacobian(F, x, method="central") - J).max()
    assert 1e-11 < err_fwd < 1.5e-6
    assert err_cen < 5e-9 and err_cen < err_fwd / 100


def test_fd_tensor_input_keeps_dtype_and_device(device, dtype):
    x = torch.as_tensor(rand(2, 6)).to(device, dtype)
    J = finite_difference_jacobian(torch_twin, x)
    assert isinstance(J, torch.Tensor) and J.dtype == dtype and J.device.type == device.type
    reference = autograd_jacobian(rand(2, 6))
    tol = 1e-9 if dtype == torch.float64 else 2e-3
    np.testing.assert_allclose(J.cpu().double().numpy(), reference, atol=tol)


def test_fd_exact_difference_quotients_of_a_cubic():
    """f(x) = x^3 per entry: forward = 3x^2 + 3xh + h^2, central = 3x^2 + h^2 exactly."""
    x = np.array([0.5, -0.25, 2.0])
    h = 2.0**-10  # exactly representable; steps h * max(1, |x|)
    hs = h * np.maximum(1, np.abs(x))
    central = finite_difference_jacobian(lambda v: v**3, x, eps=h, method="central")
    forward = finite_difference_jacobian(lambda v: v**3, x, eps=h, method="forward")
    np.testing.assert_allclose(np.diag(central), 3 * x**2 + hs**2, rtol=1e-12)
    np.testing.assert_allclose(np.diag(forward), 3 * x**2 + 3 * x * hs + hs**2, rtol=1e-12)
    assert np.count_nonzero(central - np.diag(np.diag(central))) == 0


def test_fd_scalar_output_and_fx_reuse():
    counted = EvaluationCounter(lambda v: float(np.sum(v**2)))
    x = np.array([1.0, 2.0, 3.0])
    J = finite_difference_jacobian(counted, x, method="forward", fx=14.0)
    assert J.shape == (1, 3) and counted.calls == 3
    np.testing.assert_allclose(J[0], 2 * x, atol=1e-6)
    counted.reset()
    finite_difference_jacobian(counted, x, method="central")
    assert counted.calls == 6


def test_default_step_values():
    assert default_step("forward") == pytest.approx(np.finfo(np.float64).eps ** 0.5)
    assert default_step("central", np.float32) == pytest.approx(np.finfo(np.float32).eps ** (1 / 3))
    with pytest.raises(ValueError, match="method: expected one of"):
        default_step("sideways")


@pytest.mark.parametrize("dtype", [torch.int64, np.int32, "int64", torch.bool])
def test_default_step_integer_dtype_names_the_argument(dtype):
    with pytest.raises(TypeError, match="dtype: expected a floating-point dtype, got"):
        default_step("central", dtype)


def test_fd_bad_input():
    x = rand(0, 6)
    with pytest.raises(
        ValueError, match=r"x: expected a 1-D point of shape \(m,\) with m >= 1, got shape \(2, 3\)"
    ):
        finite_difference_jacobian(F, x.reshape(2, 3))
    with pytest.raises(ValueError, match="method: expected one of"):
        finite_difference_jacobian(F, x, method="centered")
    with pytest.raises(ValueError, match=r"eps: expected a number > 0, got -0.1"):
        finite_difference_jacobian(F, x, eps=-0.1)
    with pytest.raises(ValueError, match="eps: a step of 1e-20 vanishes"):
        finite_difference_jacobian(F, x, eps=1e-20)
    with pytest.raises(ValueError, match="x: expected finite values"):
        finite_difference_jacobian(F, np.array([1.0, np.nan]))
    with pytest.raises(TypeError, match=r"x: expected a NumPy array or a torch.Tensor, got str"):
        finite_difference_jacobian(F, "x")


def test_fd_fx_must_match_the_output():
    x = rand(0, 6)
    # a scalar fx for a 4-output f would broadcast into a wrong Jacobian
    with pytest.raises(
        ValueError, match=r"fx: expected f\(x\), with as many entries as fun's output \(4\), got 1"
    ):
        finite_difference_jacobian(F, x, method="forward", fx=1.0)
    with pytest.raises(ValueError, match=r"fx: expected f\(x\), .*fun's output \(4\), got 3"):
        finite_difference_jacobian(F, x, method="backward", fx=F(x)[:3])
    with pytest.raises(ValueError, match=r"fx: expected f\(x\) of shape \(n,\) or a scalar"):
        finite_difference_jacobian(F, x, method="forward", fx=F(x)[:, None])
    with pytest.raises(ValueError, match="fx: expected finite values"):
        finite_difference_jacobian(F, x, method="forward", fx=np.full(4, np.nan))
    with pytest.raises(TypeError, match=r"fx: expected a NumPy array or a torch\.Tensor, got str"):
        finite_difference_jacobian(F, x, method="forward", fx="f(x)")
    # the right fx, as an array or a tensor, gives the same Jacobian as evaluating f(x)
    J = finite_difference_jacobian(F, x, method="forward")
    np.testing.assert_array_equal(finite_difference_jacobian(F, x, method="forward", fx=F(x)), J)
    xt = torch.as_tensor(x)
    J_t = finite_difference_jacobian(torch_twin, xt, method="forward", fx=torch_twin(xt))
    torch.testing.assert_close(
        J_t, finite_difference_jacobian(torch_twin, xt, method="forward"), rtol=0, atol=0
    )


def test_fd_non_finite_black_box_names_the_probe():
    def fragile(v):
        return np.log(v)  # nan left of zero

    with pytest.raises(
        ValueError, match=r"fun: returned non-finite values \(nan/inf\) at x - h e_0"
    ):
        with np.errstate(invalid="ignore", divide="ignore"):
            finite_difference_jacobian(fragile, np.array([0.0, 1.0]), eps=1e-3)


# ---------------------------------------------------------------------------
# Secants


def lstsq_reference(dX: np.ndarray, dF: np.ndarray) -> np.ndarray:
    """Minimum-norm least squares of J dX = dF with LAPACK gelsd (rows of J independently)."""
    solution, *_ = scipy.linalg.lstsq(dX.T, dF.T, lapack_driver="gelsd")
    return solution.T


@pytest.mark.parametrize("k", [1, 3, 6, 9])
def test_secant_matches_minimum_norm_lstsq(k):
    dX, dF = rand(k, 6, k), rand(k + 100, 4, k)
    J = secant_jacobian(dX, dF)
    assert J.shape == (4, 6)
    np.testing.assert_allclose(J, lstsq_reference(dX, dF), rtol=1e-10, atol=1e-12)


def test_secant_one_probe_is_the_forums_formula():
    dx, df = rand(0, 6), rand(1, 4)
    expected = np.outer(df, dx) / (dx @ dx)
    np.testing.assert_allclose(secant_jacobian(dx[:, None], df[:, None]), expected, rtol=1e-13)
    np.testing.assert_allclose(rank_one_jacobian(dx, df), expected, rtol=1e-13)
    # the forum's VJP heuristic dx/|dx| * (g^T df)/|dx|
    g = rand(2, 4)
    seed_vjp = dx / np.linalg.norm(dx) * (g @ df) / np.linalg.norm(dx)
    np.testing.assert_allclose(g @ rank_one_jacobian(dx, df), seed_vjp, rtol=1e-13)


def test_secant_square_probes_equal_inverse():
    dX, dF = rand(3, 6, 6), rand(4, 4, 6)
    np.testing.assert_allclose(secant_jacobian(dX, dF), dF @ np.linalg.inv(dX), rtol=1e-9)


def test_secant_recovers_a_linear_map_from_m_probes(device):
    A = rand(5, 4, 6)
    dX = rand(6, 6, 6)
    J = secant_jacobian(torch.as_tensor(dX).to(device), torch.as_tensor(A @ dX).to(device))
    assert isinstance(J, torch.Tensor) and J.device.type == device.type
    np.testing.assert_allclose(J.cpu().numpy(), A, rtol=1e-10, atol=1e-12)


def test_secant_with_too_few_probes_is_zero_off_their_span():
    A = rand(7, 4, 6)
    dX = rand(8, 6, 2)
    J = secant_jacobian(dX, A @ dX)
    np.testing.assert_allclose(J @ dX, A @ dX, atol=1e-12)  # exact on the span
    q, _ = np.linalg.qr(dX, mode="complete")
    np.testing.assert_allclose(J @ q[:, 2:], 0, atol=1e-12)  # zero off it


def test_secant_rank_deficient_probes():
    dx = rand(9, 6)
    dX = np.stack([dx, 2 * dx, -dx], axis=1)  # one direction, three times
    dF = rand(10, 4)[:, None] * np.array([1.0, 2.0, -1.0])
    np.testing.assert_allclose(secant_jacobian(dX, dF), lstsq_reference(dX, dF), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_secant_satisfies_every_independent_secant(k, seed):
    dX, dF = rand(seed, 6, k), rand(seed + 1, 4, k)
    J = secant_jacobian(dX, dF)
    np.testing.assert_allclose(J @ dX, dF, atol=1e-7 * np.linalg.cond(dX))


def test_secant_bad_input():
    with pytest.raises(ValueError, match=r"dF: expected one column per probe in dX \(3 probes"):
        secant_jacobian(rand(0, 6, 3), rand(1, 3, 4))
    with pytest.raises(ValueError, match=r"dX: expected probes as columns, shape \(m, k\)"):
        secant_jacobian(rand(0, 6), rand(1, 4, 1))
    with pytest.raises(ValueError, match="dX: expected at least one probe"):
        secant_jacobian(np.zeros((6, 0)), np.zeros((4, 0)))
    dX = rand(2, 6, 3)
    dX[:, 1] = 0
    with pytest.raises(ValueError, match=r"dX: probe\(s\) \[1\] have zero length"):
        secant_jacobian(dX, rand(3, 4, 3))
    dF = rand(3, 4, 3)
    dF[0, 2] = np.inf
    with pytest.raises(ValueError, match="dF: expected finite values"):
        secant_jacobian(rand(2, 6, 3), dF)
    with pytest.raises(ValueError, match=r"dx: probe\(s\) \[0\] have zero length"):
        rank_one_jacobian(np.zeros(3), np.ones(2))
    with pytest.raises(
        ValueError, match=r"dx: expected one probe of shape \(m,\), got shape \(3, 1\)"
    ):
        rank_one_jacobian(np.ones((3, 1)), np.ones(2))


@pytest.mark.parametrize(
    ("rcond", "error", "message"),
    [
        (-1e-3, ValueError, "rcond: expected a finite number >= 0, got -0.001"),
        (np.nan, ValueError, "rcond: expected a finite number >= 0, got nan"),
        ("small", TypeError, "rcond: expected a number >= 0, got str"),
    ],
)
def test_secant_rcond_bad_input(rcond, error, message):
    with pytest.raises(error, match=message):
        secant_jacobian(rand(0, 6, 3), rand(1, 4, 3), rcond=rcond)


def test_secant_rcond_cuts_small_singular_values():
    dX = np.stack([rand(2, 6), rand(2, 6) + 1e-9 * rand(3, 6)], axis=1)  # nearly parallel
    dF = rand(4, 4, 2)
    J = secant_jacobian(dX, dF, rcond=1e-6)
    np.testing.assert_allclose(J, dF @ np.linalg.pinv(dX, rcond=1e-6), rtol=1e-10, atol=1e-12)
    assert np.linalg.matrix_rank(J) == 1


# ---------------------------------------------------------------------------
# Broyden


def broyden_kronecker(J, dx, df):
    """The minimal Frobenius change as a dense minimum-norm problem on vec(dJ)."""
    n, m = J.shape
    M = np.kron(dx[None, :], np.eye(n))  # (dx^T kron I) vec(dJ) = dJ dx (column-major vec)
    vec, *_ = scipy.linalg.lstsq(M, df - J @ dx, lapack_driver="gelsd")
    return J + vec.reshape(m, n).T


def test_broyden_is_the_minimal_change():
    J, dx, df = rand(0, 4, 6), rand(1, 6), rand(2, 4)
    new = broyden_update(J, dx, df)
    np.testing.assert_allclose(new, broyden_kronecker(J, dx, df), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(new @ dx, df, rtol=1e-12, atol=1e-12)  # the newest secant


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_broyden_beats_any_other_secant_solution(seed):
    J, dx, df = rand(seed, 4, 6), rand(seed + 1, 6), rand(seed + 2, 4)
    new = broyden_update(J, dx, df)
    # any other solution adds a matrix that kills dx
    z = rand(seed + 3, 4, 6)
    other = new + z - np.outer(z @ dx, dx) / (dx @ dx)
    np.testing.assert_allclose(other @ dx, df, atol=1e-9)
    assert np.linalg.norm(other - J) >= np.linalg.norm(new - J) - 1e-12


def test_broyden_keeps_orthogonal_directions_and_input():
    J, dx, df = rand(3, 4, 6), rand(4, 6), rand(5, 4)
    before = J.copy()
    new = broyden_update(J, dx, df)
    np.testing.assert_array_equal(J, before)
    v = rand(6, 6)
    v -= (v @ dx) / (dx @ dx) * dx
    np.testing.assert_allclose(new @ v, J @ v, atol=1e-12)


def test_broyden_orthogonal_probes_recover_a_linear_map(device):
    A = torch.as_tensor(rand(7, 4, 6)).to(device)
    Q, _ = torch.linalg.qr(torch.as_tensor(rand(8, 6, 6)).to(device))
    J = torch.zeros(4, 6, dtype=torch.float64, device=device)
    for i in range(6):
        J = broyden_update(J, Q[:, i], A @ Q[:, i])
    assert J.device.type == device.type
    torch.testing.assert_close(J, A, rtol=1e-12, atol=1e-12)


def test_broyden_tiny_and_huge_probes_stay_finite():
    J, df = rand(9, 4, 6), rand(10, 4)
    for scale in (1e-200, 1e200):
        dx = scale * rand(11, 6)
        target = df * (scale if scale > 1 else 1)
        new = broyden_update(J, dx, target)
        assert np.all(np.isfinite(new))
        np.testing.assert_allclose(new @ dx, target, rtol=1e-12, atol=1e-12 * np.abs(target).max())


def test_broyden_bad_input():
    J = rand(0, 4, 6)
    with pytest.raises(
        ValueError, match=r"dx: expected shape \(6,\) \(J has 6 columns\), got \(4,\)"
    ):
        broyden_update(J, rand(1, 4), rand(2, 4))
    with pytest.raises(ValueError, match=r"df: expected shape \(4,\) \(J has 4 rows\)"):
        broyden_update(J, rand(1, 6), rand(2, 6))
    with pytest.raises(ValueError, match="dx: expected a nonzero probe"):
        broyden_update(J, np.zeros(6), rand(2, 4))
    with pytest.raises(ValueError, match="df: expected finite values"):
        broyden_update(J, rand(1, 6), np.full(4, np.nan))


# ---------------------------------------------------------------------------
# Recursive least squares


def ridge(dX, dF, delta, weights=None, J0=None, prior_weight=1.0):
    """Closed-form weighted ridge: (J0 d w0 + dF W dX^T)(d w0 I + dX W dX^T)^{-1}."""
    m = dX.shape[0]
    W = np.diag(np.ones(dX.shape[1]) if weights is None else weights)
    J0 = np.zeros((dF.shape[0], m)) if J0 is None else J0
    gram = delta * prior_weight * np.eye(m) + dX @ W @ dX.T
    rhs = delta * prior_weight * J0 + dF @ W @ dX.T
    return np.linalg.solve(gram.T, rhs.T).T


@pytest.mark.parametrize("k", [1, 4, 6, 15])
def test_rls_equals_ridge_regression(k):
    dX, dF = rand(k, 6, k), rand(k + 1, 4, k)
    rls = RecursiveLeastSquares(4, 6, delta=0.3)
    for i in range(k):
        rls.update(dX[:, i], dF[:, i])
    assert rls.num_updates == k
    np.testing.assert_allclose(rls.jacobian.numpy(), ridge(dX, dF, 0.3), rtol=1e-9, atol=1e-11)


def test_rls_with_forgetting_and_prior_equals_weighted_ridge():
    k, lam, delta = 12, 0.8, 2.0
    dX, dF, J0 = rand(20, 6, k), rand(21, 4, k), rand(22, 4, 6)
    rls = RecursiveLeastSquares(4, 6, delta=delta, forgetting=lam, initial=J0)
    rls.update(dX, dF)  # k columns at once = k single updates
    weights = lam ** np.arange(k - 1, -1, -1)
    expected = ridge(dX, dF, delta, weights, J0, prior_weight=lam**k)
    np.testing.assert_allclose(rls.jacobian.numpy(), expected, rtol=1e-9, atol=1e-11)


def test_rls_tends_to_least_squares_and_vjp(device):
    dX, A = rand(30, 6, 10), rand(31, 4, 6)
    rls = RecursiveLeastSquares(4, 6, delta=1e-10, device=device)
    rls.update(torch.as_tensor(dX).to(device), torch.as_tensor(A @ dX).to(device))
    assert rls.jacobian.device.type == device.type
    np.testing.assert_allclose(rls.jacobian.cpu().numpy(), A, atol=1e-8)
    g = rand(32, 4)
    np.testing.assert_allclose(rls.vjp(g), g @ A, atol=1e-8)


def test_rls_bad_input():
    with pytest.raises(ValueError, match=r"forgetting: expected a number in \(0, 1\], got 1.5"):
        RecursiveLeastSquares(4, 6, forgetting=1.5)
    with pytest.raises(ValueError, match=r"delta: expected a number > 0, got 0.0"):
        RecursiveLeastSquares(4, 6, delta=0.0)
    with pytest.raises(TypeError, match="n_out: expected an int >= 1, got float"):
        RecursiveLeastSquares(4.0, 6)
    with pytest.raises(
        ValueError, match=r"initial: expected shape \(4, 6\) \(n_out, n_in\), got \(6, 4\)"
    ):
        RecursiveLeastSquares(4, 6, initial=np.zeros((6, 4)))
    rls = RecursiveLeastSquares(4, 6)
    with pytest.raises(ValueError, match=r"dx: expected shape \(6,\) or \(6, k\), got \(4,\)"):
        rls.update(rand(0, 4), rand(1, 6))
    with pytest.raises(ValueError, match="have zero length"):
        rls.update(np.zeros(6), rand(1, 4))
    with pytest.raises(ValueError, match="df: expected finite values"):
        rls.update(rand(0, 6), np.full(4, np.nan))
    with pytest.raises(ValueError, match=r"g: expected shape \(4,\)"):
        rls.vjp(rand(0, 6))


# ---------------------------------------------------------------------------
# SPSA and forward gradients


def linear(A):
    return lambda v: A @ v


@pytest.mark.parametrize(("distribution", "factor"), [("rademacher", -1), ("gaussian", 1)])
def test_spsa_unbiased_with_the_predicted_variance(distribution, factor):
    """On a linear map E||est - J^T g||^2 = (m + factor) ||J^T g||^2 / k."""
    m, k, runs = 6, 50, 200
    A, g = rand(40, 4, m), rand(41, 4)
    exact = g @ A
    gen = torch.Generator().manual_seed(0)
    estimates = np.stack(
        [
            spsa_vjp(linear(A), np.zeros(m), g, k, 0.5, gen, distribution=distribution)
            for _ in range(runs)
        ]
    )
    mse = np.mean(np.sum((estimates - exact) ** 2, axis=1))
    predicted = (m + factor) * (exact @ exact) / k
    assert 0.75 * predicted < mse < 1.3 * predicted
    # unbiased: the mean of runs * k samples is within 4 standard errors
    standard_error = np.sqrt(predicted / runs)
    assert np.linalg.norm(estimates.mean(axis=0) - exact) < 4 * standard_error


def test_spsa_error_shrinks_like_inverse_sqrt_k():
    f = smooth_test_function(m=6, n=4, seed=3)
    x, g = f.x0, rand(42, 4)
    exact = g @ f.jacobian(x)
    gen = np.random.default_rng(0)

    def rms(k):
        errors = [vjp_relative_error(spsa_vjp(f, x, g, k, 1e-4, gen), exact) for _ in range(40)]
        return np.sqrt(np.mean(np.square(errors)))

    ratio = rms(10) / rms(1000)
    assert 7 < ratio < 14  # sqrt(100) = 10


def test_spsa_in_one_dimension_is_the_central_difference():
    f = lambda v: np.array([np.sin(v[0]), v[0] ** 3])  # noqa: E731
    x, g, c = np.array([0.3]), np.array([2.0, -1.0]), 1e-3
    central = g @ ((f(x + c) - f(x - c)) / (2 * c))
    np.testing.assert_allclose(spsa_vjp(f, x, g, 5, c), central, rtol=1e-12)


def test_spsa_tensor_input(device):
    x = torch.as_tensor(rand(43, 6)).to(device)
    g = torch.as_tensor(rand(44, 4)).to(device)
    out = spsa_vjp(torch_twin, x, g, 3, 1e-4, torch.Generator().manual_seed(0))
    assert isinstance(out, torch.Tensor) and out.shape == (6,) and out.device.type == device.type


def test_spsa_bad_input():
    x, g = rand(0, 6), rand(1, 4)
    with pytest.raises(
        ValueError, match=r"g: expected 4 entries \(the size of fun's output\), got 3"
    ):
        spsa_vjp(F, x, g[:3], 2, 1e-3)
    with pytest.raises(ValueError, match=r"c: expected a number > 0, got 0.0"):
        spsa_vjp(F, x, g, 2, 0.0)
    with pytest.raises(ValueError, match="num_samples: expected an int >= 1, got 0"):
        spsa_vjp(F, x, g, 0, 1e-3)
    with pytest.raises(ValueError, match="distribution: expected one of 'rademacher', 'gaussian'"):
        spsa_vjp(F, x, g, 2, 1e-3, distribution="uniform")
    with pytest.raises(ValueError, match="fun: returned non-finite values"):
        spsa_vjp(lambda v: np.full(4, np.nan), x, g, 2, 1e-3)
    with pytest.raises(ValueError, match="g: expected finite values"):
        spsa_vjp(F, x, np.array([1.0, np.nan, 0.0, 0.0]), 2, 1e-3)
    with pytest.raises(TypeError, match=r"generator: expected a torch\.Generator"):
        spsa_vjp(F, x, g, 2, 1e-3, generator=0)


def test_spsa_checks_g_before_spending_evaluations():
    counted = EvaluationCounter(F)
    with pytest.raises(ValueError, match="g: expected finite values"):
        spsa_vjp(counted, rand(0, 6), np.full(4, np.inf), 5, 1e-3)
    assert counted.calls == 0
    with pytest.raises(ValueError, match=r"g: expected 4 entries"):
        spsa_vjp(counted, rand(0, 6), np.ones(3), 5, 1e-3)
    assert counted.calls == 1  # the first evaluation tells the output's size


def test_vjp_relative_error():
    assert vjp_relative_error(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(1.0)
    assert vjp_relative_error(np.array([3.0, 4.0]), np.zeros(2)) == pytest.approx(5.0)
    with pytest.raises(ValueError, match=r"estimate: expected the reference's shape \(2,\)"):
        vjp_relative_error(np.zeros(3), np.zeros(2))


# ---------------------------------------------------------------------------
# wrap_blackbox


def test_wrap_blackbox_passes_gradcheck_with_defaults():
    model = wrap_blackbox(F)
    x = torch.as_tensor(rand(50, 6)).requires_grad_(True)
    assert torch.autograd.gradcheck(model, (x,))
    batch = torch.as_tensor(rand(51, 3, 6)).requires_grad_(True)
    assert torch.autograd.gradcheck(model, (batch,))


def test_wrap_blackbox_scalar_output_gradcheck():
    model = wrap_blackbox(lambda v: np.sum(np.sin(v)) + v[0] * v[1])
    x = torch.as_tensor(rand(52, 3)).requires_grad_(True)
    assert model(x).shape == ()
    assert torch.autograd.gradcheck(model, (x,))


def test_wrap_blackbox_matches_autograd_and_keeps_dtype_device(device, dtype):
    model = wrap_blackbox(F)
    x = torch.as_tensor(rand(53, 2, 6)).to(device, dtype).requires_grad_(True)
    y = model(x)
    assert y.shape == (2, 4) and y.dtype == dtype and y.device.type == device.type
    w = torch.as_tensor(rand(54, 2, 4)).to(device, dtype)
    (y * w).sum().backward()
    assert x.grad.dtype == dtype and x.grad.device.type == device.type
    x64 = x.detach().double().cpu()
    expected = np.stack(
        [w[b].double().cpu().numpy() @ F.jacobian(x64[b].numpy()) for b in range(2)]
    )
    tol = 1e-8 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(x.grad.double().cpu().numpy(), expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(
        y.detach().double().cpu().numpy(), np.stack([F(r) for r in x64.numpy()]), rtol=tol
    )


@pytest.mark.parametrize(("jacobian", "calls"), [("central", 12), ("forward", 6), ("backward", 6)])
def test_wrap_blackbox_evaluation_counts(jacobian, calls):
    counted = EvaluationCounter(F)
    model = wrap_blackbox(counted, jacobian=jacobian)
    x = torch.as_tensor(rand(55, 2, 6)).requires_grad_(True)
    y = model(x)
    assert counted.calls == 2
    y.sum().backward()
    assert counted.calls == 2 + 2 * calls


def test_wrap_blackbox_analytic_jacobian_is_exact():
    model = wrap_blackbox(F, jacobian=F.jacobian)
    x = torch.as_tensor(rand(56, 6)).requires_grad_(True)
    model(x).sum().backward()
    np.testing.assert_allclose(
        x.grad.numpy(), autograd_jacobian(x.detach().numpy()).sum(0), rtol=1e-13
    )


def test_wrap_blackbox_refuses_double_backward():
    model = wrap_blackbox(F)
    w = torch.as_tensor(rand(57, 6)).requires_grad_(True)
    loss = (model(w**2) ** 2).sum()
    (grad,) = torch.autograd.grad(loss, w, create_graph=True)
    with pytest.raises(RuntimeError, match=r"wrap_blackbox: the VJP .* cannot be differentiated"):
        torch.autograd.grad(grad.sum(), w, retain_graph=True)
    with pytest.raises(RuntimeError, match="cannot be differentiated again"):
        grad.sum().backward()
    # first-order use with create_graph=True still works and is right
    np.testing.assert_allclose(
        grad.detach().numpy(),
        2
        * w.detach().numpy()
        * (2 * F(w.detach().numpy() ** 2) @ F.jacobian(w.detach().numpy() ** 2)),
        rtol=1e-8,
    )


def test_wrap_blackbox_no_grad_needed():
    model = wrap_blackbox(EvaluationCounter(F))
    y = model(torch.as_tensor(rand(58, 6)))
    assert not y.requires_grad and model.fun.calls == 1


def test_wrap_blackbox_bad_input():
    with pytest.raises(ValueError, match="jacobian: expected 'central', 'forward', 'backward'"):
        wrap_blackbox(F, jacobian="exact")
    with pytest.raises(ValueError, match="eps: only used with jacobian="):
        wrap_blackbox(F, jacobian=SPSA(), eps=1e-3)
    with pytest.raises(TypeError, match="fun: expected a callable, got int"):
        wrap_blackbox(3)
    model = wrap_blackbox(F)
    with pytest.raises(
        TypeError, match=r"x: expected a floating-point tensor, got dtype torch.int64"
    ):
        model(torch.arange(6))
    with pytest.raises(ValueError, match=r"x: expected shape \(m,\) or a batch \(B, m\)"):
        model(torch.zeros(2, 2, 6))
    with pytest.raises(ValueError, match="fun: returned non-finite values"):
        wrap_blackbox(lambda v: np.full(2, np.inf))(torch.tensor([-1.0, 1.0]))
    with pytest.raises(ValueError, match=r"fun: expected an output of shape \(n,\) or a scalar"):
        wrap_blackbox(lambda v: np.ones((2, 2)))(torch.zeros(3))


def test_wrap_blackbox_non_finite_during_backward():
    def cliff(v):
        return np.where(v > 1.0 + 1e-9, np.nan, v**2)

    x = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
    y = wrap_blackbox(cliff)(x)
    with pytest.raises(ValueError, match=r"non-finite values .* during the VJP estimate"):
        y.sum().backward()


# ---------------------------------------------------------------------------
# gradiator


def test_gradiator_with_the_exact_vjp_passes_gradcheck():
    op = gradiator(torch_twin, lambda x, g: g @ torch.autograd.functional.jacobian(torch_twin, x))
    x = torch.as_tensor(rand(60, 6)).requires_grad_(True)
    assert torch.autograd.gradcheck(op, (x,))


def test_gradiator_with_a_rank_one_estimate_fails_gradcheck():
    dx = torch.as_tensor(rand(61, 6)) * 1e-6

    def rank_one(x, g):
        df = torch_twin(x + dx) - torch_twin(x)
        return g @ rank_one_jacobian(dx, df)

    op = gradiator(torch_twin, rank_one)
    x = torch.as_tensor(rand(62, 6)).requires_grad_(True)
    assert not torch.autograd.gradcheck(op, (x,), raise_exception=False)
    # ... but it is right along the probe direction
    g = torch.as_tensor(rand(63, 4))
    exact = g @ torch.autograd.functional.jacobian(torch_twin, x.detach())
    unit = dx / dx.norm()
    np.testing.assert_allclose(
        float(rank_one(x.detach(), g) @ unit), float(exact @ unit), rtol=1e-5
    )


def test_gradiator_numpy_black_box_keeps_dtype_and_device(device, dtype):
    op = gradiator(F, lambda x, g: g @ F.jacobian(x), numpy=True)
    x = torch.as_tensor(rand(64, 6)).to(device, dtype).requires_grad_(True)
    y = op(x)
    assert y.dtype == dtype and y.device.type == device.type
    y.sum().backward()
    assert x.grad.dtype == dtype and x.grad.device.type == device.type
    expected = F.jacobian(x.detach().cpu().double().numpy()).sum(0)
    np.testing.assert_allclose(x.grad.cpu().double().numpy(), expected, rtol=1e-5)


def test_gradiator_batched_input():
    def fun(x):
        return x**2

    op = gradiator(fun, lambda x, g: 2 * x * g)
    x = torch.as_tensor(rand(65, 3, 5)).requires_grad_(True)
    assert torch.autograd.gradcheck(op, (x,))


def test_gradiator_wrong_shape_is_reported():
    op = gradiator(torch_twin, lambda x, g: g)  # returns (n,), not (m,)
    x = torch.as_tensor(rand(66, 6)).requires_grad_(True)
    with pytest.raises(
        ValueError, match=r"grad_fun: expected a gradient of the input's shape \(6,\), got \(4,\)"
    ):
        op(x).sum().backward()


def test_gradiator_refuses_double_backward_and_bad_input():
    op = gradiator(torch_twin, lambda x, g: g @ torch.autograd.functional.jacobian(torch_twin, x))
    w = torch.as_tensor(rand(67, 6)).requires_grad_(True)
    (grad,) = torch.autograd.grad((op(w * 2) ** 2).sum(), w, create_graph=True)
    with pytest.raises(RuntimeError, match=r"gradiator: the VJP .* cannot be differentiated"):
        torch.autograd.grad(grad.sum(), w)
    with pytest.raises(TypeError, match="grad_fun: expected a callable"):
        gradiator(torch_twin, None)
    with pytest.raises(TypeError, match=r"x: expected a floating-point torch.Tensor, got ndarray"):
        op(rand(0, 6))


# ---------------------------------------------------------------------------
# Estimator objects


def test_fd_estimator_and_spsa_estimator_vjps():
    x, g = rand(70, 6), rand(71, 4)
    exact = g @ F.jacobian(x)
    fd = FiniteDifferences("central")
    np.testing.assert_allclose(fd.vjp(F, x, F(x), g), exact, atol=1e-9)
    one_sample = SPSA(num_samples=1, c=1e-5, generator=torch.Generator().manual_seed(0))
    est = one_sample.vjp(F, x, F(x), g)
    # one Rademacher sample: (u . v) u, with u the +-1 direction drawn from the same seed
    u = torch.randint(0, 2, (1, 6), generator=torch.Generator().manual_seed(0))[0]
    u = u.double().numpy() * 2 - 1
    np.testing.assert_allclose(est, u * (u @ exact), rtol=1e-6)
    with pytest.raises(ValueError, match="method: expected one of"):
        FiniteDifferences("exact")


@pytest.mark.parametrize(
    ("eps", "error", "message"),
    [
        (0.0, ValueError, "eps: expected a number > 0, got 0.0"),
        (np.inf, ValueError, "eps: expected a number > 0, got inf"),
        ("1e-6", TypeError, "eps: expected a number > 0, got str"),
    ],
)
def test_fd_estimator_bad_eps(eps, error, message):
    with pytest.raises(error, match=message):
        FiniteDifferences("central", eps=eps)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_samples": 0}, ValueError, "num_samples: expected an int >= 1, got 0"),
        ({"num_samples": 2.0}, TypeError, "num_samples: expected an int >= 1, got float"),
        ({"c": -1e-4}, ValueError, "c: expected a number > 0, got -0.0001"),
        ({"distribution": "uniform"}, ValueError, "distribution: expected one of 'rademacher'"),
        ({"generator": 42}, TypeError, r"generator: expected a torch\.Generator"),
    ],
)
def test_spsa_estimator_bad_input_fails_at_construction(kwargs, error, message):
    with pytest.raises(error, match=message):
        SPSA(**kwargs)


@pytest.mark.parametrize("update", ["broyden", "rls"])
def test_tracker_converges_on_a_linear_map(update):
    A = rand(72, 4, 6)
    tracker = JacobianTracker(
        update=update, probes=2, initial="zeros", delta=1e-8, generator=np.random.default_rng(0)
    )
    x = rand(73, 6)
    for _ in range(100):  # Broyden: error ~ (1 - 1/6)^(200/2) ~ 1e-8
        tracker.vjp(linear(A), x, A @ x, np.ones(4))
    assert tracker.evaluations == 200
    np.testing.assert_allclose(tracker.jacobian, A, atol=1e-6)


def test_tracker_with_forgetting_follows_a_moving_point():
    """Along a path, RLS with forgetting tracks J(x_t); without forgetting it averages the past."""
    f = smooth_test_function(m=6, n=4, seed=3)
    path = [f.x0 + 0.15 * t * np.linspace(-1, 1, 6) for t in range(60)]
    errors = {}
    for lam in (1.0, 0.7):
        tracker = JacobianTracker(
            update="rls",
            probes=3,
            forgetting=lam,
            initial="forward",
            step_secants=False,
            generator=np.random.default_rng(1),
        )
        for x in path:
            tracker.vjp(f, x, f(x), np.ones(4))
        J = f.jacobian(path[-1])
        errors[lam] = np.linalg.norm(tracker.jacobian - J) / np.linalg.norm(J)
    assert errors[0.7] < 0.1 and errors[1.0] > 0.3


def test_tracker_counts_the_initial_differences_and_probes():
    counted = EvaluationCounter(F)
    tracker = JacobianTracker(probes=3, generator=torch.Generator().manual_seed(0))
    model = wrap_blackbox(counted, jacobian=tracker)
    x = torch.as_tensor(rand(74, 6)).requires_grad_(True)
    model(x).sum().backward()
    assert tracker.evaluations == 6 + 3 and counted.calls == 1 + 6 + 3
    with pytest.raises(ValueError, match="update: expected one of 'broyden', 'rls'"):
        JacobianTracker(update="bfgs")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"probes": -1}, ValueError, "probes: expected an int >= 0, got -1"),
        ({"probes": 1.5}, TypeError, "probes: expected an int >= 0, got float"),
        ({"eps": 0.0}, ValueError, "eps: expected a number > 0, got 0.0"),
        ({"eps": "tiny"}, TypeError, "eps: expected a number > 0, got str"),
        ({"initial": "ones"}, ValueError, "initial: expected 'forward', 'zeros' or an"),
        ({"initial": np.zeros(6)}, ValueError, r"initial: expected .* got shape \(6,\)"),
        ({"initial": np.full((4, 6), np.nan)}, ValueError, "initial: expected finite values"),
        ({"delta": -1.0}, ValueError, "delta: expected a number > 0"),
        ({"forgetting": 1.5}, ValueError, r"forgetting: expected a number in \(0, 1\]"),
        ({"generator": 0}, TypeError, r"generator: expected a torch\.Generator"),
    ],
)
def test_tracker_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        JacobianTracker(**kwargs)


def test_tracker_initial_of_the_wrong_shape_is_named_at_the_first_call():
    tracker = JacobianTracker(initial=np.zeros((6, 4)), probes=0)
    with pytest.raises(ValueError, match=r"initial: expected shape \(4, 6\) \(n, m\)"):
        tracker.vjp(F, rand(0, 6), F(rand(0, 6)), np.ones(4))


def test_tracker_state_is_not_a_constructor_argument():
    """``jacobian`` and ``evaluations`` are state: passing one would skip the start."""
    with pytest.raises(TypeError, match="jacobian"):
        JacobianTracker("rls", jacobian=np.zeros((4, 6)))
    with pytest.raises(TypeError, match="evaluations"):
        JacobianTracker(evaluations=3)
    # a given start goes through initial, and the RLS state is built from it
    A = rand(75, 4, 6)
    tracker = JacobianTracker("rls", initial=A, probes=1, generator=np.random.default_rng(0))
    assert tracker.jacobian is None and tracker.evaluations == 0
    x = rand(76, 6)
    tracker.vjp(linear(A), x, A @ x, np.ones(4))
    assert tracker.evaluations == 1
    np.testing.assert_allclose(tracker.jacobian, A, atol=1e-9)


def test_evaluation_counter_bad_input():
    with pytest.raises(TypeError, match="fun: expected a callable, got list"):
        EvaluationCounter([1, 2])
    with pytest.raises(TypeError, match="record: expected True or False, got str"):
        EvaluationCounter(F, record="yes")


# ---------------------------------------------------------------------------
# The pendulum


def test_pendulum_matches_an_independent_integrator():
    pendulum = DrivenPendulum()  # p = 8 bumps over T = 8, damping c = 0.3
    theta = 0.8 * rand(80, 8)
    centers, width, damping = np.linspace(0.0, 8.0, 8), 8.0 / 8, 0.3

    def torque(t):
        """u(t) = sum_k theta_k exp(-(t - t_k)^2 / (2 w^2)), bumps t_k over [0, T], w = T / p."""
        return theta @ np.exp(-((t - centers) ** 2) / (2 * width**2))

    def rhs(t, s):
        return [s[1], -np.sin(s[0]) - damping * s[1] + torque(t)]

    sol = solve_ivp(
        rhs,
        (0, pendulum.horizon),
        [0.0, 0.0],
        method="DOP853",
        t_eval=pendulum.times,
        rtol=1e-12,
        atol=1e-12,
    )
    np.testing.assert_allclose(pendulum(theta), sol.y[0], atol=1e-8)


def test_pendulum_sensitivities_match_central_differences():
    pendulum = DrivenPendulum(num_params=4, num_obs=10)
    theta = 0.8 * rand(81, 4)
    q, J = pendulum.simulate_with_jacobian(theta)
    np.testing.assert_allclose(q, pendulum(theta), atol=1e-9)
    # a step of 1e-4: the adaptive solver's own noise (rtol 1e-10) swamps smaller ones
    J_fd = finite_difference_jacobian(pendulum, theta, eps=1e-4)
    np.testing.assert_allclose(J, J_fd, atol=1e-5 * np.abs(J).max())
    with pytest.raises(
        ValueError, match=r"theta: expected shape \(4,\) \(one weight per torque bump\)"
    ):
        pendulum(np.zeros(5))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_params": 0}, ValueError, "num_params: expected an int >= 1, got 0"),
        ({"num_obs": 3.0}, TypeError, "num_obs: expected an int >= 1, got float"),
        ({"horizon": -8.0}, ValueError, "horizon: expected a number > 0, got -8.0"),
        ({"damping": -0.3}, ValueError, "damping: expected a finite number >= 0, got -0.3"),
        ({"damping": np.nan}, ValueError, "damping: expected a finite number >= 0, got nan"),
        ({"damping": "low"}, TypeError, "damping: expected a number >= 0, got str"),
        ({"rtol": 0.0}, ValueError, "rtol: expected a number > 0, got 0.0"),
        ({"atol": None}, TypeError, "atol: expected a number > 0, got NoneType"),
    ],
)
def test_pendulum_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        DrivenPendulum(**kwargs)


# ---------------------------------------------------------------------------
# Training through a black box


def test_fit_through_blackbox_reaches_the_least_squares_fit():
    A = rand(90, 12, 3)
    theta_star = np.array([0.5, -1.0, 2.0])
    data = A @ theta_star + 0.01 * rand(91, 12)
    best = np.linalg.lstsq(A, data, rcond=None)[0]
    floor = np.mean((A @ best - data) ** 2)
    history = fit_through_blackbox(
        lambda t: A @ t, data, np.zeros(3), "forward", budget=2000, lr=0.05
    )
    assert history.evaluations[-1] >= 2000 > history.evaluations[-2]
    assert history.evaluations[0] == 4  # one forward pass + three forward differences
    assert history.loss[0] == pytest.approx(np.mean(data**2))
    assert history.final_loss < floor * 1.01
    np.testing.assert_allclose(history.theta, best, atol=1e-2)


def test_fit_through_blackbox_with_the_exact_jacobian_on_the_pendulum():
    pendulum = DrivenPendulum(num_params=3, num_obs=8, horizon=4.0)
    theta_star = np.array([0.4, -0.3, 0.2])
    data = pendulum(theta_star)
    history = fit_through_blackbox(
        pendulum, data, np.zeros(3), pendulum.jacobian, budget=40, lr=0.05
    )
    assert len(history.loss) == 40 and history.final_loss < 0.05 * history.loss[0]


def test_fit_through_blackbox_rejects_data_of_the_wrong_shape():
    """A (5, 1) target against a (5,) output would broadcast to a (5, 5) loss."""
    A = rand(92, 5, 3)
    counted = EvaluationCounter(lambda t: A @ t)
    with pytest.raises(ValueError, match=r"data: expected the black box's output shape \(5,\), "):
        fit_through_blackbox(counted, (A @ np.ones(3))[:, None], np.zeros(3), "forward", budget=20)
    assert counted.calls == 1  # found at the first forward pass, before any probe
    with pytest.raises(ValueError, match=r"data: .*output shape \(5,\), got \(4,\)"):
        fit_through_blackbox(lambda t: A @ t, np.zeros(4), np.zeros(3), budget=20)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"data": np.array([1.0, np.nan, 0, 0, 0])}, ValueError, "data: expected finite values"),
        ({"data": "target"}, TypeError, r"data: expected a NumPy array or a torch\.Tensor"),
        ({"theta0": np.zeros((1, 3))}, ValueError, r"theta0: expected a 1-D point .*\(1, 3\)"),
        ({"theta0": np.array([0.0, np.inf, 0.0])}, ValueError, "theta0: expected finite values"),
        ({"budget": 0}, ValueError, "budget: expected an int >= 1, got 0"),
        ({"lr": -0.1}, ValueError, "lr: expected a number > 0, got -0.1"),
        ({"jacobian": "exact"}, ValueError, "jacobian: expected 'central', 'forward'"),
        ({"fun": None}, TypeError, "fun: expected a callable, got NoneType"),
    ],
)
def test_fit_through_blackbox_bad_input(kwargs, error, message):
    A = rand(93, 5, 3)
    arguments = {"fun": lambda t: A @ t, "data": np.zeros(5), "theta0": np.zeros(3), "budget": 10}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        fit_through_blackbox(**arguments)


# ---------------------------------------------------------------------------
# The package keeps the module's names


#: The public names of ``gradbook.blackbox`` when it was a single module.
MODULE_NAMES = [
    "AnalyticJacobian", "Array", "BlackBox", "DISTRIBUTIONS", "DOUBLE_BACKWARD_MESSAGE",
    "DrivenPendulum", "EvaluationCounter", "FD_METHODS", "FiniteDifferences", "FitHistory",
    "JacobianTracker", "RecursiveLeastSquares", "SPSA", "SmoothTestFunction", "VJPEstimator",
    "broyden_update", "default_step", "finite_difference_jacobian", "fit_through_blackbox",
    "gradiator", "rank_one_jacobian", "secant_jacobian", "smooth_test_function", "spsa_vjp",
    "vjp_relative_error", "wrap_blackbox",
]  # fmt: skip


def test_every_name_of_the_module_is_importable_from_the_package():
    import gradbook.blackbox as package

    assert set(MODULE_NAMES) <= set(dir(package))
    assert sorted(package.__all__) == sorted(MODULE_NAMES)
    for name in MODULE_NAMES:
        obj = getattr(package, name)
        home = getattr(obj, "__module__", "") or ""
        if callable(obj) and not isinstance(obj, type(np.ndarray | torch.Tensor)):
            # each name lives in one submodule of the package and nowhere else
            assert home.startswith("gradbook.blackbox."), (name, home)


# ---------------------------------------------------------------------------
# Docstring promises on their hardest inputs


@pytest.mark.parametrize("method", ["forward", "backward", "central"])
@pytest.mark.parametrize("kind", ["numpy float64", "torch float32"])
def test_fd_steps_are_exact_at_awkward_points(method, kind):
    """ "Rounded so that x_j + h_j is exact": the difference quotients of the identity are 1 to
    the last bit, at entries that are not dyadic, huge, tiny or zero."""
    x = np.array([0.1, 1e8 + 0.3, -3.7, 1e-30, 3e30, 0.0])
    if kind == "torch float32":
        x = torch.tensor(x, dtype=torch.float32)
        J = finite_difference_jacobian(lambda v: v.clone(), x, method=method)
        assert torch.equal(J, torch.eye(6))
    else:
        J = finite_difference_jacobian(lambda v: v.copy(), x, method=method)
        np.testing.assert_array_equal(J, np.eye(6))


@pytest.mark.parametrize("scale", [0.0, 1.0, 1e3])
def test_wrap_blackbox_vjp_errors_have_the_documented_size(scale):
    """ "Central: error ~1e-10 relative, forward: ~1e-8" for unit-sized inputs (x = 0 included,
    where the step is absolute); at |x| ~ 1e3 the forward error grows to ~2e-7."""
    for seed in range(3):
        x0, g = scale * rand(60 + seed, 6), rand(70 + seed, 4)
        exact = g @ F.jacobian(x0)
        for jacobian, bound in (("central", 1e-9), ("forward", 1e-7 if scale <= 1 else 1e-6)):
            x = torch.tensor(x0, requires_grad=True)
            (wrap_blackbox(F, jacobian=jacobian)(x) @ torch.as_tensor(g)).backward()
            assert vjp_relative_error(x.grad.numpy(), exact) < bound, (jacobian, seed)


def test_broyden_from_random_probes_converges_like_the_documented_rate():
    """ "Random probes converge geometrically, about like (1 - 1/m)^(k/2)": for Gaussian probes
    E ||J_k - A||_F^2 = (1 - 1/m)^k ||A||_F^2 exactly (each update projects the error's rows
    off a uniformly random direction); the mean over 100 runs is within 20% of it (the
    spread over seeds is about 15%; a rate off by a factor 2 in the exponent is 3x away)."""
    rng = np.random.default_rng(0)
    m, n, k = 6, 4, 12
    squared = []
    for _ in range(100):
        A = rng.standard_normal((n, m))
        J = np.zeros((n, m))
        for _ in range(k):
            dx = rng.standard_normal(m)
            J = broyden_update(J, dx, A @ dx)
        squared.append((np.linalg.norm(J - A) / np.linalg.norm(A)) ** 2)
    assert np.mean(squared) == pytest.approx((1 - 1 / m) ** k, rel=0.2)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_rank_one_and_broyden_in_float32_with_tiny_and_huge_probes(scale):
    """ "||dx||^2 neither underflows nor overflows": in float32, ||dx||^2 = 1e-60 or 1e60 would."""
    dx = torch.tensor(rand(80, 5), dtype=torch.float32) * scale
    df = torch.tensor(rand(81, 3), dtype=torch.float32) * scale
    d64, f64 = dx.double().numpy(), df.double().numpy()
    expected = np.outer(f64, d64) / (d64 @ d64)  # float64: no under- or overflow
    got = rank_one_jacobian(dx, df)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-6, atol=0)
    J = torch.tensor(rand(82, 3, 5), dtype=torch.float32)
    new = broyden_update(J, dx, df)
    J64 = J.double().numpy()
    expected = J64 + np.outer(f64 - J64 @ d64, d64) / (d64 @ d64)
    np.testing.assert_allclose(new.double().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_spsa_is_exactly_unbiased_for_a_quadratic():
    """ "Exactly unbiased for a quadratic f": its central differences are J(x) u for any c, so
    with the same directions the estimate equals that of the linear map J(x), even at c = 10."""
    A, B, x, g = rand(90, 4, 6), rand(91, 4, 6), rand(92, 6), rand(93, 4)

    def quadratic(v):
        return A @ v + 0.5 * (B @ v) ** 2

    J = A + (B @ x)[:, None] * B
    estimate = spsa_vjp(quadratic, x, g, 20, 10.0, torch.Generator().manual_seed(0))
    linearised = spsa_vjp(linear(J), x, g, 20, 10.0, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(estimate, linearised, rtol=1e-10, atol=1e-10)
