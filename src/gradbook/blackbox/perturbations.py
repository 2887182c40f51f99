"""Random simultaneous perturbations: SPSA and forward-gradient estimates of a VJP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradbook._checks import check_choice, check_finite, check_int, check_positive
from gradbook.blackbox._calls import Array, back, check_point, evaluate, to_tensor

DISTRIBUTIONS = ("rademacher", "gaussian")


def check_generator(generator: object) -> None:
    """Raise unless ``generator`` is a torch or NumPy generator, or ``None``.

    Raises:
        TypeError: ``generator`` is of another type.
    """
    if generator is not None and not isinstance(generator, torch.Generator | np.random.Generator):
        raise TypeError(
            "generator: expected a torch.Generator, a numpy.random.Generator or None, "
            f"got {type(generator).__name__}"
        )


def draw_directions(
    k: int, m: int, distribution: str, generator: torch.Generator | np.random.Generator | None
) -> Tensor:
    """``(k, m)`` float64 CPU directions with ``E[u u^T] = I`` (arguments already checked)."""
    if isinstance(generator, np.random.Generator):
        if distribution == "rademacher":
            u = generator.integers(0, 2, size=(k, m)) * 2.0 - 1.0
        else:
            u = generator.standard_normal((k, m))
        return torch.from_numpy(np.asarray(u, dtype=np.float64))
    if distribution == "rademacher":
        u = torch.randint(0, 2, (k, m), generator=generator).to(torch.float64) * 2 - 1
    else:
        u = torch.randn(k, m, generator=generator, dtype=torch.float64)
    return u


def spsa_vjp(
    fun: Callable[[Any], Any],
    x: Array,
    g: Array,
    num_samples: int,
    c: float,
    generator: torch.Generator | np.random.Generator | None = None,
    *,
    distribution: str = "rademacher",
) -> Array:
    """Simultaneous-perturbation estimate of the VJP ``g^T J(x)``.

    .. math::

        \\widehat{J^T g} = \\frac1k \\sum_{s=1}^k
        \\frac{g^T\\big(f(x + c\\,u_s) - f(x - c\\,u_s)\\big)}{2c}\\; u_s,
        \\qquad \\mathbb E[u u^T] = I,

    with ``u_s`` Rademacher (``+-1`` entries, SPSA) or standard normal (the
    "forward gradient"). Since ``E[u u^T J^T g] = J^T g``, the estimate is
    unbiased up to the ``O(c^2)`` error of the central difference (exactly
    unbiased for a quadratic ``f``). Its error shrinks like ``k^{-1/2}``:
    for Rademacher directions ``E||est - J^T g||^2 = (m - 1) ||J^T g||^2 / k``
    when ``f`` is linear (``(m + 1)/k`` for Gaussian ones). Cost: ``2k``
    evaluations, whatever ``m`` is.

    Args:
        fun: the black box, ``(m,) -> (n,)``, called with the kind of ``x``.
        x: ``(m,)`` point.
        g: ``(n,)`` output cotangent.
        num_samples: ``k >= 1`` perturbations.
        c: perturbation size (``> 0``), absolute.
        generator: a CPU ``torch.Generator`` or a ``numpy.random.Generator``
            (``None``: torch's global generator). Directions are drawn on the CPU.
        distribution: ``"rademacher"`` (default) or ``"gaussian"``.

    Returns:
        ``(m,)`` estimate, the same kind as ``x``.

    Raises:
        ValueError: ``x`` not 1-D, ``g`` not of the output's size or not
            finite, ``c`` or ``num_samples`` not positive, or a non-finite
            black-box output.
    """
    xt, as_numpy = to_tensor("x", x)
    xt = check_point("x", xt.detach())
    k = check_int("num_samples", num_samples)
    c = check_positive("c", c)
    tg, _ = to_tensor("g", g)
    tg = check_finite("g", tg.detach().to(xt.device, xt.dtype).reshape(-1))
    check_choice("distribution", distribution, DISTRIBUTIONS)
    check_generator(generator)
    u = draw_directions(k, xt.numel(), distribution, generator).to(xt.device, xt.dtype)

    def at(point: Tensor, where: str) -> Tensor:
        arg = point.cpu().numpy() if as_numpy else point
        return evaluate(fun, arg, xt, where).reshape(-1)

    total = torch.zeros_like(xt)
    for s in range(k):
        plus = at(xt + c * u[s], f" at x + c u_{s}")
        if s == 0 and plus.numel() != tg.numel():
            raise ValueError(
                f"g: expected {plus.numel()} entries (the size of fun's output), got {tg.numel()}"
            )
        minus = at(xt - c * u[s], f" at x - c u_{s}")
        total = total + (tg @ (plus - minus)) / (2 * c) * u[s]
    return back(total / k, as_numpy)
