"""Checks for the appendix's exercises: a soft count above a threshold, and sin(x)/x at 0.

Counting is piecewise constant, so ``(x > t).sum()`` has no gradient; a soft count
replaces the step by a smooth one of width ``T`` (the temperature) and must tend
to the hard count as ``T -> 0``. The check recognises the hard count, a kernel
that counts entries *near* the threshold, the wrong side, a temperature that
multiplies instead of divides (or is ignored), a mean instead of a sum, and the
straight-through trick whose gradient does not describe its value.

A ratio with a limit at ``0/0`` needs its value *and* its gradient to be finite
and right at the edge. The check recognises the bare ``sin(x) / x`` (NaN), the
single ``torch.where`` whose unused branch still poisons the gradient with NaN,
a fill that is not the limit, and a gradient that loses its digits to
cancellation next to 0 (``cos(x)/x - sin(x)/x^2``), which a short series fixes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from gradbook.counting import hard_count, soft_count
from gradbook.exercises._core import Passed, attempt, fail, forbid, passed, randn
from gradbook.safe_division import safe_divide

# ---------------------------------------------------------------------------
# Exercise A.1

_THRESHOLD = 0.3
_TEMPERATURES = (1.0, 0.3, 0.1, 0.01, 1e-3)
_GRADIENT_TEMPERATURE = 0.3


def _count_data() -> Tensor:
    """``(28,)`` float64 entries, none closer than 0.06 to the threshold, four within 0.1."""
    r = randn(40, 24)
    spread = _THRESHOLD + torch.sign(r + 0.6) * (0.12 + r.abs())  # more above than below
    near = _THRESHOLD + torch.tensor([-0.1, -0.06, 0.06, 0.1], dtype=torch.float64)
    return torch.cat([spread, near])


def _soft_count_value(name: str, soft_count_above: Callable, x: Tensor, temperature: float):
    """The student's count of ``x`` at ``temperature``, as a one-entry tensor (or a failure)."""
    with forbid(soft_count, hard_count):
        got = attempt(name, soft_count_above, x, _THRESHOLD, temperature)
    if isinstance(got, bool | int | float):
        fail(
            name,
            f"your count is a Python {type(got).__name__}: autograd only tracks tensors, so "
            "no gradient can reach x. Return a tensor.",
        )
    if not isinstance(got, Tensor):
        fail(name, f"expected the count as a torch.Tensor, got {type(got).__name__}.")
    if got.shape == x.shape and x.numel() > 1:
        fail(
            name,
            "you returned one value per entry: a count is one number, the sum over the entries.",
        )
    if got.numel() != 1:
        fail(name, f"a count is one number; got a tensor of shape {tuple(got.shape)}.")
    if not (got.is_floating_point() and got.requires_grad):
        fail(
            name,
            "your count has no gradient. The comparison x > threshold returns a bool tensor, and "
            "the hard count is piecewise constant in x: its derivative is zero wherever it "
            "exists. Replace the step by a smooth one whose width is the temperature (and do "
            "not detach x on the way).",
        )
    return got.reshape(())


def check_soft_count_above(soft_count_above: Callable[[Tensor, float, float], Tensor]) -> Passed:
    """Exercise A.1: ``soft_count_above(x, threshold, temperature)``, a differentiable count.

    It must tend to ``(x > threshold).sum()`` as the temperature goes to 0 (checked
    at ``T = 1e-3`` on entries at least 0.06 from the threshold), have a
    nonnegative gradient that is clearly positive on the entries within 0.1 of
    the threshold at ``T = 0.3``, and that gradient must match central
    differences of the value (a straight-through estimator's does not).
    """
    name = "Exercise A.1 (a soft count above a threshold)"
    x = _count_data()
    n = x.numel()
    hard = float((x > _THRESHOLD).sum())
    values = {}
    for temperature in _TEMPERATURES:
        leaf = x.clone().requires_grad_(True)
        values[temperature] = (leaf, _soft_count_value(name, soft_count_above, leaf, temperature))
    counts = {t: float(v.detach()) for t, (_, v) in values.items()}
    coldest = counts[_TEMPERATURES[-1]]
    if abs(coldest - hard) > 1e-6:
        if max(counts.values()) - min(counts.values()) <= 1e-12 * max(1.0, abs(coldest)):
            fail(
                name,
                "your count does not change with the temperature: the temperature is the width "
                "of the smooth step, so x - threshold must be divided by it.",
            )
        if abs(coldest - (n - hard)) <= 1e-6:
            fail(
                name,
                "as the temperature goes to 0 your count tends to the number of entries BELOW "
                "the threshold: check the sign of x - threshold.",
            )
        if abs(coldest - n / 2) <= 1e-3 * n:
            fail(
                name,
                "as the temperature goes to 0 your count tends to half the entries: you "
                "multiply x - threshold by the temperature. Divide by it, so that a small "
                "temperature makes the step sharp.",
            )
        if abs(coldest - hard / n) <= 1e-6:
            fail(name, "your count is a fraction of the entries (a mean): sum, do not average.")
        if abs(coldest) <= 1e-6:
            fail(
                name,
                "as the temperature goes to 0 your count tends to the number of entries AT the "
                "threshold (none here): a bump around the threshold, like the lesson's kernel "
                "for counting a value, counts equality. Counting the entries above needs a "
                "smooth step that goes from 0 below the threshold to 1 above it.",
            )
        fail(
            name,
            "as the temperature goes to 0 your count must tend to the hard count "
            f"(x > threshold).sum(); at T = {_TEMPERATURES[-1]:g} it is off by "
            f"{abs(coldest - hard):.2g}.",
        )
    leaf, value = values[_GRADIENT_TEMPERATURE]
    (grad,) = attempt(name, torch.autograd.grad, value, leaf, allow_unused=True)
    if grad is None or not bool(torch.isfinite(grad).all()):
        fail(name, "the gradient of your count is missing or not finite at T = 0.3.")
    if bool((grad < -1e-12).any()):
        fail(
            name,
            "your count decreases when an entry grows: moving an entry up can only bring it "
            "above the threshold, so every derivative must be >= 0.",
        )
    near = (x - _THRESHOLD).abs() < 0.1
    if not bool((grad[near] > 1e-3).all()):
        fail(
            name,
            "at T = 0.3 no useful gradient reaches the entries within 0.1 of the threshold: "
            "those are the entries a loss must be able to move across it.",
        )
    h = 1e-6
    for i in near.nonzero().flatten().tolist():
        step = torch.zeros_like(x)
        step[i] = h
        up = _soft_count_value(name, soft_count_above, (x + step).requires_grad_(True), 0.3)
        down = _soft_count_value(name, soft_count_above, (x - step).requires_grad_(True), 0.3)
        slope = (float(up.detach()) - float(down.detach())) / (2 * h)
        if not abs(slope - float(grad[i])) <= 1e-5 * max(1.0, abs(float(grad[i]))):
            fail(
                name,
                "your gradient does not describe how your value changes (the value's central "
                "difference disagrees with autograd): a straight-through trick such as "
                "hard + (soft - soft.detach()) has the hard count's value and another "
                "function's gradient. Return the smooth count itself.",
            )
    return passed(
        name,
        "tends to the hard count as T -> 0, and its gradient is finite, nonnegative, reaches "
        "the entries near the threshold and matches the value's differences.",
    )


# ---------------------------------------------------------------------------
# Exercise A.2

_POINTS = (0.0, 1e-9, -1e-7, 1e-5, -3e-3, 0.1, -0.7, 2.0, 3.0, -10.0)
_NEAR_ZERO = 1e-4  # below this |x|, autograd through sin(x)/x cancels


def _sin_over_x_reference(x: Tensor) -> tuple[Tensor, Tensor]:
    """``sin(x)/x`` and its derivative in float64, by Taylor series for ``|x| <= 0.1``.

    The series ``1 - x^2/6 + x^4/120 - x^6/5040 + x^8/362880 - x^10/39916800``
    and its derivative ``-x/3 + x^3/30 - x^5/840 + x^7/45360 - x^9/3991680``
    (in Horner form) leave out terms below ``1e-19`` relative at ``|x| = 0.1``;
    beyond, ``sin(x)/x`` and ``(x cos x - sin x)/x^2`` lose at most a few digits
    to cancellation (tested against 50-digit arithmetic).
    """
    small = x.abs() <= 0.1
    safe = torch.where(small, torch.ones_like(x), x)
    x2 = x * x
    value_series = 1 - x2 / 6 * (1 - x2 / 20 * (1 - x2 / 42 * (1 - x2 / 72 * (1 - x2 / 110))))
    slope_series = x * (-1 / 3 + x2 / 30 * (1 - x2 / 28 * (1 - x2 / 54 * (1 - x2 / 88))))
    value = torch.where(small, value_series, torch.sin(safe) / safe)
    slope = torch.where(small, slope_series, (safe * torch.cos(safe) - torch.sin(safe)) / safe**2)
    return value, slope


def check_sin_over_x(sin_over_x: Callable[[Tensor], Tensor]) -> Passed:
    """Exercise A.2: ``sin_over_x(x)``, ``sin(x)/x`` with the limit 1 at 0, finite gradients.

    Checked elementwise on float64 points from 0 to 10 in magnitude: values to
    ``1e-12`` relative; the gradient by autograd, 0 at ``x = 0``, to ``1e-8``
    relative for ``0 < |x| < 1e-4`` (where the quotient rule cancels) and to
    ``1e-9`` elsewhere. The reference is a Taylor series near 0.
    """
    name = "Exercise A.2 (sin(x)/x with its limit at 0)"
    x = torch.tensor(_POINTS, dtype=torch.float64, requires_grad=True)
    expected_value, expected_slope = _sin_over_x_reference(x.detach())
    with forbid(safe_divide):
        got = attempt(name, sin_over_x, x)
    if not isinstance(got, Tensor):
        fail(name, f"expected a torch.Tensor, got {type(got).__name__}.")
    if got.shape != x.shape:
        fail(
            name,
            f"expected one value per entry of x, shape {tuple(x.shape)}, got {tuple(got.shape)}.",
        )
    values = got.detach().to(torch.float64)
    at_zero = float(values[0])
    if math.isnan(at_zero):
        fail(
            name,
            "the value at x = 0 is NaN: sin(0)/0 is 0/0 in floating point. The function you "
            "want takes its limit there; choose that value with torch.where.",
        )
    if at_zero != 1.0:
        fail(
            name,
            "the value at x = 0 must be the limit of sin(x)/x, which is not what you chose "
            "(0 is OpenCV's fill for integer division, not a limit; adding a tiny number to "
            "the denominator gives 0/tiny = 0).",
        )
    error = (values - expected_value).abs() / expected_value.abs()
    if not bool((error <= 1e-12).all()):
        worst = int(error.argmax())
        fail(
            name,
            f"your value at x = {_POINTS[worst]:g} is off by {float(error[worst]):.1e} (relative): "
            "a series is only accurate close to 0 (and clamping the denominator breaks "
            "negative x). Use it below a small |x| only, with enough terms.",
        )
    if not got.requires_grad:
        fail(name, "your result has no gradient: compute it with torch operations on x.")
    (grad,) = attempt(name, torch.autograd.grad, got.sum(), x)
    if math.isnan(float(grad[0])):
        fail(
            name,
            "the value at 0 is right but the gradient there is NaN: the single-torch.where "
            "trap. Backward runs through BOTH branches of torch.where: the unused sin(x)/x "
            "still divides by zero at x = 0, and its NaN times the zero that where sends it "
            "is NaN. Replace the zero before dividing (a where on the denominator too), so "
            "that no NaN or infinity is ever created.",
        )
    if not bool(torch.isfinite(grad).all()):
        fail(name, "your gradient is not finite everywhere.")
    if float(grad[0]) != 0.0:
        fail(name, "the derivative of sin(x)/x at 0 is 0 (the function is even); yours is not.")
    slope_error = (grad - expected_slope).abs() / expected_slope.abs().clamp(min=1e-300)
    tiny = (x.detach().abs() < _NEAR_ZERO) & (x.detach() != 0)
    if not bool((slope_error[tiny] <= 1e-8).all()):
        worst = float(slope_error[tiny].max())
        fail(
            name,
            f"your gradient next to 0 is off by up to {worst:.1e} (relative): cancellation. "
            "Autograd differentiates sin(x)/x as cos(x)/x - sin(x)/x^2, two numbers of size "
            "1/|x| whose difference is about -x/3. Below a small |x| use a short Taylor "
            "series of sin(x)/x, whose derivative autograd gets right.",
        )
    if not bool((slope_error[~tiny & (x.detach() != 0)] <= 1e-9).all()):
        fail(name, "your gradient is wrong away from 0: check the branch used there.")
    return passed(
        name,
        "values to 1e-12 with the limit at 0, and autograd's gradient finite, 0 at x = 0 and "
        "accurate next to 0.",
    )
