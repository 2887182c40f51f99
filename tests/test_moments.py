"""gradbook.moments against NumPy's weighted mean/covariance, the forum's worked
example, discretised Gaussians, analytic gradients and gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradbook.moments import pixel_grid, soft_argmax, spatial_moments, spatial_moments_one_pass

F64 = torch.float64


def random_map(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    p = torch.rand(shape, generator=gen, dtype=F64)
    return p / p.sum(dim=(-2, -1), keepdim=True)


def numpy_moments(p):
    """Reference: np.average and np.cov with analytic weights (bias=True: divide by sum w)."""
    p = np.asarray(p, dtype=np.float64)
    rows, cols = np.mgrid[0 : p.shape[0], 0 : p.shape[1]]
    coords = np.stack([cols.ravel(), rows.ravel()])  # (x, y) = (column, row)
    mean = np.average(coords, axis=1, weights=p.ravel())
    cov = np.cov(coords, aweights=p.ravel(), bias=True)
    return mean, cov


def test_forum_example(device):
    p = torch.tensor([[0.2, 0.1, 0.0], [0.1, 0.2, 0.4]], dtype=F64, device=device)
    mean, cov = spatial_moments(p)
    # the numbers printed in the forum answer
    np.testing.assert_allclose(mean.cpu().numpy(), [1.1, 0.7], rtol=1e-14)
    np.testing.assert_allclose(cov.cpu().numpy(), [[0.69, 0.23], [0.23, 0.21]], rtol=1e-13)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_matches_numpy_weighted_moments(h, w, seed):
    p = random_map(h, w, seed=seed)
    mean, cov = spatial_moments(p)
    ref_mean, ref_cov = numpy_moments(p.numpy())
    np.testing.assert_allclose(mean.numpy(), ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.atleast_2d(ref_cov), rtol=1e-10, atol=1e-12)
    assert torch.equal(cov, cov.mT)
    assert torch.linalg.eigvalsh(cov).min() > -1e-12


def test_batches_match_one_map_at_a_time(device, dtype):
    p = random_map(2, 3, 5, 7, seed=1).to(device=device, dtype=dtype)
    p = p / p.sum(dim=(-2, -1), keepdim=True)
    mean, cov = spatial_moments(p)
    assert mean.shape == (2, 3, 2) and cov.shape == (2, 3, 2, 2)
    assert mean.dtype == dtype and mean.device.type == device.type
    for i in range(2):
        for j in range(3):
            ref_mean, ref_cov = numpy_moments(p[i, j].cpu().double().numpy())
            tol = 1e-12 if dtype == F64 else 1e-5
            np.testing.assert_allclose(
                mean[i, j].cpu().double().numpy(), ref_mean, rtol=tol, atol=tol
            )
            np.testing.assert_allclose(
                cov[i, j].cpu().double().numpy(), ref_cov, rtol=tol, atol=tol
            )


def test_discretised_gaussian_recovers_its_parameters(device):
    mu = torch.tensor([20.3, 14.6], dtype=F64)
    sigma = torch.tensor([[9.0, 3.0], [3.0, 4.0]], dtype=F64)  # var(x) = 9, var(y) = 4, correlated
    u = pixel_grid(32, 48)  # H = 32 rows (y), W = 48 columns (x)
    d = u - mu
    p = torch.exp(-0.5 * torch.einsum("hwi,ij,hwj->hw", d, torch.linalg.inv(sigma), d))
    p = (p / p.sum()).to(device)
    mean, cov = spatial_moments(p)
    # a Gaussian sampled on a unit grid keeps its moments up to exp(-2 pi^2 sigma^2) terms
    torch.testing.assert_close(mean.cpu(), mu, rtol=0, atol=1e-6)
    torch.testing.assert_close(cov.cpu(), sigma, rtol=0, atol=1e-5)


def test_delta_map_and_thin_maps(device):
    p = torch.zeros(4, 6, dtype=F64, device=device)
    p[3, 5] = 1.0
    mean, cov = spatial_moments(p)
    assert mean.tolist() == [5.0, 3.0]  # (column, row)
    assert cov.abs().max().item() == 0.0
    row = torch.tensor([[0.25, 0.25, 0.5]], dtype=F64, device=device)  # H = 1
    mean, cov = spatial_moments(row)
    assert mean.tolist() == [1.25, 0.0]
    assert cov[1].tolist() == [0.0, 0.0] and cov[0, 0].item() == pytest.approx(0.6875, abs=1e-15)


def test_centred_covariance_survives_float32_far_from_the_origin():
    u = pixel_grid(1024, 1024)
    mu = torch.tensor([1000.3, 900.6], dtype=F64)
    p = torch.exp(-((u - mu) ** 2).sum(-1) / (2 * 0.8**2))
    p = p / p.sum()
    _, exact = spatial_moments(p)
    _, centred32 = spatial_moments(p.float())
    _, naive32 = spatial_moments_one_pass(p.float())
    assert (centred32.double() - exact).abs().max() < 1e-5
    assert (naive32.double() - exact).abs().max() > 1e-2  # E[uu^T] - mu mu^T cancels


def test_gradient_of_the_mean_is_the_coordinate():
    # mu = sum p u is linear in p: d mu_x / d p_rc = c, d mu_y / d p_rc = r
    p = random_map(3, 4, seed=2).requires_grad_(True)
    mean, _ = spatial_moments(p)
    (gx,) = torch.autograd.grad(mean[0], p, retain_graph=True)
    (gy,) = torch.autograd.grad(mean[1], p)
    cols, rows = np.meshgrid(np.arange(4), np.arange(3))
    np.testing.assert_array_equal(gx.numpy(), cols)
    np.testing.assert_array_equal(gy.numpy(), rows)


def test_gradcheck_through_softmax_and_normalisation():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(2, 4, 5, generator=gen, dtype=F64, requires_grad=True)
    positive = torch.rand(2, 4, 5, generator=gen, dtype=F64).add(0.1).requires_grad_(True)

    def through_softmax(s):
        p = s.flatten(-2).softmax(-1).reshape(s.shape)
        return spatial_moments(p)

    assert torch.autograd.gradcheck(through_softmax, (scores,))
    assert torch.autograd.gradgradcheck(through_softmax, (scores,))
    assert torch.autograd.gradcheck(lambda q: spatial_moments(q, normalize=True), (positive,))


def test_normalize_divides_by_the_sum():
    p = random_map(5, 6, seed=4)
    for got, ref in zip(spatial_moments(3.0 * p, normalize=True), spatial_moments(p), strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-14, atol=1e-14)


def test_soft_argmax_tends_to_the_argmax(device):
    gen = torch.Generator().manual_seed(5)
    scores = torch.randn(3, 7, 9, generator=gen, dtype=F64)
    for b in range(3):  # make the maxima clear
        scores[b, (2 * b + 1) % 7, (3 * b + 2) % 9] = 10.0
    got = soft_argmax(scores.to(device), beta=20.0).cpu()
    flat = scores.flatten(-2).argmax(-1)
    expected = torch.stack([flat % 9, flat // 9], dim=-1).to(F64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)
    flat_scores = torch.zeros(5, 5, dtype=F64)
    assert soft_argmax(flat_scores).tolist() == [2.0, 2.0]  # uniform: the centre
    s = torch.randn(4, 5, generator=gen, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: soft_argmax(t, beta=2.0), (s,))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: spatial_moments([[1.0]]), TypeError, "p: expected a torch.Tensor, got list"),
        (
            lambda: spatial_moments(torch.ones(2, 2, dtype=torch.long)),
            TypeError,
            "p: expected a floating",
        ),
        (
            lambda: spatial_moments(torch.ones(4) / 4),
            ValueError,
            r"p: expected shape \(\.\.\., H, W\).*got \(4,\)",
        ),
        (lambda: spatial_moments(torch.ones(0, 3)), ValueError, "H >= 1 and W >= 1"),
        (
            lambda: spatial_moments(torch.tensor([[0.6, -0.1], [0.3, 0.2]])),
            ValueError,
            "p: expected a non-negative map, got a minimum of -0.1",
        ),
        (
            lambda: spatial_moments(torch.ones(2, 3)),
            ValueError,
            r"p: expected each map to sum to 1 .* off by 5.*normalize=True",
        ),
        (lambda: spatial_moments(torch.zeros(2, 3), normalize=True), ValueError, "sum is 0"),
        (lambda: spatial_moments(torch.full((2, 2), float("nan"))), ValueError, "finite"),
        (
            lambda: soft_argmax(torch.zeros(3, 3), beta=0.0),
            ValueError,
            "beta: expected a number > 0, got 0.0",
        ),
        (
            lambda: soft_argmax(torch.zeros(3, 3), beta=float("inf")),
            ValueError,
            r"^beta: expected a number > 0, got inf$",
        ),
        (
            lambda: soft_argmax(torch.zeros(3, 3), beta="2"),
            TypeError,
            r"^beta: expected a number > 0, got str$",
        ),
        (
            lambda: soft_argmax(torch.zeros(3, 3), beta=1e39),
            ValueError,
            r"^beta: beta \* scores overflows torch\.float32",
        ),
        (
            lambda: soft_argmax(torch.zeros(3, 3, dtype=torch.long)),
            TypeError,
            r"^scores: expected a floating-point tensor, got dtype torch\.int64$",
        ),
        (
            lambda: soft_argmax([[0.0, 1.0]]),
            TypeError,
            r"^scores: expected a torch\.Tensor, got list$",
        ),
        (
            lambda: soft_argmax(torch.zeros(5)),
            ValueError,
            r"^scores: expected shape \(\.\.\., H, W\) with at least 2 dimensions, got \(5,\)$",
        ),
        (
            lambda: soft_argmax(torch.zeros(2, 0)),
            ValueError,
            r"^scores: expected H >= 1 and W >= 1, got shape \(2, 0\)$",
        ),
        (
            lambda: soft_argmax(torch.tensor([[0.0, float("inf")]])),
            ValueError,
            r"^scores: expected no NaN or \+inf",
        ),
        (
            lambda: soft_argmax(torch.tensor([[0.0, float("nan")]])),
            ValueError,
            r"^scores: expected no NaN or \+inf",
        ),
        (
            lambda: soft_argmax(torch.full((2, 2, 2), -float("inf"))),
            ValueError,
            r"^scores: expected at least one finite score per map, got a map of -inf$",
        ),
        (lambda: pixel_grid(0, 3), ValueError, "height: expected an int >= 1, got 0"),
        (lambda: pixel_grid(2, 3.0), TypeError, r"width: expected an int >= 1, got float 3\.0"),
    ],
)
def test_bad_input_messages(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_soft_argmax_is_the_mean_of_the_softmax_and_masks_minus_inf(device):
    gen = torch.Generator().manual_seed(7)
    scores = torch.randn(2, 4, 6, generator=gen, dtype=F64).to(device)
    p = (1.5 * scores).flatten(-2).softmax(-1).reshape(scores.shape)
    torch.testing.assert_close(soft_argmax(scores, beta=1.5), spatial_moments(p)[0])
    masked = scores.clone()
    masked[0, :, 3:] = -float("inf")  # only the left half of the first map counts
    p_left = (1.5 * scores[0, :, :3]).flatten().softmax(0).reshape(4, 3)
    torch.testing.assert_close(soft_argmax(masked, beta=1.5)[0], spatial_moments(p_left)[0])
    torch.testing.assert_close(soft_argmax(masked, beta=1.5)[1], spatial_moments(p)[0][1])


def test_sum_tolerance_allows_float32_rounding():
    scores = torch.randn(64, 64, generator=torch.Generator().manual_seed(6))
    p = scores.flatten().softmax(0).reshape(64, 64)
    spatial_moments(p)  # rounding in the softmax's sum must not be rejected
    spatial_moments(p * 1.01, atol=0.02)
    with pytest.raises(ValueError, match=r"within 0\.001"):
        spatial_moments(p * 1.01, atol=1e-3)


def test_the_one_pass_formula_keeps_its_earlier_name():
    from gradbook.moments import spatial_moments_naive

    assert spatial_moments_naive is spatial_moments_one_pass


# ---------------------------------------------------------------------------
# docstring promises on their hardest inputs


def test_float32_softmax_of_a_megapixel_map_is_accepted():
    """ "(for example a softmax over the H * W pixels)": the softmax's own float32 rounding
    grows with the map (|sum - 1| = 1.1e-4 here, above SUM_TOL's 1e-4); the default
    tolerance grows with it, and the moments match float64 ones of the same map."""
    scores = 5 * torch.randn(1024, 1024, generator=torch.Generator().manual_seed(0))
    p = scores.flatten().softmax(0).reshape(1024, 1024)
    assert abs(p.double().sum().item() - 1) > 1e-4  # the hard case the tolerance must cover
    mean, cov = spatial_moments(p)
    ref_mean, ref_cov = spatial_moments(p.double(), atol=1e-3)  # the same weights, float64
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-5, atol=0)
    torch.testing.assert_close(cov.double(), ref_cov, rtol=1e-3, atol=0)  # float32 sums of 1e6
    with pytest.raises(ValueError, match="sum to 1"):
        spatial_moments(p * 1.01)  # an unnormalised map is still caught


@pytest.mark.parametrize("beta", [1e3, 1e30, 1e38])
def test_soft_argmax_at_huge_beta_is_the_argmax_with_finite_gradients(beta):
    """ "Larger values move the result towards the hard argmax": up to float32's largest beta,
    exactly the argmax, no NaN in the gradient."""
    scores = torch.rand(2, 60, 80, generator=torch.Generator().manual_seed(1))
    scores[0, 53, 76] = 2.0
    scores[1, 7, 1] = 2.0
    scores.requires_grad_(True)
    got = soft_argmax(scores, beta=beta)
    assert got.tolist() == [[76.0, 53.0], [1.0, 7.0]]
    (grad,) = torch.autograd.grad(got.sum(), scores)
    assert torch.isfinite(grad).all()
    with pytest.raises(ValueError, match="beta: beta \\* scores overflows"):
        soft_argmax(scores.detach() * 1e10, beta=1e30)


@pytest.mark.parametrize("value", [0.0, 1e30, -3e38])
def test_soft_argmax_of_a_constant_map_is_its_centre(dtype, value):
    """ "Smaller values [of beta move the result] towards the centre": a constant map is the
    limit, at any level up to the dtype's largest finite number."""
    scores = torch.full((400, 399), value, dtype=dtype)
    got = soft_argmax(scores)
    centre = torch.tensor([199.0, 199.5], dtype=torch.float64)
    atol = 2e-4 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got.double(), centre, rtol=0, atol=atol)


def test_soft_argmax_masked_pixels_get_exactly_zero_gradient():
    """ "-inf masks a pixel out": weight 0, and no NaN from inf - inf in the backward pass."""
    scores = torch.randn(4, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    scores[:, 2:] = -float("inf")
    scores.requires_grad_(True)
    (grad,) = torch.autograd.grad(soft_argmax(scores, beta=3.0).sum(), scores)
    assert torch.isfinite(grad).all() and torch.equal(grad[:, 2:], torch.zeros(4, 3, dtype=F64))
    only = torch.full((4, 5), -float("inf"), dtype=F64)
    only[2, 3] = -1e300  # one finite score, however small, is the whole map
    assert soft_argmax(only).tolist() == [3.0, 2.0]


def test_empty_batches(dtype):
    assert soft_argmax(torch.zeros(0, 3, 4, dtype=dtype)).shape == (0, 2)
    mean, cov = spatial_moments(torch.zeros(0, 3, 4, dtype=dtype))
    assert mean.shape == (0, 2) and cov.shape == (0, 2, 2)
