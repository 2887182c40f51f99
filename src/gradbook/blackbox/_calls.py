"""Array kinds and the one place that calls a black box.

The public functions of :mod:`gradbook.blackbox` accept NumPy arrays or torch
tensors and return the kind they were given; inside, everything is a tensor.
:func:`to_tensor` and :func:`back` convert at the edges; :func:`evaluate` calls a
black box and normalises what it returns (a NumPy array, a tensor, a list or a
scalar) into a tensor of the caller's dtype and device.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from gradbook._checks import check_finite

Array = np.ndarray | Tensor


def to_tensor(name: str, a: object) -> tuple[Tensor, bool]:
    """``(tensor, was_numpy)``; NumPy input becomes a float64 (or its float dtype) CPU tensor.

    Raises:
        TypeError: ``a`` is not a real array, number or tensor.
    """
    if isinstance(a, Tensor):
        if a.is_complex():
            raise TypeError(f"{name}: expected a real floating-point tensor, got dtype {a.dtype}")
        if not a.is_floating_point():
            a = a.to(torch.get_default_dtype())
        return a, False
    if isinstance(a, np.ndarray | list | tuple | float | int | np.floating | np.integer):
        arr = np.asarray(a)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
        if arr.dtype.kind != "f" or arr.dtype == np.float16:
            arr = arr.astype(np.float64)
        return torch.from_numpy(np.array(arr, copy=True)), True
    raise TypeError(f"{name}: expected a NumPy array or a torch.Tensor, got {type(a).__name__}")


def back(t: Tensor, was_numpy: bool) -> Array:
    """``t`` as the kind the caller gave: a NumPy array when ``was_numpy``, else the tensor."""
    return t.detach().cpu().numpy() if was_numpy else t


def evaluate(
    fun: Callable, arg: object, like: Tensor, where: str = "", *, vector: bool = True
) -> Tensor:
    """``fun(arg)`` (under ``torch.no_grad()``) as a tensor with ``like``'s dtype and device.

    ``arg`` is passed as given (a NumPy array or a detached tensor). With
    ``vector=True`` the output must be ``(n,)`` or a scalar and finite (the shape
    is kept: flatten with ``.reshape(-1)``); ``where`` ends the messages (``" at
    x + h e_3"``), naming the probe that failed.

    Raises:
        TypeError: ``fun`` returned something that is not an array or a tensor.
        ValueError: (``vector=True``) the output has more than one dimension or is
            not finite.
    """
    with torch.no_grad():
        out = fun(arg)
    if isinstance(out, Tensor):
        out = out.detach()
    else:
        try:
            out = torch.as_tensor(np.asarray(out, dtype=np.float64))
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"fun: expected an array or tensor output{where}, got {type(out).__name__}"
            ) from error
    out = out.to(device=like.device, dtype=like.dtype)
    if vector:
        if out.ndim > 1:
            raise ValueError(
                f"fun: expected an output of shape (n,) or a scalar{where}, "
                f"got shape {tuple(out.shape)}"
            )
        if not bool(torch.isfinite(out).all()):
            raise ValueError(
                f"fun: returned non-finite values (nan/inf){where}; the black box failed there, "
                "so no secant or difference through it means anything"
            )
    return out


def output_at_x(name: str, value: object, like: Tensor) -> Tensor:
    """A given ``f(x)``, ``(n,)`` or a scalar, as an ``(n,)`` tensor like ``like`` (dtype, device).

    Raises:
        TypeError: ``value`` is not a real array or tensor.
        ValueError: ``value`` has more than one dimension or is not finite.
    """
    t, _ = to_tensor(name, value)
    if t.ndim > 1:
        raise ValueError(
            f"{name}: expected f(x) of shape (n,) or a scalar, got shape {tuple(t.shape)}"
        )
    return check_finite(name, t.detach().to(like.device, like.dtype).reshape(-1))


def check_point(name: str, t: Tensor) -> Tensor:
    """Return ``t`` if it is a finite 1-D point ``(m,)`` with ``m >= 1``.

    Raises:
        ValueError: ``t`` is not 1-D, is empty, or is not finite.
    """
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(
            f"{name}: expected a 1-D point of shape (m,) with m >= 1, got shape {tuple(t.shape)}"
        )
    return check_finite(name, t)
