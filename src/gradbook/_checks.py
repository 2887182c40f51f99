"""Input validation shared by the library's modules.

Every message names the argument, what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from torch import Tensor


class SizeError(TypeError, ValueError):
    """A size that is not two ints (both a ``TypeError`` and a ``ValueError``)."""


def check_tensor(
    name: str,
    x: object,
    *,
    floating: bool = True,
    hint: str = "",
    dtypes: tuple[torch.dtype, ...] | None = None,
) -> Tensor:
    """Return ``x`` if it is a tensor (floating-point unless ``floating=False``).

    ``hint``, when given, ends the message for a non-floating tensor (what to do instead).
    ``dtypes``, when given, is the exact list of dtypes accepted.

    Raises:
        TypeError: ``x`` is not a tensor, or not floating-point when that is required.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if dtypes is not None and x.dtype not in dtypes:
        expected = " or ".join(str(dtype) for dtype in dtypes)
        raise TypeError(f"{name}: expected dtype {expected}, got {x.dtype}")
    if floating and not x.is_floating_point():
        advice = f"; {hint}" if hint else ""
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}{advice}")
    return x


def check_size(name: str, size: object) -> tuple[int, int]:
    """``size`` as ``(height, width)``: a pair of positive ints (a ``torch.Size`` too).

    Raises:
        SizeError: (a TypeError and a ValueError) ``size`` is not a pair of ints.
        ValueError: a side is below 1.
    """
    if isinstance(size, torch.Size):
        size = tuple(size)
    if (
        not isinstance(size, Sequence)
        or isinstance(size, str)
        or len(size) != 2
        or not all(isinstance(s, Integral) and not isinstance(s, bool) for s in size)
    ):
        raise SizeError(f"{name}: expected (height, width) as two ints, got {size!r}")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"{name}: expected (height, width) of positive ints, got {size!r}")
    return height, width
