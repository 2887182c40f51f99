"""Chapter 4 checks: they fail on the known mistakes (the forum answer's among them) and pass on
the reference solutions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gradbook.convinv import cgls, conv_symbol
from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch04 import (
    check_circular_pinv,
    check_conv_adjoint,
    check_solve_zero_padded,
    check_symbol_1ch,
    check_tikhonov,
)

# Exercise 4.1 -----------------------------------------------------------------


def placed(kernel, H, W):
    out = kernel.new_zeros(H, W)
    out[:3, :3] = kernel
    return out


def symbol_reference(kernel, H, W):
    return torch.fft.rfft2(torch.roll(placed(kernel.flip(0, 1), H, W), (-1, -1), dims=(0, 1)))


def symbol_conjugate(kernel, H, W):  # the forum's route: conj of the kernel's FFT, centred
    return torch.fft.rfft2(torch.roll(placed(kernel, H, W), (-1, -1), dims=(0, 1))).conj()


def test_symbol_references_pass(capsys):
    assert check_symbol_1ch(symbol_reference)
    assert check_symbol_1ch(symbol_conjugate)
    assert "PASSED Exercise 4.1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # no flip: convolution, not cross-correlation
        (
            lambda k, H, W: torch.fft.rfft2(torch.roll(placed(k, H, W), (-1, -1), (0, 1))),
            "convolution, not the cross-correlation",
        ),
        # flipped but not centred: the forum's top-left placement, an image off by one pixel
        (lambda k, H, W: torch.fft.rfft2(placed(k.flip(0, 1), H, W)), r"shifted by \(1, 1\)"),
        # the forum's K_f.conj() without the centre roll
        (lambda k, H, W: torch.fft.rfft2(placed(k, H, W)).conj(), r"shifted by \(-1, -1\)"),
        # neither flipped nor centred
        (lambda k, H, W: torch.fft.rfft2(placed(k, H, W)), "convolution.*also shifted"),
        # the full plane
        (
            lambda k, H, W: torch.fft.fft2(
                torch.roll(placed(k.flip(0, 1), H, W), (-1, -1), (0, 1))
            ),
            "use rfft2",
        ),
        (
            lambda k, H, W: torch.roll(placed(k.flip(0, 1), H, W), (-1, -1), (0, 1))[
                :, : W // 2 + 1
            ],
            "complex",
        ),
        (lambda k, H, W: symbol_reference(k, H, W)[:, :-1], "expected shape"),
        (lambda k, H, W: symbol_reference(k, H, W).numpy(), "torch.Tensor"),
    ],
)
def test_symbol_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_symbol_1ch(wrong)


# Exercise 4.2 -----------------------------------------------------------------


def pinv_reference(y, weight):
    H, W = y.shape[-2:]
    inverse = torch.linalg.pinv(conv_symbol(weight, (H, W)))
    spectrum = torch.einsum("uvco,bouv->bcuv", inverse, torch.fft.rfft2(y))
    return torch.fft.irfft2(spectrum, s=(H, W))


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


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda y, w: pinv_with(lambda s: s.mH, y, w), "adjoint"),
        (lambda y, w: pinv_with(lambda s: s.mT, y, w), "adjoint"),
        (lambda y, w: pinv_with(lambda s: torch.linalg.pinv(s.conj()), y, w), "conjugated symbol"),
        (lambda y, w: pinv_with(lambda s: torch.linalg.pinv(s).mT, y, w), "transpose of the"),
        (lambda y, w: pinv_with(lambda s: (1 / s).mT, y, w), "not its entries"),
        (lambda y, w: pinv_with(torch.linalg.pinv, y, w, s=False), "pass s=\\(H, W\\)"),
        (pinv_seed_dot_t, r"\.mT"),
        (lambda y, w: y, "expected shape|not the pseudo-inverse"),
        (lambda y, w: pinv_reference(y, w) * 1.01, "not the pseudo-inverse"),
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


def test_tikhonov_reference_passes():
    assert check_tikhonov(tikhonov_with)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda y, w, lam: tikhonov_with(y, w, lam, conj=False), "conjugate transpose"),
        (lambda y, w, lam: tikhonov_with(y, w, lam, power=2.0), "lam\\^2 where lam belongs"),
        (lambda y, w, lam: tikhonov_with(y, w, lam, power=0.5), "sqrt\\(lam\\)"),
        (lambda y, w, lam: pinv_reference(y, w), "does not depend on lam"),
        (lambda y, w, lam: tikhonov_with(y, w, 2 * lam), "not \\(A\\^H A \\+ lam I\\)"),
    ],
)
def test_tikhonov_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_tikhonov(wrong)


# Exercise 4.4 -----------------------------------------------------------------


def test_adjoint_references_pass():
    assert check_conv_adjoint(lambda y, w: F.conv_transpose2d(y, w, padding=1))
    assert check_conv_adjoint(lambda y, w: F.conv2d(y, w.transpose(0, 1).flip(-2, -1), padding=1))


def circular_adjoint(y, w):
    padded = F.pad(y, (1, 1, 1, 1), mode="circular")
    return F.conv2d(padded, w.transpose(0, 1).flip(-2, -1))


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda y, w: F.conv_transpose2d(y, w), "same padding"),
        (lambda y, w: F.conv2d(y, w.flip(-2, -1), padding=1), "channels are not swapped"),
        (lambda y, w: F.conv2d(y, w.transpose(0, 1), padding=1), "kernel is not flipped"),
        (circular_adjoint, "circular"),
        (lambda y, w: F.conv2d(y, w.T, padding=1), r"\.T` on a tensor of rank above 2"),
        (lambda y, w: F.conv_transpose2d(y, 2 * w, padding=1), "the adjoint test fails"),
    ],
)
def test_adjoint_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_conv_adjoint(wrong)


# Exercise 4.5 -----------------------------------------------------------------


def solve_reference(y, weight):
    x, _ = cgls(
        lambda v: F.conv2d(v, weight, padding=1),
        lambda r: F.conv_transpose2d(r, weight, padding=1),
        y,
        (weight.shape[1], *y.shape[-2:]),
        tol=1e-12,
    )
    return x


def test_solve_reference_passes(capsys):
    assert check_solve_zero_padded(solve_reference)
    assert "PASSED Exercise 4.5" in capsys.readouterr().out


circular_fft_answer = pinv_reference  # the exact circular answer, given to the zero-padded task


def too_few_iterations(y, weight):
    x, _ = cgls(
        lambda v: F.conv2d(v, weight, padding=1),
        lambda r: F.conv_transpose2d(r, weight, padding=1),
        y,
        (weight.shape[1], *y.shape[-2:]),
        max_iter=2,
    )
    return x


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (circular_fft_answer, "circular \\(FFT\\) inverse"),
        (too_few_iterations, "not the least-squares solution yet"),
        (lambda y, w: y, "not the least-squares solution yet"),
        (lambda y, w: y[:, :2], "expected shape"),
    ],
)
def test_solve_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_solve_zero_padded(wrong)
