"""Input validation shared by the library's modules.

Every message names the argument, what was expected and what came.
"""

from __future__ import annotations

from torch import Tensor


def check_tensor(name: str, x: object, *, floating: bool = True, hint: str = "") -> Tensor:
    """Return ``x`` if it is a tensor (floating-point unless ``floating=False``).

    ``hint``, when given, ends the message for a non-floating tensor (what to do instead).

    Raises:
        TypeError: ``x`` is not a tensor, or not floating-point when that is required.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        advice = f"; {hint}" if hint else ""
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}{advice}")
    return x
