"""Division that is safe at zero denominators, in value and in gradient.

``safe_divide`` returns ``fill`` where the denominator is zero, as OpenCV's
``cv2.divide`` does for integer images (fill 0), and keeps the gradient finite
there with the *double where*: the denominator is replaced by 1 before
dividing, so no ``inf`` or ``NaN`` ever enters the graph at a zero denominator.
A single ``torch.where(den == 0, fill, num / den)`` has the right value but a
``NaN`` gradient, because the backward of the unused branch multiplies a zero by
``inf``.

The appendix of the book teaches it (it used to import it from
:mod:`gradbook.related`, which still re-exports it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gradbook._checks import check_broadcasts_to, check_tensor

__all__ = ["safe_divide"]


def safe_divide(numerator: Tensor, denominator: Tensor, fill: float | Tensor = 0.0) -> Tensor:
    """``numerator / denominator`` where the denominator is nonzero, ``fill`` where it is zero.

    .. math::

        q_i = \\begin{cases} n_i / d_i & d_i \\ne 0 \\\\ \\text{fill} & d_i = 0 \\end{cases}
        \\qquad
        \\frac{\\partial q_i}{\\partial n_i} = \\begin{cases} 1/d_i \\\\ 0 \\end{cases},
        \\quad
        \\frac{\\partial q_i}{\\partial d_i} = \\begin{cases} -n_i/d_i^2 \\\\ 0 \\end{cases}

    With ``fill=0`` the value is OpenCV's ``cv2.divide`` rule for integer
    arrays (``src2 != 0 ? src1 / src2 : 0``, before OpenCV's rounding); current
    OpenCV follows IEEE-754 (``inf``, ``NaN``) for floating-point arrays, as
    NumPy and PyTorch do. ``fill=float("nan")`` marks the undefined entries
    explicitly.

    Implementation: the double ``where``. The denominator is first replaced by 1
    where it is zero, so the division never sees a zero and neither the forward
    nor the backward pass creates ``inf`` or ``NaN``; the second ``where`` puts
    ``fill`` in. The gradient at a zero denominator is exactly 0 for both inputs
    (and flows to ``fill`` if that is a tensor that requires grad). Elsewhere it
    is the true derivative, which can still overflow to ``inf`` when
    ``|n / d^2|`` exceeds the dtype's range (a denominator of ``1e-30`` in float32).

    Args:
        numerator, denominator: floating tensors that broadcast together.
        fill: the value where ``denominator == 0``: a number or a tensor that
            broadcasts to the result.

    Returns:
        The quotient, of the broadcast shape and the promoted dtype.

    Raises:
        TypeError: an input is not a floating tensor, or ``fill`` is not a number or tensor.
        ValueError: the shapes do not broadcast, or the inputs are on different devices.
    """
    check_tensor("numerator", numerator)
    check_tensor("denominator", denominator)
    if numerator.device != denominator.device:
        raise ValueError(
            f"denominator: on {denominator.device}, but numerator is on {numerator.device}"
        )
    try:
        shape = torch.broadcast_shapes(numerator.shape, denominator.shape)
    except RuntimeError:
        raise ValueError(
            f"denominator: shape {tuple(denominator.shape)} does not broadcast with the "
            f"numerator's shape {tuple(numerator.shape)}"
        ) from None
    dtype = torch.promote_types(numerator.dtype, denominator.dtype)
    if isinstance(fill, bool) or not isinstance(fill, (int, float, Tensor)):
        raise TypeError(f"fill: expected a number or a tensor, got {type(fill).__name__}")
    if isinstance(fill, Tensor):
        if fill.device != numerator.device:
            raise ValueError(f"fill: on {fill.device}, but numerator is on {numerator.device}")
        check_broadcasts_to("fill", fill, shape, "the result")
        fill_t = fill.to(dtype)
    else:
        fill_t = torch.tensor(float(fill), dtype=dtype, device=numerator.device)
    zero = denominator == 0
    safe_den = torch.where(zero, torch.ones_like(denominator), denominator)
    return torch.where(zero, fill_t, numerator.to(dtype) / safe_den.to(dtype))
