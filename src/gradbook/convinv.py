"""The pseudo-inverse of a multichannel 2-D convolution, via the FFT and iteratively (chapter 4).

``F.conv2d(x, weight, padding=p)`` is a linear map ``y = A x`` from
``R^(c_in H W)`` to ``R^(c_out H W)``. With *circular* padding ``A`` is block
circulant, and the 2-D DFT turns it into one small ``c_out x c_in`` complex
matrix per frequency ``w = (u, v)``, the *symbol*:

.. math::

    Y(w) = A(w)\\, X(w), \\qquad
    A(w)_{oc} = \\sum_{a, b} K_{oc a b}\\,
        e^{2\\pi i \\left(u (a - p_h) / H + v (b - p_w) / W\\right)},

the DFT of the *flipped* kernel with its centre tap rolled to index ``(0, 0)``
(``F.conv2d`` is a cross-correlation, hence the flip, i.e. the ``+`` in the
exponent). Everything that is hard for the ``(c H W)``-sized matrix is easy per
frequency: the pseudo-inverse is ``A(w)^+`` frequency by frequency, Tikhonov
regularisation is ``(A(w)^H A(w) + lam I)^-1 A(w)^H``, and the singular values
of the layer are the union of the singular values of all ``A(w)``
(Sedghi, Gupta & Long, ICLR 2019).

With *zero* padding (``padding=k // 2``, what ``nn.Conv2d`` does by default)
``A`` is not circulant; the FFT answer is then only an approximation, wrong at
the border and, for ill-conditioned kernels, everywhere. The exact
minimum-norm least-squares solution is computed by CGLS with ``F.conv2d`` as
``A`` and ``F.conv_transpose2d`` as ``A^T``, optionally preconditioned by the
circular (FFT) inverse.

Convention:
    Tensors are ``(B, C, H, W)`` (or unbatched ``(C, H, W)``); ``weight`` is
    ``(c_out, c_in, kh, kw)`` with odd ``kh`` and ``kw``, the layout of
    ``nn.Conv2d.weight``, and the centre tap ``(kh // 2, kw // 2)`` sits over
    the output pixel, so output and input have the same ``H x W``. The
    frequency grid is that of ``torch.fft.rfft2``: ``u`` in ``0 .. H - 1`` and
    ``v`` in ``0 .. W // 2`` (the other half follows from
    ``A(-w) = conj(A(w))``). The dense matrix acts on ``x.reshape(-1)`` of one
    sample ``(c_in, H, W)`` in row-major order. ``padding`` is ``"circular"``
    (periodic image) or ``"zeros"`` (``F.conv2d(x, weight, padding=k // 2)``).

Dtypes and devices: ``float32`` and ``float64`` on any device; the symbol is
``complex64`` or ``complex128`` accordingly. The per-frequency SVDs behind the
pseudo-inverse and the singular values always run in ``float64``
(``complex128``), whatever the input dtype, since they are cheap and decide the
accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from gradbook._checks import check_int, check_nonnegative, check_size, check_tensor

Padding = Literal["circular", "zeros"]
PADDINGS = ("circular", "zeros")
#: Default relative tolerance of the iterative solver, per input dtype.
SOLVER_TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
#: Largest dense matrix :func:`conv2d_matrix` builds (entries), about 1 GB in float64.
MAX_DENSE_ENTRIES = 2**27


# --------------------------------------------------------------------------- validation


def _check_tensor(name: str, x: object) -> Tensor:
    return check_tensor(name, x, dtypes=(torch.float32, torch.float64))


def _check_weight(weight: object) -> tuple[int, int, int, int]:
    """``(c_out, c_in, kh, kw)`` of a valid kernel, or a clear error."""
    weight = _check_tensor("weight", weight)
    if weight.ndim != 4:
        raise ValueError(
            f"weight: expected a 4-D tensor (c_out, c_in, kh, kw), got shape {tuple(weight.shape)}"
        )
    c_out, c_in, kh, kw = weight.shape
    if min(c_out, c_in, kh, kw) == 0:
        raise ValueError(f"weight: expected no empty dimension, got shape {tuple(weight.shape)}")
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(
            f"weight: expected an odd kernel size (the centre tap must sit on a pixel), "
            f"got {kh} x {kw}"
        )
    return c_out, c_in, kh, kw


def _check_padding(padding: object) -> str:
    if padding not in PADDINGS:
        raise ValueError(f"padding: expected 'circular' or 'zeros', got {padding!r}")
    return str(padding)


def _check_image(
    name: str, x: object, weight: Tensor, channels: int, which: str
) -> tuple[Tensor, bool]:
    """Validate a ``(B, C, H, W)`` or ``(C, H, W)`` image; return it batched and whether it was."""
    x = _check_tensor(name, x)
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{name}: expected a (B, C, H, W) or (C, H, W) tensor, got shape {tuple(x.shape)}"
        )
    if x.shape[-3] != channels:
        raise ValueError(
            f"{name}: expected {channels} channels ({which} of weight "
            f"{tuple(weight.shape)}), got {x.shape[-3]} (shape {tuple(x.shape)})"
        )
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{name}: expected a non-empty image, got shape {tuple(x.shape)}")
    if x.dtype != weight.dtype:
        raise TypeError(f"{name}: dtype {x.dtype} differs from weight's dtype {weight.dtype}")
    if x.device != weight.device:
        raise ValueError(f"{name}: on {x.device}, but weight is on {weight.device}")
    batched = x.ndim == 4
    return (x if batched else x.unsqueeze(0)), batched


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


# --------------------------------------------------------------------------- operators


def conv2d_circular(x: Tensor, weight: Tensor) -> Tensor:
    """Cross-correlation with periodic boundary: ``conv2d`` of the circularly padded image.

    .. math::

        y_{o i j} = \\sum_{c, a, b} K_{o c a b}\\,
            x_{c,\\ (i + a - p_h) \\bmod H,\\ (j + b - p_w) \\bmod W}

    Equal to ``F.conv2d(F.pad(x, (pw, pw, ph, ph), mode="circular"), weight)``
    with ``ph, pw = kh // 2, kw // 2``, and also defined when the kernel is
    larger than the image (``F.pad`` refuses to wrap more than once; the
    indices here wrap any number of times).

    Args:
        x: ``(B, c_in, H, W)`` or ``(c_in, H, W)``, float32 or float64.
        weight: ``(c_out, c_in, kh, kw)``, odd ``kh``, ``kw``, same dtype and device.

    Returns:
        ``(B, c_out, H, W)`` (or ``(c_out, H, W)``).

    Raises:
        TypeError: not a float32/float64 tensor, or dtypes differ.
        ValueError: even kernel, wrong number of channels, wrong rank, devices differ.
    """
    _, c_in, kh, kw = _check_weight(weight)
    xb, batched = _check_image("x", x, weight, c_in, "dimension 1")
    H, W = xb.shape[-2:]
    ph, pw = kh // 2, kw // 2
    rows = torch.arange(-ph, H + ph, device=xb.device) % H
    cols = torch.arange(-pw, W + pw, device=xb.device) % W
    padded = xb[:, :, rows][:, :, :, cols]
    y = F.conv2d(padded, weight)
    return y if batched else y.squeeze(0)


def conv2d_circular_adjoint(y: Tensor, weight: Tensor) -> Tensor:
    """The adjoint ``A^T y`` of :func:`conv2d_circular`.

    .. math::

        A^T = \\text{circular cross-correlation with } K^T_{c o a b} = K_{o c, k_h-1-a, k_w-1-b}

    (channels swapped, kernel flipped), so ``<A x, y> = <x, A^T y>``.

    Args:
        y: ``(B, c_out, H, W)`` or ``(c_out, H, W)``.
        weight: ``(c_out, c_in, kh, kw)``.

    Returns:
        ``(B, c_in, H, W)`` (or ``(c_in, H, W)``).
    """
    c_out, _, _, _ = _check_weight(weight)
    _check_image("y", y, weight, c_out, "dimension 0")
    return conv2d_circular(y, weight.transpose(0, 1).flip(-2, -1))


def conv2d_zeros(x: Tensor, weight: Tensor) -> Tensor:
    """Cross-correlation with zero padding: ``F.conv2d(x, weight, padding=(kh // 2, kw // 2))``.

    Args:
        x: ``(B, c_in, H, W)`` or ``(c_in, H, W)``.
        weight: ``(c_out, c_in, kh, kw)``, odd ``kh``, ``kw``.

    Returns:
        ``(B, c_out, H, W)`` (or ``(c_out, H, W)``).
    """
    _, c_in, kh, kw = _check_weight(weight)
    _check_image("x", x, weight, c_in, "dimension 1")
    return F.conv2d(x, weight, padding=(kh // 2, kw // 2))


def conv2d_zeros_adjoint(y: Tensor, weight: Tensor) -> Tensor:
    """The adjoint of :func:`conv2d_zeros`: ``F.conv_transpose2d`` with the same padding.

    ``conv_transpose2d`` is exactly the transpose (adjoint) of ``conv2d`` with
    the same ``weight``, stride and padding, so ``<A x, y> = <x, A^T y>``.

    Args:
        y: ``(B, c_out, H, W)`` or ``(c_out, H, W)``.
        weight: ``(c_out, c_in, kh, kw)``.

    Returns:
        ``(B, c_in, H, W)`` (or ``(c_in, H, W)``).
    """
    c_out, _, kh, kw = _check_weight(weight)
    yb, batched = _check_image("y", y, weight, c_out, "dimension 0")
    x = F.conv_transpose2d(yb, weight, padding=(kh // 2, kw // 2))
    return x if batched else x.squeeze(0)


def conv2d_operator(
    weight: Tensor, padding: Padding = "circular"
) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """The pair ``(A, A^T)`` of functions for ``padding`` ``"circular"`` or ``"zeros"``."""
    padding = _check_padding(padding)
    _check_weight(weight)
    if padding == "circular":
        return (lambda x: conv2d_circular(x, weight)), (
            lambda y: conv2d_circular_adjoint(y, weight)
        )
    return (lambda x: conv2d_zeros(x, weight)), (lambda y: conv2d_zeros_adjoint(y, weight))


# --------------------------------------------------------------------------- the symbol


def _symbol(weight: Tensor, H: int, W: int) -> Tensor:
    """``conv_symbol`` without validation, in the dtype of ``weight``."""
    c_out, c_in, kh, kw = weight.shape
    ph, pw = kh // 2, kw // 2
    # tap (a, b) of the flipped kernel, centre rolled to the origin, lands at
    # ((ph - a) mod H, (pw - b) mod W); taps that wrap onto the same pixel add up.
    rows = ((ph - torch.arange(kh, device=weight.device)) % H)[:, None].expand(kh, kw)
    cols = ((pw - torch.arange(kw, device=weight.device)) % W)[None, :].expand(kh, kw)
    kernel = weight.new_zeros(H, W, c_out, c_in)
    kernel = kernel.index_put((rows, cols), weight.permute(2, 3, 0, 1), accumulate=True)
    return torch.fft.rfft2(kernel, dim=(0, 1))


def conv_symbol(weight: Tensor, size: tuple[int, int]) -> Tensor:
    """The per-frequency matrices ``A(w)`` that diagonalise :func:`conv2d_circular`.

    .. math::

        \\widehat{y}(w) = A(w)\\, \\widehat{x}(w), \\qquad
        A(u, v)_{oc} = \\sum_{a, b} K_{oc a b}\\,
            e^{2 \\pi i \\left( u (a - p_h)/H + v (b - p_w)/W \\right)}

    with ``hat = torch.fft.rfft2``. Computed as the ``rfft2`` of the flipped
    kernel placed in an ``H x W`` array with its centre tap rolled to ``(0, 0)``.
    Differentiable with respect to ``weight``.

    Args:
        weight: ``(c_out, c_in, kh, kw)``, odd ``kh`` and ``kw``.
        size: ``(H, W)``, the image size (any ``H, W >= 1``, odd or even).

    Returns:
        ``(H, W // 2 + 1, c_out, c_in)`` complex (``complex64`` for float32
        weights, ``complex128`` for float64), on ``weight``'s device.

    Raises:
        TypeError: ``weight`` not a float32/float64 tensor.
        ValueError: even kernel, wrong rank, ``size`` not a pair of positive ints.
    """
    _check_weight(weight)
    H, W = check_size("size", size)
    return _symbol(weight, H, W)


def conv_symbol_naive(weight: Tensor, size: tuple[int, int]) -> Tensor:
    """The full symbol ``(H, W, c_out, c_in)`` from the defining sum, tap by tap (slow, for tests).

    Evaluates the phase formula of :func:`conv_symbol` directly, in float64
    complex, without FFTs, flips or rolls.
    """
    _, _, kh, kw = _check_weight(weight)
    H, W = check_size("size", size)
    w64 = weight.detach().to(torch.complex128)
    u = torch.arange(H, dtype=torch.float64, device=weight.device)[:, None]
    v = torch.arange(W, dtype=torch.float64, device=weight.device)[None, :]
    out = torch.zeros(H, W, *weight.shape[:2], dtype=torch.complex128, device=weight.device)
    for a in range(kh):
        for b in range(kw):
            phase = 2 * math.pi * (u * (a - kh // 2) / H + v * (b - kw // 2) / W)
            out += torch.polar(torch.ones_like(phase), phase)[..., None, None] * w64[:, :, a, b]
    return out


def apply_symbol(x: Tensor, symbol: Tensor) -> Tensor:
    """Multiply frequency by frequency: ``irfft2(S(w) rfft2(x)(w))``.

    Args:
        x: ``(..., n_in, H, W)`` real (float32 or float64).
        symbol: ``(H, W // 2 + 1, n_out, n_in)`` complex, e.g. :func:`conv_symbol`.

    Returns:
        ``(..., n_out, H, W)`` real, in ``x``'s dtype. The output size is passed to
        ``irfft2`` explicitly: without it an odd ``W`` would come back as ``W - 1``.

    Raises:
        TypeError: ``x`` is not a float32/float64 tensor, or ``symbol`` is not a tensor.
        ValueError: ``x`` has fewer than 3 dimensions, or ``symbol`` does not fit ``x``.
    """
    x = _check_tensor("x", x)
    if x.ndim < 3:
        raise ValueError(f"x: expected shape (..., n_in, H, W), got {tuple(x.shape)}")
    symbol = check_tensor("symbol", symbol, floating=False)
    H, W = x.shape[-2:]
    if symbol.ndim != 4 or symbol.shape[:2] != (H, W // 2 + 1) or symbol.shape[-1] != x.shape[-3]:
        raise ValueError(
            f"symbol: expected shape ({H}, {W // 2 + 1}, n_out, {x.shape[-3]}) for x of shape "
            f"{tuple(x.shape)}, got {tuple(symbol.shape)}"
        )
    spectrum = torch.fft.rfft2(x)
    out = torch.einsum("uvoc,...cuv->...ouv", symbol.to(spectrum.dtype), spectrum)
    return torch.fft.irfft2(out, s=(H, W)).to(x.dtype)


# --------------------------------------------------------------------------- dense reference


def conv2d_matrix(weight: Tensor, size: tuple[int, int], padding: Padding = "circular") -> Tensor:
    """The dense operator matrix of the convolution, built entry by entry (small sizes, tests).

    ``conv2d_matrix(K, (H, W), p) @ x.reshape(-1) == conv(x, K).reshape(-1)`` for one
    sample ``x`` of shape ``(c_in, H, W)``: row ``o H W + i W + j`` holds
    ``K[o, c, a, b]`` in column ``c H W + i' W + j'`` with
    ``i' = i + a - kh // 2`` and ``j' = j + b - kw // 2`` (taken modulo ``H``,
    ``W`` for circular padding, dropped when outside the image for zero padding).
    The indices are set directly, without calling any convolution routine.

    Args:
        weight: ``(c_out, c_in, kh, kw)``, odd ``kh``, ``kw``.
        size: ``(H, W)``.
        padding: ``"circular"`` or ``"zeros"``.

    Returns:
        ``(c_out H W, c_in H W)`` in ``weight``'s dtype and device.

    Raises:
        ValueError: bad kernel, size or padding, or a matrix of more than
            ``MAX_DENSE_ENTRIES`` entries.
    """
    c_out, c_in, kh, kw = _check_weight(weight)
    H, W = check_size("size", size)
    padding = _check_padding(padding)
    n_rows, n_cols = c_out * H * W, c_in * H * W
    if n_rows * n_cols > MAX_DENSE_ENTRIES:
        raise ValueError(
            f"size: the dense matrix would be {n_rows} x {n_cols}; conv2d_matrix is meant for "
            f"small cases (at most {MAX_DENSE_ENTRIES} entries)"
        )
    dev = weight.device
    o = torch.arange(c_out, device=dev)[:, None, None, None]
    c = torch.arange(c_in, device=dev)[None, :, None, None]
    i = torch.arange(H, device=dev)[None, None, :, None]
    j = torch.arange(W, device=dev)[None, None, None, :]
    shape = (c_out, c_in, H, W)
    matrix = weight.new_zeros(n_rows, n_cols)
    for a in range(kh):
        for b in range(kw):
            ii, jj = i + a - kh // 2, j + b - kw // 2
            if padding == "circular":
                valid = torch.ones(shape, dtype=torch.bool, device=dev)
                ii, jj = ii % H, jj % W
            else:
                valid = ((ii >= 0) & (ii < H) & (jj >= 0) & (jj < W)).expand(shape)
            row = (o * H * W + i * W + j).expand(shape)[valid]
            col = (c * H * W + ii * W + jj).expand(shape)[valid]
            value = weight[:, :, a, b][:, :, None, None].expand(shape)[valid]
            matrix.index_put_((row, col), value, accumulate=True)
    return matrix


def conv2d_linear_operator(weight: Tensor, size: tuple[int, int], padding: Padding = "zeros"):
    """A ``scipy.sparse.linalg.LinearOperator`` (float64) for the same convolution.

    For scipy's iterative solvers (``lsqr``, ``lsmr``): ``matvec`` applies
    ``conv2d`` and ``rmatvec`` its adjoint, on flattened ``(c, H, W)`` vectors.
    """
    from scipy.sparse.linalg import LinearOperator

    c_out, c_in, _, _ = _check_weight(weight)
    H, W = check_size("size", size)
    forward, adjoint = conv2d_operator(weight.detach().to("cpu", torch.float64), padding)

    def matvec(v):
        x = torch.from_numpy(v.reshape(c_in, H, W).astype("float64", copy=False))
        return forward(x).reshape(-1).numpy()

    def rmatvec(v):
        y = torch.from_numpy(v.reshape(c_out, H, W).astype("float64", copy=False))
        return adjoint(y).reshape(-1).numpy()

    return LinearOperator(
        (c_out * H * W, c_in * H * W), matvec=matvec, rmatvec=rmatvec, dtype="float64"
    )


# --------------------------------------------------------------------------- spectrum


def _svd_symbol(weight: Tensor, H: int, W: int) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD of every ``A(w)`` in complex128: ``U (.., c_out, r)``, ``s (.., r)``, ``Vh``."""
    symbol = _symbol(weight.detach().to(torch.float64), H, W)
    return torch.linalg.svd(symbol, full_matrices=False)


def _full_plane(values: Tensor, W: int) -> Tensor:
    """From the ``rfft2`` half plane ``(H, W // 2 + 1, ...)`` to the ``H W`` frequencies' values.

    Columns ``v = 1 .. (W - 1) // 2`` stand for themselves and for their mirror
    ``-v``, whose matrices are the complex conjugates (same singular values);
    column 0 and, for even ``W``, column ``W / 2`` are their own mirrors.
    """
    mirrored = values[:, 1 : (W - 1) // 2 + 1]
    return torch.cat([values.flatten(0, 1), mirrored.flatten(0, 1)])


def conv_singular_values(weight: Tensor, size: tuple[int, int]) -> Tensor:
    """All singular values of the circular convolution, largest first.

    The block-circulant operator is unitarily similar to the block-diagonal
    matrix of the ``A(w)``, so its singular values are the union over all
    ``H W`` frequencies of the singular values of ``A(w)`` (Sedghi, Gupta &
    Long 2019). Cost ``O(H W min(c_out, c_in)^2 max(c_out, c_in))`` instead of
    ``O((c H W)^3)``.

    Args:
        weight: ``(c_out, c_in, kh, kw)``, odd ``kh``, ``kw``.
        size: ``(H, W)``.

    Returns:
        ``(min(c_out, c_in) H W,)`` in ``weight``'s dtype, sorted descending.
        Computed in float64.
    """
    _check_weight(weight)
    H, W = check_size("size", size)
    s = torch.linalg.svdvals(_symbol(weight.detach().to(torch.float64), H, W))
    return _full_plane(s, W).flatten().sort(descending=True).values.to(weight.dtype)


def conv_pinv_symbol(
    weight: Tensor, size: tuple[int, int], reg: float = 0.0, rcond: float | None = None
) -> Tensor:
    """The symbol ``B(w)`` of the (regularised) pseudo-inverse of the circular convolution.

    .. math::

        B(w) = V(w)\\, \\mathrm{diag}(\\phi(s))\\, U(w)^H, \\qquad
        \\phi(s) = \\begin{cases} s / (s^2 + \\lambda) & s > \\text{rcond}\\, s_{\\max} \\\\
                                  0 & \\text{else} \\end{cases}
        \\quad (1/s \\text{ for } \\lambda = 0)

    from the SVD ``A(w) = U diag(s) V^H``. For ``lam > 0`` this equals
    ``(A^H A + lam I)^-1 A^H``; for ``lam = 0`` it is the Moore-Penrose
    pseudo-inverse of each ``A(w)``. For every ``lam``, singular values below
    ``rcond * s_max`` (``s_max`` the largest over *all* frequencies, as a dense
    ``pinv`` of the whole operator would use) are treated as zero: they are what
    the FFT and the SVD make of an exactly singular ``A(w)`` (about
    ``1e-16 s_max``), and ``s / (s^2 + lam)`` would turn that rounding into a
    gain of up to ``1 / (2 sqrt(lam))``. Only ``lam`` below about
    ``rcond * s_max^2`` notices the cut.

    Args:
        weight: ``(c_out, c_in, kh, kw)``.
        size: ``(H, W)``.
        reg: ``lam >= 0``, on the scale of the squared singular values.
        rcond: relative cutoff; default
            ``max(c_out, c_in) * H * W * eps(float64)``, the default of
            ``torch.linalg.pinv`` for the dense float64 operator matrix.

    Returns:
        ``(H, W // 2 + 1, c_in, c_out)``, complex of ``weight``'s precision.
    """
    c_out, c_in, _, _ = _check_weight(weight)
    H, W = check_size("size", size)
    reg = check_nonnegative("reg", reg)
    if rcond is None:
        rcond = max(c_out, c_in) * H * W * torch.finfo(torch.float64).eps
    rcond = check_nonnegative("rcond", rcond)
    U, s, Vh = _svd_symbol(weight, H, W)
    keep = s > rcond * s.max()
    if reg > 0:
        phi = torch.where(keep, s / (s * s + reg), 0.0)
    else:
        phi = torch.where(keep, 1.0 / torch.where(keep, s, 1.0), 0.0)
    inverse = Vh.mH @ (phi[..., None] * U.mH)
    return inverse.to(_complex_dtype(weight.dtype))


# --------------------------------------------------------------------------- iterative solver


@dataclass
class SolveInfo:
    """What the iterative solver did.

    Attributes:
        iterations: CGLS iterations performed (each one ``A`` and one ``A^T``).
        converged: every sample reached ``relative_residual <= tol``.
        relative_residual: ``(B,)``, ``||A^T (y - A x) - lam x|| / ||A^T y||``, the
            residual of the normal equations, 0 for a zero right-hand side.
        residual_norm: ``(B,)``, ``||y - A x||``.
        history: the largest relative residual over the batch, before the first
            iteration and after each one.
        tol: the tolerance used.
    """

    iterations: int
    converged: bool
    relative_residual: Tensor
    residual_norm: Tensor
    history: list[float] = field(default_factory=list)
    tol: float = 0.0


def _sample_dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(dim=(1, 2, 3), keepdim=True)


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0``, else 0 (no 0/0, in the value or the unused branch)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def cgls(
    forward: Callable[[Tensor], Tensor],
    adjoint: Callable[[Tensor], Tensor],
    y: Tensor,
    x_shape: tuple[int, ...],
    reg: float = 0.0,
    *,
    preconditioner: Callable[[Tensor], Tensor] | None = None,
    tol: float = 1e-10,
    max_iter: int = 1000,
    progress: bool = False,
) -> tuple[Tensor, SolveInfo]:
    """Preconditioned CGLS for ``min ||A x - y||^2 + lam ||x||^2``, one system per sample.

    Conjugate gradients on the normal equations ``(A^T A + lam I) x = A^T y``
    without forming them (Björck 1996, alg. 7.4.1; Hestenes & Stiefel 1952).
    Started from ``x = 0`` and without a preconditioner, every iterate lies in
    the range of ``A^T``, so the limit is the *minimum-norm* least-squares
    solution ``A^+ y``. With a symmetric positive definite preconditioner ``P``
    (applied to the normal-equation residual, i.e. PCG on the normal
    equations) the limit is a least-squares solution; it is the minimum-norm
    one whenever ``A^T A + lam I`` is nonsingular (full column rank or
    ``lam > 0``).

    Args:
        forward: ``x (B, *x_shape) -> A x (B, *y.shape[1:])``.
        adjoint: ``y -> A^T y``.
        y: ``(B, ...)`` right-hand sides (each sample is its own system).
        x_shape: shape of one unknown, e.g. ``(c_in, H, W)``.
        reg: ``lam >= 0``.
        preconditioner: ``s -> P s`` with ``P`` symmetric positive definite, or ``None``.
        tol: stop a sample once ``||A^T r - lam x|| <= tol ||A^T y||``.
        max_iter: at most this many iterations.
        progress: show a tqdm progress bar.

    Returns:
        ``x`` of shape ``(B, *x_shape)`` and a :class:`SolveInfo`.
    """
    max_iter = check_int("max_iter", max_iter, minimum=0)
    tol = check_nonnegative("tol", tol)
    reg = check_nonnegative("reg", reg)
    precond = preconditioner if preconditioner is not None else (lambda s: s)
    x = y.new_zeros(y.shape[0], *x_shape)
    r = y.clone()
    s = adjoint(r)
    z = precond(s)
    p = z.clone()
    gamma = _sample_dot(s, z)
    norm0 = s.flatten(1).norm(dim=1)

    def relative(s_now: Tensor) -> Tensor:
        return _safe_div(s_now.flatten(1).norm(dim=1), norm0)

    rel = relative(s)
    history = [rel.max().item()]
    iterations = 0
    steps = range(max_iter)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="CGLS", leave=False)
    for _ in steps:
        active = (rel > tol).reshape(-1, 1, 1, 1)
        if not bool(active.any()):
            break
        q = forward(p)
        denom = _sample_dot(q, q) + reg * _sample_dot(p, p)
        alpha = torch.where(active, _safe_div(gamma, denom), torch.zeros_like(gamma))
        x = x + alpha * p
        r = r - alpha * q
        s = adjoint(r) - reg * x
        z = precond(s)
        gamma_new = _sample_dot(s, z)
        beta = _safe_div(gamma_new, gamma)
        p = z + beta * p
        gamma = gamma_new
        rel = relative(s)
        iterations += 1
        history.append(rel.max().item())
    residual = (y - forward(x)).flatten(1).norm(dim=1)
    info = SolveInfo(
        iterations=iterations,
        converged=bool((rel <= tol).all()),
        relative_residual=rel,
        residual_norm=residual,
        history=history,
        tol=float(tol),
    )
    return x, info


def circular_preconditioner(
    weight: Tensor, size: tuple[int, int], reg: float = 0.0, shift: float = 1e-3
) -> Callable[[Tensor], Tensor]:
    """``P = (C^T C + (lam + shift s_max^2) I)^-1``, applied by FFT, for :func:`cgls`.

    ``C`` is the *circular* convolution with the same kernel, which differs
    from the zero-padded one only near the border; ``P`` is its regularised
    inverse normal matrix, symmetric positive definite for ``shift > 0`` (or
    ``lam > 0``). Per frequency ``P(w) = V diag(1 / (s^2 + lam + shift s_max^2)) V^H``.

    Args:
        weight: ``(c_out, c_in, kh, kw)``.
        size: ``(H, W)``.
        reg: the Tikhonov ``lam`` of the problem being solved.
        shift: relative shift ``> 0`` that keeps ``P`` bounded where the
            circular operator is (nearly) singular.
    """
    _, c_in, _, _ = _check_weight(weight)
    H, W = check_size("size", size)
    reg = check_nonnegative("reg", reg)
    shift = check_nonnegative("shift", shift)
    _, s, Vh = _svd_symbol(weight, H, W)
    damp = reg + shift * s.max().item() ** 2
    if damp <= 0:
        if s.max().item() == 0:
            raise ValueError(
                "weight: all zeros, so C^T C is zero and P does not exist; pass reg > 0"
            )
        raise ValueError("shift: must be > 0 when reg is 0 (P must be positive definite)")
    V = Vh.mH  # (H, Wf, c_in, r)
    # directions outside the range of V (c_in > c_out) get 1 / damp
    inner = 1.0 / (s * s + damp) - 1.0 / damp
    matrix = (V * inner[..., None, :]) @ Vh
    matrix = matrix + torch.eye(c_in, dtype=matrix.dtype, device=matrix.device) / damp
    symbol = matrix.to(_complex_dtype(weight.dtype))
    return lambda v: apply_symbol(v, symbol)


# --------------------------------------------------------------------------- the pseudo-inverse


def conv2d_pinv(
    y: Tensor,
    weight: Tensor,
    padding: Padding = "circular",
    reg: float = 0.0,
    *,
    rcond: float | None = None,
    tol: float | None = None,
    max_iter: int = 1000,
    preconditioner: Literal["circular"] | None = None,
    precond_shift: float = 1e-3,
    return_info: bool = False,
    progress: bool = False,
) -> Tensor | tuple[Tensor, SolveInfo | None]:
    """The (regularised) pseudo-inverse of a convolution applied to ``y``: ``x = A^+ y``.

    .. math::

        x = \\arg\\min_x \\|A x - y\\|^2 + \\lambda \\|x\\|^2
        \\quad (\\lambda = 0:\\ \\text{the minimum-norm least-squares } x = A^+ y)

    * ``padding="circular"`` (``A`` = :func:`conv2d_circular`): exact, by FFT,
      ``X(w) = B(w) Y(w)`` with :func:`conv_pinv_symbol`, i.e.
      ``A(w)^+`` for ``reg = 0`` (minimum norm for wide, least squares for
      tall ``A(w)``) and ``(A(w)^H A(w) + reg I)^-1 A(w)^H`` for ``reg > 0``.
      Cost ``O(H W c^3 + c H W log(H W))``.
    * ``padding="zeros"`` (``A`` = :func:`conv2d_zeros`,
      ``F.conv2d(x, K, padding=k // 2)``): :func:`cgls` with ``conv2d`` and
      ``conv_transpose2d``, each iteration costing two convolutions. Stops at
      ``tol`` (relative normal-equation residual) or ``max_iter``; check
      ``info.converged``. ``preconditioner="circular"`` uses
      :func:`circular_preconditioner`, which cuts the iteration count when
      the circular operator is well conditioned.

    Args:
        y: ``(B, c_out, H, W)`` or ``(c_out, H, W)``, float32 or float64.
        weight: ``(c_out, c_in, kh, kw)``, odd ``kh`` and ``kw``, same dtype and device.
        padding: ``"circular"`` or ``"zeros"``.
        reg: Tikhonov ``lam >= 0`` (same meaning for both paddings).
        rcond: relative singular-value cutoff for circular padding (see
            :func:`conv_pinv_symbol`).
        tol: iterative solver tolerance; default 1e-10 in float64, 1e-5 in float32.
        max_iter: iteration limit of the iterative solver.
        preconditioner: ``None`` or ``"circular"`` (zero padding only).
        precond_shift: the ``shift`` of :func:`circular_preconditioner`.
        return_info: also return the :class:`SolveInfo` (``None`` for circular padding).
        progress: show a progress bar during the iterative solve.

    Returns:
        ``x`` of shape ``(B, c_in, H, W)`` (or ``(c_in, H, W)``), and the info
        if ``return_info``.

    Raises:
        TypeError: wrong tensor types or dtypes.
        ValueError: even kernel, channel mismatch, unknown padding or
            preconditioner, negative ``reg``, bad ``tol``/``max_iter``; ``rcond``
            with zero padding, or ``tol`` or ``preconditioner`` with circular padding.
    """
    padding = _check_padding(padding)
    c_out, c_in, _, _ = _check_weight(weight)
    yb, batched = _check_image("y", y, weight, c_out, "dimension 0")
    reg = check_nonnegative("reg", reg)
    if preconditioner not in (None, "circular"):
        raise ValueError(f"preconditioner: expected None or 'circular', got {preconditioner!r}")
    H, W = yb.shape[-2:]
    info = None
    if padding == "circular":
        if preconditioner is not None:
            raise ValueError(
                "preconditioner: only used with padding='zeros' (the circular case is exact)"
            )
        if tol is not None:
            raise ValueError("tol: only used with padding='zeros' (the circular case is exact)")
        x = apply_symbol(yb, conv_pinv_symbol(weight, (H, W), reg, rcond))
    else:
        if rcond is not None:
            raise ValueError(
                "rcond: only used with padding='circular'; the zero-padded solver stops at "
                "tol, and reg > 0 regularises it"
            )
        if tol is None:
            tol = SOLVER_TOL[yb.dtype]
        precond = None
        if preconditioner == "circular":
            precond = circular_preconditioner(weight, (H, W), reg, precond_shift)
        forward, adjoint = conv2d_operator(weight, "zeros")
        x, info = cgls(
            forward,
            adjoint,
            yb,
            (c_in, H, W),
            reg,
            preconditioner=precond,
            tol=tol,
            max_iter=max_iter,
            progress=progress,
        )
    if not batched:
        x = x.squeeze(0)
    return (x, info) if return_info else x
