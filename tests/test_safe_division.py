"""Tests of gradbook.safe_division against independent references.

References: OpenCV's ``cv2.divide``, NumPy's IEEE-754 division, closed-form
derivatives ``1/d`` and ``-n/d^2``, and float64 finite differences (``gradcheck``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from gradbook.safe_division import safe_divide

# ----------------------------------------------------------------------------- safe_divide


def test_safe_divide_matches_cv2_divide_on_integers(generator):
    # cv2.divide on integer arrays: 0 where src2 == 0, else src1/src2 rounded half to even.
    a = torch.randint(-50, 50, (4, 64), generator=generator, dtype=torch.int32)
    b = torch.randint(-4, 5, (4, 64), generator=generator, dtype=torch.int32)
    assert (b == 0).any() and ((a % 2 != 0) & (b.abs() == 2)).any()  # zeros and exact halves
    reference = cv2.divide(a.numpy(), b.numpy())
    ours = torch.round(safe_divide(a.double(), b.double(), fill=0.0)).to(torch.int32)
    np.testing.assert_array_equal(ours.numpy(), reference)
    # uint8 images, as in the question (quotients stay below 255: no saturation)
    img = torch.randint(0, 256, (8, 8), generator=generator, dtype=torch.uint8)
    table = torch.randint(0, 4, (8, 8), generator=generator, dtype=torch.uint8)
    reference = cv2.divide(img.numpy(), table.numpy())
    ours = torch.round(safe_divide(img.double(), table.double())).to(torch.uint8)
    np.testing.assert_array_equal(ours.numpy(), reference)


def test_safe_divide_float_semantics_against_cv2_and_numpy(generator):
    a = torch.randn(100, generator=generator, dtype=torch.float64)
    b = torch.randn(100, generator=generator, dtype=torch.float64)
    b[::7] = 0.0
    a[::14] = 0.0  # some 0/0
    zero = (b == 0).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        numpy_q = a.numpy() / b.numpy()
    cv_q = cv2.divide(a.numpy()[:, None], b.numpy()[:, None])[:, 0]
    # OpenCV 5 follows IEEE-754 for floats: inf / nan exactly where NumPy has them.
    np.testing.assert_array_equal(cv_q, numpy_q)
    assert np.isnan(cv_q[::14]).all() and np.isinf(cv_q[7::14]).all()
    for fill in (0.0, -1.0, float("nan")):
        q = safe_divide(a, b, fill=fill).numpy()
        np.testing.assert_allclose(q[~zero], numpy_q[~zero], rtol=1e-15)
        np.testing.assert_array_equal(q[zero], np.full(zero.sum(), fill))


def test_safe_divide_gradient_is_finite_and_zero_at_zero_denominators(device, dtype):
    num = torch.tensor([1.0, 0.0, -2.0, 3.0], dtype=dtype, device=device, requires_grad=True)
    den = torch.tensor([0.0, 0.0, 4.0, -0.5], dtype=dtype, device=device, requires_grad=True)
    for fill in (0.0, float("nan")):
        dn, dd = torch.autograd.grad(safe_divide(num, den, fill).sum(), (num, den))
        assert torch.isfinite(dn).all() and torch.isfinite(dd).all()
        assert dn.tolist() == pytest.approx([0.0, 0.0, 1 / 4.0, 1 / -0.5])
        assert dd.tolist() == pytest.approx([0.0, 0.0, 2.0 / 16.0, -3.0 / 0.25])


def test_single_where_poisons_the_gradient_but_double_where_does_not():
    num = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    den = torch.tensor([0.0, 4.0], dtype=torch.float64, requires_grad=True)
    single = torch.where(den == 0, torch.zeros_like(num), num / den)
    assert single.tolist() == [0.0, 0.5]  # the value is right...
    dn, dd = torch.autograd.grad(single.sum(), (num, den))
    assert math.isnan(dn[0].item()) and math.isnan(dd[0].item())  # ...the gradient is not
    dn, dd = torch.autograd.grad(safe_divide(num, den).sum(), (num, den))
    assert dn.tolist() == [0.0, 0.25] and dd.tolist() == [0.0, -2.0 / 16.0]


def test_safe_divide_gradcheck_and_fill_gradient(generator):
    num = torch.randn(3, 4, generator=generator, dtype=torch.float64).requires_grad_(True)
    den = torch.randn(4, generator=generator, dtype=torch.float64)
    den[1] = 0.0
    den.requires_grad_(True)
    fill = torch.randn(3, 1, generator=generator, dtype=torch.float64).requires_grad_(True)
    # Finite differences in den would step off den[1] == 0 onto the other branch, so the
    # denominator is checked on its nonzero entries and its zero entry separately.
    assert torch.autograd.gradcheck(lambda n, f: safe_divide(n, den.detach(), f), (num, fill))
    nonzero = den.detach()[[0, 2, 3]].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda d: safe_divide(num.detach()[:, [0, 2, 3]], d), (nonzero,)
    )
    (dd,) = torch.autograd.grad(safe_divide(num, den, fill).sum(), den)
    assert dd[1].item() == 0.0
    (df,) = torch.autograd.grad(safe_divide(num, den, fill).sum(), fill)
    assert df.tolist() == [[1.0], [1.0], [1.0]]  # one zero denominator per row


def test_safe_divide_broadcast_and_dtype(device):
    num = torch.ones(2, 3, dtype=torch.float32, device=device)
    den = torch.tensor([0.0, 2.0, 4.0], dtype=torch.float64, device=device)
    q = safe_divide(num, den, fill=7.0)
    assert q.shape == (2, 3) and q.dtype == torch.float64
    assert q[0].tolist() == [7.0, 0.5, 0.25]


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (
            (torch.tensor([1, 2]), torch.tensor([1.0, 2.0])),
            TypeError,
            r"numerator: expected a floating-point tensor, got dtype torch.int64",
        ),
        (
            (torch.tensor([1.0]), [1.0]),
            TypeError,
            r"denominator: expected a torch.Tensor, got list",
        ),
        (
            (torch.ones(2), torch.ones(3)),
            ValueError,
            r"denominator: shape \(3,\) does not broadcast with the numerator's shape \(2,\)",
        ),
        (
            (torch.ones(2), torch.ones(2), "nan"),
            TypeError,
            r"fill: expected a number or a tensor, got str",
        ),
        (
            (torch.ones(2), torch.ones(2), torch.ones(3)),
            ValueError,
            r"fill: shape \(3,\) does not broadcast to the shape of the result, \(2,\)",
        ),
        (
            # (2, 1) would grow the (3,) result to (2, 3): not "to" the result's shape
            (torch.ones(3), torch.ones(3), torch.ones(2, 1)),
            ValueError,
            r"fill: shape \(2, 1\) does not broadcast to the shape of the result, \(3,\)",
        ),
    ],
)
def test_safe_divide_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        safe_divide(*args)


# ------------------------------------------------------------------ the hardest inputs


@pytest.mark.parametrize("fill", [0.0, -3.0, float("nan"), float("inf")])
def test_zero_denominators_of_both_signs_give_fill_and_a_zero_gradient(device, dtype, fill):
    num = torch.tensor([1.0, -2.0, 0.0, 5.0], dtype=dtype, device=device, requires_grad=True)
    den = torch.tensor([0.0, -0.0, 0.0, 2.0], dtype=dtype, device=device, requires_grad=True)
    q = safe_divide(num, den, fill)
    expected = torch.tensor([fill, fill, fill, 2.5], dtype=dtype)
    torch.testing.assert_close(q.cpu(), expected, equal_nan=True, rtol=0, atol=0)
    dn, dd = torch.autograd.grad(q, (num, den), grad_outputs=torch.ones_like(q))
    assert torch.isfinite(dn).all() and torch.isfinite(dd).all()
    assert dn.tolist() == [0.0, 0.0, 0.0, 0.5] and dd.tolist() == [0.0, 0.0, 0.0, -1.25]


def test_a_fill_tensor_gets_the_gradient_of_the_zero_denominators_in_float32():
    num = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    den = torch.tensor([0.0, -0.0, 4.0], requires_grad=True)
    fill = torch.tensor(7.0, requires_grad=True)
    q = safe_divide(num, den, fill)
    assert q.dtype == torch.float32 and q.tolist() == [7.0, 7.0, 0.75]
    dn, dd, df = torch.autograd.grad(q.sum(), (num, den, fill))
    assert dn.tolist() == [0.0, 0.0, 0.25]
    assert dd.tolist() == [0.0, 0.0, -3.0 / 16.0]
    assert df.item() == 2.0


def test_the_true_derivative_overflows_only_where_the_docstring_says(dtype):
    # "a denominator of 1e-30 in float32": |n / d^2| = 1e60 is beyond float32's range
    num = torch.tensor([1.0, 1.0, 1.0], dtype=dtype, requires_grad=True)
    den = torch.tensor([1e-30, 1e30, 1e-10], dtype=dtype, requires_grad=True)
    q = safe_divide(num, den)
    (dd,) = torch.autograd.grad(q.sum(), den)
    d = [float(v) for v in den.detach().tolist()]  # the dtype's nearest values
    exact = [-1.0 / (v * v) for v in d]  # in Python floats (float64)
    biggest = torch.finfo(dtype).max
    for got, want in zip(dd.tolist(), exact, strict=True):
        if abs(want) > biggest:
            assert got == -math.inf
        elif abs(want) < torch.finfo(dtype).smallest_normal:
            assert got == pytest.approx(want, abs=torch.finfo(dtype).smallest_normal)
        else:
            assert got == pytest.approx(want, rel=1e-6)
    if dtype == torch.float32:
        assert dd[0].item() == -math.inf  # the docstring's example
    else:
        assert math.isfinite(dd[0].item())
