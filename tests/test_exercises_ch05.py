"""Chapter 5 checks fail on the known mistakes (the forum's among them), pass on the reference."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from gradbook.exercises import ExerciseFailed
from gradbook.exercises.ch05 import (
    check_bilinear_sample,
    check_cv2_to_theta,
    check_differentiable_warp,
    check_register,
)
from gradbook.warp import affine_to_theta, invert_affine, theta_to_affine, warp_affine

# Exercise 5.1 -----------------------------------------------------------------


def normalization(size, align_corners=False):
    """Hand-written pixel -> normalised map, independent of gradbook."""
    h, w = size
    if align_corners:
        return torch.tensor(
            [[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]], dtype=torch.float64
        )
    return torch.tensor(
        [[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], dtype=torch.float64
    )


def lift(M):
    return torch.cat([M, torch.tensor([[0.0, 0.0, 1.0]], dtype=M.dtype)])


def theta_reference(M, src, dst, align_corners=False, invert=True, swap=False):
    if swap:
        src, dst = src[::-1], dst[::-1]
    A = torch.linalg.inv(lift(M)) if invert else lift(M)
    dst_inverse = torch.linalg.inv(normalization(dst, align_corners))
    return (normalization(src, align_corners) @ A @ dst_inverse)[:2]


def test_theta_reference_passes(capsys):
    assert check_cv2_to_theta(theta_reference)
    assert check_cv2_to_theta(lambda M, s, d: theta_reference(M, s, d).float())  # float32 is fine
    assert "PASSED Exercise 5.1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda M, s, d: theta_reference(M, s, d, align_corners=True), "align_corners=True"),
        (lambda M, s, d: theta_reference(M, s, d, swap=True), "swapped width and height"),
        (lambda M, s, d: theta_reference(M, s, d, invert=False), "invert M first"),
        (lambda M, s, d: theta_reference(M, d, s), "sizes exchanged"),
        (lambda M, s, d: lift(theta_reference(M, s, d)), "first two rows"),
        (lambda M, s, d: M, "not the right theta"),  # pixel matrix passed straight through
        (lambda M, s, d: theta_reference(M, s, d)[0], r"shape \(2, 3\)"),
        (lambda M, s, d: theta_reference(M, s, d).tolist(), "torch.Tensor"),
    ],
)
def test_theta_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_cv2_to_theta(wrong)


# Exercise 5.2 -----------------------------------------------------------------


def bilinear_taps(image, x, y, border_value=0.0):
    """The four ``(weight, value)`` taps of bilinear sampling: floor, then mask out-of-range."""
    _, height, width = image.shape
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = (x0 + dx).long(), (y0 + dy).long()
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            value = image[:, yi.clamp(0, height - 1), xi.clamp(0, width - 1)]
            yield wx * wy, torch.where(inside, value, border_value)


def sample_reference(image, x, y, border_value=0.0):
    return sum(w * p for w, p in bilinear_taps(image, x, y, border_value))


def sample_forum(image, x, y, border_value=0.0):
    """The forum's scheme: .long(), clamp the indices, then weights, border unused."""
    _, height, width = image.shape
    x0, y0 = x.long(), y.long()
    x1, y1 = x0 + 1, y0 + 1
    x0, x1 = x0.clamp(0, width - 1), x1.clamp(0, width - 1)
    y0, y1 = y0.clamp(0, height - 1), y1.clamp(0, height - 1)
    dx, dy = x - x0.float(), y - y0.float()
    return (
        (1 - dx) * (1 - dy) * image[:, y0, x0]
        + dx * (1 - dy) * image[:, y0, x1]
        + (1 - dx) * dy * image[:, y1, x0]
        + dx * dy * image[:, y1, x1]
    )


def sample_truncating(image, x, y, border_value=0.0):
    """Masked and with the border, but `.long()` instead of floor."""
    _, height, width = image.shape
    x0, y0 = x.long(), y.long()
    fx, fy = x - x0, y - y0
    out = 0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            value = image[:, yi.clamp(0, height - 1), xi.clamp(0, width - 1)]
            out = out + wx * wy * torch.where(inside, value, border_value)
    return out


def sample_detached(image, x, y, border_value=0.0):
    return sample_reference(image, x.detach(), y.detach(), border_value)


def sample_grid_sample(image, x, y, border_value=0.0):
    """Another correct answer: grid_sample on (image - border), plus border."""
    _, height, width = image.shape
    grid = torch.stack([(2 * x + 1) / width - 1, (2 * y + 1) / height - 1], -1)[None, None]
    out = F.grid_sample((image - border_value)[None], grid, align_corners=False)
    return out[0, :, 0] + border_value


@pytest.mark.parametrize("answer", [sample_reference, sample_grid_sample])
def test_bilinear_reference_passes(answer):
    assert check_bilinear_sample(answer)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (sample_forum, "truncates toward zero .* already clamped"),
        (sample_truncating, "truncates toward zero"),
        (lambda im, x, y, b=0.0: sample_reference(im, x, y, 0.0), "border_value is never used"),
        (lambda im, x, y, b=0.0: sample_truncating(im, x, y, 0.0), "truncates toward zero"),
        (sample_detached, "no gradient reaches x"),
        (lambda im, x, y, b=0.0: sample_reference(im, x, y, b).T, r"got \(N, C\)"),
        (
            lambda im, x, y, b=0.0: sample_reference(im, x.round(), y.round(), b),
            "wrong samples at points",
        ),
        # replicate the edge pixel instead of the border value
        (
            lambda im, x, y, b=0.0: sample_reference(
                im, x.clamp(0, im.shape[2] - 1), y.clamp(0, im.shape[1] - 1), b
            ),
            "border_value is never used",
        ),
    ],
)
def test_bilinear_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_bilinear_sample(wrong)


# Exercise 5.3 -----------------------------------------------------------------


def warp_reference(image, M, dsize, border_value=0.0):
    theta = affine_to_theta(M, tuple(image.shape[-2:]), dsize, align_corners=False)
    grid = F.affine_grid(theta[None].to(image.dtype), [1, image.shape[0], *dsize], False)
    out = F.grid_sample((image - border_value)[None], grid, align_corners=False)
    return out[0] + border_value


def warp_forum(image, M, dsize, border_value=0.0):
    """The asker's tensor_warp_affine, channels-first, as posted otherwise."""
    height, width = dsize
    M_tensor = torch.tensor(M, dtype=torch.float64)  # the constant copy
    M_padded = torch.cat([M_tensor, torch.tensor([[0, 0, 1]], dtype=torch.float64)], dim=0)
    M_inv = torch.inverse(M_padded)[:2]
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    coords = torch.stack([xs.flatten(), ys.flatten(), torch.ones_like(xs.flatten())]).double()
    src_x, src_y = M_inv @ coords
    return sample_forum(image, src_x, src_y).reshape(image.shape[0], height, width)


def warp_sampling_fixed_constant_M(image, M, dsize, border_value=0.0):
    """Correct sampling, but the matrix is copied out of the graph."""
    return warp_reference(image, torch.tensor(M.tolist(), dtype=M.dtype), dsize, border_value)


def warp_with(sampler, invert=True):
    def warp(image, M, dsize, border_value=0.0):
        height, width = dsize
        A = torch.linalg.inv(lift(M))[:2] if invert else M
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=M.dtype), torch.arange(width, dtype=M.dtype), indexing="ij"
        )
        src_x = A[0, 0] * xs + A[0, 1] * ys + A[0, 2]
        src_y = A[1, 0] * xs + A[1, 1] * ys + A[1, 2]
        return sampler(image, src_x, src_y, border_value)

    return warp


def warp_mixed(theta_ac, sample_ac):
    def warp(image, M, dsize, border_value=0.0):
        theta = affine_to_theta(M, tuple(image.shape[-2:]), dsize, align_corners=theta_ac)
        grid = F.affine_grid(theta[None], [1, image.shape[0], *dsize], align_corners=sample_ac)
        out = F.grid_sample((image - border_value)[None], grid, align_corners=sample_ac)
        return out[0] + border_value

    return warp


def warp_detach_trick(image, M, dsize, border_value=0.0):
    """The accepted answer's `(w * p).detach() + p - p.detach()` per tap."""
    height, width = dsize
    A = torch.linalg.inv(lift(M))[:2]
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=M.dtype), torch.arange(width, dtype=M.dtype), indexing="ij"
    )
    x = A[0, 0] * xs + A[0, 1] * ys + A[0, 2]
    y = A[1, 0] * xs + A[1, 1] * ys + A[1, 2]
    return sum(
        (w * p).detach() + p - p.detach() for w, p in bilinear_taps(image, x, y, border_value)
    )


def test_warp_reference_passes(capsys):
    assert check_differentiable_warp(warp_reference)
    assert check_differentiable_warp(warp_with(sample_reference))
    assert check_differentiable_warp(lambda im, M, d, b=0.0: warp_affine(im, M, d, b))
    assert "PASSED Exercise 5.3" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (warp_forum, "truncates toward zero .* already clamped"),
        (warp_sampling_fixed_constant_M, "no gradient reaches M"),
        (warp_with(sample_truncating), "truncates toward zero"),
        (warp_with(sample_forum), "already clamped"),
        (
            warp_with(lambda im, x, y, b: sample_reference(im, x, y, 0.0)),
            "border_value is never used",
        ),
        (warp_with(sample_reference, invert=False), "Invert M"),
        (lambda im, M, d, b=0.0: warp_reference(im, M, d[::-1], b), r"\(width, height\)"),
        (warp_mixed(False, True), "align_corners=False but grid_sample ran with"),
        (warp_mixed(True, False), "align_corners=True but grid_sample ran with"),
        (warp_detach_trick, "detach"),
        (lambda im, M, d, b=0.0: warp_reference(im, M, d, b).permute(1, 2, 0), "channels first"),
    ],
)
def test_warp_mistakes_fail(wrong, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch.tensor(tensor) warns
        with pytest.raises(ExerciseFailed, match=message):
            check_differentiable_warp(wrong)


# Exercise 5.4 -----------------------------------------------------------------


def register_reference(moving, fixed, steps=150):
    size = tuple(moving.shape[-2:])
    params = torch.zeros(2, 3, dtype=moving.dtype, requires_grad=True)
    optimiser = torch.optim.Adam([params], lr=0.01)
    for _ in range(steps):
        theta = torch.eye(2, 3, dtype=moving.dtype) + params
        M = theta_to_affine(theta, size, size)
        warped = warp_affine(moving, M, size)
        coverage = warp_affine(torch.ones_like(moving[:1]), M, size)
        loss = (coverage * (warped - fixed) ** 2).sum() / coverage.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    theta = torch.eye(2, 3, dtype=moving.dtype) + params.detach()
    return theta_to_affine(theta, size, size)


def test_register_reference_passes(capsys):
    assert check_register(register_reference)
    assert "PASSED Exercise 5.4" in capsys.readouterr().out


def register_constant(moving, fixed):
    M = torch.eye(2, 3, dtype=moving.dtype, requires_grad=True)
    optimiser = torch.optim.SGD([M], lr=0.1)
    for _ in range(3):
        warped = warp_affine(moving, torch.tensor(M.tolist()), tuple(moving.shape[-2:]))
        loss = ((warped - fixed) ** 2).mean() + 0 * M.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return M.detach()


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (register_constant, "still the identity"),
        (lambda m, f: invert_affine(register_reference(m, f)), "inverse map"),
        (lambda m, f: register_reference(m, f, steps=3), "pixels away"),
        (lambda m, f: torch.full((2, 3), float("nan")), "NaN"),
        (lambda m, f: torch.eye(3, dtype=torch.float64), r"\(2, 3\)"),
    ],
)
def test_register_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_register(wrong)
