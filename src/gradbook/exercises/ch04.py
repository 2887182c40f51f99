"""Checks for chapter 4, the pseudo-inverse of a convolution via the FFT.

Each check runs the student's function on inputs of its own (odd and even image
sizes, so that ``rfft2``'s Nyquist column is exercised, and different input and
output channel counts), holds it to float64 rounding where the chapter's answer
is exact, and recognises the usual mistakes: a symbol without the kernel flip
(convolution instead of the cross-correlation that ``F.conv2d`` computes) or
without the centre shift (an image off by one pixel), ``fft2`` where ``rfft2``
is meant or the Nyquist column dropped, ``irfft2`` without the output size,
entrywise instead of matrix inverses, the transpose where the conjugate
transpose is meant, ``.T`` on a 4-D tensor, a pseudo-inverse cutoff relative to
each frequency instead of the whole operator (which inverts rounding noise at
singular frequencies), a regularisation on the wrong scale, the circular (FFT)
answer passed off as exact for zero padding, a least-squares solution that is
not the minimum-norm one, and a preconditioner that is not symmetric or not
used. Every function an exercise asks for is rejected when it calls the
:mod:`gradbook.convinv` function that computes it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from gradbook.convinv import (
    apply_symbol,
    cgls,
    circular_preconditioner,
    conv2d_circular,
    conv2d_circular_adjoint,
    conv2d_matrix,
    conv2d_operator,
    conv2d_pinv,
    conv2d_zeros,
    conv2d_zeros_adjoint,
    conv_pinv_symbol,
    conv_symbol,
    conv_symbol_naive,
)
from gradbook.exercises._core import (
    ExerciseFailed,
    Passed,
    answer_tensor,
    attempt,
    diagnose,
    fail,
    forbid,
    one_thread,
    passed,
    randn,
)

_DOT_T_HINT = (
    "`.T` on a tensor of rank above 2 reverses *all* its dimensions (and is deprecated); "
    "to transpose the last two dimensions of a stack of matrices use `.mT`, and `.mH` for "
    "the conjugate transpose."
)

#: Everything in gradbook.convinv that computes a symbol, a pseudo-inverse or a solve.
_SOLVERS = (
    conv_symbol,
    conv_symbol_naive,
    apply_symbol,
    conv_pinv_symbol,
    conv2d_pinv,
    cgls,
    circular_preconditioner,
    conv2d_operator,
    conv2d_zeros_adjoint,
    conv2d_circular_adjoint,
)


def _rel(got: Tensor, expected: Tensor) -> float:
    """``||got - expected|| / ||expected||`` (complex-aware), in float64."""
    got = got.detach().to(torch.complex128)
    expected = expected.detach().to(torch.complex128)
    return ((got - expected).abs().norm() / expected.abs().norm()).item()


def _same(got: object, expected: Tensor, tol: float = 1e-10) -> bool:
    """Same shape and relative error at most ``tol`` (never raises)."""
    if not isinstance(got, Tensor) or tuple(got.shape) != tuple(expected.shape):
        return False
    if not (got.is_floating_point() or got.is_complex()):
        return False
    error = _rel(got, expected)
    return error == error and error <= tol  # NaN compares unequal


def _uses_dot_t(answer: Callable) -> bool:
    try:
        source = inspect.getsource(answer)
    except (OSError, TypeError):
        return False
    return re.search(r"\.T\b", source) is not None


def _dot_t_hint(answer: Callable) -> str:
    """The `.T` hint, with a leading space, when ``answer``'s source uses `.T`; else ``""``."""
    return " " + _DOT_T_HINT if _uses_dot_t(answer) else ""


_SYMBOL = (conv_symbol,)


def _attempt(name: str, answer: Callable, *args: object, symbol_allowed: bool = True) -> Any:
    """``attempt`` with the solving gradbook functions disabled (``conv_symbol`` too unless
    ``symbol_allowed``), adding the `.T` hint when code using `.T` on tensors crashes."""
    disabled = [f for f in _SOLVERS if not (symbol_allowed and f in _SYMBOL)]
    try:
        with forbid(*disabled):
            return attempt(name, answer, *args)
    except ExerciseFailed as error:
        if error.__cause__ is not None and _uses_dot_t(answer):
            fail(name, f"{error.__cause__}. {_DOT_T_HINT}")
        raise


class _Calls(TorchFunctionMode):
    """Counts the torch functions (``conv2d``, ``fft_rfft2``, ...) called inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None):
        name = getattr(func, "__name__", str(func))
        self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


# --------------------------------------------------------------------------- 4.1


@one_thread
def check_symbol_1ch(symbol_1ch: Callable[[Tensor, int, int], Tensor]) -> Passed:
    """Exercise 4.1: ``symbol_1ch(kernel, H, W)``, the ``(H, W // 2 + 1)`` symbol of one kernel."""
    name = "Exercise 4.1 (the symbol of one channel)"
    for seed, (H, W) in enumerate([(8, 8), (7, 6), (5, 9), (6, 7)]):
        kernel = randn(400 + seed, 3, 3)
        x = randn(410 + seed, 1, 1, H, W)
        expected = conv_symbol(kernel[None, None], (H, W))[..., 0, 0]
        got = answer_tensor(
            name, _attempt(name, symbol_1ch, kernel, H, W, symbol_allowed=False), "the symbol"
        )
        if got.shape == (H, W) and got.is_complex():
            fail(
                name,
                f"your symbol has shape {tuple(got.shape)}: that is the full fft2 plane. The "
                f"image is real, so use rfft2, whose last dimension is W // 2 + 1 = {W // 2 + 1}.",
            )
        if W % 2 == 0 and got.shape == (H, W // 2):
            fail(
                name,
                f"for W = {W} your symbol has {W // 2} columns: you dropped the Nyquist "
                f"column. For even W, rfft2 keeps W // 2 + 1 = {W // 2 + 1} columns, the last "
                "one the frequency v = W / 2.",
            )
        if got.shape != (H, W // 2 + 1):
            fail(name, f"expected shape ({H}, {W // 2 + 1}), got {tuple(got.shape)}.")
        if not got.is_complex():
            fail(name, "the symbol is complex (one complex number per frequency), yours is real.")
        if got.dtype != torch.complex128:
            fail(
                name,
                f"your symbol is {got.dtype}: for a float64 kernel it must be complex128 "
                "(the check holds it to float64 rounding).",
            )
        if _same(got, expected, 1e-12):
            continue
        image = torch.fft.irfft2(got * torch.fft.rfft2(x), s=(H, W))
        right = conv2d_circular(x, kernel[None, None])
        convolution = conv2d_circular(x, kernel.flip(0, 1)[None, None])
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                moved = torch.roll(image, (dy, dx), dims=(2, 3))
                if _same(moved, convolution, 1e-10):
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
                if _same(moved, right, 1e-10):
                    fail(
                        name,
                        f"your result is the right image shifted by ({-dy}, {-dx}) pixels: the "
                        "centre tap of the kernel must sit at index (0, 0) of the H x W array.",
                    )
        if W % 2 == 0 and _same(got[:, :-1], expected[:, :-1], 1e-10):
            fail(
                name,
                f"for W = {W} everything but the last column is right: that column is the "
                "Nyquist frequency v = W / 2 (even W only); compute it like the others.",
            )
        fail(
            name,
            f"for a {H} x {W} image your symbol does not reproduce the circular "
            f"cross-correlation (relative error {_rel(got, expected):.1e})."
            + _dot_t_hint(symbol_1ch),
        )
    return passed(
        name,
        "flipped, centred, half plane with the Nyquist column, odd and even sizes, to rounding.",
    )


# --------------------------------------------------------------------------- 4.2


def _zero_sum(weight: Tensor) -> Tensor:
    """``weight`` with every tap set summing to zero: the zero frequency is singular."""
    return weight - weight.mean(dim=(-2, -1), keepdim=True)


def _kernel_and_data(
    seed: int, c_out: int, c_in: int, H: int, W: int, singular: bool
) -> tuple[Tensor, Tensor]:
    """A 3x3 kernel (with singular frequencies when ``singular``) and a batch of 2 outputs."""
    weight = randn(seed, c_out, c_in, 3, 3)
    if singular:
        weight = _zero_sum(weight)
    return weight, randn(seed + 10, 2, c_out, H, W)


def _pinv_case(
    name: str,
    circular_pinv: Callable,
    seed: int,
    c_out: int,
    c_in: int,
    H: int,
    W: int,
    singular: bool,
    label: str,
) -> None:
    """One case of the check above."""
    weight, y = _kernel_and_data(420 + seed, c_out, c_in, H, W, singular)
    expected = conv2d_pinv(y, weight, "circular")
    symbol = conv_symbol(weight, (H, W))
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
    if _same(got, expected, 1e-10):
        return
    per_frequency = apply_symbol(y, torch.linalg.pinv(symbol))
    if singular and (
        _same(got, per_frequency, 1e-6)
        or not bool(torch.isfinite(got).all())
        or got.abs().max() > 1e6 * expected.abs().max()
    ):
        fail(
            name,
            f"on {label} your answer is huge or not finite: at a singular frequency "
            "A(w) holds only rounding noise (about 1e-16), and a cutoff relative to each "
            "A(w)'s own largest singular value (torch.linalg.pinv's default) inverts that "
            "noise. A^+ is the pseudo-inverse of the *whole* operator: the cutoff is "
            "relative to the largest singular value over all frequencies.",
        )
    diagnose(
        name,
        got,
        [
            (
                apply_symbol(y, symbol.mH),
                "you applied the conjugate transpose of A(w), i.e. the adjoint A^T y. The "
                "adjoint inverts only orthogonal operators; use the pseudo-inverse of each "
                "A(w).",
            ),
            (
                lambda got: c_out == c_in and _same(got, apply_symbol(y, symbol.mT), 1e-8),
                "you applied the transpose of A(w), which is not even the adjoint (that "
                "is the conjugate transpose) and inverts nothing; use the pseudo-inverse "
                "of each A(w).",
            ),
            (
                lambda got: _same(
                    got, apply_symbol(y, conv_pinv_symbol(weight.flip(-2, -1), (H, W))), 1e-8
                ),
                "your pseudo-inverse belongs to the conjugated symbol: that inverts the "
                "convolution with the flipped kernel. Invert A(w) itself.",
            ),
            (
                lambda got: (
                    c_out == c_in
                    and _same(got, apply_symbol(y, conv_pinv_symbol(weight, (H, W)).mT), 1e-8)
                ),
                "you applied the transpose of the pseudo-inverse: contract its *last* index "
                "(c_out) with the channels of Y(w). " + _DOT_T_HINT,
            ),
            (
                lambda got: (
                    c_out == c_in
                    and not singular
                    and _same(got, apply_symbol(y, (1.0 / symbol).mT), 1e-8)
                ),
                "each frequency holds a c_out x c_in matrix: invert the matrix "
                "(torch.linalg.pinv), not its entries one by one.",
            ),
        ],
    )
    if got.dtype != torch.float64 or _rel(got, expected) < 1e-4:
        fail(
            name,
            f"on {label} close but not to float64 rounding (relative error "
            f"{_rel(got, expected):.1e}): the circular pseudo-inverse is exact, so compute "
            "in float64/complex128 throughout, and invert exactly (no regularisation).",
        )
    fail(
        name,
        f"on {label} not the pseudo-inverse of the circular convolution applied to y "
        f"(relative error {_rel(got, expected):.1e})." + _dot_t_hint(circular_pinv),
    )


@one_thread
def check_circular_pinv(circular_pinv: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 4.2: ``circular_pinv(y, weight)`` is the FFT pseudo-inverse for circular padding.

    The reference is the pseudo-inverse of the whole operator (the dense
    ``torch.linalg.pinv`` of it): singular values below ``rcond s_max`` count as
    zero, ``s_max`` the largest over all frequencies.
    """
    name = "Exercise 4.2 (the per-frequency pseudo-inverse)"
    cases = [
        ((3, 3, 6, 6), False, "square symbols, 6 x 6"),
        ((3, 2, 5, 7), False, "tall symbols (3 x 2), 5 x 7"),
        ((2, 3, 6, 5), False, "wide symbols (2 x 3), 6 x 5"),
        ((3, 3, 6, 8), True, "kernels whose taps sum to zero (a singular zero frequency), 6 x 8"),
    ]
    for seed, ((c_out, c_in, H, W), singular, label) in enumerate(cases):
        _pinv_case(name, circular_pinv, seed, c_out, c_in, H, W, singular, label)
    return passed(
        name,
        "square, tall, wide and singular frequencies, odd and even sizes, to float64 rounding.",
    )


# --------------------------------------------------------------------------- 4.3


def _tikhonov_case(
    name: str,
    tikhonov: Callable,
    seed: int,
    c_out: int,
    c_in: int,
    H: int,
    W: int,
    lam: float,
    singular: bool,
) -> None:
    """One case of the check above."""
    weight, y = _kernel_and_data(440 + seed, c_out, c_in, H, W, singular)
    expected = conv2d_pinv(y, weight, "circular", reg=lam)
    got = answer_tensor(name, _attempt(name, tikhonov, y, weight, lam), "x")
    if got.shape != expected.shape:
        fail(
            name,
            f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}."
            + _dot_t_hint(tikhonov),
        )
    if _same(got, expected, 1e-10):
        return
    if not bool(torch.isfinite(got).all()):
        fail(
            name,
            "your answer is not finite: with lam > 0 every frequency has a solution, even "
            "a singular one (A^H A + lam I is positive definite). Did you invert A(w) "
            "first?",
        )
    symbol = conv_symbol(weight, (H, W))
    eye = torch.eye(c_in, dtype=symbol.dtype)
    wrong_scale = [
        (lam**2, "lam^2"),
        (lam**0.5, "sqrt(lam)"),
        (lam * torch.linalg.svdvals(symbol).max().item() ** 2, "lam s_max^2"),
    ]
    diagnose(
        name,
        got,
        [
            (
                lambda got: _same(got, conv2d_pinv(y, weight, "circular"), 1e-8),
                "your answer does not depend on lam: it is the plain pseudo-inverse.",
            ),
            *[
                (
                    lambda got, wrong=wrong: _same(
                        got, conv2d_pinv(y, weight, "circular", reg=wrong), 1e-8
                    ),
                    f"your answer uses {what} where lam belongs: the penalty lam ||x||^2 "
                    "adds lam to the *squared* singular values (A^H A + lam I).",
                )
                for wrong, what in wrong_scale
            ],
            (
                lambda got: _same(
                    got,
                    apply_symbol(y, torch.linalg.solve(symbol.mT @ symbol + lam * eye, symbol.mT)),
                    1e-8,
                ),
                "the per-frequency matrices are complex: use the conjugate transpose A^H "
                "(`.mH`), not the transpose A^T.",
            ),
        ],
    )
    fail(
        name,
        "not (A^H A + lam I)^-1 A^H Y frequency by frequency (relative error "
        f"{_rel(got, expected):.1e})." + _dot_t_hint(tikhonov),
    )


@one_thread
def check_tikhonov(tikhonov: Callable[[Tensor, Tensor, float], Tensor]) -> Passed:
    """Exercise 4.3: ``tikhonov(y, weight, lam)``: ``X(w) = (A^H A + lam I)^-1 A^H Y(w)``."""
    name = "Exercise 4.3 (Tikhonov regularisation)"
    cases = [(3, 3, 6, 6, 0.5, False), (3, 2, 5, 7, 2.0, False), (3, 3, 6, 5, 0.3, True)]
    for seed, (c_out, c_in, H, W, lam, singular) in enumerate(cases):
        _tikhonov_case(name, tikhonov, seed, c_out, c_in, H, W, lam, singular)
    return passed(
        name, "the regularised inverse for square, tall and singular symbols, to rounding."
    )


# --------------------------------------------------------------------------- 4.4


def _adjoint_case(
    name: str, conv_adjoint: Callable, seed: int, c_out: int, c_in: int, H: int, W: int
) -> None:
    """One case of the check above."""
    weight = randn(460 + seed, c_out, c_in, 3, 3)
    x = randn(470 + seed, 2, c_in, H, W)
    y = randn(480 + seed, 2, c_out, H, W)
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
    rhs = (x * got.detach().to(x.dtype)).sum()
    if abs(lhs - rhs) <= 1e-12 * abs(lhs):
        return
    flipped = weight.transpose(0, 1).flip(-2, -1)
    diagnose(
        name,
        got,
        [
            (
                lambda got: (
                    c_out == c_in and _same(got, F.conv2d(y, weight.flip(-2, -1), padding=1), 1e-10)
                ),
                "the kernel is flipped but the channels are not swapped: the adjoint maps "
                "c_out channels back to c_in, with weight[o, c] used from c's side.",
            ),
            (
                lambda got: (
                    c_out == c_in
                    and _same(got, F.conv2d(y, weight.transpose(0, 1), padding=1), 1e-10)
                ),
                "the channels are swapped but the kernel is not flipped: the adjoint of a "
                "cross-correlation is the cross-correlation with the flipped kernel.",
            ),
            (
                lambda got: _same(got, conv2d_circular(y, flipped), 1e-10),
                "that is the adjoint of the *circular* convolution: with zero padding the "
                "contributions that wrap around must not appear.",
            ),
        ],
    )
    if got.dtype != torch.float64:
        fail(
            name,
            f"your result is {got.dtype}: the adjoint test holds it to float64 rounding "
            "(1e-12), so keep y's dtype.",
        )
    fail(
        name,
        f"the adjoint test fails: <A x, y> and <x, A^T y> differ by "
        f"{(abs(lhs - rhs) / abs(lhs)).item():.1e} (relative), not to rounding."
        + _dot_t_hint(conv_adjoint),
    )


@one_thread
def check_conv_adjoint(conv_adjoint: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 4.4: ``conv_adjoint(y, weight)``, the adjoint of ``conv2d(x, w, padding=1)``."""
    name = "Exercise 4.4 (the adjoint of conv2d)"
    for seed, (c_out, c_in, H, W) in enumerate([(3, 3, 7, 6), (2, 4, 6, 6), (4, 3, 5, 8)]):
        _adjoint_case(name, conv_adjoint, seed, c_out, c_in, H, W)
    return passed(name, "<A x, y> = <x, A^T y> to 1e-12 for square, wide and tall kernels.")


# --------------------------------------------------------------------------- 4.5


def _dense_pinv_solution(y: Tensor, weight: Tensor) -> Tensor:
    """``A^+ y`` for ``A = conv2d(., weight, padding=1)``, from the dense matrix (small sizes)."""
    B, _, H, W = y.shape
    A = conv2d_matrix(weight, (H, W), "zeros")
    solution = torch.linalg.pinv(A) @ y.reshape(B, -1).T
    return solution.T.reshape(B, weight.shape[1], H, W)


@one_thread
def check_solve_zero_padded(solve: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 4.5: ``solve(y, weight)`` is the minimum-norm least-squares inverse of
    ``conv2d(padding=1)``, checked against the dense pseudo-inverse."""
    name = "Exercise 4.5 (the exact answer for padding=1)"
    cases = [((3, 3, 10, 9), "a square, well-conditioned kernel"), ((2, 3, 7, 8), "a wide kernel")]
    for seed, ((c_out, c_in, H, W), label) in enumerate(cases):
        weight = 0.1 * randn(490 + seed, c_out, c_in, 3, 3)
        weight[:, :, 1, 1] += torch.eye(c_out, c_in, dtype=torch.float64)  # well conditioned
        x = randn(495 + seed, 2, c_in, H, W)
        y = conv2d_zeros(x, weight)
        expected = _dense_pinv_solution(y, weight)
        got = answer_tensor(name, _attempt(name, solve, y, weight), "x")
        if got.shape != expected.shape:
            fail(name, f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}.")
        if _same(got, expected, 1e-8):
            continue
        circular = apply_symbol(y, conv_pinv_symbol(weight, (H, W)))
        if _same(got, circular, 1e-6):
            fail(
                name,
                "that is the circular (FFT) inverse. It is exact only for periodic images; for "
                "padding=1 the border pixels see zeros, not the opposite edge, and the FFT answer "
                "is off near the border. Solve the least-squares problem with conv2d and its "
                "adjoint.",
            )
        got64 = got.detach().to(torch.float64)
        residual = conv2d_zeros(got64, weight) - y
        normal = (
            conv2d_zeros_adjoint(residual, weight).norm() / conv2d_zeros_adjoint(y, weight).norm()
        ).item()
        if normal <= 1e-8:
            fail(
                name,
                f"on {label} your x solves the normal equations A^T A x = A^T y (relative "
                f"residual {normal:.0e}) but is not the minimum-norm solution: with more "
                "unknowns than equations there are many, and CGLS reaches the one of smallest "
                "norm only when started from x = 0 (its iterates then stay in the range of "
                "A^T).",
            )
        fail(
            name,
            f"on {label} relative error {_rel(got, expected):.1e} against the dense "
            f"least-squares solution (normal-equation residual {normal:.1e}): not the "
            "least-squares solution yet. More iterations, a smaller tolerance, or check the "
            "adjoint.",
        )
    return passed(
        name,
        "the minimum-norm least-squares solution, against a dense pseudo-inverse, for a square "
        "and a wide kernel.",
    )


# --------------------------------------------------------------------------- 4.6 (stretch)


def _smooth_kernel(seed: int, c: int) -> Tensor:
    """The chapter's smooth kernel (a blur plus a tenth of the identity, mixed across
    channels) plus a little noise, so that its symbol is not real."""
    blur = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float64) / 16
    delta = torch.zeros(3, 3, dtype=torch.float64)
    delta[1, 1] = 1
    mix = torch.eye(c, dtype=torch.float64) + 0.3 * randn(seed, c, c)
    return mix[:, :, None, None] * (blur + 0.1 * delta) + 0.01 * randn(seed + 1, c, c, 3, 3)


def _plain_iterations(y: Tensor, weight: Tensor) -> int:
    _, info = conv2d_pinv(y, weight, "zeros", tol=1e-12, max_iter=2000, return_info=True)
    return info.iterations


@one_thread
def check_preconditioned_cgls(
    circulant_preconditioner: Callable[[Tensor, tuple[int, int], float], Callable],
    pcgls: Callable[[Tensor, Tensor], Tensor],
) -> Passed:
    """Exercise 4.6 (stretch): ``circulant_preconditioner(weight, (H, W), shift)`` returns
    ``s -> P s`` with ``P = (C^H C + shift s_max^2 I)^-1`` by FFT; ``pcgls(y, weight)`` is
    CGLS for ``conv2d(padding=1)`` preconditioned by it."""
    name = "Exercise 4.6 (Stretch: CGLS with the circulant preconditioner)"
    c, H, W, shift = 3, 8, 9, 1e-3
    weight = _smooth_kernel(500, c)
    reference = circular_preconditioner(weight, (H, W), shift=shift)
    a, b = randn(501, 2, c, H, W), randn(502, 2, c, H, W)
    P = _attempt(name, circulant_preconditioner, weight, (H, W), shift)
    if not callable(P):
        fail(name, f"circulant_preconditioner must return a function s -> P s, got {P!r}.")
    Pa = answer_tensor(name, _attempt(name, P, a), "P s", tuple(a.shape))
    Pb = answer_tensor(name, _attempt(name, P, b), "P s", tuple(b.shape))
    left, right = (Pa.detach() * b).sum(), (a * Pb.detach()).sum()
    if abs(left - right) > 1e-12 * abs(left):
        fail(
            name,
            f"P is not symmetric: <P a, b> and <a, P b> differ by "
            f"{(abs(left - right) / abs(left)).item():.1e} (relative). Per frequency P(w) is "
            "Hermitian only with the conjugate transpose: C(w)^H C(w), `.mH`, not `.mT`; and "
            "apply it with irfft2(..., s=(H, W)).",
        )
    if not _same(Pa, reference(a), 1e-10):
        symbol = conv_symbol(weight, (H, W))
        s_max = torch.linalg.svdvals(symbol).max().item()
        normal = symbol.mH @ symbol
        eye = torch.eye(c, dtype=symbol.dtype)
        diagnose(
            name,
            Pa,
            [
                (
                    lambda got: _same(
                        got, apply_symbol(a, torch.linalg.inv(normal + shift * eye)), 1e-8
                    ),
                    "the shift is relative to the largest squared singular value: add "
                    "shift * s_max^2 I (s_max over all frequencies), not shift * I.",
                ),
                (
                    lambda got: _same(
                        got,
                        apply_symbol(a, torch.linalg.inv(normal + shift * s_max * eye)),
                        1e-8,
                    ),
                    "the shift is relative to the largest *squared* singular value: "
                    "shift * s_max^2, not shift * s_max.",
                ),
                (
                    lambda got: _same(got, apply_symbol(a, torch.linalg.pinv(normal)), 1e-6),
                    "your P has no shift: where the circular operator is nearly singular "
                    "(C^H C)^-1 is huge, and P must stay bounded: add shift * s_max^2 I.",
                ),
                (
                    lambda got: _same(got, apply_symbol(a, normal + shift * s_max**2 * eye), 1e-8),
                    "that is C^H C + shift s_max^2 I itself; the preconditioner is its inverse.",
                ),
            ],
        )
        fail(
            name,
            "P s is not (C^H C + shift s_max^2 I)^-1 s applied by FFT (relative error "
            f"{_rel(Pa, reference(a)):.1e}).",
        )
    for seed, (size, label) in enumerate([((12, 11), "12 x 11"), ((10, 13), "10 x 13")]):
        x = randn(510 + seed, 1, c, *size)
        y = conv2d_zeros(x, weight) + 0.01 * randn(520 + seed, 1, c, *size)
        expected = _dense_pinv_solution(y, weight)
        plain = _plain_iterations(y, weight)
        with _Calls() as calls:
            got = _attempt(name, pcgls, y, weight)
        got = answer_tensor(name, got, "x", tuple(expected.shape))
        convolutions = calls.counts.get("conv2d", 0)
        ffts = sum(count for op, count in calls.counts.items() if op.startswith("fft_"))
        if _same(got, apply_symbol(y, conv_pinv_symbol(weight, size)), 1e-6):
            fail(
                name,
                "that is the circular (FFT) inverse: the preconditioner only speeds up the "
                "iteration; the answer is still the zero-padded least-squares solution.",
            )
        if not _same(got, expected, 1e-8):
            fail(
                name,
                f"on a {label} image relative error {_rel(got, expected):.1e} against the "
                "dense least-squares solution: preconditioned CGLS applies P to s = A^T r, "
                "uses gamma = <s, P s> and p = P s + beta p; iterate until ||s|| <= 1e-12 "
                "||A^T y||.",
            )
        if ffts == 0:
            fail(
                name,
                "no FFT ran: that is plain CGLS. Apply the preconditioner to s = A^T r in "
                "every iteration.",
            )
        if convolutions > 0.7 * plain:
            fail(
                name,
                f"on a {label} image your solver ran conv2d {convolutions} times; plain CGLS "
                f"needs {plain} iterations here, and with the preconditioner about a third of "
                "that. Is P applied to s = A^T r, with gamma = <s, P s> and p = P s + beta p?",
            )
    return passed(
        name,
        "P symmetric to 1e-12 and equal to the FFT reference; the dense least-squares solution "
        "in well under the iterations of plain CGLS.",
    )
