"""gradbook.warp against independent references: SciPy, OpenCV, kornia, exact shifts,
dense matrices, central differences and gradcheck in float64."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndimage
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gradbook.warp import (
    affine_to_theta,
    invert_affine,
    normalization_matrix,
    rotation_matrix_2d,
    synthetic_scene,
    theta_to_affine,
    warp_affine,
    warp_affine_cv2,
    warp_affine_naive,
)

CV2_MAJOR = int(cv2.__version__.split(".")[0])


def random_affine(generator: torch.Generator, center=(5.0, 4.0), batch=()) -> torch.Tensor:
    """A generic float64 affine map: rotation, anisotropic scale, shear, sub-pixel shift."""
    n = int(np.prod(batch)) if batch else 1
    angle = torch.rand(n, generator=generator, dtype=torch.float64) * 360
    scale = 0.7 + 0.6 * torch.rand(n, generator=generator, dtype=torch.float64)
    M = rotation_matrix_2d(torch.tensor(center, dtype=torch.float64), angle, scale)
    M = M + 0.1 * torch.randn(n, 2, 3, generator=generator, dtype=torch.float64)
    M[:, :, 2] += 2 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return M.reshape(*batch, 2, 3) if batch else M[0]


def scipy_warp(image: np.ndarray, M: np.ndarray, dsize, cval=0.0, inverse_map=False):
    """SciPy's affine_transform in (row, col) order, order 1, blending with cval at edges."""
    M3 = np.vstack([M, [0.0, 0.0, 1.0]])
    A = M3 if inverse_map else np.linalg.inv(M3)  # destination (x, y) -> source (x, y)
    rows = np.array([[A[1, 1], A[1, 0]], [A[0, 1], A[0, 0]]])
    offset = np.array([A[1, 2], A[0, 2]])
    return np.stack(
        [
            ndimage.affine_transform(
                channel, rows, offset, output_shape=dsize, order=1, mode="grid-constant", cval=cval
            )
            for channel in image
        ]
    )


# ----------------------------------------------------------------------------- the reference


@pytest.mark.parametrize("inverse_map", [False, True])
@pytest.mark.parametrize("border", [0.0, 0.4])
def test_naive_matches_scipy(generator, inverse_map, border):
    image = torch.rand(2, 9, 11, generator=generator, dtype=torch.float64)
    for _ in range(4):
        M = random_affine(generator)
        got = warp_affine_naive(image, M, (7, 13), border, inverse_map)
        expected = scipy_warp(image.numpy(), M.numpy(), (7, 13), border, inverse_map)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_integer_translation_is_an_exact_shift(generator):
    image = torch.rand(3, 8, 10, generator=generator, dtype=torch.float64)
    for tx, ty in [(0, 0), (2, 1), (-3, 2), (4, -5), (-1, -1)]:
        M = torch.tensor([[1.0, 0.0, tx], [0.0, 1.0, ty]], dtype=torch.float64)
        expected = torch.full_like(image, 0.25)
        ys, xs = slice(max(ty, 0), 8 + min(ty, 0)), slice(max(tx, 0), 10 + min(tx, 0))
        source = image[:, max(-ty, 0) : 8 - max(ty, 0), max(-tx, 0) : 10 - max(tx, 0)]
        expected[:, ys, xs] = source
        for warp in (warp_affine, warp_affine_naive):
            torch.testing.assert_close(warp(image, M, (8, 10), 0.25), expected, rtol=0, atol=1e-14)


def test_quarter_turn_is_rot90(generator):
    image = torch.rand(2, 7, 7, generator=generator, dtype=torch.float64)
    # about the centre pixel (3, 3): positive angle turns counter-clockwise as displayed
    M = rotation_matrix_2d((3.0, 3.0), 90.0, 1.0)
    torch.testing.assert_close(
        warp_affine(image, M, (7, 7)), torch.rot90(image, 1, dims=(1, 2)), rtol=0, atol=1e-12
    )


# ----------------------------------------------------------------------------- the fast warp


@pytest.mark.parametrize("inverse_map", [False, True])
def test_warp_matches_naive(device, dtype, generator, inverse_map):
    image = torch.rand(4, 3, 12, 15, generator=generator, dtype=torch.float64)
    M = random_affine(generator, center=(7.0, 6.0), batch=(4,))
    border = torch.rand(4, 3, generator=generator, dtype=torch.float64)
    expected = warp_affine_naive(image, M, (10, 17), border, inverse_map)
    got = warp_affine(
        image.to(device, dtype), M.to(device), (10, 17), border.to(device, dtype), inverse_map
    )
    assert got.dtype == dtype and got.device.type == device.type
    assert got.shape == (4, 3, 10, 17)
    # float32: coordinates are rounded to ~1e-7 relative, images vary by O(1) per pixel
    atol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(got.cpu().double(), expected, rtol=0, atol=atol)


def test_broadcasting_one_matrix_or_one_image(generator):
    images = torch.rand(3, 2, 6, 7, generator=generator, dtype=torch.float64)
    Ms = random_affine(generator, batch=(3,))
    # one matrix for a batch of images
    got = warp_affine(images, Ms[1], (5, 6))
    for k in range(3):
        torch.testing.assert_close(got[k], warp_affine_naive(images[k], Ms[1], (5, 6)))
    # one image under a batch of matrices
    got = warp_affine(images[0], Ms, (5, 6))
    assert got.shape == (3, 2, 5, 6)
    for k in range(3):
        torch.testing.assert_close(got[k], warp_affine_naive(images[0], Ms[k], (5, 6)))
    # unbatched in, unbatched out
    assert warp_affine(images[0], Ms[0], (5, 6)).shape == (2, 5, 6)


def test_numpy_and_list_matrices_are_accepted(generator):
    image = torch.rand(1, 6, 6, generator=generator, dtype=torch.float64)
    M = cv2.getRotationMatrix2D((2.5, 3.0), 30.0, 1.1)  # float64 ndarray
    expected = warp_affine(image, torch.from_numpy(M), (6, 6))
    torch.testing.assert_close(warp_affine(image, M, (6, 6)), expected)
    torch.testing.assert_close(warp_affine(image, M.tolist(), (6, 6)), expected)
    # the forum's integer list
    shift = warp_affine(image, [[1, 0, 1], [0, 1, 2]], (6, 6))
    torch.testing.assert_close(shift[:, 2:, 1:], image[:, :4, :5])


def test_empty_batch():
    out = warp_affine(torch.zeros(0, 3, 5, 5), torch.eye(2, 3), (4, 6))
    assert out.shape == (0, 3, 4, 6)


# ----------------------------------------------------------------------------- OpenCV


def cv2_tolerance(image: np.ndarray) -> float:
    """What separates cv2.warpAffine from exact bilinear interpolation (measured, see below).

    OpenCV 4.x (and 5.0.0 for float64 or 2-channel images, measured) rounds the source
    coordinates to 1/32 pixel, i.e. by up to 1/64 in x and in y; bilinear
    interpolation changes by at most ``range`` per pixel along each axis, so the error
    is at most ``range / 32``. OpenCV 5.x warps float32 images with 1, 3 or 4 channels
    in float arithmetic: only float32 rounding of the coordinates remains.
    """
    value_range = float(image.max() - image.min())
    channels = 1 if image.ndim == 2 else image.shape[2]
    if CV2_MAJOR >= 5 and image.dtype == np.float32 and channels in (1, 3, 4):
        return 1e-4 * max(value_range, 1.0)
    return value_range / 32 + 1e-5


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("inverse_map", [False, True])
def test_matches_cv2_warp_affine(generator, channels, inverse_map):
    image = torch.rand(channels, 40, 50, generator=generator)  # float32, as cv2 is used
    array = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    for _ in range(3):
        M = random_affine(generator, center=(25.0, 20.0)).numpy()
        flags = cv2.INTER_LINEAR | (cv2.WARP_INVERSE_MAP if inverse_map else 0)
        expected = cv2.warpAffine(
            array, M, (47, 36), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=(0.3,) * 4
        ).reshape(36, 47, channels)
        got = warp_affine(image, M, (36, 47), border_value=0.3, inverse_map=inverse_map)
        exact = warp_affine_naive(image, M, (36, 47), border_value=0.3, inverse_map=inverse_map)
        ours = got.permute(1, 2, 0).numpy()
        tol = cv2_tolerance(array)
        np.testing.assert_allclose(ours, expected, rtol=0, atol=tol)
        np.testing.assert_allclose(exact.permute(1, 2, 0).numpy(), expected, rtol=0, atol=tol)


def test_cv2_float64_images_stay_within_the_fixed_point_bound(generator):
    """A float64 image goes through OpenCV's 1/32-pixel path (measured in 4.x and 5.0.0)."""
    image = torch.rand(3, 30, 30, generator=generator, dtype=torch.float64)
    array = image.permute(1, 2, 0).numpy().copy()
    M = random_affine(generator, center=(15.0, 15.0)).numpy()
    expected = cv2.warpAffine(array, M, (30, 30), flags=cv2.INTER_LINEAR)
    got = warp_affine_naive(image, M, (30, 30)).permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() <= cv2_tolerance(array)


def test_cv2_sub_pixel_shift_resolution():
    """A 0.01-pixel shift: OpenCV 5.x float32 follows it, 4.x rounds it to 0 (1/32 grid)."""
    ramp = np.tile(np.arange(16, dtype=np.float32), (8, 1))  # value = column index
    M = np.array([[1.0, 0.0, 0.01], [0.0, 1.0, 0.0]])
    warped = cv2.warpAffine(ramp, M, (16, 8), flags=cv2.INTER_LINEAR)
    # away from the left border, exact bilinear gives column - 0.01
    error = np.abs(warped[:, 1:] - (ramp[:, 1:] - 0.01)).max()
    if CV2_MAJOR >= 5:
        assert error < 1e-5
    else:
        assert error == pytest.approx(0.01, abs=1e-4)
    ours = warp_affine(torch.from_numpy(ramp)[None], M, (8, 16))[0].numpy()
    assert np.abs(ours[:, 1:] - (ramp[:, 1:] - 0.01)).max() < 1e-5


def test_cv2_wrapper_matches_direct_call(generator):
    image = torch.rand(2, 3, 10, 12, generator=generator)
    M = random_affine(generator, batch=(2,))
    got = warp_affine_cv2(image, M, (9, 11), border_value=0.2)
    for k in range(2):
        array = np.ascontiguousarray(image[k].permute(1, 2, 0).numpy())
        direct = cv2.warpAffine(array, M[k].numpy(), (11, 9), borderValue=(0.2,) * 4)
        np.testing.assert_array_equal(got[k].permute(1, 2, 0).numpy(), direct)


# ----------------------------------------------------------------------------- kornia


def test_matches_kornia(generator):
    kornia_transform = pytest.importorskip("kornia.geometry.transform")
    image = torch.rand(2, 3, 20, 24, generator=generator, dtype=torch.float64)
    M = random_affine(generator, center=(12.0, 10.0), batch=(2,))
    for align_corners in (True, False):
        expected = kornia_transform.warp_affine(image, M, (18, 26), align_corners=align_corners)
        torch.testing.assert_close(warp_affine(image, M, (18, 26)), expected, rtol=0, atol=1e-10)
    fill = torch.tensor([[0.1, 0.5, 0.9]], dtype=torch.float64).expand(2, 3)
    expected = kornia_transform.warp_affine(
        image, M, (18, 26), padding_mode="fill", fill_value=fill[0]
    )
    torch.testing.assert_close(warp_affine(image, M, (18, 26), fill), expected, atol=1e-10, rtol=0)


# ----------------------------------------------------------------------------- theta


@pytest.mark.parametrize("align_corners", [False, True])
def test_theta_drives_grid_sample_like_cv2(generator, align_corners):
    image = torch.rand(1, 2, 9, 14, generator=generator, dtype=torch.float64)
    M = random_affine(generator, center=(7.0, 4.0))
    theta = affine_to_theta(M, (9, 14), (11, 8), align_corners)
    grid = torch.nn.functional.affine_grid(theta[None], [1, 2, 11, 8], align_corners)
    got = torch.nn.functional.grid_sample(image, grid, align_corners=align_corners)
    torch.testing.assert_close(got, warp_affine_naive(image, M, (11, 8)), rtol=0, atol=1e-12)


def test_theta_of_a_translation_by_hand():
    M = torch.tensor([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]], dtype=torch.float64)
    # destination pixel x reads source x - 3; per axis u = (2 x + 1) / n - 1 or 2 x / (n - 1) - 1
    off = torch.tensor([[1.0, 0.0, -2 * 3.0 / 10], [0.0, 1.0, 2 * 2.0 / 8]], dtype=torch.float64)
    torch.testing.assert_close(affine_to_theta(M, (8, 10), (8, 10), False), off)
    on = torch.tensor([[1.0, 0.0, -2 * 3.0 / 9], [0.0, 1.0, 2 * 2.0 / 7]], dtype=torch.float64)
    torch.testing.assert_close(affine_to_theta(M, (8, 10), (8, 10), True), on)


def test_theta_matches_kornia_normalize_homography(generator):
    conversions = pytest.importorskip("kornia.geometry.conversions")
    M = random_affine(generator)
    M3 = torch.cat([M, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)])
    # kornia normalises with align_corners=True; theta is its inverse (destination to source)
    normalised = conversions.normalize_homography(M3[None], (9, 14), (11, 8))[0]
    expected = torch.linalg.inv(normalised)[:2]
    torch.testing.assert_close(affine_to_theta(M, (9, 14), (11, 8), True), expected)


def test_mismatched_align_corners_is_a_sub_pixel_shift():
    """theta made for align_corners=False, sampled with True: a translation t moves by t/W."""
    height, width = 24, 32
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    ramps = torch.stack([xs, ys])[None]  # the value of a pixel is its own coordinate
    M = torch.tensor([[1.0, 0.0, 3.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    theta = affine_to_theta(M, (height, width), (height, width), align_corners=False)
    grid = torch.nn.functional.affine_grid(theta[None], [1, 2, height, width], align_corners=True)
    mixed = torch.nn.functional.grid_sample(ramps, grid, align_corners=True)
    correct = warp_affine(ramps, M, (height, width))
    inner = (mixed - correct)[0, :, 3:-3, 4:-4]  # away from the border
    torch.testing.assert_close(inner[0], torch.full_like(inner[0], 3.0 / width))
    torch.testing.assert_close(inner[1], torch.full_like(inner[1], 2.0 / height))


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("inverse_map", [False, True])
def test_theta_round_trip(generator, align_corners, inverse_map):
    M = random_affine(generator, batch=(5,))
    theta = affine_to_theta(M, (6, 9), (12, 4), align_corners, inverse_map=inverse_map)
    back = theta_to_affine(theta, (6, 9), (12, 4), align_corners, inverse_map=inverse_map)
    torch.testing.assert_close(back, M, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    entries=st.lists(st.floats(-3, 3), min_size=6, max_size=6),
    sizes=st.tuples(*[st.integers(2, 500)] * 4),
    align_corners=st.booleans(),
)
def test_theta_round_trip_property(entries, sizes, align_corners):
    M = torch.tensor(entries, dtype=torch.float64).reshape(2, 3)
    det = (M[0, 0] * M[1, 1] - M[0, 1] * M[1, 0]).abs().item()
    assume(det > 1e-3)  # well-conditioned: the round trip loses about cond(M) * eps
    theta = affine_to_theta(M, sizes[:2], sizes[2:], align_corners)
    back = theta_to_affine(theta, sizes[:2], sizes[2:], align_corners)
    torch.testing.assert_close(back, M, rtol=0, atol=1e-9 * (1 + 500 / det))


def test_singular_matrix_is_rejected_when_it_must_be_inverted():
    rank_one = torch.tensor([[1.0, 2.0, 0.0], [2.0, 4.0, 1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"M: the linear part .* is singular"):
        affine_to_theta(rank_one, (4, 4), (4, 4))
    with pytest.raises(ValueError, match=r"theta: the linear part .* is singular"):
        theta_to_affine(rank_one, (4, 4), (4, 4))
    # nearly singular to rounding: rejected too, not turned into 1e16 entries
    almost = rank_one + torch.tensor([[0.0, 1e-17, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="singular"):
        invert_affine(almost)


def test_normalization_matrix_maps_pixel_edges_and_centres():
    n = normalization_matrix((5, 8), align_corners=False)
    torch.testing.assert_close(
        n @ torch.tensor([-0.5, -0.5, 1.0], dtype=torch.float64),
        torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64),
    )
    torch.testing.assert_close(
        n @ torch.tensor([7.5, 4.5, 1.0], dtype=torch.float64),
        torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64),
    )
    n = normalization_matrix((5, 8), align_corners=True)
    torch.testing.assert_close(
        n @ torch.tensor([7.0, 4.0, 1.0], dtype=torch.float64),
        torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64),
    )


# ----------------------------------------------------------------------------- matrices


def test_invert_affine_matches_cv2(generator):
    for _ in range(5):
        M = random_affine(generator)
        expected = cv2.invertAffineTransform(M.numpy())
        np.testing.assert_allclose(invert_affine(M).numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("center", "angle", "scale"),
    [
        ((0.0, 0.0), 0.0, 1.0),
        ((10.5, 3.25), 30.0, 0.5),
        ((-2.0, 7.0), -135.0, 2.0),
        ((4.0, 4.0), 180.0, 1.0),
        ((1.0, 2.0), 90.0, 0.0),
    ],
)
def test_rotation_matrix_matches_cv2(center, angle, scale):
    expected = cv2.getRotationMatrix2D(center, angle, scale)
    got = rotation_matrix_2d(center, angle, scale)
    assert got.dtype == torch.float64 and got.shape == (2, 3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_rotation_matrix_batched_and_differentiable(generator):
    # OpenCV takes the centre as float32 (cv::Point2f): use float32-representable centres
    center = (torch.rand(4, 2, generator=generator) * 10).double()
    angle = torch.rand(4, generator=generator, dtype=torch.float64) * 360
    scale = torch.rand(4, generator=generator, dtype=torch.float64) + 0.5
    M = rotation_matrix_2d(center, angle, scale)
    assert M.shape == (4, 2, 3)
    for k in range(4):
        expected = cv2.getRotationMatrix2D(center[k].tolist(), angle[k].item(), scale[k].item())
        np.testing.assert_allclose(M[k].numpy(), expected, rtol=1e-12, atol=1e-12)
    inputs = tuple(t.clone().requires_grad_(True) for t in (center, angle, scale))
    assert torch.autograd.gradcheck(rotation_matrix_2d, inputs)
    assert rotation_matrix_2d(center.float(), 10.0, 1.0).dtype == torch.float32


# ----------------------------------------------------------------------------- gradients


def test_gradcheck_image_matrix_and_border(device, generator):
    image = torch.rand(2, 2, 5, 6, generator=generator, dtype=torch.float64)
    M = random_affine(generator, center=(3.0, 2.5), batch=(2,))
    border = torch.tensor([0.3, -0.2], dtype=torch.float64)
    inputs = [t.to(device).requires_grad_(True) for t in (image, M, border)]

    def fn(image, M, border):
        return warp_affine(image, M, (4, 7), border)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)
    # the float64 reference is differentiable too, and agrees
    assert torch.autograd.gradcheck(
        lambda i, m, b: warp_affine_naive(i, m, (4, 7), b), inputs, eps=1e-6, atol=1e-7
    )


def test_image_gradient_is_the_adjoint(generator):
    """<warp(x), u> = <x, J^T u> with J built column by column from the naive reference."""
    image = torch.rand(1, 5, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    M = random_affine(generator, center=(3.0, 2.0))
    u = torch.randn(1, 4, 7, generator=generator, dtype=torch.float64)
    (vjp,) = torch.autograd.grad(warp_affine(image, M, (4, 7)), image, u)
    basis = torch.eye(30, dtype=torch.float64).reshape(30, 1, 5, 6)
    J = torch.stack([warp_affine_naive(e, M, (4, 7)).flatten() for e in basis], dim=1)
    torch.testing.assert_close(vjp.flatten(), J.T @ u.flatten(), rtol=0, atol=1e-12)
    # pixels no sample touches get exactly zero, and they are exactly J's zero columns
    untouched = J.abs().sum(0) == 0
    assert untouched.any()
    assert (vjp.flatten()[untouched] == 0).all()


def test_matrix_gradient_matches_central_differences(generator):
    image = synthetic_scene(20, 24, dtype=torch.float64)
    M = rotation_matrix_2d((11.3, 9.7), 12.0, 0.93) + torch.tensor(
        [[0.0, 0.0, 0.37], [0.0, 0.0, -0.21]], dtype=torch.float64
    )
    weights = torch.randn(3, 18, 22, generator=generator, dtype=torch.float64)

    def loss(M):
        return (warp_affine(image, M, (18, 22)) * weights).sum()

    M_var = M.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(M_var), M_var)
    h = 1e-6
    numeric = torch.zeros_like(M)
    for i in range(2):
        for j in range(3):
            step = torch.zeros_like(M)
            step[i, j] = h
            numeric[i, j] = (loss(M + step) - loss(M - step)) / (2 * h)
    torch.testing.assert_close(grad, numeric, rtol=1e-6, atol=1e-6)


def test_matrix_gradient_has_a_kink_at_integer_positions():
    """Translation by t: the loss is piecewise linear in t with breaks at integers."""
    image = torch.tensor([[[0.0, 1.0, 4.0, 9.0]]], dtype=torch.float64)

    def slope(t: float) -> float:
        M = torch.tensor([[1.0, 0.0, t], [0.0, 1.0, 0.0]], dtype=torch.float64)
        M.requires_grad_(True)
        out = warp_affine(image, M, (1, 4))[0, 0, 2]  # reads source x = 2 - t
        (grad,) = torch.autograd.grad(out, M)
        return grad[0, 2].item()

    # d out / dt = -(src[floor(2 - t) + 1] - src[floor(2 - t)])
    assert slope(0.3) == pytest.approx(-(4.0 - 1.0))
    assert slope(-0.3) == pytest.approx(-(9.0 - 4.0))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"image": torch.zeros(3, 4, 4, dtype=torch.uint8)}, TypeError, "image: expected a float"),
        ({"image": np.zeros((3, 4, 4))}, TypeError, "image: expected a torch.Tensor"),
        ({"image": torch.zeros(4, 4)}, ValueError, r"image: expected shape \(C, H, W\)"),
        ({"image": torch.zeros(3, 0, 4)}, ValueError, "at least one channel, row and column"),
        (
            {"M": torch.eye(3)},
            ValueError,
            r"M: expected shape \(2, 3\) or \(B, 2, 3\), got \(3, 3\)",
        ),
        ({"M": torch.zeros(2, 3)}, ValueError, "M: the linear part .* is singular"),
        ({"M": [[1.0, 0.0, float("nan")], [0.0, 1.0, 0.0]]}, ValueError, "M: expected finite"),
        ({"M": "identity"}, TypeError, "M: expected a tensor, array or nested list"),
        (
            {"M": torch.eye(2, 3).expand(3, 2, 3), "image": torch.zeros(2, 1, 4, 4)},
            ValueError,
            "M: batch of 3 matrices does not match the batch of 2 images",
        ),
        ({"dsize": (4,)}, TypeError, r"dsize: expected \(height, width\)"),
        ({"dsize": (4.0, 5.0)}, TypeError, r"dsize: expected \(height, width\) as two ints"),
        ({"dsize": (0, 5)}, ValueError, "dsize: expected .* positive"),
        (
            {"border_value": torch.zeros(2)},
            ValueError,
            r"border_value: expected a number, shape \(3,\)",
        ),
        ({"border_value": float("inf")}, ValueError, "border_value: expected a finite number"),
        ({"border_value": "black"}, TypeError, "border_value: expected a number"),
    ],
)
def test_bad_input(kwargs, error, message):
    arguments = {"image": torch.zeros(3, 4, 4), "M": torch.eye(2, 3), "dsize": (4, 4)}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        warp_affine(**arguments)


def test_singular_matrix_is_fine_as_an_inverse_map():
    image = torch.arange(16.0).reshape(1, 4, 4)
    M = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 1.0]])  # every pixel reads (2, 1)
    out = warp_affine(image, M, (3, 3), inverse_map=True)
    torch.testing.assert_close(out, torch.full((1, 3, 3), 6.0))


def test_align_corners_needs_two_pixels():
    with pytest.raises(ValueError, match="align_corners=True needs at least 2 pixels"):
        affine_to_theta(torch.eye(2, 3), (1, 5), (4, 4), align_corners=True)
    # but the warp itself handles one-pixel images (it uses align_corners=False inside)
    out = warp_affine(torch.ones(1, 1, 5), torch.eye(2, 3), (1, 5))
    torch.testing.assert_close(out, torch.ones(1, 1, 5))


@pytest.mark.parametrize("which", ["src_size", "dst_size"])
def test_size_errors_name_the_size(which):
    sizes = {"src_size": (4, 4), "dst_size": (4, 4)}
    with pytest.raises(ValueError, match=rf"^{which}: expected \(height, width\) of positive"):
        affine_to_theta(torch.eye(2, 3), **{**sizes, which: (0, 4)})
    with pytest.raises(ValueError, match=rf"^{which}: align_corners=True needs at least 2"):
        theta_to_affine(torch.eye(2, 3), **{**sizes, which: (1, 4)}, align_corners=True)
    with pytest.raises(TypeError, match=rf"^{which}: expected \(height, width\) as two ints"):
        theta_to_affine(torch.eye(2, 3), **{**sizes, which: (4,)})


def test_invert_affine_bad_input():
    with pytest.raises(TypeError, match=r"^M: expected a torch\.Tensor, got list$"):
        invert_affine([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(
        TypeError, match=r"^M: expected a floating-point tensor, got dtype torch\.int64"
    ):
        invert_affine(torch.eye(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"^M: expected shape \(\.\.\., 2, 3\)"):
        invert_affine(torch.eye(3))


def test_rotation_matrix_bad_input():
    with pytest.raises(ValueError, match=r"center: expected \(x, y\)"):
        rotation_matrix_2d((1.0, 2.0, 3.0), 10.0, 1.0)
    with pytest.raises(TypeError, match="angle: expected a number or a tensor"):
        rotation_matrix_2d((1.0, 2.0), "ten", 1.0)
    with pytest.raises(ValueError, match="do not broadcast"):
        rotation_matrix_2d(torch.zeros(3, 2), torch.zeros(4), 1.0)


def test_synthetic_scene_is_deterministic_and_in_range():
    a, b = synthetic_scene(32, 40), synthetic_scene(32, 40)
    assert a.shape == (3, 32, 40) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.1


def test_array_matrices_are_not_rounded_to_the_image_dtype(generator):
    """A float64 NumPy matrix (what OpenCV returns) keeps its precision for float32 images."""
    image = torch.rand(3, 20, 30, generator=generator)
    M = cv2.getRotationMatrix2D((14.5, 9.5), 20.0, 1.2)
    M[:, 2] += (0.25, -0.4)
    torch.testing.assert_close(
        warp_affine_naive(image, M, (18, 25)),
        warp_affine_naive(image.double(), M, (18, 25)),
        rtol=0,
        atol=0,
    )
    assert warp_affine(image, M, (18, 25)).dtype == torch.float32


# ------------------------------------------------- docstring promises on their hardest inputs


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [
        (torch.float32, 1e20),  # the determinant, 1e40, overflows float32
        (torch.float32, 1e-30),  # the determinant, 1e-60, underflows float32
        (torch.float64, 1e160),
        (torch.float64, 1e-160),
    ],
)
def test_invert_affine_is_singular_only_to_rounding_at_every_scale(dtype, scale):
    """ "Singular (to rounding: |det A| <= 64 eps max|A_ij|^2)" is a scale-free test, so a
    scaled rotation is never singular; its inverse is as accurate as that of the rotation."""
    M = rotation_matrix_2d((3.0, -2.0), 53.0, 1.0)
    M[:, :2] *= scale
    M = M.to(dtype)
    lifted = np.vstack([M.double().numpy(), [0.0, 0.0, 1.0]])
    expected = np.linalg.inv(lifted)[:2]  # LAPACK, float64, of the same rounded entries
    got = invert_affine(M).double().numpy()
    rtol = 4e-7 if dtype == torch.float32 else 1e-15
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)
    # and a rank-one matrix is still singular at that scale; so is a zero one
    rank_one = torch.tensor([[1.0, 2.0, 0.0], [2.0, 4.0, 1.0]], dtype=dtype)
    rank_one[:, :2] *= scale
    for singular in (rank_one, torch.zeros(2, 3, dtype=dtype)):
        with pytest.raises(ValueError, match="singular"):
            invert_affine(singular)


def test_invert_affine_rejects_non_finite_entries():
    M = torch.tensor([[float("inf"), 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="M: expected finite entries"):
        invert_affine(M)


@pytest.mark.parametrize("shift", [1e4, 1e9, 1e30])
def test_a_warp_entirely_outside_the_image_is_the_border_exactly(dtype, shift):
    """BORDER_CONSTANT outside, and "pixels no sample touches get exactly 0" gradient, also
    for source coordinates far beyond float32's integer range."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 20, 30, generator=generator, dtype=dtype).requires_grad_(True)
    border = torch.tensor([0.25, -0.5, 0.75], dtype=dtype, requires_grad=True)
    M = torch.tensor([[1.0, 0.0, shift], [0.0, 1.0, -shift]], dtype=torch.float64)
    out = warp_affine(image, M, (20, 30), border_value=border)
    assert torch.equal(out, border[:, None, None].expand_as(out))
    grad_image, grad_border = torch.autograd.grad(out.sum(), (image, border))
    assert torch.equal(grad_image, torch.zeros_like(image))
    assert grad_border.tolist() == [2 * 20 * 30] * 3


@pytest.mark.parametrize("center", [(0.1, 0.2), (1000.1, 2000.3), (1e5 + 0.1, 3e5 + 0.3)])
@pytest.mark.parametrize("angle", [30.0, 135.0])
def test_rotation_matrix_differs_from_cv2_only_by_its_float32_centre(center, angle):
    """The docstring's bound 2^-24 (|1 - alpha| + |beta|) max|c| on the difference from
    cv2.getRotationMatrix2D, and the centre as a fixed point, for centres up to 3e5."""
    alpha, beta = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    bound = 2.0**-24 * (abs(1 - alpha) + abs(beta)) * max(abs(c) for c in center)
    expected = cv2.getRotationMatrix2D(center, angle, 1.0)
    got = rotation_matrix_2d(center, angle).numpy()
    assert np.abs(got - expected).max() <= bound + 1e-12
    rounded = tuple(float(np.float32(c)) for c in center)  # what cv::Point2f holds
    np.testing.assert_allclose(
        rotation_matrix_2d(rounded, angle).numpy(), expected, rtol=0, atol=1e-15 * max(center)
    )
    fixed = got @ np.array([*center, 1.0])
    np.testing.assert_allclose(fixed, center, rtol=0, atol=8e-16 * max(center))


@pytest.mark.parametrize("size", [(8, 1000), (4, 3000), (1000, 8), (120, 120)])
def test_float32_warps_of_large_images_stay_within_the_documented_bound(size):
    """ "Off by up to about eps max(H, W, h, w) pixels per axis": the identity, a small and a
    large rotation of float32 images up to 3000 pixels wide against the float64 reference."""
    height, width = size
    image = torch.rand(1, height, width, generator=torch.Generator().manual_seed(0))
    centre = ((width - 1) / 2, (height - 1) / 2)
    bound = 2 * torch.finfo(torch.float32).eps * max(size)  # neighbours differ by <= 1
    for M in (
        torch.eye(2, 3, dtype=torch.float64),
        *(rotation_matrix_2d(centre, angle) for angle in (0.5, 30.0)),
    ):
        got = warp_affine(image, M, size)
        expected = warp_affine_naive(image, M, size)
        assert (got.double() - expected).abs().max().item() <= bound
