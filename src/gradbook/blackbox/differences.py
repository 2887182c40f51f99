"""Finite differences along the coordinate axes: ``m`` or ``2m`` evaluations per Jacobian."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradbook._checks import check_choice, check_positive
from gradbook.blackbox._calls import Array, back, check_point, evaluate, output_at_x, to_tensor

FD_METHODS = ("central", "forward", "backward")  # the default first


def default_step(method: str = "central", dtype: torch.dtype | np.dtype = torch.float64) -> float:
    """The classical finite-difference step for unit-sized inputs in ``dtype``.

    Balancing truncation error against rounding error gives ``h ~ u^(1/2)`` for
    one-sided (forward/backward) differences, whose truncation error is
    ``O(h)``, and ``h ~ u^(1/3)`` for central differences, ``O(h^2)``; ``u`` is
    the unit roundoff (``2.2e-16`` in float64). With these the error of a
    derivative is about ``u^(1/2) ~ 1.5e-8`` and ``u^(2/3) ~ 3.7e-11`` relative
    to the function's scale.

    Raises:
        ValueError: ``method`` is not one of ``forward``, ``backward``, ``central``.
        TypeError: ``dtype`` is not a real floating-point dtype (torch or NumPy).
    """
    check_choice("method", method, FD_METHODS)
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating-point dtype, got {dtype}")
        u = torch.finfo(dtype).eps
    else:
        try:
            np_dtype = np.dtype(dtype)
        except TypeError as error:
            raise TypeError(f"dtype: expected a floating-point dtype, got {dtype!r}") from error
        if np_dtype.kind != "f":
            raise TypeError(f"dtype: expected a floating-point dtype, got {np_dtype}")
        u = float(np.finfo(np_dtype).eps)
    return u ** (1 / 3) if method == "central" else u**0.5


def finite_difference_jacobian(
    fun: Callable[[Any], Any],
    x: Array,
    eps: float | None = None,
    method: str = "central",
    fx: Array | None = None,
) -> Array:
    """The ``(n, m)`` Jacobian of ``fun`` at ``x`` by finite differences along the axes.

    .. math::

        J_{:, j} \\approx \\frac{f(x + h_j e_j) - f(x)}{h_j} \\;(\\text{forward}),\\quad
        \\frac{f(x + h_j e_j) - f(x - h_j e_j)}{2 h_j} \\;(\\text{central})

    with ``h_j = eps * max(1, |x_j|)``, rounded so that ``x_j + h_j`` is exact
    (``h_j = (x_j + h_j) - x_j``): the step is absolute for small entries and
    relative for large ones. Forward and backward differences cost ``m``
    evaluations (plus one for ``f(x)`` unless ``fx`` is given), central ones
    ``2m``.

    Args:
        fun: the black box, ``(m,) -> (n,)`` or ``(m,) -> scalar``. It is called
            with NumPy arrays when ``x`` is a NumPy array and with tensors (under
            ``torch.no_grad()``) when ``x`` is a tensor.
        x: ``(m,)`` point, NumPy array or floating tensor.
        eps: base step; ``None`` picks :func:`default_step` for ``method`` and
            ``x``'s dtype (``1.5e-8`` forward, ``6.1e-6`` central in float64).
        method: ``"central"`` (default), ``"forward"`` or ``"backward"``.
        fx: optional ``f(x)`` (``(n,)`` or a scalar, finite), reused by the
            one-sided methods instead of evaluating ``fun`` at ``x``.

    Returns:
        ``(n, m)`` Jacobian: a NumPy array when ``x`` is one, else a tensor with
        ``x``'s dtype and device.

    Raises:
        TypeError: ``x`` or ``fx`` is not a real array or tensor, ``eps`` not a number.
        ValueError: ``x`` is not 1-D or not finite, ``eps`` is not positive,
            ``method`` is unknown, ``fx`` is not finite or not of ``fun``'s
            output shape, or ``fun`` returns non-finite values (the message
            names the probe).
    """
    xt, as_numpy = to_tensor("x", x)
    xt = check_point("x", xt.detach())
    check_choice("method", method, FD_METHODS)
    eps = default_step(method, xt.dtype) if eps is None else check_positive("eps", eps)
    h = eps * torch.clamp(xt.abs(), min=1.0)
    up, down = (xt + h) - xt, xt - (xt - h)  # exactly representable steps
    if bool((up == 0).any()) or bool((down == 0).any()):
        raise ValueError(
            f"eps: a step of {eps:g} vanishes next to x in {xt.dtype} (x + h == x); "
            "use a larger eps"
        )
    given_fx = None if fx is None else output_at_x("fx", fx, xt)

    def at(point: Tensor, where: str) -> Tensor:
        arg = point.cpu().numpy() if as_numpy else point
        out = evaluate(fun, arg, xt, where).reshape(-1)
        if given_fx is not None and out.numel() != given_fx.numel():
            raise ValueError(
                f"fx: expected f(x), with as many entries as fun's output ({out.numel()}), "
                f"got {given_fx.numel()}"
            )
        return out

    f0 = None
    if method != "central":
        f0 = given_fx if given_fx is not None else at(xt, " at x")
    columns = []
    for j in range(xt.numel()):
        e = torch.zeros_like(xt)
        if method == "forward":
            e[j] = up[j]
            col = (at(xt + e, f" at x + h e_{j}") - f0) / up[j]
        elif method == "backward":
            e[j] = down[j]
            col = (f0 - at(xt - e, f" at x - h e_{j}")) / down[j]
        else:
            e_up, e_down = e.clone(), e
            e_up[j], e_down[j] = up[j], down[j]
            plus = at(xt + e_up, f" at x + h e_{j}")
            minus = at(xt - e_down, f" at x - h e_{j}")
            col = (plus - minus) / (up[j] + down[j])
        columns.append(col)
    return back(torch.stack(columns, dim=1), as_numpy)
