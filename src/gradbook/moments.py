"""Differentiable moments of 2-D activation maps, and soft-argmax (chapter 2).

A non-negative map ``p`` of shape ``(H, W)`` that sums to 1 is a probability
distribution over the pixel grid. Its mean and covariance are

.. math::

    \\mu = \\sum_{r, c} p_{rc}\\, u_{rc}, \\qquad
    \\Sigma = \\sum_{r, c} p_{rc}\\, (u_{rc} - \\mu)(u_{rc} - \\mu)^{\\top},
    \\qquad u_{rc} = (c, r)^{\\top}.

Both are polynomials in ``p``, so autograd differentiates them exactly; with
``p = softmax(scores)`` the mean is the *soft-argmax* of ``scores``, a
differentiable stand-in for the location of the maximum (keypoint heat maps).

Convention:
    Coordinates are in pixels, ``(x, y) = (column, row)``: the pixel in row
    ``r`` and column ``c`` sits at ``(c, r)``, the centre of the top-left pixel
    at ``(0, 0)``, ``x`` growing to the right and ``y`` downwards (the OpenCV
    convention). Means are ``(..., 2)`` as ``(x, y)``; covariances ``(..., 2, 2)``
    with ``Sigma[0, 0] = var(x)``, ``Sigma[1, 1] = var(y)``. Leading dimensions
    ``...`` are independent maps.

The covariance is computed *centred* (two passes: the mean first, then the
weighted outer products of ``u - mu``), not as ``E[u u^T] - mu mu^T``, which
cancels catastrophically when the mass sits far from the origin (a sharp peak
at pixel 1000 has ``E[x^2] ~ 1e6`` and a variance ~``1e-2``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gradbook._checks import check_int, check_positive, check_tensor

#: Default tolerance on ``|sum(p) - 1|`` per dtype (about ``sqrt(eps)``); maps of more
#: than about 100 x 100 pixels get ``8 eps sqrt(H W)`` if that is larger (see
#: :func:`spatial_moments`).
SUM_TOL = {
    torch.float16: 1e-2,
    torch.bfloat16: 2e-2,
    torch.float32: 1e-4,
    torch.float64: 1e-8,
}


def pixel_grid(height: int, width: int, *, dtype=torch.float64, device=None) -> Tensor:
    """The pixel coordinates ``u[r, c] = (c, r)`` as an ``(H, W, 2)`` tensor.

    Args:
        height, width: positive sizes ``H`` and ``W``.
        dtype, device: of the result.

    Raises:
        TypeError: a size is not an int.
        ValueError: a size is below 1.
    """
    height, width = check_int("height", height), check_int("width", width)
    rows = torch.arange(height, dtype=dtype, device=device)
    cols = torch.arange(width, dtype=dtype, device=device)
    yy, xx = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def _check_map(name: str, maps: object) -> Tensor:
    """``maps`` if it is a floating ``(..., H, W)`` tensor with ``H, W >= 1``.

    Messages name the argument ``name`` (``p`` for a map, ``scores`` for scores).
    """
    check_tensor(name, maps)
    if maps.ndim < 2:
        raise ValueError(
            f"{name}: expected shape (..., H, W) with at least 2 dimensions, "
            f"got {tuple(maps.shape)}"
        )
    if maps.shape[-2] == 0 or maps.shape[-1] == 0:
        raise ValueError(f"{name}: expected H >= 1 and W >= 1, got shape {tuple(maps.shape)}")
    return maps


def spatial_moments(
    p: Tensor, *, normalize: bool = False, atol: float | None = None
) -> tuple[Tensor, Tensor]:
    """Mean ``(..., 2)`` and covariance ``(..., 2, 2)`` of maps ``p`` seen as distributions.

    ``mu = sum p u`` and ``Sigma = sum p (u - mu)(u - mu)^T`` over the pixels,
    with ``u = (column, row)`` (see the module's Convention). Differentiable in
    ``p``; the covariance is centred (no cancellation) and symmetric exactly.

    Args:
        p: ``(..., H, W)`` floating tensor, non-negative, each map summing to 1
            (for example a ``softmax`` over the ``H * W`` pixels).
        normalize: when ``True``, divide each map by its sum first (then ``p``
            need only be non-negative with a positive sum). The division is
            part of the graph, so gradients see it.
        atol: tolerance on ``|sum - 1|`` when ``normalize`` is ``False``;
            defaults to :data:`SUM_TOL` for ``p``'s dtype, or to ``8 eps sqrt(H W)``
            when that is larger, ``eps`` that of the sums' accumulation (float32,
            or float64 for float64 maps): a float32 ``softmax`` over ``H W``
            pixels sums to 1 only to within its own rounding, measured at
            ``1.1e-4`` for ``1024 x 1024`` and ``7.9e-4`` for ``4096 x 4096``
            maps of ``5 * randn`` scores.

    Returns:
        ``(mean, cov)``: ``(..., 2)`` as ``(x, y)`` and ``(..., 2, 2)``, in ``p``'s
        dtype and on its device.

    Raises:
        TypeError: ``p`` is not a floating-point tensor.
        ValueError: ``p`` has fewer than 2 dimensions or an empty map, has a
            negative or non-finite entry, does not sum to 1 (and ``normalize``
            is off), or has a map summing to 0 (with ``normalize`` on).
    """
    _check_map("p", p)
    detached = p.detach()
    if not torch.isfinite(detached).all():
        raise ValueError("p: expected finite values, got NaN or inf")
    if (detached < 0).any():
        raise ValueError(
            f"p: expected a non-negative map, got a minimum of {detached.min().item():.3g} "
            "(apply softmax, or clamp/abs, before taking moments)"
        )
    sums = p.sum(dim=(-2, -1), keepdim=True)
    if normalize:
        if (sums.detach() <= 0).any():
            raise ValueError("p: cannot normalize a map whose sum is 0")
        p = p / sums
    else:
        tol = _sum_tolerance(p) if atol is None else atol
        worst = (sums.detach() - 1).abs().max().item() if sums.numel() else 0.0
        if worst > tol:
            raise ValueError(
                f"p: expected each map to sum to 1 (within {tol:g}), but a sum is off by "
                f"{worst:.3g}; pass normalize=True to divide by the sum"
            )
    return _moments(p)


def _sum_tolerance(p: Tensor) -> float:
    """The default ``atol`` of :func:`spatial_moments` for maps ``p`` of shape ``(..., H, W)``."""
    accumulation = torch.float64 if p.dtype == torch.float64 else torch.float32
    size_term = 8 * torch.finfo(accumulation).eps * math.sqrt(p.shape[-2] * p.shape[-1])
    return max(SUM_TOL.get(p.dtype, 1e-4), size_term)


def _moments(p: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`spatial_moments` of maps already known to be valid distributions; no checks.

    ``p``: ``(..., H, W)``, non-negative, each map summing to 1. Returns ``(mean, cov)``,
    ``(..., 2)`` and ``(..., 2, 2)``, centred and exactly symmetric.
    """
    grid = pixel_grid(p.shape[-2], p.shape[-1], dtype=p.dtype, device=p.device)  # (H, W, 2)
    weights = p.unsqueeze(-1)  # (..., H, W, 1)
    mean = (weights * grid).sum(dim=(-3, -2))  # (..., 2)
    centred = grid - mean[..., None, None, :]  # (..., H, W, 2)
    weighted = weights * centred
    cov = torch.einsum("...hwi,...hwj->...ij", weighted, centred)
    cov = 0.5 * (cov + cov.mT)  # exactly symmetric
    return mean, cov


def spatial_moments_one_pass(p: Tensor) -> tuple[Tensor, Tensor]:
    """The one-pass formula ``Sigma = E[u u^T] - mu mu^T`` (for comparison, not a reference).

    Correct in exact arithmetic for a normalised ``(H, W)`` map, but it cancels
    catastrophically when the mass is far from the origin; no validation. (Not a
    ``_naive`` reference: the two-pass :func:`spatial_moments` is the accurate one.)
    """
    grid = pixel_grid(p.shape[-2], p.shape[-1], dtype=p.dtype, device=p.device)
    weights = p.unsqueeze(-1)
    mean = (weights * grid).sum(dim=(-3, -2))
    second = torch.einsum("...hw,hwi,hwj->...ij", p, grid, grid)
    return mean, second - mean[..., :, None] * mean[..., None, :]


#: The earlier name of :func:`spatial_moments_one_pass`.
spatial_moments_naive = spatial_moments_one_pass


def _every_map_has_finite(flat: Tensor) -> bool:
    """Whether every flattened map (a row of ``flat``, ``(..., H * W)``) has an entry above -inf.

    True when there are no maps (an empty batch).
    """
    return bool(flat.detach().gt(-math.inf).any(dim=-1).all())


def soft_argmax(scores: Tensor, beta: float = 1.0) -> Tensor:
    """Differentiable location of the maximum: the mean of ``softmax(beta * scores)``.

    Args:
        scores: ``(..., H, W)`` floating tensor (unnormalised log-weights).
        beta: positive inverse temperature; larger values move the result
            towards the hard argmax (for a unique maximum), smaller values
            towards the centre of the map.

    Returns:
        ``(..., 2)`` in ``(x, y) = (column, row)`` pixels.

    Entries of ``-inf`` mask pixels out (they get weight 0), as long as each map
    keeps at least one finite score.

    Raises:
        TypeError: ``scores`` is not a floating-point tensor, or ``beta`` is not a number.
        ValueError: ``scores`` has fewer than 2 dimensions or an empty map, holds NaN or
            ``+inf``, or has a map of ``-inf`` only; ``beta`` is not positive and finite,
            or ``beta * scores`` overflows the dtype.
    """
    _check_map("scores", scores)
    beta = check_positive("beta", beta)
    detached = scores.detach()
    if torch.isnan(detached).any() or (detached == math.inf).any():
        raise ValueError("scores: expected no NaN or +inf (-inf masks a pixel out), got one")
    if not _every_map_has_finite(detached.flatten(-2)):
        raise ValueError("scores: expected at least one finite score per map, got a map of -inf")
    logits = (beta * scores).flatten(-2)  # (..., H * W)
    if (logits.detach() == math.inf).any() or not _every_map_has_finite(logits):
        largest = detached[detached.isfinite()].abs().max().item()
        raise ValueError(
            f"beta: beta * scores overflows {scores.dtype} (beta = {beta!r}, "
            f"largest finite |score| = {largest:.3g})"
        )
    mean, _ = _moments(logits.softmax(dim=-1).reshape(scores.shape))
    return mean
