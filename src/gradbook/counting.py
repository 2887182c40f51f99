"""Differentiable counts: soft counts, expected counts, the distribution of a count.

Counting (``(x == v).sum()``) is piecewise constant in ``x``: its derivative is
zero wherever it exists, and PyTorch does not even record a graph for it (the
comparison returns a ``bool`` tensor). Two differentiable replacements:

* a *soft count* replaces the indicator ``1[x_i = v]`` by a kernel
  ``k((x_i - v) / T)`` with a temperature ``T > 0``,

  .. math::

      \\operatorname{soft\\_count}(x; v, T) = \\sum_i k\\!\\left(\\frac{x_i - v}{T}\\right),

  which tends to the hard count (:func:`hard_count`) as ``T -> 0`` (see
  :func:`soft_count` for the kernels and their bias);
* when a model outputs *probabilities* ``p_i = P(item i equals v)`` instead of
  values, the expected count ``sum_i p_i`` is exact by linearity of expectation
  (:func:`expected_counts`) and the whole distribution of the count is the
  Poisson-binomial law (:func:`count_distribution`, with the brute-force
  reference :func:`count_distribution_naive`), both polynomials in ``p``.

The appendix of the book teaches these (it used to import them from
:mod:`gradbook.related`, which still re-exports them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from gradbook._checks import check_broadcasts_to, check_positive, check_tensor

__all__ = [
    "KERNELS",
    "count_distribution",
    "count_distribution_naive",
    "expected_counts",
    "hard_count",
    "soft_count",
]

#: The kernels :func:`soft_count` knows.
KERNELS = ("gaussian", "sigmoid")

#: ``|x - value| / T`` beyond which the Gaussian weight is 0 in every dtype.
_GAUSSIAN_CUTOFF = 40.0


def _smallest(dtype: torch.dtype) -> float:
    """The smallest positive (subnormal) number of a floating dtype."""
    info = torch.finfo(dtype)
    return info.smallest_normal * info.eps


def _as_value(value: object, like: Tensor) -> Tensor:
    """``value`` as a tensor of ``like``'s dtype and device that broadcasts to ``like``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Tensor)):
        raise TypeError(f"value: expected a number or a tensor, got {type(value).__name__}")
    if not isinstance(value, Tensor):
        return torch.tensor(float(value), dtype=like.dtype, device=like.device)
    if value.is_complex():
        raise TypeError(f"value: expected a real tensor, got dtype {value.dtype}")
    check_broadcasts_to("value", value, like, "x")
    return value.to(like.dtype)


def soft_count(
    x: Tensor,
    value: float | Tensor,
    temperature: float,
    *,
    kernel: str = "gaussian",
    radius: float = 0.5,
    dim: int | Sequence[int] | None = None,
    keepdim: bool = False,
) -> Tensor:
    """A differentiable count of the entries of ``x`` equal to (or near) ``value``.

    ``soft_count = sum_i w_i`` over ``dim`` (every dimension when ``None``), with
    ``u_i = x_i - value`` and one of two kernels:

    * ``"gaussian"``: ``w_i = exp(-u_i^2 / (2 T^2))``. It is 1 at an exact match
      and tends to ``1[x_i = value]`` as ``T -> 0``. An entry at distance ``d``
      adds ``exp(-d^2 / (2 T^2))``; on integer data (neighbours at distance 1,
      2, ...) the bias over the hard count is ``2 sum_{d>=1} exp(-d^2/(2T^2))``
      per match, about ``2 exp(-1/(2T^2))`` for small ``T``.
    * ``"sigmoid"``: ``w_i = sigmoid((radius - |u_i|) / T)``, a smoothed
      indicator of the bin ``|x_i - value| < radius``; it tends to
      ``1[|x_i - value| < radius]`` as ``T -> 0`` (and is 1/2 on the bin's
      edge). This is the count to use for real-valued outputs, which are never
      *exactly* equal to ``value``. Its derivative in ``x_i`` has a kink at
      ``x_i = value`` (where it is taken as 0, a valid subgradient).

    The derivative ``dw_i/dx_i`` is ``-(u_i / T^2) w_i`` (Gaussian) and
    ``-sign(u_i) w_i (1 - w_i) / T`` (sigmoid): the smaller ``T``, the more
    accurate the count and the narrower the region (about ``T`` wide) where
    gradients are not vanishingly small. Pick ``T`` by that trade-off, or anneal it.

    Extreme temperatures: for every ``T`` that is not 0 in ``x``'s dtype, the
    count and its gradient have no ``NaN``. As ``T`` shrinks the Gaussian count
    becomes the hard count exactly (weights underflow to 0, gradients are 0) and
    the sigmoid count the bin count (1/2 per entry on the bin's edge, where the
    derivative ``1/(4T)`` overflows to ``inf`` once it exceeds the dtype's
    range); as ``T`` grows every Gaussian weight tends to 1 and every sigmoid
    weight to 1/2.

    Args:
        x: ``(*shape)`` floating tensor.
        value: a number, or a real tensor that broadcasts to ``x`` (differentiable).
        temperature: ``T > 0``, the kernel width (in the units of ``x``).
        kernel: ``"gaussian"`` or ``"sigmoid"``.
        radius: half-width of the sigmoid kernel's bin (``0.5`` counts the entries
            that round to an integer ``value``); ignored by the Gaussian kernel.
        dim, keepdim: the dimensions to count over, as in :func:`torch.sum`.

    Returns:
        The soft count, of ``x``'s dtype and device: a 0-d tensor for ``dim=None``.

    Raises:
        TypeError: ``x`` is not a floating tensor, ``value`` not a number or real tensor,
            ``temperature``/``radius`` not numbers, or ``kernel`` not a string.
        ValueError: ``temperature`` or ``radius`` is not positive and finite,
            ``temperature`` rounds to 0 in ``x``'s dtype, ``kernel`` is unknown,
            or ``value`` does not broadcast to ``x``.
    """
    check_tensor("x", x)
    temperature = check_positive("temperature", temperature)
    if not isinstance(kernel, str):
        raise TypeError(f"kernel: expected one of {KERNELS}, got {type(kernel).__name__}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel: expected one of {KERNELS}, got {kernel!r}")
    radius = check_positive("radius", radius)
    if torch.tensor(temperature, dtype=x.dtype).item() == 0:  # below the smallest subnormal
        raise ValueError(
            f"temperature: expected a number > 0 in x's dtype {x.dtype}, got {temperature!r}, "
            f"which rounds to 0 there (the smallest is {_smallest(x.dtype):.3g})"
        )
    u = x - _as_value(value, x)
    if kernel == "gaussian":
        # |u / T| beyond 40 gives exp(-800) = 0 in every dtype; clamping keeps an
        # overflowing u / T (inf) from turning the zero gradient into 0 * inf = NaN.
        z = (u / temperature).clamp(-_GAUSSIAN_CUTOFF, _GAUSSIAN_CUTOFF)
        w = torch.exp(-0.5 * z**2)
    else:
        w = torch.sigmoid((radius - u.abs()) / temperature)
    if dim is None:
        return w.sum() if not keepdim else w.sum(dim=tuple(range(w.ndim)), keepdim=True)
    return w.sum(dim=dim, keepdim=keepdim)


def hard_count(x: Tensor, value: float | Tensor, *, radius: float | None = None) -> Tensor:
    """The (non-differentiable) count: ``sum 1[x == value]``, or ``sum 1[|x - value| < radius]``.

    The reference the soft counts tend to. Returns an int64 0-d tensor.

    Raises:
        TypeError: ``x`` is not a tensor; ValueError: ``radius`` is not positive.
    """
    check_tensor("x", x, floating=False)
    v = _as_value(value, x.double() if not x.is_floating_point() else x)
    if radius is None:
        return (x == v).sum()
    radius = check_positive("radius", radius)
    return ((x - v).abs() < radius).sum()


def _check_probabilities(name: str, p: object, atol: float) -> Tensor:
    p = check_tensor(name, p)
    if p.numel() and (p.min() < -atol or p.max() > 1 + atol):
        raise ValueError(
            f"{name}: expected probabilities in [0, 1], got values in "
            f"[{p.min().item():.3g}, {p.max().item():.3g}]"
        )
    return p


def expected_counts(probs: Tensor, *, atol: float = 1e-6) -> Tensor:
    """Expected number of items in each class: ``Z_k = sum_n P[n, k]``.

    ``probs`` holds one categorical distribution per item (row ``n`` gives
    ``P(item n = class k)``); by linearity of expectation the expected count of
    class ``k`` is the column sum, whatever the dependence between items.

    Args:
        probs: ``(..., N, K)`` floating tensor, rows in ``[0, 1]`` summing to 1.
        atol: tolerance of the checks on the range and on the row sums.

    Returns:
        ``(..., K)`` expected counts; they sum to ``N`` (up to rounding and the
        rows' tolerance ``atol``). One-hot rows (probabilities exactly 0 and 1)
        give the hard counts exactly.

    Raises:
        TypeError: ``probs`` is not a floating tensor.
        ValueError: fewer than 2 dimensions, entries outside ``[0, 1]``, or rows
            that do not sum to 1.
    """
    check_tensor("probs", probs)
    if probs.ndim < 2:
        raise ValueError(
            "probs: expected shape (..., N, K) with at least 2 dimensions, "
            f"got {tuple(probs.shape)}"
        )
    _check_probabilities("probs", probs, atol)
    if probs.numel():
        error = (probs.sum(-1) - 1).abs().max().item()
        if error > atol * max(1, probs.shape[-1]):
            raise ValueError(
                "probs: expected each row (last dimension) to sum to 1, "
                f"got an error of {error:.3g}"
            )
    return probs.sum(-2)


def count_distribution(p: Tensor, *, atol: float = 1e-6) -> Tensor:
    """Distribution of the number of successes among independent items (Poisson-binomial).

    Item ``n`` equals the value with probability ``p_n``, independently. The
    count ``C = sum_n B_n`` has ``P(C = j)`` given by the recursion over items

    .. math::

        q^{(n)}_j = q^{(n-1)}_j (1 - p_n) + q^{(n-1)}_{j-1} p_n, \\qquad q^{(0)} = (1, 0, \\dots),

    a polynomial in ``p`` (so exactly differentiable); ``O(N^2)`` work. Its mean
    is ``sum_n p_n`` (:func:`expected_counts`), its variance ``sum_n p_n (1 - p_n)``.

    Args:
        p: ``(..., N)`` probabilities in ``[0, 1]``.
        atol: tolerance of the range check.

    Returns:
        ``(..., N + 1)``: ``P(C = 0), ..., P(C = N)``, each in ``[0, 1]``,
        summing to 1 up to rounding (about ``N`` units of the dtype's epsilon).
        Entries of ``p`` within ``atol`` outside ``[0, 1]`` are clamped to it
        first; ``p`` exactly 0 or 1 is an ordinary input (the gradient there is
        the polynomial's derivative).

    Raises:
        TypeError: ``p`` is not a floating tensor.
        ValueError: ``p`` is 0-d or has entries outside ``[0, 1]``.
    """
    check_tensor("p", p)
    if p.ndim < 1:
        raise ValueError("p: expected shape (..., N) with at least 1 dimension, got ()")
    _check_probabilities("p", p, atol)
    p = p.clamp(0, 1)  # within atol outside [0, 1]: keeps every P(C = j) in [0, 1]
    n = p.shape[-1]
    q = torch.zeros(*p.shape[:-1], n + 1, dtype=p.dtype, device=p.device)
    q = torch.cat([torch.ones_like(q[..., :1]), q[..., 1:]], dim=-1)
    zero = torch.zeros_like(q[..., :1])
    for i in range(n):
        pi = p[..., i : i + 1]
        q = q * (1 - pi) + torch.cat([zero, q[..., :-1]], dim=-1) * pi
    return q


def count_distribution_naive(p: Tensor) -> Tensor:
    """:func:`count_distribution` by enumerating all ``2^N`` outcomes (a reference, ``N <= 16``)."""
    check_tensor("p", p)
    if p.ndim != 1 or p.shape[0] > 16:
        raise ValueError(f"p: expected shape (N,) with N <= 16, got {tuple(p.shape)}")
    n = p.shape[0]
    out = torch.zeros(n + 1, dtype=p.dtype, device=p.device)
    for mask in range(2**n):
        bits = [(mask >> i) & 1 for i in range(n)]
        prob = torch.ones((), dtype=p.dtype, device=p.device)
        for i, b in enumerate(bits):
            prob = prob * (p[i] if b else 1 - p[i])
        out[sum(bits)] += prob
    return out
