"""Rotations in 3-D: exp/log maps, their Jacobians, and least squares on SO(3) (chapter 6).

A rotation is a matrix ``R`` with ``R^T R = I`` and ``det R = +1``. Its tangent
space at the identity, the skew-symmetric matrices, is identified with ``R^3``
through the *hat* map, and the exponential map sends a rotation vector (axis
times angle) to a rotation:

.. math::

    [v]_\\times = \\begin{pmatrix} 0 & -v_z & v_y \\\\ v_z & 0 & -v_x \\\\
                                 -v_y & v_x & 0 \\end{pmatrix}, \\qquad
    \\operatorname{Exp}(v) = I + A(\\theta) [v]_\\times + B(\\theta) [v]_\\times^2,
    \\quad \\theta = \\lVert v\\rVert,

with ``A = sin(t)/t = sinc(t)`` and ``B = (1 - cos t)/t^2 = sinc(t/2)^2 / 2``.
``Log`` is its inverse with angles in ``[0, pi]``.

Convention:
    * Vectors are the last dimension: a rotation vector is ``(..., 3)``, a
      rotation ``(..., 3, 3)``, points ``(..., N, 3)``. Every leading dimension
      is a batch dimension (an empty batch is fine).
    * Rotations act on column vectors: ``y = R @ x``; for points stored as rows,
      ``y = x @ R.mT``.
    * Perturbations are on the right, ``R Exp(delta)`` (body frame), as in
      Sola et al. (arXiv:1812.01537): ``Exp(v + d) ~ Exp(v) Exp(J_r(v) d)`` and
      ``Exp(v + d) ~ Exp(J_l(v) d) Exp(v)``.

Numerics:
    Every function works in float32 and float64 on any device. Values *and*
    gradients are finite at angle 0 and at angle pi. Where a formula is 0/0 at
    some angle, the small-angle side is evaluated from its Taylor series in
    ``theta^2`` (a polynomial in ``v``, so autograd differentiates it exactly to any
    order) and the closed form is evaluated at a *safe* argument on that side: the
    unused branch of a ``torch.where`` never divides by zero, so it never sends
    ``0 * inf = NaN`` into the gradient. ``log_map`` goes through a quaternion
    (Markley's variant of Shepperd's method) and ``2 atan2(|q_v|, q_w)``, which
    is accurate at angle pi where ``acos((tr R - 1)/2)`` is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradbook._checks import check_bool, check_int, check_nonnegative, check_tensor

__all__ = [
    "ROTATION_TOL",
    "FitInfo",
    "exp_map",
    "exp_map_derivative",
    "fit_rotation",
    "forum_points",
    "geodesic_distance",
    "hat",
    "is_rotation",
    "kabsch",
    "left_jacobian",
    "left_jacobian_inv",
    "log_map",
    "project_to_so3",
    "right_jacobian",
    "right_jacobian_inv",
    "rotation_error",
    "vee",
]

#: Default tolerance of :func:`log_map` (and :func:`is_rotation`) per dtype: a matrix is
#: accepted as a rotation when ``max |R^T R - I| <= tol`` and ``|det R - 1| <= tol``.
ROTATION_TOL: dict[torch.dtype, float] = {
    torch.float16: 1e-2,
    torch.bfloat16: 5e-2,
    torch.float32: 1e-4,
    torch.float64: 1e-8,
}

# Below these values of theta^2 the Taylor series in theta^2 are used. The series
# (five terms) are accurate to a unit roundoff there, and above them the closed
# forms lose at most ~10 eps / theta^2 of relative accuracy in their derivatives.
_SERIES_THETA2 = {torch.float64: 0.05**2, torch.float32: 0.5**2}


# ---------------------------------------------------------------------------
# validation


def _check_vector(name: str, v: object) -> Tensor:
    v = check_tensor(name, v)
    if v.ndim < 1 or v.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (..., 3), got {tuple(v.shape)}")
    return v


def _check_matrix(name: str, M: object) -> Tensor:
    M = check_tensor(name, M)
    if M.ndim < 2 or M.shape[-2:] != (3, 3):
        raise ValueError(f"{name}: expected shape (..., 3, 3), got {tuple(M.shape)}")
    return M


def _series_threshold(dtype: torch.dtype) -> float:
    return _SERIES_THETA2.get(dtype, _SERIES_THETA2[torch.float32])


def _horner(x: Tensor, coefficients: tuple[float, ...]) -> Tensor:
    """``c0 + c1 x + c2 x^2 + ...`` by Horner's rule."""
    out = torch.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = out * x + c
    return out


# Taylor coefficients in s = theta^2.
_SINC_HALF = (1.0, -1 / 24, 1 / 1920, -1 / 322560, 1 / 92897280)  # sin(t/2)/(t/2)
_COS_HALF = (1.0, -1 / 8, 1 / 384, -1 / 46080, 1 / 10321920)  # cos(t/2)
_C_SERIES = (1 / 6, -1 / 120, 1 / 5040, -1 / 362880, 1 / 39916800)  # (t - sin t)/t^3
_D_SERIES = (1 / 12, 1 / 720, 1 / 30240, 1 / 1209600, 1 / 47900160)  # (1 - (t/2)cot(t/2))/t^2
_ASIN_OVER_X = (1.0, 1 / 6, 3 / 40, 5 / 112, 35 / 1152, 63 / 2816)  # asin(x)/x in x^2


def _half_angle_terms(theta2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``h = sinc(t/2)``, ``c = cos(t/2)``, the small-angle mask and the safe ``t^2``.

    The closed forms are evaluated at ``t^2 = 1`` wherever the series is used, so
    neither branch of the ``torch.where`` below can produce an infinity or a NaN.
    """
    small = theta2 < _series_threshold(theta2.dtype)
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    half = 0.5 * torch.sqrt(theta2_safe)
    h = torch.where(small, _horner(theta2, _SINC_HALF), torch.sin(half) / half)
    c = torch.where(small, _horner(theta2, _COS_HALF), torch.cos(half))
    return h, c, small, theta2_safe


# ---------------------------------------------------------------------------
# hat and vee


def hat(v: Tensor) -> Tensor:
    """The skew-symmetric matrix of a vector: ``hat(v) @ x == cross(v, x)``.

    .. math::

        [v]_\\times = \\begin{pmatrix} 0 & -v_3 & v_2 \\\\ v_3 & 0 & -v_1 \\\\
                                     -v_2 & v_1 & 0 \\end{pmatrix}

    Args:
        v: ``(..., 3)`` floating tensor.

    Returns:
        ``(..., 3, 3)``, same dtype and device.

    Raises:
        TypeError: ``v`` is not a floating-point tensor.
        ValueError: the last dimension of ``v`` is not 3.
    """
    v = _check_vector("v", v)
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


def vee(K: Tensor) -> Tensor:
    """The vector of a skew-symmetric matrix, the inverse of :func:`hat`.

    Returns the vector of the skew-symmetric *part* ``(K - K^T)/2``, so that
    ``vee(hat(v)) == v`` exactly and a matrix that is skew only up to rounding
    gives the nearest vector:

    .. math::

        \\operatorname{vee}(K) = \\tfrac12 (K_{32} - K_{23},\\;
            K_{13} - K_{31},\\; K_{21} - K_{12}).

    Args:
        K: ``(..., 3, 3)`` floating tensor.

    Returns:
        ``(..., 3)``, same dtype and device.

    Raises:
        TypeError: ``K`` is not a floating-point tensor.
        ValueError: ``K`` is not ``(..., 3, 3)``.
    """
    K = _check_matrix("K", K)
    return 0.5 * torch.stack(
        [K[..., 2, 1] - K[..., 1, 2], K[..., 0, 2] - K[..., 2, 0], K[..., 1, 0] - K[..., 0, 1]],
        dim=-1,
    )


def _components(v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``x, y, z`` and ``theta^2 = x^2 + y^2 + z^2``, each ``(...)``.

    Element-wise work on the components is several times faster on the CPU than
    reductions and broadcasts over a trailing dimension of size 3.
    """
    x, y, z = v.unbind(-1)
    return x, y, z, x * x + y * y + z * z


def _assemble(
    diagonal: Tensor, a: Tensor | float, b: Tensor, x: Tensor, y: Tensor, z: Tensor
) -> Tensor:
    """``diagonal I + a [v]x + b v v^T`` for per-rotation scalars (shape ``(...)``)."""
    bx, by, bz = b * x, b * y, b * z
    ax, ay, az = a * x, a * y, a * z
    bxy, bxz, byz = bx * y, bx * z, by * z
    rows = [
        diagonal + bx * x, bxy - az, bxz + ay,
        bxy + az, diagonal + by * y, byz - ax,
        bxz - ay, byz + ax, diagonal + bz * z,
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


# ---------------------------------------------------------------------------
# exp and log


def exp_map(v: Tensor) -> Tensor:
    """Rotation vector (axis times angle) to rotation matrix, by the stable Rodrigues formula.

    .. math::

        \\operatorname{Exp}(v) = \\cos\\theta\\, I + \\operatorname{sinc}(\\theta)\\, [v]_\\times
            + \\tfrac12 \\operatorname{sinc}^2(\\theta/2)\\, v v^T,
        \\qquad \\theta = \\lVert v\\rVert,

    which is ``I + A K + B K^2`` with ``K^2 = v v^T - theta^2 I``. Both
    coefficients are written through ``h = sinc(theta/2)`` and ``c = cos(theta/2)``:
    ``A = h c``, ``B = h^2/2`` and ``cos(theta) = 1 - B theta^2``. No difference
    of nearly equal numbers appears (the textbook ``(1 - cos t)/t^2`` is exactly
    0 in float32 at ``t = 1e-4``; the true value is 0.5). Below a small angle
    (0.05 in float64, 0.5 in float32) ``h`` and ``c`` come from their Taylor
    series in ``theta^2``, so the value and all derivatives are exact at 0:
    ``dR/dv_i = [e_i]x`` there.

    Args:
        v: ``(..., 3)`` floating tensor of rotation vectors (any norm).

    Returns:
        ``(..., 3, 3)`` rotation matrices, same dtype and device.

    Raises:
        TypeError: ``v`` is not a floating-point tensor.
        ValueError: the last dimension of ``v`` is not 3.
    """
    x, y, z, theta2 = _components(_check_vector("v", v))
    h, c, _, _ = _half_angle_terms(theta2)
    b = 0.5 * h * h
    return _assemble(1.0 - b * theta2, h * c, b, x, y, z)


def exp_map_derivative(v: Tensor) -> Tensor:
    """The derivatives ``dR/dv_i`` of ``R = Exp(v)``, in closed form.

    .. math::

        \\frac{\\partial \\operatorname{Exp}(v)}{\\partial v_i}
            = \\operatorname{Exp}(v)\\, [J_r(v)\\, e_i]_\\times

    Args:
        v: ``(..., 3)`` floating tensor.

    Returns:
        ``(..., 3, 3, 3)``: entry ``[..., i, :, :]`` is ``dR/dv_i``.

    Raises:
        TypeError, ValueError: as :func:`exp_map`.
    """
    v = _check_vector("v", v)
    R = exp_map(v)
    columns = right_jacobian(v).mT  # row i is J_r e_i
    return R.unsqueeze(-3) @ hat(columns)


def rotation_error(R: Tensor) -> tuple[Tensor, Tensor]:
    """How far ``R`` is from a rotation: ``(max |R^T R - I|, |det R - 1|)`` per matrix.

    Args:
        R: ``(..., 3, 3)`` floating tensor.

    Returns:
        two ``(...)`` tensors: the orthogonality error and the determinant error.

    Raises:
        TypeError: ``R`` is not a floating-point tensor.
        ValueError: ``R`` is not ``(..., 3, 3)``.
    """
    R = _check_matrix("R", R)
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    orthogonality = (R.mT @ R - eye).abs().amax(dim=(-2, -1))
    r0, r1, r2 = R.unbind(-2)
    det = (r0 * torch.linalg.cross(r1, r2, dim=-1)).sum(-1)
    return orthogonality, (det - 1).abs()


def is_rotation(R: Tensor, tol: float | None = None) -> Tensor:
    """``True`` where ``R`` is a rotation within ``tol`` (default :data:`ROTATION_TOL`).

    Args:
        R: ``(..., 3, 3)`` floating tensor.
        tol: bound on ``max |R^T R - I|`` and ``|det R - 1|``.

    Returns:
        ``(...)`` boolean tensor. NaN entries give ``False``.
    """
    R = _check_matrix("R", R)
    return _within(R, _tolerance(R, tol))


def _tolerance(R: Tensor, tol: float | None) -> float:
    """``tol``, or the default :data:`ROTATION_TOL` of ``R``'s dtype."""
    if tol is None:
        return ROTATION_TOL.get(R.dtype, 1e-4)
    return check_nonnegative("tol", tol)


def _within(R: Tensor, tol: float) -> Tensor:
    orthogonality, det = rotation_error(R)
    return (orthogonality <= tol) & (det <= tol)


def _raise_not_rotation(
    R: Tensor,
    tol: float,
    name: str = "R",
    advice: str = "Project with gradbook.so3.project_to_so3, or pass tol= or check=False.",
) -> None:
    bad = ~_within(R.detach(), tol)
    if not bool(bad.any()):
        return
    index = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
    orthogonality, det = rotation_error(R.detach()[index])
    o, d = orthogonality.item(), det.item()
    count = int(bad.sum())
    where = f" at batch index {index}" if index else ""
    hint = " (det = -1: a reflection, not a rotation)" if abs(d - 2) < 0.1 else ""
    raise ValueError(
        f"{name}: expected rotation matrices (max |R^T R - I| <= {tol:g} and "
        f"|det R - 1| <= {tol:g}), got {count} that are not{where}: orthogonality error "
        f"{o:.3g}, |det R - 1| = {d:.3g}{hint}. {advice}"
    )


def _rotation_from_quaternion(q: Tensor) -> Tensor:
    """The rotation of a unit quaternion ``(x, y, z, w)``: ``I + 2 w [q_v]x + 2 [q_v]x^2``."""
    x, y, z, w = q.unbind(-1)
    x2, y2, z2 = 2 * x, 2 * y, 2 * z
    xx, yy, zz, xy, xz, yz = x * x2, y * y2, z * z2, x * y2, x * z2, y * z2
    wx, wy, wz = w * x2, w * y2, w * z2
    rows = [
        1 - (yy + zz), xy - wz, xz + wy,
        xy + wz, 1 - (xx + zz), yz - wx,
        xz - wy, yz + wx, 1 - (xx + yy),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def _check_rotation(R: Tensor, q: Tensor, tol: float) -> None:
    """Raise unless every ``R`` has orthogonality and determinant errors ``<= tol``.

    Fast path: with ``R = Rq + E``, ``Rq`` the rotation of ``R``'s own quaternion ``q``
    and ``max |E| = e``, ``max |R^T R - I| <= 2 sqrt(3) e + 3 e^2`` and
    ``|det R - 1| <= 3 e + O(e^2)``; so ``e <= tol / 4`` proves both bounds
    (``tol <= 0.1``) with one cheap global reduction. Otherwise the exact errors decide.
    """
    if R.numel() == 0:
        return
    if tol <= 0.1:
        with torch.no_grad():
            unit = q * torch.rsqrt((q * q).sum(-1, keepdim=True))
            distance = (_rotation_from_quaternion(unit) - R).abs().max()
        if bool(distance <= 0.25 * tol):
            return
    _raise_not_rotation(R, tol)


def _markley_map(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """``(W, b)`` with ``R.flatten(-2) @ W + b`` = the ``4 x 4`` matrix ``4 q q^T`` (flattened).

    Row ``i`` of that matrix, as a function of the entries of ``R`` (Markley 2008, eq. 8
    with his attitude matrix ``A = R^T``); ``(x, y, z, w)`` order. One small matrix
    product replaces sixteen sums of strided entries.
    """
    key = (dtype, device)
    if key not in _MARKLEY_CACHE:
        with torch.inference_mode(False):  # cached: must be usable outside inference mode
            _MARKLEY_CACHE[key] = _build_markley_map(dtype, device)
    return _MARKLEY_CACHE[key]


def _build_markley_map(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    W = torch.zeros(9, 16, dtype=torch.float64)
    b = torch.zeros(16, dtype=torch.float64)
    # entry (row, col) of the 4 x 4 matrix: constant and signed entries of R
    plus = {0: (0, 1, 2), 1: (1, 2, 0), 2: (2, 0, 1)}
    for i, (a, j, k) in plus.items():
        b[5 * i] = 1.0  # diagonal 1 + R_ii - R_jj - R_kk
        W[4 * a, 5 * i], W[4 * j, 5 * i], W[4 * k, 5 * i] = 1.0, -1.0, -1.0
        for c in (j, k):  # symmetric part R_ic + R_ci
            W[3 * i + c, 4 * i + c] = W[3 * c + i, 4 * i + c] = 1.0
        W[3 * k + j, 4 * i + 3] = W[3 * k + j, 12 + i] = 1.0  # antisymmetric R_kj - R_jk
        W[3 * j + k, 4 * i + 3] = W[3 * j + k, 12 + i] = -1.0
    b[15] = 1.0  # 1 + tr R
    W[0, 15] = W[4, 15] = W[8, 15] = 1.0
    return W.to(dtype=dtype, device=device), b.to(dtype=dtype, device=device)


_MARKLEY_CACHE: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}


def _argmax4(d: Tensor) -> Tensor:
    """``d.argmax(-1)`` for ``(..., 4)``, by three comparisons (a reduction over 4 is slow)."""
    d0, d1, d2, d3 = d.unbind(-1)
    first = (d1 > d0).long()
    second = 2 + (d3 > d2).long()
    return torch.where(torch.maximum(d2, d3) > torch.maximum(d0, d1), second, first)


def _quaternion_from_matrix(R: Tensor) -> Tensor:
    """A quaternion ``(x, y, z, w)`` of ``R``, *not normalised* (Markley 2008).

    Each row ``i`` of the symmetric ``4 x 4`` matrix ``4 q q^T`` is computed from
    ``R``; the row with the largest diagonal entry ``4 q_i^2 >= 1`` is returned: it
    is ``4 q_i q``, of norm ``4 |q_i| >= 2`` for a rotation, so normalising it never
    divides by a small number. Only that row enters the graph (``gather``), so the
    others may vanish freely.
    """
    W, b = _markley_map(R.dtype, R.device)
    candidates = (R.flatten(-2) @ W + b).unflatten(-1, (4, 4))
    best = _argmax4(candidates.diagonal(dim1=-2, dim2=-1))
    row = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4))
    return row.squeeze(-2)


def log_map(R: Tensor, *, check: bool = True, tol: float | None = None) -> Tensor:
    """Rotation matrix to rotation vector with angle in ``[0, pi]``: the inverse of :func:`exp_map`.

    Goes through the unit quaternion ``q = (sin(t/2) u, cos(t/2))`` (Markley's
    variant of Shepperd's method, accurate for every angle), chooses the sign
    with ``q_w >= 0`` and returns

    .. math::

        \\operatorname{Log}(R) = \\frac{2 \\operatorname{atan2}(\\lVert q_v\\rVert, q_w)}
            {\\lVert q_v\\rVert}\\, q_v,

    with ``2 asin(x)/x`` from its Taylor series in ``x^2 = |q_v|^2`` at small
    angles (below 0.05 rad in float64, 0.5 in float32). ``acos((tr R - 1)/2)``
    is never used: it loses half the digits near 0 and the axis near pi.

    At angle exactly pi, ``v`` and ``-v`` are the same rotation; which one is
    returned is unspecified, and the map is discontinuous there (its gradient is
    finite but one-sided).

    Args:
        R: ``(..., 3, 3)`` rotation matrices.
        check: validate that ``R`` is a rotation (this synchronises with the GPU).
        tol: tolerance of the check (default :data:`ROTATION_TOL` for ``R``'s dtype).

    Returns:
        ``(...,  3)`` rotation vectors with norm in ``[0, pi]``, same dtype and device.

    Raises:
        TypeError: ``R`` is not a floating-point tensor.
        ValueError: ``R`` is not ``(..., 3, 3)``, or (with ``check``) some matrix has
            ``max |R^T R - I| > tol`` or ``|det R - 1| > tol``; the message gives the
            first offending batch index.
    """
    R = _check_matrix("R", R)
    q = _quaternion_from_matrix(R)
    if check:
        _check_rotation(R, q, _tolerance(R, tol))
    # q = s (sin(t/2) u, cos(t/2)) with an unknown scale s != 0: atan2(|q_v|, |w|) and
    # q_v / |q_v| do not see s; the series branch normalises by |q| >= 2.
    x, y, z, w = q.unbind(-1)
    n2 = x * x + y * y + z * z
    q2 = n2 + w * w
    small = n2 < (0.25 * _series_threshold(R.dtype)) * q2  # sin^2(t/2) ~ t^2/4
    n_safe = torch.sqrt(torch.where(small, torch.ones_like(n2), n2))
    series = 2.0 * _horner(n2 / q2, _ASIN_OVER_X) * torch.rsqrt(q2)
    scale = torch.where(small, series, 2.0 * torch.atan2(n_safe, w.abs()) / n_safe)
    scale = torch.where(w < 0, -scale, scale)
    return torch.stack([scale * x, scale * y, scale * z], dim=-1)


def geodesic_distance(R1: Tensor, R2: Tensor) -> Tensor:
    """The angle of the rotation ``R1^T R2``, in ``[0, pi]``: the geodesic distance on SO(3).

    .. math::

        d(R_1, R_2) = \\operatorname{atan2}\\big(\\lVert \\operatorname{vee}(M) \\rVert,
            (\\operatorname{tr} M - 1)/2\\big), \\qquad M = R_1^T R_2,

    i.e. ``atan2(sin t, cos t)``: accurate to a unit roundoff at every angle,
    unlike ``acos((tr M - 1)/2)`` (wrong by ~1e-8 near 0 in float64) or the chordal
    ``2 asin(|R1 - R2|_F / (2 sqrt 2))`` (loses half the digits near pi). The
    gradient is finite everywhere: for rotations its Frobenius norm in ``R2`` is
    ``sqrt(cos^2 t / 2 + 3 sin^2 t / 4) <= sqrt(3) / 2`` at angle ``t``. At angle
    0 and pi, where the distance has a kink, it is 0 when ``M`` is exactly
    symmetric (``R1 == R2``, an exact half turn such as ``diag(1, -1, -1)``);
    otherwise the rounding of ``M`` picks one of the one-sided gradients, of
    norm ``1 / sqrt 2``.

    Args:
        R1, R2: ``(..., 3, 3)`` rotation matrices (batch shapes broadcast).

    Returns:
        ``(...)`` angles in radians.

    Raises:
        TypeError: an argument is not a floating-point tensor.
        ValueError: an argument is not ``(..., 3, 3)``, or the batch shapes do not broadcast.
    """
    R1, R2 = _check_matrix("R1", R1), _check_matrix("R2", R2)
    try:
        torch.broadcast_shapes(R1.shape, R2.shape)
    except RuntimeError:
        raise ValueError(
            f"R2: shape {tuple(R2.shape)} does not broadcast with R1's {tuple(R1.shape)}"
        ) from None
    M = R1.mT @ R2
    s = vee(M)
    s2 = (s * s).sum(-1)
    tiny = torch.finfo(M.dtype).tiny
    sin = torch.sqrt(s2.clamp_min(tiny))  # at 0 the clamp stops the gradient: no 0 * inf
    cos = 0.5 * (M.diagonal(dim1=-2, dim2=-1).sum(-1) - 1)
    return torch.atan2(sin, cos)


# ---------------------------------------------------------------------------
# Jacobians


def _jacobian_terms(theta2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``A = sinc t``, ``B = (1 - cos t)/t^2`` and ``C = (t - sin t)/t^3`` from ``t^2``."""
    h, c, small, theta2_safe = _half_angle_terms(theta2)
    a = h * c
    b = 0.5 * h * h
    # C = (1 - A)/t^2: a cancellation, hence the series on the small side
    c_closed = (1.0 - a) / theta2_safe  # finite on the small side too: t^2 = 1 there
    c_coef = torch.where(small, _horner(theta2, _C_SERIES), c_closed)
    return a, b, c_coef


def right_jacobian(v: Tensor) -> Tensor:
    """The right Jacobian of SO(3): ``Exp(v + d) = Exp(v) Exp(J_r(v) d + O(d^2))``.

    .. math::

        J_r(v) = I - B [v]_\\times + C [v]_\\times^2
               = \\operatorname{sinc}(\\theta) I - B [v]_\\times + C v v^T,

    with ``B = (1 - cos t)/t^2`` and ``C = (t - sin t)/t^3`` (series near 0).
    Consequently ``dExp(v)/dv_i = Exp(v) [J_r(v) e_i]x``. ``J_r(v) = J_l(v)^T = J_l(-v)``.
    ``J_r`` is singular at ``|v| = 2 pi`` (never reached by :func:`log_map`).

    Args:
        v: ``(..., 3)`` floating tensor.

    Returns:
        ``(..., 3, 3)``, same dtype and device.

    Raises:
        TypeError, ValueError: as :func:`exp_map`.
    """
    x, y, z, theta2 = _components(_check_vector("v", v))
    a, b, c = _jacobian_terms(theta2)
    return _assemble(a, -b, c, x, y, z)


def left_jacobian(v: Tensor) -> Tensor:
    """The left Jacobian of SO(3): ``Exp(v + d) = Exp(J_l(v) d + O(d^2)) Exp(v)``.

    .. math::

        J_l(v) = I + B [v]_\\times + C [v]_\\times^2 = J_r(v)^T = \\operatorname{Exp}(v) J_r(v).

    Args:
        v: ``(..., 3)`` floating tensor.

    Returns:
        ``(..., 3, 3)``, same dtype and device.

    Raises:
        TypeError, ValueError: as :func:`exp_map`.
    """
    x, y, z, theta2 = _components(_check_vector("v", v))
    a, b, c = _jacobian_terms(theta2)
    return _assemble(a, b, c, x, y, z)


def _inverse_terms(theta2: Tensor) -> tuple[Tensor, Tensor]:
    """``(t/2) cot(t/2)`` and ``D = (1 - (t/2) cot(t/2))/t^2`` from ``t^2``."""
    h, c, small, theta2_safe = _half_angle_terms(theta2)
    diagonal = c / h  # (t/2) cot(t/2) = cos(t/2) / sinc(t/2): finite up to 2 pi
    d_closed = (1.0 - diagonal) / theta2_safe
    d_coef = torch.where(small, _horner(theta2, _D_SERIES), d_closed)
    return diagonal, d_coef


def left_jacobian_inv(v: Tensor) -> Tensor:
    """The inverse of :func:`left_jacobian`: ``Log(Exp(d) Exp(v)) = v + J_l^{-1}(v) d + O(d^2)``.

    .. math::

        J_l^{-1}(v) = I - \\tfrac12 [v]_\\times + D [v]_\\times^2
            = \\tfrac\\theta2 \\cot\\tfrac\\theta2\\, I - \\tfrac12 [v]_\\times + D v v^T,
        \\qquad D = \\frac{1 - \\frac\\theta2 \\cot\\frac\\theta2}{\\theta^2},

    the stable form of ``D = 1/t^2 - (1 + cos t)/(2 t sin t)``, which is 0/0 at
    ``t = pi`` (where ``D = 1/pi^2``) and cancels near 0 (series there). Singular
    at ``|v| = 2 pi``.

    Args:
        v: ``(..., 3)`` floating tensor.

    Returns:
        ``(..., 3, 3)``, same dtype and device.

    Raises:
        TypeError, ValueError: as :func:`exp_map`.
    """
    x, y, z, theta2 = _components(_check_vector("v", v))
    diagonal, d = _inverse_terms(theta2)
    return _assemble(diagonal, -0.5, d, x, y, z)


def right_jacobian_inv(v: Tensor) -> Tensor:
    """The inverse of :func:`right_jacobian`: ``J_r^{-1}(v) = J_l^{-1}(v)^T = J_l^{-1}(-v)``.

    ``Log(Exp(v) Exp(d)) = v + J_r^{-1}(v) d + O(d^2)``.

    Args:
        v: ``(..., 3)`` floating tensor.

    Returns:
        ``(..., 3, 3)``, same dtype and device.

    Raises:
        TypeError, ValueError: as :func:`exp_map`.
    """
    x, y, z, theta2 = _components(_check_vector("v", v))
    diagonal, d = _inverse_terms(theta2)
    return _assemble(diagonal, 0.5, d, x, y, z)


# ---------------------------------------------------------------------------
# fitting


def _check_points(p: object, q: object, weights: object) -> tuple[Tensor, Tensor, Tensor | None]:
    p, q = check_tensor("p", p), check_tensor("q", q)
    if p.ndim < 2 or p.shape[-1] != 3:
        raise ValueError(f"p: expected points of shape (..., N, 3), got {tuple(p.shape)}")
    if q.shape != p.shape:
        raise ValueError(f"q: expected the shape of p, {tuple(p.shape)}, got {tuple(q.shape)}")
    if q.dtype != p.dtype or q.device != p.device:
        raise ValueError(
            f"q: expected p's dtype and device ({p.dtype}, {p.device}), got ({q.dtype}, {q.device})"
        )
    if p.shape[-2] == 0:
        raise ValueError(f"p: expected at least one point, got shape {tuple(p.shape)}")
    if weights is None:
        return p, q, None
    weights = check_tensor("weights", weights)
    try:
        shape = torch.broadcast_shapes(weights.shape, p.shape[:-1])
    except RuntimeError:
        shape = None
    if shape != p.shape[:-1]:
        raise ValueError(
            f"weights: expected a shape that broadcasts to {tuple(p.shape[:-1])} (one weight per"
            f" point), got {tuple(weights.shape)}"
        )
    if bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise ValueError("weights: expected finite, non-negative weights")
    return p, q, weights.to(p.dtype).expand(p.shape[:-1])


def _svd_rotation(M: Tensor) -> Tensor:
    """The rotation ``R`` maximising ``tr(R^T M)``: ``U diag(1, 1, det(U V^T)) V^T``."""
    U, _, Vh = torch.linalg.svd(M)
    d = torch.linalg.det(U) * torch.linalg.det(Vh)
    ones = torch.ones_like(d)
    sign = torch.stack([ones, ones, torch.where(d < 0, -ones, ones)], dim=-1)
    return (U * sign.unsqueeze(-2)) @ Vh


def kabsch(p: Tensor, q: Tensor, weights: Tensor | None = None) -> Tensor:
    """The proper rotation that best maps points ``p`` onto ``q``, in closed form (Kabsch/Umeyama).

    .. math::

        R^\\star = \\arg\\min_{R \\in SO(3)} \\sum_i w_i \\lVert q_i - R p_i \\rVert^2
                 = U \\operatorname{diag}(1, 1, \\det(U V^T))\\, V^T,
        \\qquad M = \\sum_i w_i q_i p_i^T = U \\Sigma V^T.

    The points are not centred (no translation is fitted; centre them first for a
    rigid fit). The determinant correction is what keeps a reflection out: the plain
    ``U V^T`` has ``det = -1`` when the data are better explained by a mirror image
    (noisy, planar or reflected points), and the best *rotation* then flips the
    direction of the smallest singular value.

    The answer is unique when ``rank M >= 2`` (with ``rank M = 2``, unique thanks
    to the determinant). Below that (all weights zero, or every point on one line
    through the origin) many rotations are optimal and one of them is returned,
    without an error, so that batches never synchronise; :func:`fit_rotation`
    checks and raises. Gradients flow through ``torch.linalg.svd`` and are
    finite where the singular values of ``M`` are distinct.

    Args:
        p: ``(..., N, 3)`` source points.
        q: ``(..., N, 3)`` target points, same dtype and device.
        weights: optional ``(..., N)`` non-negative weights (broadcast against ``p``).

    Returns:
        ``(..., 3, 3)`` rotations with ``det = +1``.

    Raises:
        TypeError: an argument is not a floating-point tensor.
        ValueError: shapes, dtypes or devices disagree, no points, or negative weights.
    """
    p, q, weights = _check_points(p, q, weights)
    if weights is not None:
        q = q * weights.unsqueeze(-1)
    return _svd_rotation(q.mT @ p)


def project_to_so3(M: Tensor) -> Tensor:
    """The rotation nearest to ``M`` in the Frobenius norm: ``argmin_R |R - M|_F``.

    The same SVD as :func:`kabsch` (``tr(R^T M)`` is maximised). Use it to clean
    up matrices that are rotations only approximately before :func:`log_map`.

    Args:
        M: ``(..., 3, 3)`` floating tensor.

    Returns:
        ``(..., 3, 3)`` rotations.

    Raises:
        TypeError, ValueError: ``M`` is not a floating ``(..., 3, 3)`` tensor.
    """
    return _svd_rotation(_check_matrix("M", M))


@dataclass
class FitInfo:
    """How :func:`fit_rotation` converged. Also readable as a mapping: ``info["cost"]``.

    Attributes:
        iterations: Gauss-Newton/LM iterations (steps computed), the largest over the batch.
        evaluations: evaluations of the residuals (the cost), the initial one included.
        jacobian_evaluations: evaluations of the gradient ``J^T r`` (once per accepted point).
        cost: ``(...)`` final cost ``0.5 * sum_i w_i |R p_i - q_i|^2`` per problem.
        converged: ``(...)`` boolean, whether each problem met a stopping test.
        message: why the loop stopped.
        history: the summed cost at the start and after each iteration (a rejected
            step repeats the previous value).
    """

    iterations: int
    evaluations: int
    jacobian_evaluations: int
    cost: Tensor
    converged: Tensor
    message: str
    history: list[float] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


def _cost(R: Tensor, p: Tensor, q: Tensor, weights: Tensor | None) -> Tensor:
    residual = p @ R.mT - q
    squared = (residual * residual).sum(-1)
    if weights is not None:
        squared = squared * weights
    return 0.5 * squared.sum(-1)


def fit_rotation(
    p: Tensor,
    q: Tensor,
    weights: Tensor | None = None,
    *,
    R0: Tensor | None = None,
    method: str = "lm",
    max_iterations: int = 100,
    xtol: float = 1e-10,
    ftol: float = 1e-15,
    gtol: float = 0.0,
    damping: float = 1e-4,
    callback: Callable[[Tensor], object] | None = None,
) -> tuple[Tensor, FitInfo]:
    """Least squares over rotations, ``min_R 0.5 sum_i w_i |R p_i - q_i|^2``, on the manifold.

    Each iteration linearises ``R Exp(d)`` around the current ``R``: the residual
    ``r_i = R p_i - q_i`` has the Jacobian ``J_i = -R [p_i]x`` with respect to
    ``d``, so the Gauss-Newton system is

    .. math::

        H d = -g, \\qquad H = \\sum_i w_i [p_i]_\\times^T [p_i]_\\times
            = \\sum_i w_i (\\lVert p_i\\rVert^2 I - p_i p_i^T), \\qquad
        g = \\sum_i w_i J_i^T r_i = -\\sum_i w_i\\, p_i \\times (R^T q_i),

    (``H`` does not depend on ``R``), and the update is ``R <- R Exp(d)``: three
    unknowns, no constraint to keep, no singularity at angle pi. With
    ``method="lm"`` (Levenberg-Marquardt) ``H`` becomes ``H + lambda diag(H)``
    and a step is kept only if it lowers the cost; ``method="gn"`` keeps every
    step.

    Stopping: a step shorter than ``xtol`` radians (then it is not applied and
    costs no evaluation), a relative change of the cost below ``ftol``, a step
    whose predicted decrease of the cost is below the cost's own rounding error
    (``64 eps cost``: the step is kept, as comparing the two costs is noise there,
    and nothing further could be measured; this is what stops float32 fits), or
    ``|g|_inf <= gtol``.

    Args:
        p: ``(..., N, 3)`` source points.
        q: ``(..., N, 3)`` target points (``q_i ~ R p_i``).
        weights: optional ``(..., N)`` non-negative weights.
        R0: optional ``(..., 3, 3)`` starting rotation (default the identity).
        method: ``"lm"`` or ``"gn"``.
        max_iterations: the most steps to compute.
        xtol, ftol, gtol: stopping tolerances (see above).
        damping: the initial Levenberg-Marquardt ``lambda``.
        callback: called with every ``(..., 3, 3)`` rotation at which the residuals
            are evaluated, the start first (``info.evaluations`` calls in all), e.g.
            to trace the path; rejected trial steps included.

    Returns:
        ``(R, info)``: ``(..., 3, 3)`` rotations and a :class:`FitInfo`.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: shapes disagree, ``H`` is singular (fewer than two distinct
            directions among the points), ``R0`` is not a rotation, or an option is
            out of range.
    """
    p, q, weights = _check_points(p, q, weights)
    if method not in ("lm", "gn"):
        raise ValueError(f"method: expected 'lm' or 'gn', got {method!r}")
    max_iterations = check_int("max_iterations", max_iterations, minimum=0)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback: expected a callable or None, got {type(callback).__name__}")
    batch = p.shape[:-2]
    if R0 is None:
        R = torch.eye(3, dtype=p.dtype, device=p.device).expand(*batch, 3, 3).clone()
    else:
        R0 = _check_matrix("R0", R0)
        if R0.shape[:-2] != batch and R0.shape != (3, 3):
            raise ValueError(
                f"R0: expected shape {(*batch, 3, 3)} or (3, 3), got {tuple(R0.shape)}"
            )
        _raise_not_rotation(
            R0, _tolerance(R0, None), "R0", "Project it with gradbook.so3.project_to_so3."
        )
        R = R0.to(p.dtype).expand(*batch, 3, 3)
        if R0.dtype != p.dtype:  # within R0's tolerance, not yet within p's
            R = project_to_so3(R)
        R = R.clone()

    w = torch.ones_like(p[..., 0]) if weights is None else weights
    eye = torch.eye(3, dtype=p.dtype, device=p.device)
    wp = w.unsqueeze(-1) * p
    H = (wp * p).sum((-2, -1))[..., None, None] * eye - wp.mT @ p
    diag_H = H.diagonal(dim1=-2, dim2=-1)
    # H is positive semi-definite; it is singular when all points lie on one line
    eigenvalues = torch.linalg.eigvalsh(H)
    if bool((eigenvalues[..., 0] <= 1e3 * torch.finfo(p.dtype).eps * eigenvalues[..., -1]).any()):
        raise ValueError(
            "p: the rotation is not determined: the (weighted) points lie on one line through"
            " the origin (or are all zero), so rotations about that line do not change the cost"
        )

    def gradient(R: Tensor) -> Tensor:
        return -(torch.linalg.cross(wp, q @ R, dim=-1)).sum(-2)  # q @ R = (R^T q_i) as rows

    cost = _cost(R, p, q, weights)
    if callback is not None:
        callback(R.detach())
    evaluations, jacobian_evaluations = 1, 1
    history = [float(cost.sum())]
    g = gradient(R)
    lam = torch.full_like(cost, damping if method == "lm" else 0.0)
    active = torch.ones_like(cost, dtype=torch.bool)
    converged = torch.zeros_like(active)
    message = f"max_iterations={max_iterations} reached"
    iterations = 0
    for _ in range(max_iterations):
        if gtol > 0:
            small_g = g.abs().amax(-1) <= gtol
            converged |= active & small_g
            active &= ~small_g
        if not bool(active.any()):
            message = "converged"
            break
        iterations += 1
        system = H + lam[..., None, None] * torch.diag_embed(diag_H)
        step = -torch.linalg.solve(system, g.unsqueeze(-1)).squeeze(-1)
        short = step.norm(dim=-1) <= xtol
        converged |= active & short
        active &= ~short
        if not bool(active.any()):
            message = "converged"
            break
        R_trial = R @ exp_map(step)
        cost_trial = _cost(R_trial, p, q, weights)
        if callback is not None:
            callback(R_trial.detach())
        evaluations += 1
        decrease = cost - cost_trial
        # the decrease the linear model predicts; below the rounding error of the
        # cost, comparing costs says nothing: the (accurate) model decides, and
        # no further progress can be measured
        hs = (H @ step.unsqueeze(-1)).squeeze(-1)
        predicted = -(g * step).sum(-1) - 0.5 * (step * hs).sum(-1)
        unmeasurable = predicted <= 64 * torch.finfo(p.dtype).eps * cost
        if method == "lm":
            better = active & ((decrease >= 0) | unmeasurable)
        else:
            better = active
        R = torch.where(better[..., None, None], R_trial, R)
        flat = better & ((decrease.abs() <= ftol * cost) | unmeasurable)
        cost = torch.where(better, cost_trial, cost)
        if bool(better.any()):
            g = torch.where(better[..., None], gradient(R), g)
            jacobian_evaluations += 1
        if method == "lm":
            lam = torch.where(better, lam / 10, lam * 10)
            stuck = active & ~better & (lam > 1e16)
            active &= ~stuck
        converged |= flat
        active &= ~flat
        history.append(float(cost.sum()))
        if not bool(active.any()):
            message = "converged" if bool(converged.all()) else "the damping grew without progress"
            break
    info = FitInfo(
        iterations=iterations,
        evaluations=evaluations,
        jacobian_evaluations=jacobian_evaluations,
        cost=cost,
        converged=converged,
        message=message,
        history=history,
    )
    return R, info


# --------------------------------------------------------------------------- example data


#: The rotation vector of the chapter's forum question.
FORUM_ROTVEC = (0.3, -0.2, 0.1)


def forum_points(noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The forum question's data: ``p2 = Exp(v) p1 (+ noise)``, 100 points, NumPy float64.

    Drawn as the question draws it: ``np.random.RandomState(1001)``, ``p1`` of
    shape ``(100, 3)`` from ``randn``, ``v = (0.3, -0.2, 0.1)`` and, with
    ``noise=True``, Gaussian noise of standard deviation ``1e-2`` added to
    ``p2``. Tests, the benchmark and the lesson of chapter 6 use this one copy.

    Returns:
        ``(p1, p2)``, each ``(100, 3)``.
    """
    from scipy.spatial.transform import Rotation

    rng = np.random.RandomState(1001)
    p1 = rng.randn(100, 3, 1)
    p2 = Rotation.from_rotvec(FORUM_ROTVEC).as_matrix() @ p1
    if check_bool("noise", noise):
        p2 = p2 + rng.randn(100, 3, 1) * 1e-2
    return p1[..., 0], p2[..., 0]
