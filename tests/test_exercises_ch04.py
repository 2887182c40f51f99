"""Chapter 4 checks: the reference solutions and correct alternatives pass; the known mistakes
(the forum answer's first) fail with the misconception named.

The references here do not come from the checks: the symbol from the defining
phase sum, the pseudo-inverse from an SVD with a global cutoff, the adjoint
from ``conv_transpose2d``, least squares from CGLS written out below.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradbook.convinv import (
    apply_symbol,
    circular_preconditioner,
    conv2d_pinv,
    conv2d_zeros_adjoint,
    conv_pinv_symbol,
    conv_symbol,
)
from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch04 import (
    check_circular_pinv,
    check_conv_adjoint,
    check_preconditioned_cgls,
    check_solve_zero_padded,
    check_symbol_1ch,
    check_tikhonov,
)

EPS = torch.finfo(torch.float64).eps

# Exercise 4.1 -----------------------------------------------------------------


def placed(kernel, H, W):
    out = kernel.new_zeros(H, W)
    out[:3, :3] = kernel
    return out


def symbol_reference(kernel, H, W):
    return torch.fft.rfft2(torch.roll(placed(kernel.flip(0, 1), H, W), (-1, -1), dims=(0, 1)))


def symbol_conjugate(kernel, H, W):  # the forum's route: conj of the kernel's FFT, centred
    return torch.fft.rfft2(torch.roll(placed(kernel, H, W), (-1, -1), dims=(0, 1))).conj()


def symbol_phase_sum(kernel, H, W):
    """The defining sum, tap by tap, on the rfft2 half plane."""
    u = torch.arange(H, dtype=torch.float64)[:, None]
    v = torch.arange(W // 2 + 1, dtype=torch.float64)[None, :]
    out = torch.zeros(H, W // 2 + 1, dtype=torch.complex128)
    for a in range(3):
        for b in range(3):
            phase = 2 * math.pi * (u * (a - 1) / H + v * (b - 1) / W)
            out += kernel[a, b] * torch.polar(torch.ones_like(phase), phase)
    return out


def test_symbol_references_pass(capsys):
    assert check_symbol_1ch(symbol_reference)
    assert "PASSED Exercise 4.1" in capsys.readouterr().out


@pytest.mark.parametrize("good", [symbol_conjugate, symbol_phase_sum])
def test_symbol_alternatives_pass(good):
    assert check_symbol_1ch(good)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the forum's K_f.conj() without the centre roll
        (lambda k, H, W: torch.fft.rfft2(placed(k, H, W)).conj(), r"shifted by \(-1, -1\)"),
        # flipped but not centred: the forum's top-left placement, an image off by one pixel
        (lambda k, H, W: torch.fft.rfft2(placed(k.flip(0, 1), H, W)), r"shifted by \(1, 1\)"),
        # no flip: convolution, not cross-correlation
        (
            lambda k, H, W: torch.fft.rfft2(torch.roll(placed(k, H, W), (-1, -1), (0, 1))),
            "convolution, not the cross-correlation",
        ),
        (lambda k, H, W: torch.fft.rfft2(placed(k, H, W)), "convolution.*also shifted"),
        (
            lambda k, H, W: torch.fft.fft2(placed(k.flip(0, 1), H, W).roll((-1, -1), (0, 1))),
            "rfft2",
        ),
        # the Nyquist column dropped for even W
        (
            lambda k, H, W: torch.fft.fft2(placed(k.flip(0, 1), H, W).roll((-1, -1), (0, 1)))[
                :, : (W + 1) // 2
            ],
            "Nyquist column",
        ),
        (
            lambda k, H, W: (
                torch.cat(
                    [symbol_reference(k, H, W)[:, :-1], torch.zeros(H, 1, dtype=torch.complex128)],
                    1,
                )
                if W % 2 == 0
                else symbol_reference(k, H, W)
            ),
            "Nyquist",
        ),
        (lambda k, H, W: symbol_reference(k.float(), H, W), "complex128"),
        (
            lambda k, H, W: torch.roll(placed(k.flip(0, 1), H, W), (-1, -1), (0, 1))[
                :, : W // 2 + 1
            ],
            "complex",
        ),
        (lambda k, H, W: symbol_reference(k, H, W).numpy(), "torch.Tensor"),
        (lambda k, H, W: conv_symbol(k[None, None], (H, W))[..., 0, 0], "write it yourself"),
    ],
)
def test_symbol_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_symbol_1ch(wrong)


# Exercise 4.2 -----------------------------------------------------------------


def global_cutoff(A, H, W):
    c_out, c_in = A.shape[-2:]
    return max(c_out, c_in) * H * W * EPS * torch.linalg.svdvals(A).max()


def pinv_reference(y, weight):
    H, W = y.shape[-2:]
    A = conv_symbol(weight, (H, W))
    inverse = torch.linalg.pinv(A, atol=global_cutoff(A, H, W))
    spectrum = torch.einsum("uvco,bouv->bcuv", inverse, torch.fft.rfft2(y))
    return torch.fft.irfft2(spectrum, s=(H, W))


def pinv_svd(y, weight):
    """By the SVD, with a hand cutoff well above rounding."""
    H, W = y.shape[-2:]
    U, s, Vh = torch.linalg.svd(conv_symbol(weight, (H, W)), full_matrices=False)
    keep = s > 1e-10 * s.max()
    phi = torch.where(keep, 1 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
    inverse = Vh.mH @ (phi[..., None] * U.mH)
    spectrum = (inverse @ torch.fft.rfft2(y).permute(2, 3, 1, 0)).permute(3, 2, 0, 1)
    return torch.fft.irfft2(spectrum, s=(H, W))


def pinv_full_plane(y, weight):
    """On the full fft2 plane: one symbol per frequency, the imaginary part dropped at the end."""
    H, W = y.shape[-2:]
    c_out, c_in = weight.shape[:2]
    placed_kernel = weight.new_zeros(c_out, c_in, H, W)
    placed_kernel[..., :3, :3] = weight.flip(-2, -1)
    placed_kernel = placed_kernel.roll((-1, -1), dims=(-2, -1))
    A = torch.fft.fft2(placed_kernel).permute(2, 3, 0, 1)  # (H, W, c_out, c_in)
    cutoff = max(c_out, c_in) * H * W * EPS * torch.linalg.svdvals(A).max()
    inverse = torch.linalg.pinv(A, atol=cutoff)
    spectrum = torch.einsum("uvco,bouv->bcuv", inverse, torch.fft.fft2(y))
    return torch.fft.ifft2(spectrum).real


def pinv_with(transform, y, weight, s=True):
    H, W = y.shape[-2:]
    matrix = transform(conv_symbol(weight, (H, W)))
    spectrum = torch.einsum("uvco,bouv->bcuv", matrix, torch.fft.rfft2(y))
    return torch.fft.irfft2(spectrum, s=(H, W)) if s else torch.fft.irfft2(spectrum)


def pinv_seed_dot_t(y, weight):
    """The forum's `pinv(K_f.T).T` applied to the (H, W//2+1, c_out, c_in) symbol."""
    H, W = y.shape[-2:]
    inverse = torch.linalg.pinv(conv_symbol(weight, (H, W)).T).T
    spectrum = torch.einsum("uvco,bouv->bcuv", inverse, torch.fft.rfft2(y))
    return torch.fft.irfft2(spectrum, s=(H, W))


def test_pinv_reference_passes(capsys):
    assert check_circular_pinv(pinv_reference)
    assert "PASSED Exercise 4.2" in capsys.readouterr().out


@pytest.mark.parametrize("good", [pinv_svd, pinv_full_plane])
def test_pinv_alternatives_pass(good):
    assert check_circular_pinv(good)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (pinv_seed_dot_t, r"\.mT"),
        # torch.linalg.pinv's default cutoff, relative to each frequency's own matrix
        (lambda y, w: pinv_with(torch.linalg.pinv, y, w), "cutoff relative to each"),
        (lambda y, w: pinv_with(lambda s: torch.linalg.pinv(s, rtol=1e-10), y, w), "whole"),
        (lambda y, w: pinv_with(lambda s: s.mH, y, w), "adjoint"),
        (lambda y, w: pinv_with(lambda s: s.mT, y, w), "transpose of A\\(w\\)|adjoint"),
        (lambda y, w: pinv_with(lambda s: torch.linalg.pinv(s.conj()), y, w), "conjugated symbol"),
        (lambda y, w: pinv_with(lambda s: torch.linalg.pinv(s).mT, y, w), "transpose of the"),
        (lambda y, w: pinv_with(lambda s: (1 / s).mT, y, w), "not its entries"),
        (lambda y, w: pinv_with(torch.linalg.pinv, y, w, s=False), "pass s=\\(H, W\\)"),
        (lambda y, w: pinv_reference(y.float(), w.float()), "float64 rounding"),
        # a small regularisation is not the pseudo-inverse
        (lambda y, w: tikhonov_with(y, w, 1e-6), "float64 rounding|not the"),
        (lambda y, w: pinv_reference(y, w) * 1.01, "not the pseudo-inverse"),
        (lambda y, w: conv2d_pinv(y, w), "write it yourself"),
        (
            lambda y, w: apply_symbol(y, torch.linalg.pinv(conv_symbol(w, y.shape[-2:]))),
            "write it yourself",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")
def test_pinv_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_circular_pinv(wrong)


# Exercise 4.3 -----------------------------------------------------------------


def tikhonov_with(y, weight, lam, conj=True, power=1.0):
    H, W = y.shape[-2:]
    A = conv_symbol(weight, (H, W))
    AH = A.mH if conj else A.mT
    eye = torch.eye(A.shape[-1], dtype=A.dtype)
    matrix = torch.linalg.solve(AH @ A + lam**power * eye, AH)
    spectrum = torch.einsum("uvco,bouv->bcuv", matrix, torch.fft.rfft2(y))
    return torch.fft.irfft2(spectrum, s=(H, W))


def tikhonov_svd(y, weight, lam):
    H, W = y.shape[-2:]
    U, s, Vh = torch.linalg.svd(conv_symbol(weight, (H, W)), full_matrices=False)
    inverse = Vh.mH @ ((s / (s * s + lam))[..., None] * U.mH)
    spectrum = torch.einsum("uvco,bouv->bcuv", inverse, torch.fft.rfft2(y))
    return torch.fft.irfft2(spectrum, s=(H, W))


def tikhonov_push_through(y, weight, lam):
    """A^H (A A^H + lam I)^-1: the same matrix, solved on the output side."""
    H, W = y.shape[-2:]
    A = conv_symbol(weight, (H, W))
    eye = torch.eye(A.shape[-2], dtype=A.dtype)
    matrix = A.mH @ torch.linalg.inv(A @ A.mH + lam * eye)
    spectrum = torch.einsum("uvco,bouv->bcuv", matrix, torch.fft.rfft2(y))
    return torch.fft.irfft2(spectrum, s=(H, W))


def test_tikhonov_reference_passes(capsys):
    assert check_tikhonov(tikhonov_with)
    assert "PASSED Exercise 4.3" in capsys.readouterr().out


@pytest.mark.parametrize("good", [tikhonov_svd, tikhonov_push_through])
def test_tikhonov_alternatives_pass(good):
    assert check_tikhonov(good)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the forum answer had no regularisation at all
        (lambda y, w, lam: pinv_reference(y, w), "does not depend on lam"),
        (lambda y, w, lam: tikhonov_with(y, w, lam, conj=False), "conjugate transpose"),
        (lambda y, w, lam: tikhonov_with(y, w, lam, power=2.0), "lam\\^2 where lam belongs"),
        (lambda y, w, lam: tikhonov_with(y, w, lam, power=0.5), "sqrt\\(lam\\)"),
        (
            lambda y, w, lam: tikhonov_with(
                y, w, lam * torch.linalg.svdvals(conv_symbol(w, y.shape[-2:])).max().item() ** 2
            ),
            "lam s_max\\^2",
        ),
        (lambda y, w, lam: tikhonov_with(y, w, 2 * lam), "not \\(A\\^H A \\+ lam I\\)"),
        (lambda y, w, lam: conv2d_pinv(y, w, reg=lam), "write it yourself"),
    ],
)
def test_tikhonov_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_tikhonov(wrong)


# Exercise 4.4 -----------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    [
        lambda y, w: F.conv_transpose2d(y, w, padding=1),
        lambda y, w: F.conv2d(y, w.transpose(0, 1).flip(-2, -1), padding=1),
        # the VJP of conv2d is its adjoint
        lambda y, w: torch.func.vjp(
            lambda x: F.conv2d(x, w, padding=1), y.new_zeros(y.shape[0], w.shape[1], *y.shape[2:])
        )[1](y)[0],
    ],
)
def test_adjoint_correct_answers_pass(good, capsys):
    assert check_conv_adjoint(good)
    assert "PASSED Exercise 4.4" in capsys.readouterr().out


def circular_adjoint(y, w):
    padded = F.pad(y, (1, 1, 1, 1), mode="circular")
    return F.conv2d(padded, w.transpose(0, 1).flip(-2, -1))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the forum's `.T` on a 4-D tensor
        (lambda y, w: F.conv2d(y, w.T, padding=1), r"\.T` on a tensor of rank above 2"),
        (circular_adjoint, "circular"),
        (lambda y, w: F.conv_transpose2d(y, w), "same padding"),
        (lambda y, w: F.conv2d(y, w.flip(-2, -1), padding=1), "channels are not swapped"),
        (lambda y, w: F.conv2d(y, w.transpose(0, 1), padding=1), "kernel is not flipped"),
        (lambda y, w: F.conv_transpose2d(y.float(), w.float(), padding=1), "float64 rounding"),
        (lambda y, w: F.conv_transpose2d(y, 2 * w, padding=1), "the adjoint test fails"),
        (conv2d_zeros_adjoint, "write it yourself"),
    ],
)
@pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")
def test_adjoint_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_conv_adjoint(wrong)


# Exercise 4.5 -----------------------------------------------------------------


def cgls_by_hand(y, weight, x0=None, precondition=None, tol=1e-12, max_iter=3000):
    """CGLS (preconditioned when ``precondition`` is given) for conv2d(padding=1)."""

    def A(v):
        return F.conv2d(v, weight, padding=1)

    def AT(r):
        return F.conv_transpose2d(r, weight, padding=1)

    P = precondition if precondition is not None else (lambda s: s)
    x = torch.zeros(y.shape[0], weight.shape[1], *y.shape[-2:], dtype=y.dtype)
    if x0 is not None:
        x = x0.clone()
    r = y - A(x)
    s = AT(r)
    z = P(s)
    p = z
    gamma = (s * z).sum()
    stop = tol * AT(y).norm()
    for _ in range(max_iter):
        if s.norm() <= stop:
            break
        q = A(p)
        alpha = gamma / (q * q).sum()
        x = x + alpha * p
        r = r - alpha * q
        s = AT(r)
        z = P(s)
        gamma_new = (s * z).sum()
        p = z + gamma_new / gamma * p
        gamma = gamma_new
    return x


def solve_lsqr(y, weight):
    """scipy's LSQR on the same operator, one sample at a time."""
    from scipy.sparse.linalg import LinearOperator, lsqr

    _, _, H, W = y.shape
    c_out, c_in = weight.shape[:2]

    def matvec(v):
        x = torch.from_numpy(v.copy()).reshape(1, c_in, H, W)
        return F.conv2d(x, weight, padding=1).reshape(-1).numpy()

    def rmatvec(v):
        r = torch.from_numpy(v.copy()).reshape(1, c_out, H, W)
        return F.conv_transpose2d(r, weight, padding=1).reshape(-1).numpy()

    op = LinearOperator(
        (c_out * H * W, c_in * H * W), matvec=matvec, rmatvec=rmatvec, dtype=np.float64
    )
    rows = [
        lsqr(op, sample.reshape(-1).numpy(), atol=1e-14, btol=1e-14, iter_lim=5000)[0]
        for sample in y
    ]
    return torch.from_numpy(np.stack(rows)).reshape(-1, c_in, H, W)


def test_solve_reference_passes(capsys):
    assert check_solve_zero_padded(cgls_by_hand)
    assert "PASSED Exercise 4.5" in capsys.readouterr().out


def cgls_vjp_adjoint(y, weight):
    """CGLS with the adjoint taken as the VJP of conv2d instead of conv_transpose2d."""
    x0 = y.new_zeros(y.shape[0], weight.shape[1], *y.shape[-2:])
    _, pullback = torch.func.vjp(lambda v: F.conv2d(v, weight, padding=1), x0)

    def AT(r):
        return pullback(r)[0]

    x, r = x0, y.clone()
    s = AT(r)
    p, gamma = s, (s * s).sum()
    stop = 1e-12 * s.norm()
    while s.norm() > stop:
        q = F.conv2d(p, weight, padding=1)
        alpha = gamma / (q * q).sum()
        x, r = x + alpha * p, r - alpha * q
        s = AT(r)
        gamma_new = (s * s).sum()
        p, gamma = s + gamma_new / gamma * p, gamma_new
    return x


@pytest.mark.parametrize("good", [solve_lsqr, cgls_vjp_adjoint])
def test_solve_alternatives_pass(good):
    assert check_solve_zero_padded(good)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the forum's answer: the circular FFT inverse given to the zero-padded problem
        (pinv_reference, "circular \\(FFT\\) inverse"),
        (lambda y, w: cgls_by_hand(y, w, max_iter=3), "not the least-squares solution yet"),
        (lambda y, w: cgls_by_hand(y, w, tol=1e-3), "not the least-squares solution yet"),
        # a warm start from the circular answer: least squares, but not minimum norm
        (lambda y, w: cgls_by_hand(y, w, x0=pinv_reference(y, w)), "minimum-norm"),
        (lambda y, w: cgls_by_hand(y, w, x0=torch.ones_like(pinv_reference(y, w))), "minimum-norm"),
        (lambda y, w: y, "expected shape|not the least-squares"),
        (lambda y, w: y[:, :2], "expected shape"),
        (lambda y, w: conv2d_pinv(y, w, "zeros", tol=1e-12), "write it yourself"),
    ],
)
def test_solve_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_solve_zero_padded(wrong)


# Exercise 4.6 (stretch) ------------------------------------------------------


def precond_with(normal_to_matrix, fft_size=True):
    """``s -> irfft2(M(w) rfft2(s))`` with ``M(w) = normal_to_matrix(C(w), s_max)``."""

    def make(weight, size, shift):
        C = conv_symbol(weight, size)
        s_max = torch.linalg.svdvals(C).max()
        M = normal_to_matrix(C, s_max, shift)

        def apply(s):
            spectrum = torch.einsum("uvij,bjuv->biuv", M, torch.fft.rfft2(s))
            return torch.fft.irfft2(spectrum, s=size if fft_size else None)

        return apply

    return make


def eye_like(C):
    return torch.eye(C.shape[-1], dtype=C.dtype)


precond_reference = precond_with(
    lambda C, s_max, shift: torch.linalg.inv(C.mH @ C + shift * s_max**2 * eye_like(C))
)
precond_solve = precond_with(
    lambda C, s_max, shift: torch.linalg.solve(
        C.mH @ C + shift * s_max**2 * eye_like(C), eye_like(C)
    )
)


def precond_svd(weight, size, shift):
    """Per frequency V diag(1 / (s^2 + shift s_max^2)) V^H (square symbols)."""
    _, s, Vh = torch.linalg.svd(conv_symbol(weight, size))
    damp = shift * s.max() ** 2
    M = Vh.mH @ ((1 / (s * s + damp))[..., None] * Vh)

    def apply(v):
        return torch.fft.irfft2(torch.einsum("uvij,bjuv->biuv", M, torch.fft.rfft2(v)), s=size)

    return apply


def pcgls_with(make):
    def pcgls(y, weight):
        return cgls_by_hand(y, weight, precondition=make(weight, tuple(y.shape[-2:]), 1e-3))

    return pcgls


def pcgls_gamma_ss(y, weight):
    """gamma = <s, s> where <s, P s> belongs."""
    P = precond_reference(weight, tuple(y.shape[-2:]), 1e-3)
    A = lambda v: F.conv2d(v, weight, padding=1)  # noqa: E731
    AT = lambda r: F.conv_transpose2d(r, weight, padding=1)  # noqa: E731
    x = torch.zeros_like(y)
    r = y.clone()
    s = AT(r)
    p = P(s)
    gamma = (s * s).sum()
    for _ in range(60):
        q = A(p)
        alpha = gamma / (q * q).sum()
        x, r = x + alpha * p, r - alpha * q
        s = AT(r)
        gamma_new = (s * s).sum()
        p = P(s) + gamma_new / gamma * p
        gamma = gamma_new
    return x


@pytest.mark.parametrize(
    ("make", "solve"),
    [
        (precond_reference, pcgls_with(precond_reference)),
        (precond_solve, pcgls_with(precond_solve)),
        (precond_svd, pcgls_with(precond_svd)),
    ],
)
def test_pcgls_correct_answers_pass(make, solve, capsys):
    assert check_preconditioned_cgls(make, solve)
    assert "PASSED Exercise 4.6 (Stretch" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "solve", "message"),
    [
        (
            precond_with(
                lambda C, s_max, shift: torch.linalg.inv(C.mT @ C + shift * s_max**2 * eye_like(C))
            ),
            pcgls_with(precond_reference),
            "not symmetric",
        ),
        (
            precond_with(lambda C, s_max, shift: torch.linalg.inv(C.mH @ C + shift * eye_like(C))),
            pcgls_with(precond_reference),
            "not shift \\* I",
        ),
        (
            precond_with(
                lambda C, s_max, shift: torch.linalg.inv(C.mH @ C + shift * s_max * eye_like(C))
            ),
            pcgls_with(precond_reference),
            "not shift \\* s_max\\.",
        ),
        (
            precond_with(lambda C, s_max, shift: C.mH @ C + shift * s_max**2 * eye_like(C)),
            pcgls_with(precond_reference),
            "is its inverse",
        ),
        (
            precond_with(
                lambda C, s_max, shift: torch.linalg.inv(C.mH @ C + shift * s_max**2 * eye_like(C)),
                fft_size=False,
            ),
            pcgls_with(precond_reference),
            "of shape|s=\\(H, W\\)",
        ),
        (precond_reference, cgls_by_hand, "no FFT ran: that is plain CGLS"),
        (precond_reference, pinv_reference, "circular \\(FFT\\) inverse"),
        (precond_reference, pcgls_gamma_ss, "gamma = <s, P s>"),
        (
            lambda w, size, shift: circular_preconditioner(w, size, shift=shift),
            pcgls_with(precond_reference),
            "write it yourself",
        ),
        (
            precond_reference,
            lambda y, w: conv2d_pinv(y, w, "zeros", tol=1e-12, preconditioner="circular"),
            "write it yourself",
        ),
    ],
)
def test_pcgls_mistakes_fail(make, solve, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_preconditioned_cgls(make, solve)


def test_pcgls_slow_but_correct_solver_fails():
    """The dense answer reached, but with the preconditioner applied on the wrong side (r)
    it is just plain CGLS with extra FFTs: too many iterations."""

    def wasteful(y, weight):
        P = precond_reference(weight, tuple(y.shape[-2:]), 1e-3)
        x = cgls_by_hand(y, weight)
        P(y)  # an FFT that does nothing useful
        return x

    with pytest.raises(ExerciseFailed, match="ran conv2d"):
        check_preconditioned_cgls(precond_reference, wasteful)


def test_conv_pinv_symbol_is_the_global_cutoff():
    """The checks' reference for 4.2 agrees with the SVD route used in this file."""
    from gradbook.exercises._core import randn

    w = randn(0, 3, 3, 3, 3)
    w = w - w.mean(dim=(-2, -1), keepdim=True)
    y = randn(1, 1, 3, 6, 8)
    assert torch.allclose(pinv_reference(y, w), apply_symbol(y, conv_pinv_symbol(w, (6, 8))))
