"""Appendix checks fail on the known mistakes, pass on the reference and its alternatives."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

import gradbook.counting as counting
import gradbook.safe_division as safe_division
from gradbook.exercises import ExerciseFailed
from gradbook.exercises.chA import (
    _POINTS,
    _sin_over_x_reference,
    check_sin_over_x,
    check_soft_count_above,
)

DELEGATE = "write it yourself: this is what gradbook."

# Exercise A.1 -----------------------------------------------------------------


def soft_count_reference(x, threshold, temperature):
    return torch.sigmoid((x - threshold) / temperature).sum()


def soft_count_tanh(x, threshold, temperature):
    return (0.5 * (1 + torch.tanh((x - threshold) / (2 * temperature)))).sum()


def soft_count_normal_cdf(x, threshold, temperature):
    return (0.5 * (1 + torch.erf((x - threshold) / (temperature * math.sqrt(2))))).sum()


def soft_count_ramp(x, threshold, temperature):  # piecewise linear: a step of width T
    return ((x - threshold) / temperature + 0.5).clamp(0, 1).sum()


@pytest.mark.parametrize(
    "answer", [soft_count_reference, soft_count_tanh, soft_count_normal_cdf, soft_count_ramp]
)
def test_soft_count_correct_answers_pass(answer, capsys):
    assert check_soft_count_above(answer)
    assert "PASSED Exercise A.1" in capsys.readouterr().out


def straight_through(x, threshold, temperature):
    soft = torch.sigmoid((x - threshold) / temperature)
    return ((x > threshold).to(x.dtype) + soft - soft.detach()).sum()


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        # the question's own count, and its float version
        (lambda x, t, T: (x > t).sum(), "no gradient.*piecewise constant"),
        (lambda x, t, T: (x > t).float().sum(), "no gradient.*piecewise constant"),
        (lambda x, t, T: torch.sigmoid((x.detach() - t) / T).sum(), "no gradient"),
        (lambda x, t, T: int((x > t).sum()), "Python int"),
        (lambda x, t, T: torch.sigmoid((x - t) / T), "one value per entry"),
        (lambda x, t, T: torch.sigmoid((t - x) / T).sum(), "BELOW the threshold"),
        (lambda x, t, T: torch.sigmoid((x - t) * T).sum(), "multiply x - threshold"),
        (lambda x, t, T: torch.sigmoid(x - t).sum(), "does not change with the temperature"),
        (lambda x, t, T: torch.sigmoid((x - t) / T).mean(), "a mean"),
        # the lesson's Gaussian kernel counts equality, not "above"
        (lambda x, t, T: torch.exp(-0.5 * ((x - t) / T) ** 2).sum(), "AT the threshold"),
        (lambda x, t, T: torch.sigmoid((x - t) / T).sum() + 1, "off by"),
        (straight_through, "straight-through"),
        (lambda x, t, T: torch.sigmoid((x - t) / T**0.1).sum(), "no useful gradient|off by"),
        (
            lambda x, t, T: counting.soft_count(x, t + 50, T, kernel="sigmoid", radius=50),
            DELEGATE + "counting.soft_count",
        ),
    ],
)
def test_soft_count_mistakes_are_named(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_soft_count_above(wrong)


def test_a_step_too_narrow_for_the_gradient_is_named():
    def cold(x, t, T):  # sharpened ten times: right limit, gradient lost at T = 0.3
        return torch.sigmoid((x - t) / (T / 100)).sum()

    with pytest.raises(ExerciseFailed, match="no useful gradient reaches the entries"):
        check_soft_count_above(cold)


# Exercise A.2 -----------------------------------------------------------------


def test_the_reference_matches_high_precision_arithmetic():
    x = torch.tensor(_POINTS[1:], dtype=torch.float64)
    value, slope = _sin_over_x_reference(x)
    mpmath.mp.dps = 50
    for xi, v, s in zip(x.tolist(), value.tolist(), slope.tolist(), strict=True):
        exact_value = mpmath.sin(xi) / xi
        exact_slope = mpmath.diff(lambda t: mpmath.sin(t) / t, xi)
        assert abs(v - float(exact_value)) <= 2e-16 * abs(float(exact_value))
        assert abs(s - float(exact_slope)) <= 1e-15 * abs(float(exact_slope))


def sin_over_x_reference(x):
    small = x.abs() < 1e-3
    safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, 1 - x**2 / 6 + x**4 / 120, torch.sin(safe) / safe)


def sin_over_x_masked(x):  # a series branch written with a mask and index assignment
    out = torch.empty_like(x)
    small = x.abs() < 1e-2
    xs, xl = x[small], x[~small]
    out[small] = 1 - xs**2 / 6 + xs**4 / 120 - xs**6 / 5040
    out[~small] = torch.sin(xl) / xl
    return out


def sin_over_x_nested(x):  # the series in Horner form, cut off at 0.05
    small = x.abs() < 0.05
    safe = torch.where(small, torch.ones_like(x), x)
    x2 = x * x
    series = 1 - x2 / 6 * (1 - x2 / 20 * (1 - x2 / 42 * (1 - x2 / 72)))
    return torch.where(small, series, torch.sin(safe) / safe)


@pytest.mark.parametrize("answer", [sin_over_x_reference, sin_over_x_masked, sin_over_x_nested])
def test_sin_over_x_correct_answers_pass(answer, capsys):
    assert check_sin_over_x(answer)
    assert "PASSED Exercise A.2" in capsys.readouterr().out


def double_where_only(x):
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.ones_like(x), torch.sin(safe) / safe)


def single_where(x):
    return torch.where(x == 0, torch.ones_like(x), torch.sin(x) / x)


def fill_zero(x):
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.zeros_like(x), torch.sin(safe) / safe)


def short_series_everywhere(x):  # a series beyond its range
    small = x.abs() < 0.5
    safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, 1 - x**2 / 6, torch.sin(safe) / safe)


def clamped(x):
    return torch.sin(x) / x.clamp(min=1e-12)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda x: torch.sin(x) / x, "NaN: sin\\(0\\)/0 is 0/0"),
        (single_where, "single-torch.where trap"),
        (fill_zero, "must be the limit"),
        (lambda x: torch.sin(x) / (x + 1e-12), "must be the limit"),
        (double_where_only, "cancellation"),
        (lambda x: torch.sinc(x / math.pi), "cancellation"),
        (short_series_everywhere, "only accurate close to 0"),
        (clamped, "must be the limit|negative x"),
        (
            lambda x: torch.tensor(
                [float(sin_over_x_reference(t)) for t in x.detach()], dtype=x.dtype
            ),
            "no gradient",
        ),
        (lambda x: sin_over_x_reference(x.float()), "off by"),
        (
            lambda x: safe_division.safe_divide(torch.sin(x), x, 1.0),
            DELEGATE + "safe_division.safe_divide",
        ),
    ],
)
def test_sin_over_x_mistakes_are_named(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_sin_over_x(wrong)


def test_a_wrong_gradient_away_from_zero_is_named():
    class Slope(torch.autograd.Function):  # right values, derivative dropped away from 0
        @staticmethod
        def forward(x):
            return sin_over_x_reference(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * torch.where(x.abs() < 1e-2, -x / 3, torch.zeros_like(x))

    with pytest.raises(ExerciseFailed, match="wrong away from 0"):
        check_sin_over_x(Slope.apply)
