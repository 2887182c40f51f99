"""Chapter 5 checks fail on the known mistakes (the forum's among them), pass on the reference."""

from __future__ import annotations

import functools
import math
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
    check_register_similarity,
)
from gradbook.warp import (
    affine_to_theta,
    invert_affine,
    normalization_matrix,
    rotation_matrix_2d,
    theta_to_affine,
    warp_affine,
)

F64 = torch.float64

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


def theta_entrywise(M, src, dst):
    """theta_ij = s_i A_ij / s_j written out, A = M^-1, s and o the per-axis maps u = s x + o."""
    (H, W), (h, w) = src, dst
    A = torch.linalg.inv(lift(M))[:2]
    s_src, o_src = torch.tensor([2 / W, 2 / H], dtype=M.dtype), torch.tensor([1 / W - 1, 1 / H - 1])
    s_dst, o_dst = torch.tensor([2 / w, 2 / h], dtype=M.dtype), torch.tensor([1 / w - 1, 1 / h - 1])
    linear = s_src[:, None] * A[:, :2] / s_dst[None, :]
    shift = s_src * (A[:, 2] - (A[:, :2] * (o_dst / s_dst)[None, :]).sum(1)) + o_src
    return torch.cat([linear, shift[:, None].to(M.dtype)], dim=1)


@pytest.mark.parametrize(
    "answer",
    [
        theta_reference,
        lambda M, s, d: theta_reference(M, s, d).float(),  # float32 is fine
        theta_entrywise,
    ],
)
def test_theta_correct_answers_pass(answer, capsys):
    assert check_cv2_to_theta(answer)
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
        (
            lambda M, s, d: affine_to_theta(M, s, d),
            "write it yourself: this is what gradbook.warp.affine_to_theta does",
        ),
        (
            lambda M, s, d: (
                normalization_matrix(s)
                @ torch.linalg.inv(lift(M))
                @ normalization_matrix(d).inverse()
            )[:2],
            "write it yourself: this is what gradbook.warp.normalization_matrix does",
        ),
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


def sample_padded(image, x, y, border_value=0.0):
    """Pad the image with two pixels of border, then floor and four taps without masks."""
    _, height, width = image.shape
    padded = (
        F.pad(image, (2, 2, 2, 2), value=0.0)
        + F.pad(torch.zeros_like(image), (2, 2, 2, 2), value=1.0) * border_value
    )
    xs, ys = (x + 2).clamp(0, width + 2.5), (y + 2).clamp(0, height + 2.5)
    x0, y0 = torch.floor(xs), torch.floor(ys)
    fx, fy = xs - x0, ys - y0
    x0, y0 = x0.long(), y0.long()
    return (
        (1 - fx) * (1 - fy) * padded[:, y0, x0]
        + fx * (1 - fy) * padded[:, y0, x0 + 1]
        + (1 - fx) * fy * padded[:, y0 + 1, x0]
        + fx * fy * padded[:, y0 + 1, x0 + 1]
    )


@pytest.mark.parametrize("answer", [sample_reference, sample_grid_sample, sample_padded])
def test_bilinear_correct_answers_pass(answer, capsys):
    assert check_bilinear_sample(answer)
    assert "PASSED Exercise 5.2" in capsys.readouterr().out


def sample_ceil_minus_one(image, x, y, border_value=0.0):
    """Neighbours ceil(x) - 1 and ceil(x): the same values, the left slope at integers."""
    _, height, width = image.shape
    x0, y0 = torch.ceil(x) - 1, torch.ceil(y) - 1
    fx, fy = x - x0, y - y0
    out = 0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = (x0 + dx).long(), (y0 + dy).long()
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            value = image[:, yi.clamp(0, height - 1), xi.clamp(0, width - 1)]
            out = out + wx * wy * torch.where(inside, value, border_value)
    return out


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
        (sample_ceil_minus_one, "not where the coordinate is an integer"),
    ],
)
def test_bilinear_mistakes_fail(wrong, message):
    with pytest.raises(ExerciseFailed, match=message):
        check_bilinear_sample(wrong)


# Exercise 5.3 -----------------------------------------------------------------


def warp_reference(image, M, dsize, border_value=0.0):
    theta = theta_reference(M, tuple(image.shape[-2:]), dsize)
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
        values = sampler(image, src_x.flatten(), src_y.flatten(), border_value)
        return values.reshape(image.shape[0], height, width)

    return warp


def warp_mixed(theta_ac, sample_ac):
    def warp(image, M, dsize, border_value=0.0):
        theta = theta_reference(M, tuple(image.shape[-2:]), dsize, align_corners=theta_ac)
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


@pytest.mark.parametrize(
    "answer", [warp_reference, warp_with(sample_reference), warp_with(sample_grid_sample)]
)
def test_warp_correct_answers_pass(answer, capsys):
    assert check_differentiable_warp(answer)
    assert "PASSED Exercise 5.3" in capsys.readouterr().out


def warp_gradbook_theta(image, M, dsize, border_value=0.0):
    """grid_sample on gradbook's theta instead of the student's own (Exercise 5.1)."""
    theta = affine_to_theta(M, tuple(image.shape[-2:]), dsize)
    grid = F.affine_grid(theta[None], [1, image.shape[0], *dsize], align_corners=False)
    return F.grid_sample((image - border_value)[None], grid, align_corners=False)[0] + border_value


def test_warp_on_an_unsolved_exercise_5_2_names_it():
    def stub(image, x, y, border_value=0.0):
        raise NotImplementedError("Exercise 5.2: write your solution here")

    stub.__code__ = stub.__code__.replace(co_name="bilinear_sample")  # its name in the notebook
    expected = r"`bilinear_sample`, which is still the stub of Exercise 5\.2"
    with pytest.raises(ExerciseFailed, match=expected):
        check_differentiable_warp(warp_with(stub))


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
        (warp_detach_trick, "detach trick.*replaces each bilinear weight w by 1.*gradcheck"),
        (
            lambda im, M, d, b=0.0: warp_affine(im, M, d, b),
            "write it yourself: this is what gradbook.warp.warp_affine does",
        ),
        (warp_gradbook_theta, "write it yourself: this is what gradbook.warp.affine_to_theta does"),
        (lambda im, M, d, b=0.0: warp_reference(im, M, d, b).permute(1, 2, 0), "channels first"),
    ],
)
def test_warp_mistakes_fail(wrong, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch.tensor(tensor) warns
        with pytest.raises(ExerciseFailed, match=message):
            check_differentiable_warp(wrong)


# Exercise 5.4 -----------------------------------------------------------------


def similarity_matrix(params, size, center=None):
    """cv2.getRotationMatrix2D about the centre (angle in degrees), plus the shift."""
    height, width = size
    cx, cy = ((width - 1) / 2, (height - 1) / 2) if center is None else center
    angle, scale, tx, ty = params.unbind()
    radians = angle * (math.pi / 180)
    a, b = scale * torch.cos(radians), scale * torch.sin(radians)
    return torch.stack(
        [
            torch.stack([a, b, (1 - a) * cx - b * cy + tx]),
            torch.stack([-b, a, b * cx + (1 - a) * cy + ty]),
        ]
    )


def coverage_loss(moving, fixed, M):
    size = tuple(moving.shape[-2:])
    warped = warp_affine(torch.cat([moving, torch.ones_like(moving[:1])]), M, size)
    image, cover = warped[:-1], warped[-1:]
    return (cover * (image - fixed) ** 2).sum() / cover.sum()


def register_similarity_reference(moving, fixed, steps=150, lrs=(0.1, 4e-3, 0.1)):
    size = tuple(moving.shape[-2:])
    angle = torch.zeros((), dtype=F64, requires_grad=True)
    scale = torch.ones((), dtype=F64, requires_grad=True)
    shift = torch.zeros(2, dtype=F64, requires_grad=True)
    optimiser = torch.optim.Adam(
        [{"params": [p], "lr": lr} for p, lr in zip((angle, scale, shift), lrs, strict=True)]
    )
    for _ in range(steps):
        params = torch.stack([angle, scale, shift[0], shift[1]])
        loss = coverage_loss(moving, fixed, similarity_matrix(params, size))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return torch.stack([angle, scale, shift[0], shift[1]]).detach()


def register_similarity_radians_log_scale(moving, fixed, steps=150):
    """Another parametrisation: radians and log-scale inside, one vector, one step size."""
    size = tuple(moving.shape[-2:])
    unit = torch.tensor([math.pi / 180 * 20, 0.02, 1.0, 1.0], dtype=F64)  # ~1 pixel each
    x = torch.zeros(4, dtype=F64, requires_grad=True)
    optimiser = torch.optim.Adam([x], lr=0.1)

    def params_of(x):
        degrees = x[0] * unit[0] * 180 / math.pi
        return torch.stack([degrees, torch.exp(x[1] * unit[1]), x[2], x[3]])

    for _ in range(steps):
        loss = coverage_loss(moving, fixed, similarity_matrix(params_of(x), size))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return params_of(x.detach())


@functools.cache
def _converged():
    from gradbook.exercises.ch05 import _similarity_pair

    moving, fixed, _ = _similarity_pair()
    return register_similarity_reference(moving, fixed)


@pytest.mark.parametrize(
    "answer",
    [
        lambda m, f: register_similarity_reference(m, f),
        register_similarity_radians_log_scale,
        lambda m, f: register_similarity_reference(m, f, lrs=(0.12, 5e-3, 0.12)).float(),
    ],
)
def test_register_similarity_correct_answers_pass(answer, capsys):
    assert check_register_similarity(answer)
    assert "PASSED Exercise 5.4" in capsys.readouterr().out


def register_similarity_no_step(moving, fixed):
    params = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=F64, requires_grad=True)
    optimiser = torch.optim.Adam([params], lr=0.1)
    for _ in range(3):
        loss = coverage_loss(moving, fixed, similarity_matrix(params, tuple(moving.shape[-2:])))
        optimiser.zero_grad()
        loss.backward()  # ... and no optimiser.step()
    return params.detach()


def register_similarity_zero_grad_late(moving, fixed):
    params = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=F64, requires_grad=True)
    optimiser = torch.optim.Adam([params], lr=0.1)
    for _ in range(3):
        loss = coverage_loss(moving, fixed, similarity_matrix(params, tuple(moving.shape[-2:])))
        loss.backward()
        optimiser.zero_grad()  # between backward and step: the gradient is gone
        optimiser.step()
    return params.detach()


def register_similarity_constant_matrix(moving, fixed):
    params = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=F64, requires_grad=True)
    optimiser = torch.optim.Adam([params], lr=0.1)
    for _ in range(3):
        M = torch.tensor(similarity_matrix(params, tuple(moving.shape[-2:])).tolist(), dtype=F64)
        loss = coverage_loss(moving, fixed, M)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return params.detach()


def register_similarity_plain_sgd(moving, fixed, lr=10.0):
    """One step size for all four parameters, far too large for the scale."""
    params = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=F64, requires_grad=True)
    optimiser = torch.optim.SGD([params], lr=lr)
    for _ in range(30):
        loss = coverage_loss(moving, fixed, similarity_matrix(params, tuple(moving.shape[-2:])))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return params.detach()


def with_center(center):
    """What the optimisation converges to when M rotates about ``center`` instead."""

    def answer(moving, fixed):
        from gradbook.exercises.ch05 import _similarity_pair

        _, _, M_true = _similarity_pair()
        angle, scale = _converged()[:2]
        size = tuple(moving.shape[-2:])
        rotation = similarity_matrix(
            torch.stack([angle, scale, *torch.zeros(2, dtype=F64)]), size, center
        )
        return torch.stack([angle, scale, *(M_true[:, 2] - rotation[:, 2])])

    return answer


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (register_similarity_no_step, "never change: optimiser.step\\(\\) is missing"),
        (register_similarity_zero_grad_late, "zero_grad\\(\\) before backward"),
        (register_similarity_constant_matrix, "does not depend on your parameters"),
        (register_similarity_plain_sgd, "diverged.*step size"),
        (lambda m, f: register_similarity_reference(m, f, steps=20), "pixels away"),
        (with_center((0.0, 0.0)), "rotated about the origin"),
        (with_center((24.0, 18.0)), "half a pixel off"),
        (
            lambda m, f: _converged() * torch.tensor([math.pi / 180, 1, 1, 1], dtype=F64),
            "your angle is in radians",
        ),
        (
            lambda m, f: similarity_matrix(_converged(), tuple(m.shape[-2:])),
            r"shape \(4,\)",
        ),
        (
            lambda m, f: rotation_matrix_2d((23.5, 17.5), torch.zeros((), dtype=F64)).sum() * 0,
            "write it yourself: this is what gradbook.warp.rotation_matrix_2d does",
        ),
    ],
)
def test_register_similarity_mistakes_fail(wrong, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ExerciseFailed, match=message):
            check_register_similarity(wrong)


# Exercise 5.5 (stretch) -------------------------------------------------------


def register_lesson(moving, fixed, steps=150):
    """The lesson's cell: Adam on theta, converted with gradbook's theta_to_affine."""
    size = tuple(moving.shape[-2:])
    params = torch.zeros(2, 3, dtype=moving.dtype, requires_grad=True)
    optimiser = torch.optim.Adam([params], lr=0.01)
    for _ in range(steps):
        M = theta_to_affine(torch.eye(2, 3, dtype=moving.dtype) + params, size, size)
        loss = coverage_loss(moving, fixed, M)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    theta = torch.eye(2, 3, dtype=moving.dtype) + params.detach()
    return theta_to_affine(theta, size, size)


def register_reference(moving, fixed, steps=150):
    """Adam on theta, converted to pixels by hand: M = (N^-1 theta N)^-1."""
    size = tuple(moving.shape[-2:])
    N = normalization(size)
    params = torch.zeros(2, 3, dtype=moving.dtype, requires_grad=True)
    optimiser = torch.optim.Adam([params], lr=0.01)

    def matrix(params):
        theta = lift(torch.eye(2, 3, dtype=moving.dtype) + params)
        return torch.linalg.inv(torch.linalg.inv(N) @ theta @ N)[:2]

    for _ in range(steps):
        loss = coverage_loss(moving, fixed, matrix(params))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return matrix(params.detach())


def register_pixel_units(moving, fixed, steps=150):
    """The entries of M directly, each with a step size in its own units."""
    size = tuple(moving.shape[-2:])
    linear = torch.eye(2, dtype=F64, requires_grad=True)
    shift = torch.zeros(2, 1, dtype=F64, requires_grad=True)
    optimiser = torch.optim.Adam(
        [{"params": [linear], "lr": 2e-3}, {"params": [shift], "lr": 0.05}]
    )
    # about the centre, so that the linear part does not move the shift
    centre = torch.tensor([[(size[1] - 1) / 2], [(size[0] - 1) / 2]], dtype=F64)
    for _ in range(steps):
        M = torch.cat([linear, centre - linear @ centre + shift], dim=1)
        loss = coverage_loss(moving, fixed, M)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return torch.cat([linear, centre - linear @ centre + shift], dim=1).detach()


def register_normalised(moving, fixed, steps=150):
    """The six parameters in normalised coordinates, conjugated to pixels by hand."""
    height, width = moving.shape[-2:]
    to_pixels = torch.tensor(
        [[width / 2, 0.0, (width - 1) / 2], [0.0, height / 2, (height - 1) / 2], [0.0, 0.0, 1.0]],
        dtype=F64,
    )
    params = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    optimiser = torch.optim.Adam([params], lr=0.01)

    def matrix(params):
        theta = torch.cat([torch.eye(2, 3, dtype=F64) + params, torch.eye(3, dtype=F64)[2:]])
        return (to_pixels @ theta @ torch.linalg.inv(to_pixels))[:2]

    for _ in range(steps):
        loss = coverage_loss(moving, fixed, matrix(params))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return matrix(params.detach())


@pytest.mark.parametrize("answer", [register_reference, register_pixel_units, register_normalised])
def test_register_correct_answers_pass(answer, capsys):
    assert check_register(answer)
    assert "PASSED Exercise 5.5" in capsys.readouterr().out


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


def register_no_step(moving, fixed):
    M = torch.eye(2, 3, dtype=moving.dtype, requires_grad=True)
    for _ in range(3):
        loss = coverage_loss(moving, fixed, M)
        loss.backward()
    return M.detach()


def register_lr_too_large(moving, fixed):
    M = torch.eye(2, 3, dtype=moving.dtype, requires_grad=True)
    optimiser = torch.optim.SGD([M], lr=1e4)
    for _ in range(10):
        loss = coverage_loss(moving, fixed, M)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return M.detach()


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (register_constant, "found no gradient"),
        (register_no_step, "optimiser.step\\(\\) is missing"),
        (register_lr_too_large, "diverged.*learning rate"),
        (lambda m, f: rotation_matrix_2d((31.5, 23.5), 6.0, 1.04), "pixels away"),
        (register_lesson, "write it yourself: this is what gradbook.warp.theta_to_affine does"),
        (lambda m, f: invert_affine(register_reference(m, f)), "inverse map"),
        (lambda m, f: register_reference(m, f, steps=3), "pixels away"),
        (lambda m, f: torch.full((2, 3), float("nan")), "diverged"),
        (lambda m, f: torch.eye(3, dtype=torch.float64), r"\(2, 3\)"),
    ],
)
def test_register_mistakes_fail(wrong, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ExerciseFailed, match=message):
            check_register(wrong)
