"""Checks for chapter 4, the pseudo-inverse of a convolution via the FFT.

Each check runs the student's function on inputs of its own (odd and even image
sizes, different input and output channel counts) and recognises the usual
mistakes: a symbol without the kernel flip (convolution instead of the
cross-correlation that ``F.conv2d`` computes) or without the centre shift (an
image off by one pixel), ``fft2`` where ``rfft2`` is meant, ``irfft2`` without
the output size, entrywise instead of matrix inverses, the transpose where the
conjugate transpose is meant, ``.T`` on a 4-D tensor, a regularisation on the
wrong scale, and the circular (FFT) answer passed off as exact for zero padding.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from gradbook.convinv import (
    apply_symbol,
    conv2d_circular,
    conv2d_pinv,
    conv2d_zeros,
    conv2d_zeros_adjoint,
    conv_pinv_symbol,
    conv_symbol,
)
from gradbook.exercises._core import ExerciseFailed, Passed, answer_tensor, attempt, fail, passed

_DOT_T_HINT = (
    "`.T` on a tensor of rank above 2 reverses *all* its dimensions (and is deprecated); "
    "to transpose the last two dimensions of a stack of matrices use `.mT`, and `.mH` for "
    "the conjugate transpose."
)


def _data(seed: int, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _close(a: Tensor, b: Tensor, tol: float = 1e-8) -> bool:
    if a.shape != b.shape:
        return False
    a, b = a.to(torch.complex128), b.to(torch.complex128)
    return bool((a - b).abs().max() <= tol * (1 + b.abs().max()))


def _uses_dot_t(answer: Callable) -> bool:
    try:
        source = inspect.getsource(answer)
    except (OSError, TypeError):
        return False
    return re.search(r"\.T\b", source) is not None


def _dot_t_hint(answer: Callable) -> str:
    """The `.T` hint, with a leading space, when ``answer``'s source uses `.T`; else ``""``."""
    return " " + _DOT_T_HINT if _uses_dot_t(answer) else ""


def _attempt(name: str, answer: Callable, *args: object) -> object:
    """``attempt`` that adds the `.T` hint when code using `.T` on tensors crashes."""
    try:
        return attempt(name, answer, *args)
    except ExerciseFailed as error:
        if error.__cause__ is not None and _uses_dot_t(answer):
            fail(name, f"{error.__cause__}. {_DOT_T_HINT}")
        raise


# --------------------------------------------------------------------------- 4.1


def check_symbol_1ch(symbol_1ch: Callable[[Tensor, int, int], Tensor]) -> Passed:
    """Exercise 4.1: ``symbol_1ch(kernel, H, W)``, the ``(H, W // 2 + 1)`` symbol of one kernel."""
    name = "Exercise 4.1 (the symbol of one channel)"
    for seed, (H, W) in enumerate([(8, 8), (7, 6), (5, 9)]):
        kernel = _data(seed, 3, 3)
        x = _data(100 + seed, 1, 1, H, W)
        expected = conv_symbol(kernel[None, None], (H, W))[..., 0, 0]
        got = answer_tensor(name, _attempt(name, symbol_1ch, kernel, H, W), "the symbol")
        if got.shape == (H, W) and got.is_complex():
            fail(
                name,
                f"your symbol has shape {tuple(got.shape)}: that is the full fft2 plane. The "
                f"image is real, so use rfft2, whose last dimension is W // 2 + 1 = {W // 2 + 1}.",
            )
        if got.shape != (H, W // 2 + 1):
            fail(name, f"expected shape ({H}, {W // 2 + 1}), got {tuple(got.shape)}.")
        if not got.is_complex():
            fail(name, "the symbol is complex (one complex number per frequency), yours is real.")
        if _close(got, expected):
            continue
        image = torch.fft.irfft2(got * torch.fft.rfft2(x), s=(H, W))
        right = conv2d_circular(x, kernel[None, None])
        convolution = conv2d_circular(x, kernel.flip(0, 1)[None, None])
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                moved = torch.roll(image, (dy, dx), dims=(2, 3))
                if _close(moved, convolution):
                    fail(
                        name,
                        "your symbol computes a convolution, not the cross-correlation that "
                        "F.conv2d computes: the kernel must be flipped (equivalently, its FFT "
                        "conjugated)"
                        + (
                            ", and the result is also shifted: the centre tap must sit at "
                            "index (0, 0)."
                            if (dy, dx) != (0, 0)
                            else "."
                        ),
                    )
                if _close(moved, right):
                    fail(
                        name,
                        f"your result is the right image shifted by ({-dy}, {-dx}) pixels: the "
                        "centre tap of the kernel must sit at index (0, 0) of the H x W array.",
                    )
        fail(
            name,
            f"for a {H} x {W} image your symbol does not reproduce the circular "
            "cross-correlation." + _dot_t_hint(symbol_1ch),
        )
    return passed(name, "flipped, centred, half plane, odd and even sizes.")


# --------------------------------------------------------------------------- 4.2


def check_circular_pinv(circular_pinv: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 4.2: ``circular_pinv(y, weight)`` is the FFT pseudo-inverse for circular padding."""
    name = "Exercise 4.2 (the per-frequency pseudo-inverse)"
    for seed, (c_out, c_in, H, W) in enumerate([(3, 3, 6, 6), (3, 2, 5, 7), (2, 3, 6, 5)]):
        weight = _data(10 + seed, c_out, c_in, 3, 3)
        y = _data(20 + seed, 2, c_out, H, W)
        expected = conv2d_pinv(y, weight, "circular")
        got = answer_tensor(name, _attempt(name, circular_pinv, y, weight), "x")
        if got.shape[:2] == (2, c_in) and got.shape[-2] == H and got.shape[-1] == W - 1:
            fail(
                name,
                f"the result is {H} x {W - 1} for a {H} x {W} image: irfft2 cannot know the "
                "original width (W and W - 1 give the same rfft2 length when W is odd); pass "
                "s=(H, W).",
            )
        if got.shape != expected.shape:
            fail(
                name,
                f"expected shape {tuple(expected.shape)} (B, c_in, H, W), got {tuple(got.shape)}."
                + _dot_t_hint(circular_pinv),
            )
        if _close(got, expected, 1e-7):
            continue
        symbol = conv_symbol(weight, (H, W))
        if _close(got, apply_symbol(y, symbol.mH)) or _close(got, apply_symbol(y, symbol.mT)):
            fail(
                name,
                "you applied the (conjugate) transpose of A(w), i.e. the adjoint A^T y. The "
                "adjoint inverts only orthogonal operators; use the pseudo-inverse of each "
                "A(w).",
            )
        if _close(got, apply_symbol(y, torch.linalg.pinv(symbol.conj()))):
            fail(
                name,
                "your pseudo-inverse belongs to the conjugated symbol: that inverts the "
                "convolution with the flipped kernel. Invert A(w) itself.",
            )
        if _close(got, apply_symbol(y, torch.linalg.pinv(symbol).mT)):
            fail(
                name,
                "you applied the transpose of the pseudo-inverse: contract its *last* index "
                "(c_out) with the channels of Y(w). " + _DOT_T_HINT,
            )
        if c_out == c_in and _close(got, apply_symbol(y, (1.0 / symbol).mT)):
            fail(
                name,
                "each frequency holds a c_out x c_in matrix: invert the matrix "
                "(torch.linalg.pinv), not its entries one by one.",
            )
        fail(
            name,
            "not the pseudo-inverse of the circular convolution applied to y."
            + _dot_t_hint(circular_pinv),
        )
    return passed(name, "square, tall and wide per-frequency matrices.")


# --------------------------------------------------------------------------- 4.3


def check_tikhonov(tikhonov: Callable[[Tensor, Tensor, float], Tensor]) -> Passed:
    """Exercise 4.3: ``tikhonov(y, weight, lam)``: ``X(w) = (A^H A + lam I)^-1 A^H Y(w)``."""
    name = "Exercise 4.3 (Tikhonov regularisation)"
    for seed, (c_out, c_in, H, W, lam) in enumerate([(3, 3, 6, 6, 0.5), (3, 2, 5, 7, 2.0)]):
        weight = _data(30 + seed, c_out, c_in, 3, 3)
        y = _data(40 + seed, 2, c_out, H, W)
        expected = conv2d_pinv(y, weight, "circular", reg=lam)
        got = answer_tensor(name, _attempt(name, tikhonov, y, weight, lam), "x")
        if got.shape != expected.shape:
            fail(name, f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}.")
        if _close(got, expected, 1e-7):
            continue
        if _close(got, conv2d_pinv(y, weight, "circular")):
            fail(name, "your answer does not depend on lam: it is the plain pseudo-inverse.")
        for wrong, what in [(lam**2, "lam^2"), (lam**0.5, "sqrt(lam)")]:
            if _close(got, conv2d_pinv(y, weight, "circular", reg=wrong)):
                fail(
                    name,
                    f"your answer uses {what} where lam belongs: the penalty lam ||x||^2 adds "
                    "lam to the *squared* singular values (A^H A + lam I).",
                )
        symbol = conv_symbol(weight, (H, W))
        eye = torch.eye(c_in, dtype=symbol.dtype)
        no_conj = torch.linalg.solve(symbol.mT @ symbol + lam * eye, symbol.mT)
        no_conj_x = apply_symbol(y, no_conj)
        if _close(got, no_conj_x):
            fail(
                name,
                "the per-frequency matrices are complex: use the conjugate transpose A^H "
                "(`.mH`), not the transpose A^T.",
            )
        fail(name, "not (A^H A + lam I)^-1 A^H Y frequency by frequency.")
    return passed(name, "the regularised inverse, for square and tall symbols.")


# --------------------------------------------------------------------------- 4.4


def check_conv_adjoint(conv_adjoint: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 4.4: ``conv_adjoint(y, weight)``, the adjoint of ``conv2d(x, w, padding=1)``."""
    name = "Exercise 4.4 (the adjoint of conv2d)"
    for seed, (c_out, c_in, H, W) in enumerate([(3, 3, 7, 6), (2, 4, 6, 6)]):
        weight = _data(50 + seed, c_out, c_in, 3, 3)
        x = _data(60 + seed, 2, c_in, H, W)
        y = _data(70 + seed, 2, c_out, H, W)
        got = answer_tensor(name, _attempt(name, conv_adjoint, y, weight), "A^T y")
        if got.shape == (2, c_in, H + 2, W + 2):
            fail(
                name,
                f"your result is {H + 2} x {W + 2}: conv_transpose2d needs the same padding "
                "as the forward conv2d to be its adjoint.",
            )
        if got.shape != x.shape:
            fail(
                name,
                f"expected shape {tuple(x.shape)} (B, c_in, H, W), got {tuple(got.shape)}."
                + _dot_t_hint(conv_adjoint),
            )
        lhs = (conv2d_zeros(x, weight) * y).sum()
        rhs = (x * got).sum()
        if abs(lhs - rhs) <= 1e-10 * abs(lhs):
            continue
        flipped = weight.transpose(0, 1).flip(-2, -1)
        if c_out == c_in and _close(got, F.conv2d(y, weight.flip(-2, -1), padding=1)):
            fail(
                name,
                "the kernel is flipped but the channels are not swapped: the adjoint maps "
                "c_out channels back to c_in, with weight[o, c] used from c's side.",
            )
        if _close(got, F.conv2d(y, weight.transpose(0, 1), padding=1)):
            fail(
                name,
                "the channels are swapped but the kernel is not flipped: the adjoint of a "
                "cross-correlation is the cross-correlation with the flipped kernel.",
            )
        if _close(got, conv2d_circular(y, flipped)):
            fail(
                name,
                "that is the adjoint of the *circular* convolution: with zero padding the "
                "contributions that wrap around must not appear.",
            )
        fail(
            name,
            f"the adjoint test fails: <A x, y> = {lhs.item():.6f} but <x, A^T y> = "
            f"{rhs.item():.6f}." + _dot_t_hint(conv_adjoint),
        )
    return passed(name, "<A x, y> = <x, A^T y> to rounding.")


# --------------------------------------------------------------------------- 4.5


def check_solve_zero_padded(solve: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 4.5: ``solve(y, weight)`` is the least-squares inverse of ``conv2d(padding=1)``."""
    name = "Exercise 4.5 (the exact answer for padding=1)"
    gen = torch.Generator().manual_seed(80)
    weight = 0.1 * torch.randn(3, 3, 3, 3, generator=gen, dtype=torch.float64)
    weight[:, :, 1, 1] += torch.eye(3, dtype=torch.float64)  # well conditioned
    x = torch.randn(2, 3, 10, 9, generator=gen, dtype=torch.float64)
    y = conv2d_zeros(x, weight)
    got = answer_tensor(name, _attempt(name, solve, y, weight), "x")
    if got.shape != x.shape:
        fail(name, f"expected shape {tuple(x.shape)}, got {tuple(got.shape)}.")
    circular = apply_symbol(y, conv_pinv_symbol(weight, (10, 9)))
    if _close(got, circular, 1e-6):
        fail(
            name,
            "that is the circular (FFT) inverse. It is exact only for periodic images; for "
            "padding=1 the border pixels see zeros, not the opposite edge, and the FFT answer "
            "is off near the border. Solve the least-squares problem with conv2d and its "
            "adjoint.",
        )
    error = ((got - x).norm() / x.norm()).item()
    residual = (conv2d_zeros(got, weight) - y).norm() / y.norm()
    if error > 1e-6:
        normal = conv2d_zeros_adjoint(conv2d_zeros(got, weight) - y, weight).norm()
        fail(
            name,
            f"relative error {error:.1e} against the true x (residual ||A x - y|| / ||y|| = "
            f"{residual.item():.1e}, normal-equation residual {normal.item():.1e}): not the "
            "least-squares solution yet. More iterations, or check the adjoint.",
        )
    return passed(name, "the least-squares solution, not the circular approximation.")
