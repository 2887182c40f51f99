"""Tests of gradbook.counting against independent references.

References: closed-form kernel sums written with ``math``, hard counts in the
zero-temperature limit, brute-force enumeration of outcomes, scipy's binomial
law and float64 finite differences (``gradcheck``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from gradbook.counting import (
    count_distribution,
    count_distribution_naive,
    expected_counts,
    hard_count,
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


# ------------------------------------------------------------------ the hardest inputs


@pytest.mark.parametrize("kernel", ["gaussian", "sigmoid"])
@pytest.mark.parametrize("temperature", [1e-300, 1e-40, 1e-30, 1e30, 1e300])
def test_soft_count_has_no_nan_at_extreme_temperatures(dtype, kernel, temperature):
    smallest = torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps
    if temperature < smallest:
        pytest.skip("rejected: rounds to 0 in this dtype (tested below)")
    # a match, an entry on the sigmoid bin's edge, near and very far entries
    values = [5.0, 5.5, 4.0, 6.0, 1e10, -1e10]
    x = torch.tensor(values, dtype=dtype, requires_grad=True)
    count = soft_count(x, 5.0, temperature, kernel=kernel)
    (grad,) = torch.autograd.grad(count, x)
    assert not torch.isnan(count) and not torch.isnan(grad).any()
    if temperature < 1:  # the hard count (Gaussian) and the bin count, 1/2 on the edge
        assert count.item() == (1.0 if kernel == "gaussian" else 1.5)
        # every gradient is 0 but the sigmoid's on the edge: 1 / (4 T), or inf beyond range
        expected_edge = 1 / (4 * temperature)
        others = torch.cat([grad[:1], grad[2:]])
        assert others.abs().max().item() == 0.0
        if kernel == "gaussian":
            assert grad[1].item() == 0.0
        elif expected_edge > torch.finfo(dtype).max:
            assert grad[1].item() == -math.inf
        else:
            assert grad[1].item() == pytest.approx(-expected_edge, rel=1e-6)
    else:  # every Gaussian weight 1, every sigmoid weight 1/2 (up to 1e10 / T)
        expected = len(values) if kernel == "gaussian" else len(values) / 2
        assert count.item() == pytest.approx(expected, rel=1e-6)
        assert grad.abs().max().item() <= 1.0 / temperature


@pytest.mark.parametrize(
    ("dtype", "temperature"),
    [(torch.float32, 1e-46), (torch.float32, 1e-300)],
)
def test_soft_count_rejects_a_temperature_that_rounds_to_zero(dtype, temperature):
    x = torch.arange(10, dtype=dtype)
    with pytest.raises(
        ValueError,
        match=rf"^temperature: expected a number > 0 in x's dtype {dtype}, got .*, "
        r"which rounds to 0 there",
    ):
        soft_count(x, 5.0, temperature)


def test_hard_count_is_an_int64_scalar():
    x = torch.tensor([[5.0, 5.0], [4.6, 6.0]])
    for count in (hard_count(x, 5.0), hard_count(x, 5.0, radius=0.5)):
        assert count.dtype == torch.int64 and count.shape == ()
    assert hard_count(x, 5.0).item() == 2 and hard_count(x, 5.0, radius=0.5).item() == 3


def test_expected_counts_of_one_hot_rows_are_the_hard_counts(dtype, generator):
    labels = torch.randint(0, 4, (1000,), generator=generator)
    probs = torch.eye(4, dtype=dtype)[labels]  # probabilities exactly 0 and 1
    hard = [sum(1 for c in labels.tolist() if c == k) for k in range(4)]
    assert expected_counts(probs).tolist() == hard


def test_expected_counts_sum_to_n_in_float32(generator):
    n = 100_000
    logits = torch.randn(n, 7, generator=generator, dtype=torch.float64)
    probs = torch.softmax(logits, dim=-1).float()
    total = expected_counts(probs).double().sum().item()
    assert total == pytest.approx(n, rel=1e-6)


def test_count_distribution_at_probabilities_exactly_zero_and_one():
    p = torch.tensor([0.0, 1.0, 0.3, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    q = count_distribution(p)
    # two certain successes and one Bernoulli(0.3): P(C = 2) = 0.7, P(C = 3) = 0.3
    assert q.tolist() == pytest.approx([0, 0, 0.7, 0.3, 0, 0], abs=1e-15)
    for j in range(6):  # the gradient at the boundary is the polynomial's, as by enumeration
        (ours,) = torch.autograd.grad(q[j], p, retain_graph=True)
        (enumerated,) = torch.autograd.grad(count_distribution_naive(p)[j], p)
        torch.testing.assert_close(ours, enumerated, rtol=1e-13, atol=1e-15)
    certain = count_distribution(torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0]))
    assert certain.tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("n", [100, 3000])
def test_count_distribution_in_float32_sums_to_one_and_stays_in_range(n, generator):
    p = torch.rand(n, generator=generator, dtype=torch.float64)
    q32 = count_distribution(p.float())
    q64 = count_distribution(p)
    assert torch.isfinite(q32).all() and q32.min() >= 0 and q32.max() <= 1
    assert abs(q32.double().sum().item() - 1) < n * torch.finfo(torch.float32).eps
    assert (q32.double() - q64).abs().max().item() < 1e-6


def test_count_distribution_clamps_probabilities_within_the_tolerance():
    p = torch.tensor([-1e-7, 1 + 1e-7, 0.5], dtype=torch.float64)
    q = count_distribution(p)
    assert q.min().item() >= 0 and q.max().item() <= 1
    torch.testing.assert_close(q, count_distribution(p.clamp(0, 1)), rtol=0, atol=0)
