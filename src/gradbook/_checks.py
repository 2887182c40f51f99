"""Input validation shared by the library's modules: the one validation vocabulary.

Every message names the argument, what was expected and what came. A value of
the wrong *kind* (not a tensor, not an int, not callable) raises ``TypeError``;
a value of the right kind outside its range (negative, not finite, an unknown
option, the wrong shape) raises ``ValueError``. ``bool`` is never accepted
where a number is expected. The public functions of the library call these at
their entry points; internal helpers trust what they are given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Integral, Real

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


def check_callable(name: str, f: object, expected: str = "a callable") -> Callable:
    """Return ``f`` if it is callable; ``expected`` says what kind of callable, for the message.

    Raises:
        TypeError: ``f`` is not callable (the message reads ``{name}: expected {expected}, got
            {type}``).
    """
    if not callable(f):
        raise TypeError(f"{name}: expected {expected}, got {type(f).__name__}")
    return f


def check_nonnegative(name: str, value: object) -> float:
    """``value`` as a float: a finite real number ``>= 0`` (a tolerance, a step size).

    Raises:
        TypeError: ``value`` is not a real number (a ``bool`` is not accepted either).
        ValueError: ``value`` is negative, NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a number >= 0, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def check_positive(name: str, value: object, *, at_most: float | None = None) -> float:
    """``value`` as a float: a finite real number ``> 0`` (and ``<= at_most`` when given).

    Raises:
        TypeError: ``value`` is not a real number (a ``bool`` is not accepted either).
        ValueError: ``value`` is not positive, NaN, infinite, or above ``at_most``.
    """
    expected = "a number > 0" if at_most is None else f"a number in (0, {at_most:g}]"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0) or (at_most is not None and value > at_most):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return float(value)


def check_int(name: str, value: object, *, minimum: int = 1, allow_none: bool = False) -> int:
    """``value`` as an int ``>= minimum`` (NumPy integers too; ``bool`` is not an int here).

    ``allow_none=True`` lets ``None`` through (returned as is), for optional sizes.

    Raises:
        TypeError: ``value`` is not an integer (a float such as ``2.0`` or ``True`` included).
        ValueError: ``value`` is below ``minimum``.
    """
    expected = ("None or " if allow_none else "") + f"an int >= {minimum}"
    if value is None and allow_none:
        return None  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return int(value)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is ``True`` or ``False``.

    Raises:
        TypeError: ``value`` is not a ``bool`` (``0`` and ``1`` included).
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__}")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices`` (the names of the options).

    Raises:
        ValueError: ``value`` is not one of ``choices`` (the message lists them).
    """
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name}: expected one of {listed}, got {value!r}")
    return value


def check_finite(name: str, x: Tensor, what: str = "") -> Tensor:
    """Return ``x`` if every entry is finite; ``what`` is added after "finite values".

    Raises:
        ValueError: an entry is NaN or infinite (the message counts them).
    """
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"{name}: expected finite values{what}, got {bad} non-finite (nan/inf) of {x.numel()}"
        )
    return x


def check_broadcasts_to(
    name: str, value: Tensor, like: Tensor | torch.Size, like_name: str
) -> None:
    """Check that ``value`` broadcasts to the shape of ``like`` (and lies on its device).

    ``like`` is a tensor, or a shape (then no device check is made). Broadcasting
    *to* means that the result of broadcasting has ``like``'s shape exactly:
    ``(3, 1)`` broadcasts to ``(3, 4)``, but ``(2, 3, 4)`` does not (it would grow it).

    Raises:
        ValueError: the shapes do not broadcast to ``like``'s shape (the message names both
            shapes), or ``value`` is on another device than the tensor ``like``.
    """
    shape = like.shape if isinstance(like, Tensor) else torch.Size(like)
    try:
        broadcast = torch.broadcast_shapes(shape, value.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != shape:
        raise ValueError(
            f"{name}: shape {tuple(value.shape)} does not broadcast to the shape of "
            f"{like_name}, {tuple(shape)}"
        )
    if isinstance(like, Tensor) and value.device != like.device:
        raise ValueError(f"{name}: on {value.device}, but {like_name} is on {like.device}")
