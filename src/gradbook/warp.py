"""Affine warps with ``cv2.warpAffine`` semantics, differentiable in everything (chapter 5).

``warp_affine(image, M, dsize)`` computes what ``cv2.warpAffine(image, M, (width,
height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)`` computes, on
``(C, H, W)`` or ``(B, C, H, W)`` tensors, and is differentiable with respect to the
image, the matrix ``M`` and the border value. It is built on
:func:`torch.nn.functional.affine_grid` and :func:`torch.nn.functional.grid_sample`;
:func:`affine_to_theta` and :func:`theta_to_affine` translate between the two
conventions, and :func:`warp_affine_naive` is a slow, explicit float64 reference.

Convention (OpenCV's, used by every function here):
    * Pixel ``(x, y)`` is column ``x``, row ``y``; pixel *centres* sit at integer
      coordinates, so an image of width ``W`` covers ``x`` in ``[-0.5, W - 0.5]``.
    * ``M`` is a ``2 x 3`` matrix mapping *source* pixels to *destination* pixels:
      ``(x', y') = M @ (x, y, 1)``. The warp needs the opposite direction (for each
      destination pixel, where to read in the source), so it inverts ``M`` unless
      ``inverse_map=True`` (OpenCV's ``WARP_INVERSE_MAP``), in which case ``M``
      already maps destination to source.
    * Sizes are ``(height, width)``, the order of ``tensor.shape[-2:]``.
      **OpenCV's ``dsize`` is ``(width, height)``**: ``warp_affine(image, M, (h, w))``
      matches ``cv2.warpAffine(array, M, (w, h))``.
    * Bilinear interpolation with a constant border: the four neighbours of a
      source point that fall outside the image take the value ``border_value`` and
      are blended with the inside ones (OpenCV's ``BORDER_CONSTANT``), so edges fade
      smoothly into the border colour over one pixel.

Convention (PyTorch's ``theta``):
    ``F.affine_grid(theta, ...)`` maps *normalised destination* coordinates to
    *normalised source* coordinates in ``[-1, 1]``. With ``align_corners=False`` the
    normalised coordinate of pixel ``x`` in an image of width ``W`` is
    ``(2 x + 1) / W - 1`` (``-1`` and ``1`` are the outer edges of the border
    pixels); with ``align_corners=True`` it is ``2 x / (W - 1) - 1`` (``-1`` and
    ``1`` are the centres of the border pixels). Then

    .. math::

        \\Theta = N_{\\mathrm{src}}\\, M^{-1}\\, N_{\\mathrm{dst}}^{-1}

    (first two rows, ``M`` lifted to ``3 x 3``), with ``N`` the pixel-to-normalised
    map of each image for the chosen ``align_corners``. Either setting samples at
    OpenCV's source points (exactly, up to the rounding of the grid) as long as
    ``theta`` and ``grid_sample`` use the *same* one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gradbook._checks import check_size, check_tensor

__all__ = [
    "affine_to_theta",
    "invert_affine",
    "normalization_matrix",
    "rotation_matrix_2d",
    "synthetic_scene",
    "theta_to_affine",
    "warp_affine",
    "warp_affine_cv2",
    "warp_affine_naive",
]

MatrixLike = Tensor | np.ndarray | Sequence[Sequence[float]]
BorderLike = float | Tensor | Sequence[float]


# ----------------------------------------------------------------------------- validation


def _check_image(image: object) -> Tensor:
    image = check_tensor("image", image, hint="convert first, e.g. image.float() / 255")
    if image.ndim not in (3, 4):
        raise ValueError(
            f"image: expected shape (C, H, W) or (B, C, H, W), got {tuple(image.shape)}"
        )
    if image.shape[-1] == 0 or image.shape[-2] == 0 or image.shape[-3] == 0:
        raise ValueError(
            f"image: expected at least one channel, row and column, got {tuple(image.shape)}"
        )
    return image


def _as_matrix(
    name: str,
    M: object,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """``M`` as a floating tensor of shape ``(2, 3)`` or ``(B, 2, 3)``, checked finite.

    Tensors keep their dtype (integer tensors become ``dtype``) and autograd history;
    NumPy arrays and nested sequences become constant tensors of ``dtype``.
    """
    if isinstance(M, Tensor):
        if not (M.is_floating_point() or M.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{name}: expected a real tensor, got dtype {M.dtype}")
        if not M.is_floating_point():
            M = M.to(dtype or torch.float64)
        if device is not None:
            M = M.to(device)
    else:
        try:
            array = np.asarray(M, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{name}: expected a tensor, array or nested list of numbers, "
                f"got {type(M).__name__}"
            ) from error
        M = torch.as_tensor(array, dtype=dtype or torch.float64, device=device)
    if M.ndim not in (2, 3) or tuple(M.shape[-2:]) != (2, 3):
        raise ValueError(f"{name}: expected shape (2, 3) or (B, 2, 3), got {tuple(M.shape)}")
    if not bool(torch.isfinite(M.detach()).all()):
        raise ValueError(f"{name}: expected finite entries, got NaN or infinity")
    return M


def _lift(M: Tensor) -> Tensor:
    """``(..., 2, 3)`` -> ``(..., 3, 3)`` with the row ``[0, 0, 1]`` appended."""
    last = torch.zeros(*M.shape[:-2], 1, 3, dtype=M.dtype, device=M.device)
    last[..., 0, 2] = 1
    return torch.cat([M, last], dim=-2)


# ----------------------------------------------------------------------------- matrices


def invert_affine(M: Tensor, name: str = "M") -> Tensor:
    """The inverse of an affine map, like ``cv2.invertAffineTransform``.

    For ``M = [A | t]`` with ``A`` the ``2 x 2`` linear part,
    ``M^{-1} = [A^{-1} | -A^{-1} t]``, with the closed-form
    ``A^{-1} = [[d, -b], [-c, a]] / (a d - b c)``. Differentiable.

    Args:
        M: ``(..., 2, 3)`` floating tensor.
        name: the argument's name in error messages.

    Returns:
        ``(..., 2, 3)``, same dtype and device.

    The linear part is divided by its largest entry ``s`` first (``A = s A'``,
    ``A^{-1} = A'^{-1} / s``), so neither the determinant nor the test below
    under- or overflows: the inverse of ``1e20 R`` (``R`` a rotation) in float32,
    or of ``1e-160 R`` in float64, is as accurate as that of ``R``.

    Raises:
        ValueError: ``M`` has the wrong shape or a non-finite entry, or its linear
            part is singular (to rounding: ``|det A| <= 64 eps max|A_ij|^2``).
            OpenCV silently returns a zero matrix for a singular ``A``; a warp
            through it is meaningless.
    """
    M = check_tensor(name, M)
    if M.ndim < 2 or tuple(M.shape[-2:]) != (2, 3):
        raise ValueError(f"{name}: expected shape (..., 2, 3), got {tuple(M.shape)}")
    if not bool(torch.isfinite(M.detach()).all()):
        raise ValueError(f"{name}: expected finite entries, got NaN or infinity")
    linear, shift = M[..., :2], M[..., 2:]
    # a constant scale (no gradient of its own): the formula is the same for any s > 0
    scale = linear.detach().abs().amax(dim=(-2, -1), keepdim=True)
    unit = linear / torch.where(scale > 0, scale, torch.ones_like(scale))
    det = unit[..., 0, 0] * unit[..., 1, 1] - unit[..., 0, 1] * unit[..., 1, 0]
    singular = det.detach().abs() <= 64 * torch.finfo(M.dtype).eps
    if bool(singular.any()):
        raise ValueError(
            f"{name}: the linear part M[..., :2] is singular (determinant "
            f"{_determinant(linear.detach()).flatten()[singular.flatten()][0].item():.3g}), "
            "so the map "
            "cannot be inverted; pass a matrix that already maps destination to source "
            "with inverse_map=True if that is what you have"
        )
    # adjugate [[d, -b], [-c, a]]: swap the diagonal, negate the off-diagonal
    adjugate = unit.flip(-2, -1).transpose(-2, -1) * _ADJUGATE_SIGNS.to(M.device, M.dtype)
    inverse = adjugate / (det[..., None, None] * scale)
    return torch.cat([inverse, -(inverse @ shift)], dim=-1)


def _determinant(linear: Tensor) -> Tensor:
    """``a d - b c`` of ``(..., 2, 2)`` matrices, in float64 for the error message."""
    a = linear.double()
    return a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]


_ADJUGATE_SIGNS = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])


def normalization_matrix(
    size: tuple[int, int],
    align_corners: bool = False,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """The ``3 x 3`` map from pixel coordinates ``(x, y, 1)`` to normalised ones.

    Per axis of length ``n``: ``u = (2 x + 1) / n - 1`` when ``align_corners`` is
    false (``u = -1`` and ``1`` at the outer edges of the first and last pixel), and
    ``u = 2 x / (n - 1) - 1`` when it is true (``-1`` and ``1`` at their centres).

    Args:
        size: ``(height, width)`` of the image.
        align_corners: the setting later passed to ``affine_grid``/``grid_sample``.

    Returns:
        ``(3, 3)`` tensor ``[[sx, 0, ox], [0, sy, oy], [0, 0, 1]]``.

    Raises:
        ValueError: ``align_corners=True`` with a side of length 1 (its centre is
            both ``-1`` and ``1``; the map is not invertible).
    """
    return _normalization_matrix("size", size, align_corners, dtype, device)


def _normalization_matrix(
    name: str,
    size: object,
    align_corners: bool,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> Tensor:
    (sx, ox), (sy, oy) = _axis_normalizations(name, size, align_corners)
    return torch.tensor([[sx, 0.0, ox], [0.0, sy, oy], [0.0, 0.0, 1.0]], dtype=dtype, device=device)


def affine_to_theta(
    M: MatrixLike,
    src_size: tuple[int, int],
    dst_size: tuple[int, int],
    align_corners: bool = False,
    *,
    inverse_map: bool = False,
) -> Tensor:
    """Convert an OpenCV affine matrix to the ``theta`` of ``F.affine_grid``.

    .. math::

        \\Theta = \\big[N_{\\mathrm{src}}\\, M^{-1}\\, N_{\\mathrm{dst}}^{-1}\\big]_{0:2}

    where ``M`` maps source pixels to destination pixels (``M`` itself replaces
    ``M^{-1}`` when ``inverse_map``) and ``N`` is :func:`normalization_matrix`.
    ``F.grid_sample(src, F.affine_grid(theta, (B, C, *dst_size), align_corners),
    align_corners=align_corners)`` then samples what ``cv2.warpAffine`` samples.

    Args:
        M: ``(2, 3)`` or ``(B, 2, 3)``: a tensor (kept differentiable) or an array.
        src_size: ``(height, width)`` of the source image (note: not OpenCV's order).
        dst_size: ``(height, width)`` of the output.
        align_corners: the setting you will pass to ``affine_grid`` and ``grid_sample``.
        inverse_map: ``M`` already maps destination to source (``WARP_INVERSE_MAP``).

    Returns:
        ``theta`` with ``M``'s shape, dtype and device (float64 for arrays).

    Raises:
        TypeError, ValueError: malformed ``M`` or sizes; singular ``M`` (unless
            ``inverse_map``); ``align_corners=True`` with a side of length 1.
    """
    M = _as_matrix("M", M)
    dst_to_src = M if inverse_map else invert_affine(M)
    return _theta_from_dst_to_src(dst_to_src, src_size, dst_size, align_corners)


def _axis_normalizations(
    name: str, size: object, align_corners: bool
) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(scale, offset)`` with ``u = scale * x + offset`` for the x axis, then the y axis.

    ``size`` is ``(height, width)``, validated under the argument name ``name``.
    """
    height, width = check_size(name, size)
    if align_corners and (height == 1 or width == 1):
        raise ValueError(
            f"{name}: align_corners=True needs at least 2 pixels per side, got {size!r}; "
            "use align_corners=False"
        )

    def axis(n: int) -> tuple[float, float]:
        if align_corners:
            return 2.0 / (n - 1), -1.0
        return 2.0 / n, 1.0 / n - 1.0

    return axis(width), axis(height)


def _theta_from_dst_to_src(
    A: Tensor, src_size: tuple[int, int], dst_size: tuple[int, int], align_corners: bool
) -> Tensor:
    """``N_src A N_dst^{-1}`` written out entry by entry (a few fused ops, no 3 x 3 algebra).

    With ``x = (u - o) / s`` on the destination side and ``u = s x + o`` on the source
    side, ``theta_ij = s_i A_ij / s_j`` and ``theta_i2 = s_i (A_i2 - sum_j A_ij o_j / s_j) + o_i``.
    """
    (sxs, oxs), (sys_, oys) = _axis_normalizations("src_size", src_size, align_corners)
    (sxd, oxd), (syd, oyd) = _axis_normalizations("dst_size", dst_size, align_corners)
    # theta = S A R + O with S = diag(s_src), R = N_dst^{-1}, O = [0 | o_src]
    constants = A.new_tensor(
        [
            [1.0 / sxd, 0.0, -oxd / sxd, sxs, 0.0, 0.0, oxs],
            [0.0, 1.0 / syd, -oyd / syd, sys_, 0.0, 0.0, oys],
            [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    R, S, O = constants[:, :3], constants[:2, 3:4], constants[:2, 4:]
    return (S * A) @ R + O


def theta_to_affine(
    theta: MatrixLike,
    src_size: tuple[int, int],
    dst_size: tuple[int, int],
    align_corners: bool = False,
    *,
    inverse_map: bool = False,
) -> Tensor:
    """The inverse of :func:`affine_to_theta`: an OpenCV matrix from ``theta``.

    .. math::

        M = \\big[N_{\\mathrm{dst}}^{-1}\\, \\Theta^{-1}\\, N_{\\mathrm{src}}\\big]_{0:2},
        \\qquad M_{\\mathrm{inverse\\ map}} = \\big[N_{\\mathrm{src}}^{-1}\\, \\Theta\\,
        N_{\\mathrm{dst}}\\big]_{0:2}.

    Args:
        theta: ``(2, 3)`` or ``(B, 2, 3)``, normalised destination to normalised source.
        src_size, dst_size: ``(height, width)`` of the source and output images.
        align_corners: the setting ``theta`` was made for.
        inverse_map: return the destination-to-source matrix instead of ``M``.

    Returns:
        ``M`` (source to destination pixels) with ``theta``'s shape, dtype and device.

    Raises:
        TypeError, ValueError: malformed ``theta`` or sizes; singular ``theta``
            (unless ``inverse_map``).
    """
    theta = _as_matrix("theta", theta)
    src = _normalization_matrix("src_size", src_size, align_corners, theta.dtype, theta.device)
    dst = _normalization_matrix("dst_size", dst_size, align_corners, theta.dtype, theta.device)
    dst_to_src = torch.linalg.inv(src) @ _lift(theta) @ dst
    if inverse_map:
        return dst_to_src[..., :2, :]
    return invert_affine(dst_to_src[..., :2, :], name="theta")


def rotation_matrix_2d(
    center: Tensor | Sequence[float],
    angle: Tensor | float,
    scale: Tensor | float = 1.0,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """A rotation about ``center`` with a scale, like ``cv2.getRotationMatrix2D``.

    With ``alpha = scale cos(angle)`` and ``beta = scale sin(angle)``:

    .. math::

        M = \\begin{bmatrix} \\alpha & \\beta & (1 - \\alpha) c_x - \\beta c_y \\\\
        -\\beta & \\alpha & \\beta c_x + (1 - \\alpha) c_y \\end{bmatrix}.

    A positive angle turns the picture counter-clockwise *as displayed* (the y axis
    points down), exactly as in OpenCV; ``center`` is a fixed point of the map.
    (OpenCV stores the centre as float32, ``cv::Point2f``; this function does not
    round it, so for centres not representable in float32 the translations differ
    by up to ``2^-24 (|1 - alpha| + |beta|) max(|c_x|, |c_y|)``, float32's rounding
    of the centre: at most ``1.8e-7 max(|c_x|, |c_y|)`` when ``scale = 1``.)

    Args:
        center: ``(x, y)`` in pixels (column first, OpenCV's order), a pair of
            numbers or a ``(..., 2)`` tensor.
        angle: degrees, a number or a ``(...)`` tensor.
        scale: isotropic scale, a number or a ``(...)`` tensor.
        dtype, device: of the result when no argument is a tensor (default float64,
            the dtype OpenCV returns); otherwise taken from the tensor arguments.

    Returns:
        ``(2, 3)`` for scalar arguments, ``(..., 2, 3)`` for batched ones (the batch
        shapes of the arguments broadcast). Differentiable in every tensor argument.

    Raises:
        TypeError: an argument is neither a number nor a real tensor.
        ValueError: ``center`` does not end in a dimension of size 2, or the batch
            shapes do not broadcast.
    """
    tensors = [t for t in (center, angle, scale) if isinstance(t, Tensor)]
    for name, value in (("center", center), ("angle", angle), ("scale", scale)):
        if isinstance(value, Tensor) and value.is_complex():
            raise TypeError(f"{name}: expected a real tensor, got dtype {value.dtype}")
    if dtype is None:
        floating = [t.dtype for t in tensors if t.is_floating_point()]
        dtype = floating[0] if floating else torch.float64
        for other in floating[1:]:
            dtype = torch.promote_types(dtype, other)
    if device is None:
        device = tensors[0].device if tensors else torch.device("cpu")

    def as_tensor(name: str, value: object) -> Tensor:
        if isinstance(value, Tensor):
            return value.to(dtype=dtype, device=device)
        try:
            return torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=dtype, device=device)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{name}: expected a number or a tensor, got {type(value).__name__}"
            ) from error

    c = as_tensor("center", center)
    if c.ndim == 0 or c.shape[-1] != 2:
        raise ValueError(f"center: expected (x, y) or shape (..., 2), got {tuple(c.shape)}")
    a = as_tensor("angle", angle)
    s = as_tensor("scale", scale)
    try:
        batch = torch.broadcast_shapes(c.shape[:-1], a.shape, s.shape)
    except RuntimeError as error:
        raise ValueError(
            f"center, angle, scale: batch shapes {tuple(c.shape[:-1])}, {tuple(a.shape)}, "
            f"{tuple(s.shape)} do not broadcast"
        ) from error
    cx, cy = c[..., 0].expand(batch), c[..., 1].expand(batch)
    radians = a.expand(batch) * (math.pi / 180.0)
    alpha = s.expand(batch) * torch.cos(radians)
    beta = s.expand(batch) * torch.sin(radians)
    rows = [alpha, beta, (1 - alpha) * cx - beta * cy, -beta, alpha, beta * cx + (1 - alpha) * cy]
    return torch.stack(rows, dim=-1).reshape(*batch, 2, 3)


# ----------------------------------------------------------------------------- warps


def _border_tensor(border_value: object, image: Tensor) -> Tensor | None:
    """``None`` for a zero number (plain zero padding); else ``(B or 1, C, 1, 1)``."""
    if isinstance(border_value, Real) and not isinstance(border_value, bool):
        if border_value == 0:
            return None
        if not math.isfinite(border_value):
            raise ValueError(f"border_value: expected a finite number, got {border_value!r}")
    if isinstance(border_value, bool):
        raise TypeError("border_value: expected a number or a tensor, got bool")
    if isinstance(border_value, Tensor):
        if not border_value.is_floating_point():
            raise TypeError(
                f"border_value: expected a floating-point tensor, got dtype {border_value.dtype}"
            )
        border = border_value.to(device=image.device, dtype=image.dtype)
    else:
        try:
            border = torch.as_tensor(
                np.asarray(border_value, dtype=np.float64), dtype=image.dtype, device=image.device
            )
        except (TypeError, ValueError) as error:
            raise TypeError(
                "border_value: expected a number, a per-channel sequence or a tensor, "
                f"got {type(border_value).__name__}"
            ) from error
    batch, channels = image.shape[0], image.shape[1]
    if border.ndim == 0:
        border = border.reshape(1, 1, 1, 1)
    elif border.ndim == 1 and border.shape[0] in (1, channels):
        border = border.reshape(1, -1, 1, 1)
    elif border.ndim == 2 and border.shape[0] in (1, batch) and border.shape[1] in (1, channels):
        border = border.reshape(border.shape[0], border.shape[1], 1, 1)
    else:
        raise ValueError(
            f"border_value: expected a number, shape ({channels},) or ({batch}, {channels}) "
            f"for an image of shape {tuple(image.shape)}, got shape {tuple(border.shape)}"
        )
    if not bool(torch.isfinite(border.detach()).all()):
        raise ValueError("border_value: expected finite values, got NaN or infinity")
    return border


def _prepare(
    image: object, M: object, dsize: object
) -> tuple[Tensor, Tensor, tuple[int, int], bool]:
    """Validated ``(B, C, H, W)`` image, ``(B_M, 2, 3)`` matrix, dsize, and whether batched."""
    image = _check_image(image)
    dsize = check_size("dsize", dsize)
    # arrays and lists stay float64 (as in OpenCV); the warp rounds theta, not M
    M = _as_matrix("M", M, device=image.device)
    M = M.to(torch.promote_types(M.dtype, image.dtype))
    batched = image.ndim == 4 or M.ndim == 3
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if M.ndim == 2:
        M = M.unsqueeze(0)
    b_img, b_mat = image.shape[0], M.shape[0]
    if b_img != b_mat and 1 not in (b_img, b_mat):
        raise ValueError(
            f"M: batch of {b_mat} matrices does not match the batch of {b_img} images "
            "(expected equal sizes, or one of them 1)"
        )
    if b_img == 1 and b_mat > 1:
        image = image.expand(b_mat, -1, -1, -1)
    return image, M, dsize, batched


def _affine_grid(theta: Tensor, dsize: tuple[int, int]) -> Tensor:
    """``F.affine_grid(theta, (B, C, *dsize), align_corners=False)``, built separably.

    The grid is affine in the pixel indices, so ``g = theta[:, 0] u + theta[:, 1] v +
    theta[:, 2]`` is one row term plus one column term: two broadcast multiply-adds
    per output instead of a ``(h w) x 3`` by ``3 x 2`` matrix product.
    """
    height, width = dsize
    u = torch.linspace(1 / width - 1, 1 - 1 / width, width, dtype=theta.dtype, device=theta.device)
    v = torch.linspace(
        1 / height - 1, 1 - 1 / height, height, dtype=theta.dtype, device=theta.device
    )
    t = theta[:, :, None, None, :]  # (B, 2, 1, 1, 3)
    gx = t[:, 0, ..., 0] * u + (t[:, 0, ..., 1] * v[:, None] + t[:, 0, ..., 2])  # (B, h, w)
    gy = t[:, 1, ..., 0] * u + (t[:, 1, ..., 1] * v[:, None] + t[:, 1, ..., 2])
    return torch.stack([gx, gy], dim=-1)


def warp_affine(
    image: Tensor,
    M: MatrixLike,
    dsize: tuple[int, int],
    border_value: BorderLike = 0.0,
    inverse_map: bool = False,
) -> Tensor:
    """Bilinear affine warp with ``cv2.warpAffine`` semantics, differentiable in all inputs.

    For every destination pixel ``p = (x, y)`` the source point is
    ``q = M^{-1} (x, y, 1)`` (``M`` itself when ``inverse_map``) and

    .. math::

        \\mathrm{out}(p) = \\sum_{i, j \\in \\{0, 1\\}} w_i(q_x)\\, w_j(q_y)\\,
        \\mathrm{src}_b(\\lfloor q_x \\rfloor + i, \\lfloor q_y \\rfloor + j),

    with ``w_1(t) = t - floor(t)``, ``w_0 = 1 - w_1``, and ``src_b`` the image
    extended by ``border_value`` outside its pixels (OpenCV's ``BORDER_CONSTANT``).

    Convention: see the module docstring. **``dsize`` is ``(height, width)``, the
    reverse of OpenCV's ``dsize=(width, height)``.**

    Args:
        image: ``(C, H, W)`` or ``(B, C, H, W)``, float32 or float64, any device.
        M: ``(2, 3)`` or ``(B, 2, 3)`` source-to-destination pixel map (destination to
            source when ``inverse_map``). A tensor keeps its autograd history; NumPy
            arrays and lists (what ``cv2.getRotationMatrix2D`` returns) are constants.
            One matrix is applied to every image of a batch; one image to every matrix.
        dsize: ``(height, width)`` of the output.
        border_value: the constant outside the image: a number, a per-channel ``(C,)``
            or per-sample ``(B, C)`` tensor (differentiable) or sequence.
        inverse_map: ``M`` already maps destination to source pixels (OpenCV's
            ``WARP_INVERSE_MAP``); it is then not inverted, and may be singular.

    Returns:
        ``(C, h, w)`` when both ``image`` and ``M`` are unbatched, else ``(B, C, h, w)``;
        ``image``'s dtype and device.

    Raises:
        TypeError: ``image`` is not a floating-point tensor; ``M``, ``dsize`` or
            ``border_value`` has the wrong type.
        ValueError: wrong ranks or shapes, mismatched batches, non-finite entries, or a
            singular ``M`` (when it has to be inverted).

    Accuracy: ``theta`` is computed in float64 and the sampling grid in the image's
    dtype, so the sample points are off by up to about ``eps max(H, W, h, w)``
    pixels per axis, and the values differ from exact bilinear interpolation by up
    to twice that times the largest difference between neighbouring pixels: about
    ``2.4e-4`` for a float32 image 1000 pixels wide with values in ``[0, 1]``.

    Gradients: the output is linear in the image, so ``d out / d image`` scatters the
    four bilinear weights back to the four source pixels of each sample (pixels no
    sample touches get exactly 0). The gradient in ``M`` flows through the fractional
    parts ``q - floor(q)``; it is piecewise smooth, with kinks where a sample crosses
    an integer source coordinate.
    """
    image, M, dsize, batched = _prepare(image, M, dsize)
    border = _border_tensor(border_value, image)
    batch, channels, height, width = image.shape
    # theta in float64 (six numbers, cheap): only the grid itself is rounded to the image dtype
    dst_to_src = M.double() if inverse_map else invert_affine(M.double())
    theta = _theta_from_dst_to_src(dst_to_src, (height, width), dsize, False)
    theta = theta.to(image.dtype)
    if batch == 0:
        out = image.new_zeros(0, channels, *dsize) + theta.sum() * 0
        return out if batched else out[0]
    grid = _affine_grid(theta, dsize)
    if grid.shape[0] == 1 and batch > 1:
        grid = grid.expand(batch, -1, -1, -1)
    if border is None:
        out = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    else:
        # outside taps read (border - border) = 0, then + border: exactly BORDER_CONSTANT
        out = (
            F.grid_sample(
                image - border, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
            + border
        )
    return out if batched else out[0]


def warp_affine_naive(
    image: Tensor,
    M: MatrixLike,
    dsize: tuple[int, int],
    border_value: BorderLike = 0.0,
    inverse_map: bool = False,
) -> Tensor:
    """Slow, explicit float64 reference for :func:`warp_affine` (same arguments).

    No ``affine_grid``, no normalised coordinates: each destination pixel ``(x, y)``
    is mapped to the source point ``(sx, sy)`` in pixels, ``x0 = floor(sx)`` (a true
    floor, also for negative ``sx``), the weights are ``fx = sx - x0`` and
    ``1 - fx``, and each of the four taps ``(x0 + i, y0 + j)`` reads the image when
    it lies inside and ``border_value`` when it does not. Differentiable (in float64)
    in the image, ``M`` and the border value.

    Returns:
        float64 tensor of the shape :func:`warp_affine` returns.
    """
    image, M, dsize, batched = _prepare(image, M, dsize)
    image = image.to(torch.float64)
    M = M.to(torch.float64)
    border = _border_tensor(border_value, image)
    batch, channels, height, width = image.shape
    out_h, out_w = dsize
    dst_to_src = M if inverse_map else invert_affine(M)
    dst_to_src = dst_to_src.expand(batch, 2, 3)
    ys, xs = torch.meshgrid(
        torch.arange(out_h, dtype=torch.float64, device=image.device),
        torch.arange(out_w, dtype=torch.float64, device=image.device),
        indexing="ij",
    )
    A = dst_to_src[:, :, :, None, None]  # (B, 2, 3, 1, 1)
    sx = A[:, 0, 0] * xs + A[:, 0, 1] * ys + A[:, 0, 2]  # (B, h, w), source column
    sy = A[:, 1, 0] * xs + A[:, 1, 1] * ys + A[:, 1, 2]  # source row
    x0, y0 = torch.floor(sx), torch.floor(sy)
    fx, fy = sx - x0, sy - y0
    x0, y0 = x0.long(), y0.long()
    sample = torch.arange(batch, device=image.device)[:, None, None]
    out = image.new_zeros(batch, out_h, out_w, channels)
    pixels = image.permute(0, 2, 3, 1)  # (B, H, W, C)
    fill = image.new_zeros(()) if border is None else border[:, None, None, :, 0, 0]
    for j, wy in ((0, 1 - fy), (1, fy)):
        for i, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + i, y0 + j
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            # read a valid pixel everywhere, then replace outside taps by the border
            value = pixels[sample, yi.clamp(0, height - 1), xi.clamp(0, width - 1)]  # (B, h, w, C)
            value = torch.where(inside[..., None], value, fill)
            out = out + (wx * wy)[..., None] * value
    out = out.permute(0, 3, 1, 2)
    return out if batched else out[0]


def _opencv(caller: str) -> Any:
    """The ``cv2`` module, or an ImportError that says which extra provides it."""
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            f"{caller} needs OpenCV, which gradbook lists in its 'opencv' extra: "
            "pip install 'gradbook[opencv]' (or opencv-python-headless)"
        ) from error
    return cv2


def warp_affine_cv2(
    image: Tensor,
    M: MatrixLike,
    dsize: tuple[int, int],
    border_value: float | Sequence[float] = 0.0,
    inverse_map: bool = False,
) -> Tensor:
    """``cv2.warpAffine`` on tensors (no gradient): the peer that the lesson compares with.

    Calls ``cv2.warpAffine(array, M, (width, height), flags=INTER_LINEAR
    [| WARP_INVERSE_MAP], borderMode=BORDER_CONSTANT, borderValue=border_value)``
    on each ``(H, W, C)`` image of the batch, in the image's dtype.

    Args:
        image: ``(C, H, W)`` or ``(B, C, H, W)`` float tensor (copied to the CPU).
        M: ``(2, 3)`` or ``(B, 2, 3)``.
        dsize: ``(height, width)``, converted to OpenCV's ``(width, height)`` here.
        border_value: a number or up to four per-channel numbers.

    Returns:
        A tensor of the shape :func:`warp_affine` returns, on ``image``'s device.

    Raises:
        ImportError: OpenCV is not installed (``pip install 'gradbook[opencv]'``).
    """
    cv2 = _opencv("warp_affine_cv2")
    image_b, M_b, (out_h, out_w), batched = _prepare(image, M, dsize)
    matrices = M_b.detach().to("cpu", torch.float64).numpy()
    arrays = image_b.detach().cpu().permute(0, 2, 3, 1).numpy()
    flags = cv2.INTER_LINEAR | (cv2.WARP_INVERSE_MAP if inverse_map else 0)
    if isinstance(border_value, Real):
        scalar = (float(border_value),) * 4
    else:
        scalar = tuple(float(v) for v in border_value)
    outs = []
    for k, array in enumerate(arrays):
        matrix = matrices[k if len(matrices) > 1 else 0]
        warped = cv2.warpAffine(
            np.ascontiguousarray(array),
            matrix,
            (out_w, out_h),
            flags=flags,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=scalar,
        )
        outs.append(warped.reshape(out_h, out_w, -1))
    out = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).to(image_b.device)
    return out if batched else out[0]


# ----------------------------------------------------------------------------- test images


def synthetic_scene(
    height: int = 96,
    width: int = 128,
    *,
    text: str = "warp",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """A deterministic colour test picture in ``[0, 1]``: no download, no randomness.

    A smooth colour ramp, a fine sinusoidal texture, a filled disc, a rotated
    rectangle, a triangle and a line of text (``cv2.putText``), all anti-aliased so
    that the picture has sharp but sub-pixel edges in every direction.

    Returns:
        ``(3, height, width)`` tensor of ``dtype`` on the CPU.

    Raises:
        ImportError: OpenCV, which draws the shapes and the text, is not installed
            (``pip install 'gradbook[opencv]'``).
    """
    cv2 = _opencv("synthetic_scene")
    height, width = check_size("(height, width)", (height, width))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = xx / max(width - 1, 1), yy / max(height - 1, 1)
    ripple = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * 0.11 + yy * 0.07)) * np.cos(2 * np.pi * yy / 23)
    canvas = np.stack(
        [0.15 + 0.45 * u + 0.1 * ripple, 0.2 + 0.35 * v, 0.55 - 0.3 * u * v + 0.1 * ripple], -1
    )
    size = min(height, width)

    def paint(draw, colour: tuple[float, float, float]) -> None:
        """Draw an anti-aliased 8-bit mask with ``draw(mask)``; blend ``colour`` through it."""
        mask = np.zeros((height, width), np.uint8)
        draw(mask)
        alpha = mask.astype(np.float64)[..., None] / 255.0
        canvas[:] = (1 - alpha) * canvas + alpha * np.asarray(colour)

    aa = cv2.LINE_AA
    disc_centre = (int(0.28 * width), int(0.35 * height))
    paint(lambda m: cv2.circle(m, disc_centre, int(0.2 * size), 255, -1, aa), (0.95, 0.75, 0.1))
    box = cv2.boxPoints(((0.7 * width, 0.32 * height), (0.32 * size, 0.2 * size), 25.0))
    box = np.round(box).astype(np.int32)
    paint(lambda m: cv2.fillPoly(m, [box], 255, aa), (0.1, 0.6, 0.3))
    corners = [
        [0.55 * width, 0.92 * height],
        [0.95 * width, 0.9 * height],
        [0.8 * width, 0.5 * height],
    ]
    triangle = np.round(np.array(corners)).astype(np.int32)
    paint(lambda m: cv2.fillPoly(m, [triangle], 255, aa), (0.85, 0.2, 0.35))
    scale = size / 80.0
    origin = (int(0.06 * width), int(0.86 * height))
    thickness = max(1, round(2 * scale))
    paint(
        lambda m: cv2.putText(m, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, aa),
        (1.0, 1.0, 1.0),
    )
    image = torch.from_numpy(np.clip(canvas, 0.0, 1.0)).permute(2, 0, 1).contiguous()
    return image.to(dtype)
