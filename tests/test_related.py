"""Tests of gradbook.related against independent references.

References: closed-form kernel sums written with ``math``, hard counts in the
zero-temperature limit, brute-force enumeration of outcomes, scipy's binomial
law, OpenCV's ``cv2.divide``, float64 finite differences (``gradcheck``) and
the closed-form gradients of the mean-squared error.
"""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from gradbook.related import (
    count_distribution,
    count_distribution_naive,
    expected_counts,
    hard_count,
    named_grad,
    safe_divide,
    soft_count,
)

# --------------------------------------------------------------------------- soft_count


@pytest.mark.parametrize("temperature", [0.25, 0.5, 1.0, 3.0])
def test_soft_count_gaussian_matches_closed_form_on_the_seed(device, temperature):
    # a = 0, 1, ..., 9 and value 5: one match, neighbours at distances 1..5 and 1..4.
    a = torch.arange(10, dtype=torch.float64, device=device)
    distances = [abs(i - 5) for i in range(10)]
    expected = sum(math.exp(-(d**2) / (2 * temperature**2)) for d in distances)
    assert soft_count(a, 5.0, temperature).item() == pytest.approx(expected, rel=1e-14)


def test_soft_count_sigmoid_matches_closed_form(device):
    x = torch.tensor([4.2, 5.0, 5.3, 7.0], dtype=torch.float64, device=device)
    t, r = 0.2, 0.5
    expected = sum(1 / (1 + math.exp(-(r - abs(v - 5.0)) / t)) for v in [4.2, 5.0, 5.3, 7.0])
    assert soft_count(x, 5.0, t, kernel="sigmoid").item() == pytest.approx(expected, rel=1e-14)
    # On the bin's edge the weight is exactly one half.
    edge = torch.tensor([5.5], dtype=torch.float64, device=device)
    assert soft_count(edge, 5.0, 0.1, kernel="sigmoid").item() == pytest.approx(0.5, abs=1e-15)


def test_soft_count_tends_to_hard_count(device, dtype, generator):
    x = torch.randint(0, 6, (4, 50), generator=generator).to(device=device, dtype=dtype)
    for value in range(6):
        hard = int(sum(1 for v in x.flatten().tolist() if v == value))
        assert soft_count(x, value, 0.05).item() == pytest.approx(hard, abs=1e-5)
    # Continuous data, bin counts: exclude draws within 0.05 of a bin edge.
    y = torch.rand(2000, generator=generator, dtype=torch.float64) * 6
    y = y[((y - 2.0).abs() - 0.5).abs() > 0.05].to(device=device, dtype=dtype)
    hard = sum(1 for v in y.tolist() if abs(v - 2.0) < 0.5)
    assert soft_count(y, 2.0, 1e-3, kernel="sigmoid").item() == pytest.approx(hard, abs=1e-3)


def test_soft_count_bias_decreases_with_temperature():
    a = torch.arange(10, dtype=torch.float64)
    temperatures = [2.0, 1.0, 0.5, 0.3, 0.2]  # at T = 0.1 the Gaussian bias (4e-22) is below eps
    for kernel in ("gaussian", "sigmoid"):
        counts = [soft_count(a, 5.0, t, kernel=kernel).item() for t in temperatures]
        bias = [c - 1 for c in counts]
        assert all(b > 0 for b in bias)
        assert all(b2 < b1 for b1, b2 in itertools.pairwise(bias))
    # Gaussian bias against the small-T asymptote 2 exp(-1 / (2 T^2)).
    t = 0.2
    bias = soft_count(a, 5.0, t).item() - 1
    assert bias == pytest.approx(2 * math.exp(-1 / (2 * t * t)), rel=1e-6)
    # the non-matching entries alone, where the bias is not lost to rounding
    others = a[a != 5]
    assert soft_count(others, 5.0, 0.1).item() == pytest.approx(2 * math.exp(-50), rel=1e-12)


@pytest.mark.parametrize("kernel", ["gaussian", "sigmoid"])
def test_soft_count_gradcheck(kernel, generator):
    x = (torch.rand(3, 5, generator=generator, dtype=torch.float64) * 4).requires_grad_(True)
    value = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    # away from x == value, where the sigmoid kernel has its kink
    assert ((x - value).abs() > 1e-3).all()
    assert torch.autograd.gradcheck(
        lambda x, v: soft_count(x, v, 0.7, kernel=kernel, dim=1), (x, value)
    )


def test_soft_count_gradient_at_a_match_and_far_away():
    a = torch.arange(10, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(soft_count(a, 5.0, 0.5), a)
    assert grad[5].item() == 0.0  # the peak of the kernel
    assert grad[4].item() > 0 and grad[6].item() < 0  # pulled toward 5
    # d/dx exp(-(x-5)^2 / (2 T^2)) at x = 4, by a central difference of the closed form
    h, t = 1e-6, 0.5
    fd = (
        math.exp(-((4 + h - 5) ** 2) / (2 * t * t)) - math.exp(-((4 - h - 5) ** 2) / (2 * t * t))
    ) / (2 * h)
    assert grad[4].item() == pytest.approx(fd, rel=1e-8)


def test_soft_count_dims_and_broadcast_value(device):
    x = torch.tensor([[1.0, 2.0, 2.0], [2.0, 3.0, 3.0]], dtype=torch.float64, device=device)
    rows = soft_count(x, 2.0, 0.01, dim=1)
    assert rows.tolist() == pytest.approx([2.0, 1.0], abs=1e-12)
    assert soft_count(x, 2.0, 0.01, dim=1, keepdim=True).shape == (2, 1)
    assert soft_count(x, 2.0, 0.01, keepdim=True).shape == (1, 1)
    per_row_value = torch.tensor([[2.0], [3.0]], dtype=torch.float64, device=device)
    assert soft_count(x, per_row_value, 0.01, dim=1).tolist() == pytest.approx(
        [2.0, 2.0], abs=1e-12
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"temperature": 0.0},
            ValueError,
            r"temperature: expected a number > 0, got 0\.0",
        ),
        ({"temperature": -1.0}, ValueError, r"temperature: expected a number > 0"),
        (
            {"temperature": float("nan")},
            ValueError,
            r"temperature: expected a number > 0",
        ),
        ({"temperature": "0.1"}, TypeError, r"temperature: expected a number > 0, got str"),
        ({"temperature": True}, TypeError, r"temperature: expected a number > 0, got bool"),
        (
            {"kernel": "box"},
            ValueError,
            r"kernel: expected one of \('gaussian', 'sigmoid'\), got 'box'",
        ),
        ({"kernel": 3}, TypeError, r"kernel: expected one of"),
        ({"radius": 0}, ValueError, r"radius: expected a number > 0, got 0"),
        ({"value": "5"}, TypeError, r"value: expected a number or a tensor, got str"),
        (
            {"value": torch.zeros(3)},
            ValueError,
            r"value: shape \(3,\) does not broadcast to the shape of x, \(10,\)",
        ),
    ],
)
def test_soft_count_bad_input(kwargs, error, match):
    args = {"x": torch.arange(10.0), "value": 5.0, "temperature": 0.5} | kwargs
    with pytest.raises(error, match=match):
        soft_count(**args)


def test_soft_count_rejects_integer_tensors_like_the_seed_would_need():
    with pytest.raises(
        TypeError, match=r"x: expected a floating-point tensor, got dtype torch.int64"
    ):
        soft_count(torch.arange(10), 5.0, 0.5)
    with pytest.raises(TypeError, match=r"x: expected a torch.Tensor, got list"):
        soft_count([1.0, 2.0], 5.0, 0.5)


def test_hard_count():
    a = torch.tensor([5.0, 5.0, 4.6, 5.4, 6.0])
    assert hard_count(a, 5.0).item() == 2
    assert hard_count(a, 5.0, radius=0.5).item() == 4
    assert hard_count(torch.tensor([1, 5, 5]), 5).item() == 2
    with pytest.raises(ValueError, match=r"radius: expected a number > 0, got -1"):
        hard_count(a, 5.0, radius=-1)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: hard_count([5.0, 5.0], 5.0),
            TypeError,
            r"^x: expected a torch\.Tensor, got list$",
        ),
        (
            lambda: hard_count(torch.tensor([5.0]), "5"),
            TypeError,
            r"^value: expected a number or a tensor, got str$",
        ),
        (
            lambda: hard_count(torch.tensor([5.0]), None),
            TypeError,
            r"^value: expected a number or a tensor, got NoneType$",
        ),
        (
            lambda: hard_count(torch.tensor([5.0, 1.0]), torch.ones(3)),
            ValueError,
            r"^value: shape \(3,\) does not broadcast to the shape of x, \(2,\)$",
        ),
        (
            lambda: count_distribution_naive(torch.full((17,), 0.5)),
            ValueError,
            r"^p: expected shape \(N,\) with N <= 16, got \(17,\)$",
        ),
        (
            lambda: count_distribution_naive(torch.full((2, 3), 0.5)),
            ValueError,
            r"^p: expected shape \(N,\) with N <= 16, got \(2, 3\)$",
        ),
    ],
)
def test_hard_count_and_naive_distribution_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


# ------------------------------------------------------------------ expected counts, distribution


def test_expected_counts_by_enumeration(generator):
    n, k = 3, 4
    probs = torch.softmax(torch.randn(n, k, generator=generator, dtype=torch.float64), dim=-1)
    expected = np.zeros(k)
    for outcome in itertools.product(range(k), repeat=n):  # all k^n assignments
        weight = math.prod(probs[i, c].item() for i, c in enumerate(outcome))
        for c in outcome:
            expected[c] += weight
    np.testing.assert_allclose(expected_counts(probs).numpy(), expected, rtol=1e-13)
    assert expected_counts(probs).sum().item() == pytest.approx(n, rel=1e-14)


def test_expected_counts_batched_and_bad_input(device):
    probs = torch.full((2, 5, 3), 1 / 3, dtype=torch.float64, device=device)
    assert expected_counts(probs).shape == (2, 3)
    assert expected_counts(probs).flatten().tolist() == pytest.approx([5 / 3] * 6)
    with pytest.raises(
        ValueError,
        match=r"probs: expected shape \(\.\.\., N, K\) with at least 2 dimensions, got \(3,\)",
    ):
        expected_counts(torch.ones(3) / 3)
    with pytest.raises(
        ValueError, match=r"probs: expected each row \(last dimension\) to sum to 1"
    ):
        expected_counts(torch.ones(2, 3))
    with pytest.raises(
        ValueError, match=r"probs: expected probabilities in \[0, 1\], got values in \[-0\.5"
    ):
        expected_counts(torch.tensor([[1.5, -0.5]]))


def test_count_distribution_against_enumeration_and_scipy(device, generator):
    p = torch.rand(7, generator=generator, dtype=torch.float64)
    q = count_distribution(p.to(device)).cpu()
    torch.testing.assert_close(q, count_distribution_naive(p), rtol=1e-13, atol=1e-15)
    assert q.sum().item() == pytest.approx(1.0, abs=1e-14)
    j = torch.arange(8, dtype=torch.float64)
    assert (q * j).sum().item() == pytest.approx(p.sum().item(), rel=1e-13)
    mean = (q * j).sum()
    assert (q * (j - mean) ** 2).sum().item() == pytest.approx(
        (p * (1 - p)).sum().item(), rel=1e-12
    )
    # equal probabilities: the binomial law
    same = torch.full((9,), 0.3, dtype=torch.float64)
    np.testing.assert_allclose(
        count_distribution(same).numpy(), stats.binom.pmf(np.arange(10), 9, 0.3), rtol=1e-12
    )


def test_count_distribution_edges_batches_and_gradcheck(generator):
    assert count_distribution(torch.zeros(0, dtype=torch.float64)).tolist() == [1.0]
    assert count_distribution(torch.ones(3, dtype=torch.float64)).tolist() == [0.0, 0.0, 0.0, 1.0]
    batch = torch.rand(2, 3, 4, generator=generator, dtype=torch.float64)
    out = count_distribution(batch)
    assert out.shape == (2, 3, 5)
    torch.testing.assert_close(out[1, 2], count_distribution_naive(batch[1, 2]))
    p = torch.rand(5, generator=generator, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(count_distribution, (p,))
    assert torch.autograd.gradgradcheck(count_distribution, (p,))
    with pytest.raises(
        ValueError, match=r"p: expected probabilities in \[0, 1\], got values in \[0, 2\]"
    ):
        count_distribution(torch.tensor([0.0, 2.0]))
    with pytest.raises(
        ValueError, match=r"p: expected shape \(\.\.\., N\) with at least 1 dimension, got \(\)"
    ):
        count_distribution(torch.tensor(0.5))


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


# ------------------------------------------------------------------------------ named_grad


def _linear_data(generator, n=20):
    x = torch.randn(n, generator=generator, dtype=torch.float64)
    y = 3.0 * x - 1.0 + 0.1 * torch.randn(n, generator=generator, dtype=torch.float64)
    return x, y


def test_named_grad_matches_closed_form_mse(device, generator):
    x, y = _linear_data(generator)
    x, y = x.to(device), y.to(device)
    w = torch.tensor(0.5, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.tensor(0.2, dtype=torch.float64, device=device, requires_grad=True)
    n = x.numel()
    cost = ((x * w + b - y) ** 2).sum() / (2 * n)
    grads = named_grad(cost, {"W": w, "b": b})
    # closed form, computed in NumPy: dC/dW = mean((pred - y) x), dC/db = mean(pred - y)
    xn, yn = x.cpu().numpy(), y.cpu().numpy()
    residual = 0.5 * xn + 0.2 - yn
    assert list(grads) == ["W", "b"]
    assert grads["W"].item() == pytest.approx(np.mean(residual * xn), rel=1e-13)
    assert grads["b"].item() == pytest.approx(np.mean(residual), rel=1e-13)
    # torch.autograd.grad returns the gradients in the order of its inputs
    gb, gw = torch.autograd.grad(((x * w + b - y) ** 2).sum() / (2 * n), [b, w])
    assert gb.item() == pytest.approx(grads["b"].item(), rel=1e-15)
    assert gw.item() == pytest.approx(grads["W"].item(), rel=1e-15)


def test_named_grad_on_a_module(generator):
    x, y = _linear_data(generator)
    model = nn.Linear(1, 1).double()
    with torch.no_grad():
        model.weight.fill_(0.5)
        model.bias.fill_(0.2)
    cost = ((model(x[:, None])[:, 0] - y) ** 2).sum() / (2 * x.numel())
    grads = named_grad(cost, model)
    residual = 0.5 * x.numpy() + 0.2 - y.numpy()
    assert list(grads) == ["weight", "bias"]
    assert grads["weight"].shape == (1, 1)
    assert grads["weight"].item() == pytest.approx(np.mean(residual * x.numpy()), rel=1e-13)
    assert grads["bias"].item() == pytest.approx(np.mean(residual), rel=1e-13)


def test_named_grad_bad_input():
    w = torch.tensor(1.0, requires_grad=True)
    data = torch.ones(3)
    with pytest.raises(
        ValueError, match=r"output: expected a scalar \(one element\), got shape \(3,\)"
    ):
        named_grad(w * data, {"w": w})
    with pytest.raises(ValueError, match=r"inputs\['X'\]: expected a tensor that requires grad"):
        named_grad((w * data).sum(), {"w": w, "X": data})
    with pytest.raises(
        TypeError, match=r"inputs: expected a mapping name -> tensor or an nn.Module, got list"
    ):
        named_grad((w * data).sum(), [w])
    with pytest.raises(TypeError, match=r"inputs\['w'\]: expected a torch.Tensor, got float"):
        named_grad((w * data).sum(), {"w": 1.0})
