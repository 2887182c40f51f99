"""Tests of gradbook.convinv against independent references.

References: ``F.pad(..., mode="circular")`` + ``F.conv2d``, the defining phase
sum of the symbol, a dense operator matrix built index by index, the adjoint
identity, ``torch.linalg.pinv`` / ``svdvals`` / ``solve`` of that dense matrix,
numpy's ``lstsq`` and scipy's ``lsqr``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TOLERANCES
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import lsqr

from gradbook.convinv import (
    SolveInfo,
    apply_symbol,
    cgls,
    circular_preconditioner,
    conv2d_circular,
    conv2d_circular_adjoint,
    conv2d_linear_operator,
    conv2d_matrix,
    conv2d_pinv,
    conv2d_zeros,
    conv2d_zeros_adjoint,
    conv_pinv_symbol,
    conv_singular_values,
    conv_symbol,
    conv_symbol_naive,
)

SIZES = [(8, 8), (7, 9), (6, 5), (5, 6), (2, 3)]


def randn(generator, *shape, dtype=torch.float64, device="cpu"):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device, dtype)


def well_conditioned(generator, c_out, c_in, k=3, dtype=torch.float64, device="cpu"):
    """A kernel close to a channel-mixing identity: every A(w) well conditioned."""
    w = 0.05 * randn(generator, c_out, c_in, k, k)
    w[:, :, k // 2, k // 2] += torch.eye(c_out, c_in, dtype=torch.float64)
    return w.to(device, dtype)


def dense_apply(matrix, x):
    """Apply a dense operator matrix to each sample of a (B, C, H, W) batch."""
    out = x.reshape(x.shape[0], -1) @ matrix.T
    return out.reshape(x.shape[0], -1, *x.shape[-2:])


def tikhonov_dense(A, y, reg):
    """min ||A x - y||^2 + reg ||x||^2 per sample, by QR least squares on [A; sqrt(reg) I]."""
    n = A.shape[1]
    stacked = torch.cat([A, reg**0.5 * torch.eye(n, dtype=A.dtype)])
    rhs = torch.cat([y.reshape(y.shape[0], -1).T, torch.zeros(n, y.shape[0], dtype=y.dtype)])
    x = torch.linalg.lstsq(stacked, rhs, driver="gelsd").solution.T
    return x.reshape(y.shape[0], -1, *y.shape[-2:])


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


# --------------------------------------------------------------------------- forward operators


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kernel", [(3, 3), (3, 5), (1, 1), (5, 3)])
def test_circular_matches_circular_pad(device, dtype, generator, size, kernel):
    H, W = size
    kh, kw = kernel
    if kh // 2 > H or kw // 2 > W:
        pytest.skip("F.pad cannot wrap more than once")
    weight = randn(generator, 3, 2, kh, kw, dtype=dtype, device=device)
    x = randn(generator, 4, 2, H, W, dtype=dtype, device=device)
    expected = F.conv2d(F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2), mode="circular"), weight)
    got = conv2d_circular(x, weight)
    rtol, atol = TOLERANCES[dtype]
    assert got.shape == (4, 3, H, W) and got.dtype == dtype and got.device.type == device.type
    torch.testing.assert_close(got, expected, rtol=rtol, atol=10 * atol)


def test_circular_unbatched_and_kernel_larger_than_image(generator):
    weight = randn(generator, 2, 3, 5, 5)
    x = randn(generator, 3, 2, 1)  # the kernel wraps around the 2 x 1 image several times
    got = conv2d_circular(x, weight)
    assert got.shape == (2, 2, 1)
    expected = conv2d_matrix(weight, (2, 1), "circular") @ x.reshape(-1)
    torch.testing.assert_close(got.reshape(-1), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("padding", ["circular", "zeros"])
def test_dense_matrix_matches_conv2d(generator, size, padding):
    weight = randn(generator, 3, 2, 3, 5)
    x = randn(generator, 2, 2, *size)
    if padding == "circular":
        reference = F.conv2d(F.pad(x, (2, 2, 1, 1), mode="circular"), weight)
    else:
        reference = F.conv2d(x, weight, padding=(1, 2))
    matrix = conv2d_matrix(weight, size, padding)
    assert matrix.shape == (3 * size[0] * size[1], 2 * size[0] * size[1])
    torch.testing.assert_close(dense_apply(matrix, x), reference, rtol=1e-12, atol=1e-12)


def test_zero_padding_is_the_askers_conv2d(device, generator):
    weight = randn(generator, 4, 4, 3, 3, device=device)
    x = randn(generator, 2, 4, 9, 8, device=device)
    torch.testing.assert_close(conv2d_zeros(x, weight), F.conv2d(x, weight, padding=1))


@pytest.mark.parametrize("padding", ["circular", "zeros"])
@pytest.mark.parametrize("size", [(8, 8), (7, 6)])
def test_adjoint_identity(device, generator, padding, size):
    weight = randn(generator, 3, 5, 3, 3, device=device)
    x = randn(generator, 2, 5, *size, device=device)
    y = randn(generator, 2, 3, *size, device=device)
    if padding == "circular":
        ax, aty = conv2d_circular(x, weight), conv2d_circular_adjoint(y, weight)
    else:
        ax, aty = conv2d_zeros(x, weight), conv2d_zeros_adjoint(y, weight)
    lhs, rhs = (ax * y).sum(), (x * aty).sum()
    assert abs(lhs - rhs).item() <= 1e-12 * abs(lhs).item()
    # and against the transpose of the dense matrix
    matrix = conv2d_matrix(weight.cpu(), size, padding)
    torch.testing.assert_close(aty.cpu(), dense_apply(matrix.T, y.cpu()), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- the symbol


@pytest.mark.parametrize("size", SIZES)
def test_symbol_matches_phase_formula(generator, size):
    weight = randn(generator, 3, 2, 3, 5)
    symbol = conv_symbol(weight, size)
    H, W = size
    assert symbol.shape == (H, W // 2 + 1, 3, 2) and symbol.dtype == torch.complex128
    naive = conv_symbol_naive(weight, size)
    torch.testing.assert_close(symbol, naive[:, : W // 2 + 1], rtol=1e-12, atol=1e-12)
    # the other half plane is the complex conjugate: A(-w) = conj(A(w))
    u, v = torch.arange(H), torch.arange(W)
    mirror = naive[(-u) % H][:, (-v) % W]
    torch.testing.assert_close(mirror, naive.conj(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", SIZES)
def test_symbol_diagonalises_circular_conv(device, dtype, generator, size):
    weight = randn(generator, 3, 4, 3, 3, dtype=dtype, device=device)
    x = randn(generator, 2, 4, *size, dtype=dtype, device=device)
    symbol = conv_symbol(weight, size)
    assert symbol.dtype == (torch.complex128 if dtype == torch.float64 else torch.complex64)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), weight)
    got = apply_symbol(x, symbol)
    assert got.shape == expected.shape and got.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert relative(got, expected) < tol
    unbatched = apply_symbol(x[0], symbol)  # (n_in, H, W), like every other function here
    assert unbatched.shape == expected.shape[1:]
    assert relative(unbatched, expected[0]) < tol


@pytest.mark.parametrize(
    ("x", "symbol", "error", "message"),
    [
        ([[1.0]], None, TypeError, "x: expected a torch"),
        (torch.zeros(4, 4, dtype=torch.int64), None, TypeError, "x: expected dtype torch.float32"),
        (torch.zeros(4, 4), None, ValueError, r"x: expected shape \(\.\.\., n_in, H, W\)"),
        (torch.zeros(1, 4, 4), "symbol", TypeError, "symbol: expected a torch.Tensor, got str"),
        (
            torch.zeros(2, 4, 4),
            torch.zeros(4, 3, 1, 1, dtype=torch.complex128),
            ValueError,
            r"symbol: expected shape \(4, 3, n_out, 2\)",
        ),
    ],
)
def test_apply_symbol_rejects_bad_input(x, symbol, error, message):
    with pytest.raises(error, match=message):
        apply_symbol(x, symbol)


def test_symbol_needs_flip_and_centre_roll(generator):
    """The two classic slips give a wrong operator: no flip (convolution) and no roll (a shift)."""
    weight = randn(generator, 2, 2, 3, 3)
    x = randn(generator, 1, 2, 8, 8)
    expected = conv2d_circular(x, weight)
    kernel = torch.zeros(2, 2, 8, 8, dtype=torch.float64)
    kernel[:, :, :3, :3] = weight
    unflipped = torch.fft.rfft2(torch.roll(kernel, (-1, -1), dims=(2, 3))).permute(2, 3, 0, 1)
    assert relative(apply_symbol(x, unflipped), expected) > 0.1
    flipped = torch.zeros_like(kernel)
    flipped[:, :, :3, :3] = weight.flip(-2, -1)
    unrolled = torch.fft.rfft2(flipped).permute(2, 3, 0, 1)
    shifted = apply_symbol(x, unrolled)
    assert relative(shifted, expected) > 0.1
    torch.testing.assert_close(torch.roll(shifted, (-1, -1), dims=(2, 3)), expected)
    rolled = torch.fft.rfft2(torch.roll(flipped, (-1, -1), dims=(2, 3))).permute(2, 3, 0, 1)
    torch.testing.assert_close(apply_symbol(x, rolled), expected)


@settings(max_examples=25, deadline=None)
@given(
    H=st.integers(1, 9),
    W=st.integers(1, 9),
    c_out=st.integers(1, 3),
    c_in=st.integers(1, 3),
    kh=st.sampled_from([1, 3, 5]),
    kw=st.sampled_from([1, 3, 5]),
    seed=st.integers(0, 2**16),
)
def test_symbol_property(H, W, c_out, c_in, kh, kw, seed):
    gen = torch.Generator().manual_seed(seed)
    weight = randn(gen, c_out, c_in, kh, kw)
    x = randn(gen, 2, c_in, H, W)
    reference = dense_apply(conv2d_matrix(weight, (H, W), "circular"), x)
    scale = 1 + reference.abs().max()
    assert (apply_symbol(x, conv_symbol(weight, (H, W))) - reference).abs().max() < 1e-12 * scale
    assert (conv2d_circular(x, weight) - reference).abs().max() < 1e-12 * scale


def test_symbol_is_differentiable(generator):
    weight = randn(generator, 2, 2, 3, 3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: torch.view_as_real(conv_symbol(w, (4, 5))), weight)


# --------------------------------------------------------------------------- singular values


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("channels", [(3, 3), (2, 4), (4, 2)])
def test_singular_values_are_the_union_over_frequencies(generator, size, channels):
    weight = randn(generator, *channels, 3, 3)
    got = conv_singular_values(weight, size)
    dense = torch.linalg.svdvals(conv2d_matrix(weight, size, "circular"))
    n = min(channels) * size[0] * size[1]
    assert got.shape == (n,)
    assert bool((got[:-1] >= got[1:]).all())
    assert dense.shape == (n,)  # the dense operator has exactly as many singular values
    torch.testing.assert_close(got, dense, rtol=1e-10, atol=1e-12)


def test_singular_values_float32_and_device(device, generator):
    weight = randn(generator, 3, 3, 3, 3, dtype=torch.float32, device=device)
    got = conv_singular_values(weight, (6, 6))
    assert got.dtype == torch.float32 and got.device.type == device.type
    dense = np.linalg.svd(conv2d_matrix(weight.cpu().double(), (6, 6)).numpy(), compute_uv=False)
    np.testing.assert_allclose(got.cpu().numpy(), dense, rtol=1e-5)


# --------------------------------------------------------------------------- circular pinv


@pytest.mark.parametrize("size", [(6, 6), (5, 7), (4, 5)])
@pytest.mark.parametrize("channels", [(3, 3), (2, 4), (4, 2)])
def test_circular_pinv_matches_dense_pinv(device, generator, size, channels):
    weight = randn(generator, *channels, 3, 3, device=device)
    y = randn(generator, 3, channels[0], *size, device=device)
    got = conv2d_pinv(y, weight)
    dense = torch.linalg.pinv(conv2d_matrix(weight.cpu(), size, "circular"))
    assert got.shape == (3, channels[1], *size)
    torch.testing.assert_close(got.cpu(), dense_apply(dense, y.cpu()), rtol=1e-10, atol=1e-12)


def penrose_residuals(A, X):
    return [
        ((A @ X @ A - A).norm() / A.norm()).item(),
        ((X @ A @ X - X).norm() / X.norm()).item(),
        ((A @ X - (A @ X).T).norm() / (A @ X).norm()).item(),
        ((X @ A - (X @ A).T).norm() / (X @ A).norm()).item(),
    ]


@pytest.mark.parametrize("channels", [(3, 3), (2, 3), (3, 2)])
def test_circular_pinv_satisfies_penrose_conditions(generator, channels):
    size = (5, 6)
    weight = randn(generator, *channels, 3, 3)
    A = conv2d_matrix(weight, size, "circular")
    # the matrix of x = conv2d_pinv(y): apply it to every basis vector of the output space
    basis = torch.eye(A.shape[0], dtype=torch.float64).reshape(-1, channels[0], *size)
    X = conv2d_pinv(basis, weight).reshape(A.shape[0], -1).T
    assert max(penrose_residuals(A, X)) < 1e-12


def test_circular_pinv_rank_deficient_kernel(generator):
    """A Laplacian per channel kills the constant image: A(0) = 0 exactly, and rounding must not
    turn a 1e-17 singular value into a 1e17 gain (the cutoff is relative to the global maximum)."""
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64)
    mix = torch.tensor([[1.0, 0.5], [0.2, 1.0]], dtype=torch.float64)
    weight = mix[:, :, None, None] * lap
    y = randn(generator, 2, 2, 6, 8)
    got = conv2d_pinv(y, weight)
    dense = torch.linalg.pinv(conv2d_matrix(weight, (6, 8), "circular"))
    torch.testing.assert_close(got, dense_apply(dense, y), rtol=1e-10, atol=1e-12)
    assert got.mean(dim=(2, 3)).abs().max().item() < 1e-13  # nothing in the null space


def test_circular_pinv_zero_kernel_and_zero_data(generator):
    weight = torch.zeros(2, 2, 3, 3, dtype=torch.float64)
    y = randn(generator, 1, 2, 4, 4)
    assert torch.equal(conv2d_pinv(y, weight), torch.zeros_like(y))
    kernel = randn(generator, 2, 2, 3, 3)
    assert torch.equal(conv2d_pinv(torch.zeros_like(y), kernel), torch.zeros_like(y))


def test_circular_pinv_inverts_circular_conv(device, dtype, generator):
    weight = well_conditioned(generator, 4, 4, dtype=dtype, device=device)
    x = randn(generator, 2, 4, 9, 10, dtype=dtype, device=device)
    got = conv2d_pinv(conv2d_circular(x, weight), weight)
    assert got.dtype == dtype and got.device.type == device.type
    assert relative(got, x) < (1e-13 if dtype == torch.float64 else 1e-6)


@pytest.mark.parametrize("reg", [1e-3, 0.5, 10.0])
def test_circular_tikhonov_matches_dense(generator, reg):
    weight = randn(generator, 2, 3, 3, 3)
    y = randn(generator, 2, 2, 5, 6)
    A = conv2d_matrix(weight, (5, 6), "circular")
    got = conv2d_pinv(y, weight, reg=reg)
    torch.testing.assert_close(got, tikhonov_dense(A, y, reg), rtol=1e-10, atol=1e-12)


def test_pinv_symbol_shape_and_rcond(generator):
    weight = randn(generator, 2, 3, 3, 3)
    B = conv_pinv_symbol(weight, (4, 6))
    assert B.shape == (4, 4, 3, 2) and B.dtype == torch.complex128
    # an rcond above every singular value zeroes everything
    assert conv_pinv_symbol(weight, (4, 6), rcond=1.01).abs().max().item() == 0.0


# --------------------------------------------------------------------------- zero padding


def test_fft_answer_is_not_exact_for_zero_padding(generator):
    """The forum's shortcut: the circular inverse applied to the real conv2d output."""
    weight = well_conditioned(generator, 3, 3)
    x = randn(generator, 1, 3, 16, 16)
    y = F.conv2d(x, weight, padding=1)
    error = (conv2d_pinv(y, weight, "circular") - x).abs().sum(dim=1)[0]
    interior, border = error[3:-3, 3:-3], error.clone()
    border[3:-3, 3:-3] = 0
    assert error.max().item() > 1e-3  # not exact ...
    assert interior.max().item() < 0.1 * border.max().item()  # ... and wrong mostly at the border
    exact = conv2d_pinv(y, weight, "zeros")
    assert relative(exact, x) < 1e-8


@pytest.mark.parametrize("channels", [(3, 3), (3, 2)])
@pytest.mark.parametrize("preconditioner", [None, "circular"])
def test_zeros_pinv_matches_dense_lstsq(device, generator, channels, preconditioner):
    """Full column rank: the least-squares solution is unique; both variants must reach it."""
    size = (6, 7)
    weight = well_conditioned(generator, *channels, device=device)
    y = randn(generator, 2, channels[0], *size, device=device)  # tall case: not in the range
    got, info = conv2d_pinv(
        y, weight, "zeros", preconditioner=preconditioner, tol=1e-12, return_info=True
    )
    A = conv2d_matrix(weight.cpu(), size, "zeros").numpy()
    expected = np.linalg.lstsq(A, y.cpu().reshape(2, -1).numpy().T, rcond=None)[0].T
    np.testing.assert_allclose(got.cpu().reshape(2, -1).numpy(), expected, rtol=0, atol=1e-10)
    assert isinstance(info, SolveInfo) and info.converged and 0 < info.iterations < 1000
    assert info.relative_residual.shape == (2,) and info.history[0] == 1.0
    residual = np.linalg.norm(A @ expected.T - y.cpu().reshape(2, -1).numpy().T, axis=0)
    np.testing.assert_allclose(info.residual_norm.cpu().numpy(), residual, rtol=1e-8, atol=1e-10)


def test_zeros_pinv_minimum_norm_for_wide_kernels(generator):
    """c_out < c_in: infinitely many exact solutions; CGLS from zero returns the smallest."""
    size = (5, 5)
    weight = randn(generator, 2, 3, 3, 3)
    y = randn(generator, 1, 2, *size)
    got = conv2d_pinv(y, weight, "zeros", tol=1e-13, max_iter=5000)
    dense = torch.linalg.pinv(conv2d_matrix(weight, size, "zeros"))
    torch.testing.assert_close(got, dense_apply(dense, y), rtol=0, atol=1e-8)


def test_zeros_pinv_agrees_with_scipy_lsqr(generator):
    size = (8, 8)
    weight = well_conditioned(generator, 3, 3)
    y = randn(generator, 1, 3, *size)
    operator = conv2d_linear_operator(weight, size, "zeros")
    reference = lsqr(operator, y.reshape(-1).numpy(), atol=1e-14, btol=1e-14, iter_lim=2000)[0]
    got = conv2d_pinv(y, weight, "zeros", tol=1e-12)
    np.testing.assert_allclose(got.reshape(-1).numpy(), reference, atol=1e-10)


@pytest.mark.parametrize("preconditioner", [None, "circular"])
def test_zeros_tikhonov_matches_dense(generator, preconditioner):
    size, reg = (6, 5), 0.3
    weight = randn(generator, 3, 3, 3, 3)  # ill-conditioned: the regularisation is what saves us
    y = randn(generator, 2, 3, *size)
    A = conv2d_matrix(weight, size, "zeros")
    got = conv2d_pinv(y, weight, "zeros", reg=reg, preconditioner=preconditioner, tol=1e-12)
    torch.testing.assert_close(got, tikhonov_dense(A, y, reg), rtol=0, atol=1e-9)


def test_preconditioner_is_symmetric_positive_definite(generator):
    weight = randn(generator, 2, 3, 3, 3)
    apply_p = circular_preconditioner(weight, (4, 5), shift=1e-2)
    basis = torch.eye(3 * 20, dtype=torch.float64).reshape(-1, 3, 4, 5)
    P = apply_p(basis).reshape(60, 60).T
    torch.testing.assert_close(P, P.T, rtol=0, atol=1e-12)
    C = conv2d_matrix(weight, (4, 5), "circular")
    damp = 1e-2 * torch.linalg.matrix_norm(C, ord=2) ** 2
    expected = torch.linalg.inv(C.T @ C + damp * torch.eye(60, dtype=torch.float64))
    torch.testing.assert_close(P, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("weight", "kwargs", "message"),
    [
        (torch.zeros(2, 3, 3, 3, dtype=torch.float64), {}, "weight: all zeros"),
        (torch.ones(2, 3, 3, 3, dtype=torch.float64), {"shift": 0.0}, "shift: must be > 0"),
        (
            torch.ones(2, 3, 3, 3, dtype=torch.float64),
            {"shift": -1.0},
            "shift: expected a finite number >= 0",
        ),
        (torch.ones(2, 3, 3, 3, dtype=torch.float64), {"reg": -1.0}, "reg: "),
    ],
)
def test_preconditioner_rejects_what_has_no_inverse(weight, kwargs, message):
    with pytest.raises(ValueError, match=message):
        circular_preconditioner(weight, (4, 5), **kwargs)


def test_preconditioner_of_a_zero_kernel_with_reg_is_the_scaled_identity():
    apply_p = circular_preconditioner(torch.zeros(2, 3, 3, 3, dtype=torch.float64), (4, 5), reg=0.5)
    v = torch.randn(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(apply_p(v), v / 0.5, rtol=1e-13, atol=1e-14)


def test_preconditioner_cuts_iterations_for_smooth_positive_kernels(generator):
    blur = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float64) / 16
    delta = torch.zeros(3, 3, dtype=torch.float64)
    delta[1, 1] = 1
    mix = torch.eye(3, dtype=torch.float64) + 0.3 * randn(generator, 3, 3)
    weight = mix[:, :, None, None] * (blur + 0.1 * delta)
    x = randn(generator, 1, 3, 16, 16)
    y = conv2d_zeros(x, weight)
    _, plain = conv2d_pinv(y, weight, "zeros", tol=1e-8, return_info=True)
    _, pre = conv2d_pinv(
        y,
        weight,
        "zeros",
        tol=1e-8,
        preconditioner="circular",
        precond_shift=1e-5,
        return_info=True,
    )
    assert plain.converged and pre.converged
    assert pre.iterations * 4 < plain.iterations


def test_zeros_solver_batch_is_independent(generator):
    weight = well_conditioned(generator, 2, 2)
    y = randn(generator, 3, 2, 5, 6)
    y[1] = 0  # a zero right-hand side must give exactly zero, not NaN
    batch = conv2d_pinv(y, weight, "zeros", tol=1e-12)
    assert torch.isfinite(batch).all() and torch.equal(batch[1], torch.zeros_like(batch[1]))
    for i in (0, 2):
        single = conv2d_pinv(y[i], weight, "zeros", tol=1e-12)
        torch.testing.assert_close(batch[i], single, rtol=0, atol=1e-12)


def test_zeros_solver_limits_and_float32(device, generator):
    weight = well_conditioned(generator, 3, 3, dtype=torch.float32, device=device)
    x = randn(generator, 2, 3, 12, 12, dtype=torch.float32, device=device)
    y = conv2d_zeros(x, weight)
    got, info = conv2d_pinv(y, weight, "zeros", return_info=True)
    assert got.dtype == torch.float32 and info.converged and info.tol == 1e-5
    assert relative(got, x) < 1e-4
    none, info0 = conv2d_pinv(y, weight, "zeros", max_iter=0, return_info=True)
    assert info0.iterations == 0 and not info0.converged and torch.equal(none, torch.zeros_like(x))


def test_cgls_on_a_dense_matrix(generator):
    """The solver itself, on a plain random least-squares problem (numpy as the reference)."""
    A = randn(generator, 30, 12)
    b = randn(generator, 2, 30)
    x, info = cgls(
        lambda v: (v.reshape(2, 12) @ A.T).reshape(2, 30, 1, 1),
        lambda r: (r.reshape(2, 30) @ A).reshape(2, 12, 1, 1),
        b.reshape(2, 30, 1, 1),
        (12, 1, 1),
        tol=1e-13,
    )
    expected = np.linalg.lstsq(A.numpy(), b.numpy().T, rcond=None)[0].T
    np.testing.assert_allclose(x.reshape(2, 12).numpy(), expected, atol=1e-11)
    assert (
        info.converged and info.iterations <= 13
    )  # exact arithmetic: at most n steps (+ rounding)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda w, x: conv2d_circular(x, torch.zeros(2, 2, 2, 2, dtype=x.dtype)),
            ValueError,
            r"weight: expected an odd kernel size .* got 2 x 2",
        ),
        (lambda w, x: conv2d_circular(x, w[:, :1]), ValueError, r"x: expected 1 channels .* got 2"),
        (lambda w, x: conv2d_pinv(x[:, :1], w), ValueError, r"y: expected 2 channels .* got 1"),
        (lambda w, x: conv_symbol(w, (4,)), ValueError, r"size: expected \(height, width\) as two"),
        (lambda w, x: conv_symbol(w, (4, 0)), ValueError, r"size: expected .* of positive"),
        (lambda w, x: conv_symbol(w, 4), TypeError, r"size: expected \(height, width\) as two"),
        (
            lambda w, x: conv2d_pinv(x, w, "zeros", rcond=1e-6),
            ValueError,
            "rcond: only used with padding='circular'",
        ),
        (
            lambda w, x: conv2d_pinv(x, w, "circular", tol=1e-6),
            ValueError,
            "tol: only used with padding='zeros'",
        ),
        (
            lambda w, x: conv2d_pinv(x, w, padding="same"),
            ValueError,
            r"padding: expected 'circular' or 'zeros', got 'same'",
        ),
        (
            lambda w, x: conv2d_matrix(w, (3, 3), padding="reflect"),
            ValueError,
            r"padding: expected 'circular' or 'zeros', got 'reflect'",
        ),
        (lambda w, x: conv2d_pinv(x, w, reg=-1.0), ValueError, r"reg: expected a finite number"),
        (
            lambda w, x: conv2d_pinv(x, w, preconditioner="circular"),
            ValueError,
            r"preconditioner: only used with padding='zeros'",
        ),
        (
            lambda w, x: conv2d_pinv(x, w, "zeros", preconditioner="jacobi"),
            ValueError,
            r"preconditioner: expected None or 'circular', got 'jacobi'",
        ),
        (lambda w, x: conv2d_pinv(x, w, "zeros", max_iter=-1), ValueError, r"max_iter"),
        (
            lambda w, x: conv2d_pinv(x, w, "zeros", max_iter=2.0),
            TypeError,
            r"max_iter: expected an int >= 0, got float",
        ),
        (
            lambda w, x: conv2d_pinv(x.float(), w),
            TypeError,
            r"y: dtype torch.float32 differs from weight's dtype torch.float64",
        ),
        (
            lambda w, x: conv2d_circular(x.long(), w),
            TypeError,
            r"x: expected dtype torch.float32 or torch.float64, got torch.int64",
        ),
        (
            lambda w, x: conv2d_circular(x.numpy(), w),
            TypeError,
            r"x: expected a torch.Tensor, got ndarray",
        ),
        (
            lambda w, x: conv_symbol(w[0], (4, 4)),
            ValueError,
            r"weight: expected a 4-D tensor \(c_out, c_in, kh, kw\), got shape \(2, 3, 3\)",
        ),
        (
            lambda w, x: conv2d_circular(x[0, 0], w),
            ValueError,
            r"x: expected a \(B, C, H, W\) or \(C, H, W\) tensor, got shape \(4, 4\)",
        ),
        (lambda w, x: conv2d_matrix(w, (200, 200)), ValueError, r"meant for\s+small cases"),
        (lambda w, x: conv_pinv_symbol(w, (4, 4), rcond=-1.0), ValueError, r"rcond"),
    ],
)
def test_bad_input(call, error, message):
    weight = torch.ones(2, 2, 3, 3, dtype=torch.float64)
    x = torch.ones(1, 2, 4, 4, dtype=torch.float64)
    with pytest.raises(error, match=message):
        call(weight, x)


# ------------------------------------------------ docstring promises on their hardest inputs


def rank_one_per_frequency(generator):
    """An exactly singular operator: every A(w) = mix * khat(w) with mix of rank one. The taps
    (integers / 8 times integers) are exact, so only the FFT's rounding makes A(w)'s second
    singular value nonzero (about 1e-16 of the largest, on a 5 x 7 grid)."""
    k = torch.randint(-8, 9, (3, 3), generator=generator).double() / 8
    mix = torch.tensor([[1.0, 3.0], [2.0, 6.0]], dtype=torch.float64)
    return mix[:, :, None, None] * k


@pytest.mark.parametrize("reg", [0.0, 1e-12, 1e-20, 1e-300])
def test_tikhonov_tends_to_the_pseudo_inverse_on_an_exactly_singular_kernel(generator, reg):
    """ "For lam > 0 this equals (A^H A + lam I)^-1 A^H": on an exactly singular A the limit
    lam -> 0 is A^+ (the dense pinv), not the rounding of a zero singular value times
    1 / (2 sqrt(lam)) (without the cut, lam = 1e-20 is off by 2e5)."""
    weight = rank_one_per_frequency(generator)
    y = randn(generator, 2, 2, 5, 7)
    dense = torch.linalg.pinv(conv2d_matrix(weight, (5, 7), "circular"))
    expected = dense_apply(dense, y)
    got = conv2d_pinv(y, weight, reg=reg)
    # the Tikhonov solution differs from A^+ y by O(lam / s^2) on the nonzero singular values
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10 * expected.abs().max().item())


def test_tikhonov_on_an_exactly_singular_kernel_matches_dense_tikhonov(generator):
    """At a lam far above the rounding, the cut changes nothing: the dense QR solution."""
    weight = rank_one_per_frequency(generator)
    y = randn(generator, 2, 2, 5, 7)
    A = conv2d_matrix(weight, (5, 7), "circular")
    expected = tikhonov_dense(A, y, 1e-3)  # the cut moves it by < rcond s_max^2 / lam = 1e-8
    torch.testing.assert_close(conv2d_pinv(y, weight, reg=1e-3), expected, rtol=0, atol=1e-10)


def near_singular_kernel(dtype=torch.float64):
    """delta + a Laplacian with a = 1/8 - 2^-20: symbol 1 - 8 a (1 - ...) in [2^-17, 1], its
    smallest value 7.6e-6 at the Nyquist frequency. Every tap is exact in float32."""
    a = 0.125 - 2.0**-20
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64)
    weight = a * lap
    weight[1, 1] += 1
    return weight[None, None].to(dtype)


def test_singular_values_are_computed_in_float64_for_float32_weights():
    """ "Computed in float64": a float32 kernel [1, -2c, 1] (one row) has the symbol
    2 cos(w) - 2c, smallest, 2 |cos(4 pi / 9) - c| = 1.9e-6 of about 2.3, at the irrational
    frequency 4 pi / 9 of a 9-pixel axis. It comes back to float32 rounding, where a float32
    FFT gives it to only 4e-5 relative."""
    c = float(np.float32(np.cos(4 * np.pi / 9) + 2.0**-20))  # exact in float32
    weight = torch.zeros(1, 1, 3, 3, dtype=torch.float32)
    weight[0, 0, 1] = torch.tensor([1.0, -2 * c, 1.0])
    got = conv_singular_values(weight, (9, 9))
    assert got.dtype == torch.float32
    smallest = 2 * abs(np.cos(4 * np.pi / 9) - c)  # float64 closed form
    assert got.min().item() == pytest.approx(smallest, rel=1e-6)
    dense = torch.linalg.svdvals(conv2d_matrix(weight.double(), (9, 9), "circular"))
    torch.testing.assert_close(got.double(), dense, rtol=2e-7, atol=0)


def test_pinv_of_a_near_singular_kernel_matches_the_dense_pinv(generator):
    """Condition number 1.3e5, far above the cutoff: every singular value is inverted."""
    weight = near_singular_kernel()
    y = randn(generator, 2, 1, 8, 8)
    dense = torch.linalg.pinv(conv2d_matrix(weight, (8, 8), "circular"))
    expected = dense_apply(dense, y)
    torch.testing.assert_close(conv2d_pinv(y, weight), expected, rtol=1e-10, atol=1e-12)
    assert expected.abs().max().item() > 1e3  # the small singular value does matter


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_padded_solver_on_zero_data_and_a_zero_kernel(dtype):
    """ "relative_residual ... 0 for a zero right-hand side": no 0/0 anywhere, x = 0 exactly."""
    generator = torch.Generator().manual_seed(0)
    kernel = randn(generator, 2, 3, 3, 3, dtype=dtype)
    y = randn(generator, 2, 2, 6, 5, dtype=dtype)
    cases = [(torch.zeros_like(y), kernel, 0.0), (y, torch.zeros_like(kernel), 0.0)]
    cases.append((torch.zeros_like(y), kernel, 0.5))
    for data, weight, reg in cases:
        x, info = conv2d_pinv(data, weight, "zeros", reg, return_info=True)
        assert torch.equal(x, torch.zeros(2, 3, 6, 5, dtype=dtype))
        assert info.converged and info.iterations == 0
        assert torch.equal(info.relative_residual, torch.zeros(2, dtype=dtype))
