"""Checks for chapter 5, gradients through an affine warp.

Each check runs the student's function on inputs of its own and recognises the
usual mistakes, the forum's among them: ``.long()`` truncating toward zero instead
of flooring, a matrix copied out of the graph with ``torch.tensor(M)`` (a constant,
no gradient), bilinear weights computed after clamping the indices (extrapolation),
an unused border value, OpenCV's ``(width, height)`` order where ``(height, width)``
is meant, an ``align_corners`` setting that differs between ``theta`` and
``grid_sample``, a matrix that was not inverted, and the "detach trick" that gives
every sampled pixel a gradient of 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from gradbook.exercises._core import Passed, answer_tensor, attempt, fail, passed
from gradbook.warp import (
    affine_to_theta,
    invert_affine,
    rotation_matrix_2d,
    synthetic_scene,
    warp_affine_naive,
)

F64 = torch.float64

_TRUNCATION = (
    "your result is wrong exactly where a source coordinate is negative: `.long()` "
    "(or `int()`) truncates toward zero, so -0.3 becomes 0 instead of -1. The left/top "
    "neighbour of a point is its floor."
)
_FORUM_SCHEME = (
    "two mistakes together, as in the forum's code: `.long()` truncates toward zero "
    "(-0.3 becomes 0, not -1), and the weights come from indices already clamped to the "
    "image, so for points just left of or above the image they leave [0, 1] and the "
    "result extrapolates (values outside the image's range). Floor the coordinates, "
    "compute the weights from the unclamped neighbours and mask the taps that fall "
    "outside."
)
_REPLICATE = (
    "outside the image your result repeats the nearest edge pixel: the indices were "
    "already clamped before reading, so border_value is never used. Mask the taps that "
    "fall outside and give them border_value (OpenCV's BORDER_CONSTANT)."
)
_OUT_OF_RANGE = (
    "some samples lie outside the range of the image and the border value, which "
    "bilinear interpolation (a weighted mean) can never produce: your weights leave "
    "[0, 1]. Are they computed from clamped or truncated indices?"
)
_NO_BORDER = (
    "border_value is never used: taps that fall outside the image must read the border "
    "value (OpenCV's BORDER_CONSTANT), not 0."
)
_CONSTANT_M = (
    "no gradient reaches M: it is treated as a constant. `torch.tensor(M)` (or "
    "`.detach()`, `.numpy()`, `.item()`) copies the matrix out of the autograd graph; "
    "build everything from M itself with differentiable torch operations."
)


def _close(a: Tensor, b: Tensor, atol: float = 1e-9) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.to(F64), b.to(F64), rtol=0, atol=atol))


def _test_matrix() -> Tensor:
    """A generic float64 map: rotation, anisotropic scale and shear, sub-pixel shift."""
    M = rotation_matrix_2d((21.3, 14.6), 23.0, 0.85)
    return M + torch.tensor([[0.06, -0.04, 1.37], [0.03, 0.05, -2.21]], dtype=F64)


def _variant_sample(
    image: Tensor,
    x: Tensor,
    y: Tensor,
    border: float,
    *,
    truncate: bool = False,
    clamp_then_weight: bool = False,
    use_border: bool = True,
    detach_trick: bool = False,
) -> Tensor:
    """Bilinear sampling of ``(C, H, W)`` at source points ``x, y`` with known mistakes.

    The defaults give the right answer; ``truncate`` rounds toward zero,
    ``clamp_then_weight`` is the forum's clamp-then-weight scheme (no masking at all),
    and ``use_border=False`` reads 0 outside the image. ``detach_trick`` is the
    accepted answer's ``(w p).detach() + p - p.detach()``: the same values, but the
    backward gives each tap the weight 1 instead of its bilinear weight.
    """
    _, height, width = image.shape
    rounding = torch.trunc if truncate else torch.floor
    x0, y0 = rounding(x), rounding(y)
    if clamp_then_weight:
        x0c, y0c = x0.clamp(0, width - 1), y0.clamp(0, height - 1)
        x1c, y1c = (x0 + 1).clamp(0, width - 1), (y0 + 1).clamp(0, height - 1)
        dx, dy = x - x0c, y - y0c
        taps = [
            ((1 - dx) * (1 - dy), y0c, x0c),
            (dx * (1 - dy), y0c, x1c),
            ((1 - dx) * dy, y1c, x0c),
            (dx * dy, y1c, x1c),
        ]
        return sum(w * image[:, yi.long(), xi.long()] for w, yi, xi in taps)
    fx, fy = x - x0, y - y0
    out = torch.zeros(image.shape[0], *x.shape, dtype=image.dtype)
    fill = border if use_border else 0.0
    for j, wy in ((0, 1 - fy), (1, fy)):
        for i, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + i, y0 + j
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            value = image[:, yi.clamp(0, height - 1).long(), xi.clamp(0, width - 1).long()]
            value = torch.where(inside, value, torch.full_like(value, fill))
            if detach_trick:
                out = out + (wx * wy * value).detach() + value - value.detach()
            else:
                out = out + wx * wy * value
    return out


# ----------------------------------------------------------------------------- 5.1


def check_cv2_to_theta(cv2_to_theta: Callable[[Tensor, tuple, tuple], Tensor]) -> Passed:
    """Exercise 5.1: ``cv2_to_theta(M, src_size, dst_size)`` for ``align_corners=False``."""
    name = "Exercise 5.1 (an OpenCV matrix as theta)"
    M = _test_matrix()
    src_size, dst_size = (30, 50), (40, 24)  # (height, width), nothing square
    expected = affine_to_theta(M, src_size, dst_size, align_corners=False)
    got = answer_tensor(name, attempt(name, cv2_to_theta, M.clone(), src_size, dst_size), "theta")
    if got.shape == (3, 3):
        fail(name, "affine_grid takes the first two rows of the 3 x 3 matrix: shape (2, 3).")
    if got.shape != (2, 3):
        fail(name, f"theta has shape (2, 3), you returned shape {tuple(got.shape)}.")
    if _close(got, expected, atol=1e-6):
        return passed(name, "theta maps normalised output coordinates to normalised input ones.")
    if _close(got, affine_to_theta(M, src_size, dst_size, align_corners=True), atol=1e-6):
        fail(
            name,
            "this is theta for align_corners=True (pixel centres at -1 and 1, 2x/(n-1) - 1). "
            "With align_corners=False the outer *edges* are at -1 and 1: (2x+1)/n - 1.",
        )
    if _close(got, affine_to_theta(M, src_size[::-1], dst_size[::-1]), atol=1e-6):
        fail(
            name,
            "you swapped width and height: the sizes come as (height, width), the order "
            "of tensor.shape[-2:], while x (the first coordinate) runs along the width. "
            "OpenCV's dsize is (width, height); these are not.",
        )
    if _close(got, affine_to_theta(M, src_size, dst_size, inverse_map=True), atol=1e-6):
        fail(
            name,
            "theta must map the *output* grid to the *input* image, but M maps source "
            "pixels to destination pixels: invert M first (OpenCV does, unless "
            "WARP_INVERSE_MAP).",
        )
    if _close(got, affine_to_theta(M, dst_size, src_size), atol=1e-6):
        fail(name, "you normalised with the source and destination sizes exchanged.")
    worst = (got.to(F64) - expected).abs().max().item()
    fail(name, f"not the right theta (largest entry error {worst:.3g}).")


# ----------------------------------------------------------------------------- 5.2


def _sample_points() -> tuple[Tensor, Tensor]:
    """Source points: interior, on integers, in the one-pixel blend zone, far outside."""
    x = torch.tensor(
        [2.3, 4.0, 0.5, 6.7, -0.3, -0.75, 7.4, 7.9, 3.2, 1.6, -2.5, 12.0, 3.0, -0.5, 5.5],
        dtype=F64,
    )
    y = torch.tensor(
        [1.7, 3.0, 4.5, 0.2, 2.4, -0.6, 3.3, 5.1, -0.4, 5.8, 1.0, 2.0, -3.0, 5.5, 2.25],
        dtype=F64,
    )
    return x, y


def check_bilinear_sample(
    bilinear_sample: Callable[[Tensor, Tensor, Tensor, float], Tensor],
) -> Passed:
    """Exercise 5.2: ``bilinear_sample(image, x, y, border_value)`` -> ``(C, N)``."""
    name = "Exercise 5.2 (bilinear weights with floor and masking)"
    generator = torch.Generator().manual_seed(52)
    image = torch.rand(2, 6, 8, generator=generator, dtype=F64)  # (C, H, W): H = 6, W = 8
    x, y = _sample_points()
    border = 0.5
    expected = _variant_sample(image, x, y, border)
    image_v = image.clone().requires_grad_(True)
    x_v, y_v = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    samples = attempt(name, bilinear_sample, image_v, x_v, y_v, border)
    got = answer_tensor(name, samples, "the samples")
    if got.shape == (x.shape[0], image.shape[0]):
        fail(name, f"expected shape (C, N) = {tuple(expected.shape)}, got (N, C); transpose.")
    if got.shape != expected.shape:
        fail(name, f"expected shape (C, N) = {tuple(expected.shape)}, got {tuple(got.shape)}.")
    if not _close(got, expected):
        diagnoses = [
            (dict(truncate=True, clamp_then_weight=True), _FORUM_SCHEME),
            (dict(clamp_then_weight=True), _REPLICATE),
            (dict(truncate=True), _TRUNCATION),
            (dict(truncate=True, use_border=False), _TRUNCATION),
            (dict(use_border=False), _NO_BORDER),
        ]
        for options, message in diagnoses:
            if _close(got, _variant_sample(image, x, y, border, **options)):
                fail(name, message)
        low, high = min(image.min().item(), border), max(image.max().item(), border)
        values = got.detach().to(F64)
        if values.min() < low - 1e-9 or values.max() > high + 1e-9:
            fail(name, _OUT_OF_RANGE)
        wrong = (values - expected).abs().amax(dim=0) > 1e-9
        negative = (x < 0) | (y < 0)
        if wrong.any() and not (wrong & ~negative).any():
            fail(name, _TRUNCATION)
        outside = (x <= -1) | (x >= 8) | (y <= -1) | (y >= 6)
        if not _close(values[:, outside], torch.full_like(values[:, outside], border)):
            fail(name, _NO_BORDER)
        fail(name, f"wrong samples at points {wrong.nonzero().flatten().tolist()}.")
    # differentiable in the coordinates too (what carries the gradient to M)
    weights = torch.randn(expected.shape, generator=generator, dtype=F64)
    grads = torch.autograd.grad((got * weights).sum(), (image_v, x_v, y_v), allow_unused=True)
    x_ref, y_ref = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    image_ref = image.clone().requires_grad_(True)
    reference = torch.autograd.grad(
        (_variant_sample(image_ref, x_ref, y_ref, border) * weights).sum(),
        (image_ref, x_ref, y_ref),
    )
    for what, grad, ref in zip(("image", "x", "y"), grads, reference, strict=True):
        if grad is None or (grad == 0).all():
            fail(
                name,
                f"no gradient reaches {what}: it was cut out of the graph (`.detach()`, "
                "`torch.tensor(...)`, `.item()` or integer arithmetic on it). The weights "
                "must be computed from the float coordinates.",
            )
        if not torch.allclose(grad, ref, rtol=1e-7, atol=1e-9):
            fail(name, f"the values are right but the gradient with respect to {what} is not.")
    return passed(name, "floor, four weights, masked taps, differentiable in image and points.")


# ----------------------------------------------------------------------------- 5.3


def _mixed_align_corners(
    image: Tensor, M: Tensor, dsize: tuple[int, int], border: float, theta_ac: bool
) -> Tensor:
    """theta made for one align_corners setting, grid_sample run with the other."""
    theta = affine_to_theta(M.detach(), tuple(image.shape[-2:]), dsize, align_corners=theta_ac)
    grid = F.affine_grid(theta[None], [1, image.shape[0], *dsize], align_corners=not theta_ac)
    return F.grid_sample(image[None] - border, grid, align_corners=not theta_ac)[0] + border


def _source_points(M: Tensor, dsize: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """``(sx, sy)``, each ``(h, w)``: where destination pixel ``(x, y)`` reads the source."""
    h, w = dsize
    ys, xs = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    A = invert_affine(M.detach().to(F64))
    return A[0, 0] * xs + A[0, 1] * ys + A[0, 2], A[1, 0] * xs + A[1, 1] * ys + A[1, 2]


def _seed_like(image: Tensor, M: Tensor, dsize: tuple[int, int], border: float, **options):
    """The forum's sampling scheme (with the given mistakes) on the destination grid."""
    sx, sy = _source_points(M, dsize)
    return _variant_sample(image.detach().to(F64), sx, sy, border, **options)


def _detach_trick_gradient(
    image: Tensor, M: Tensor, dsize: tuple[int, int], border: float, weights: Tensor
) -> Tensor:
    """The image gradient of the accepted answer's trick, ``(w p).detach() + p - p.detach()``.

    The forward value is unchanged; the backward gives each tap the weight 1 instead
    of its bilinear weight.
    """
    image = image.detach().clone().requires_grad_(True)
    sx, sy = _source_points(M, dsize)
    out = _variant_sample(image, sx, sy, border, detach_trick=True)
    (grad,) = torch.autograd.grad((out * weights).sum(), image)
    return grad


def check_differentiable_warp(
    warp: Callable[[Tensor, Tensor, tuple[int, int], float], Tensor],
) -> Passed:
    """Exercise 5.3: ``warp(image, M, dsize, border_value)``: cv2 semantics, gradients to M."""
    name = "Exercise 5.3 (a warp that M can learn through)"
    image = synthetic_scene(30, 44, dtype=F64)  # (3, 30, 44)
    M = _test_matrix().requires_grad_(True)
    dsize = (26, 40)  # (height, width): OpenCV would take (40, 26)
    border = 0.3
    image_v = image.clone().requires_grad_(True)
    got = answer_tensor(name, attempt(name, warp, image_v, M, dsize, border), "the warped image")
    expected = warp_affine_naive(image, M.detach(), dsize, border)
    if got.shape == (3, dsize[1], dsize[0]):
        fail(
            name,
            f"your output has shape {tuple(got.shape)}: you read dsize as OpenCV's "
            "(width, height). Here dsize is (height, width), like tensor.shape[-2:].",
        )
    if got.shape == (dsize[0], dsize[1], 3):
        fail(name, "return channels first, (C, height, width), like the input.")
    if got.shape != expected.shape:
        fail(name, f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}.")
    values = got.detach().to(F64)
    if not _close(values, expected, atol=1e-5):
        transposed = warp_affine_naive(image.transpose(1, 2), M.detach(), dsize[::-1], border)
        candidates = [
            (warp_affine_naive(image, M.detach(), dsize, border, inverse_map=True),
             "you sampled the image at M (x, y): M maps source to destination pixels, so "
             "each output pixel reads the source at M^{-1} (x, y). Invert M (OpenCV does, "
             "unless WARP_INVERSE_MAP)."),
            (transposed.transpose(1, 2),
             "width and height are swapped somewhere inside: x runs along the width "
             "(the last dimension), y along the height."),
            (_mixed_align_corners(image, M, dsize, border, theta_ac=False),
             "theta was made for align_corners=False but grid_sample ran with "
             "align_corners=True (or the reverse): use the same setting in both. Mixing "
             "them stretches the picture by a fraction of a pixel."),
            (_mixed_align_corners(image, M, dsize, border, theta_ac=True),
             "theta was made for align_corners=True but grid_sample ran with "
             "align_corners=False: use the same setting in both."),
            (_seed_like(image, M, dsize, border, truncate=True, clamp_then_weight=True),
             _FORUM_SCHEME),
            (_seed_like(image, M, dsize, border, clamp_then_weight=True), _REPLICATE),
            (_seed_like(image, M, dsize, border, truncate=True), _TRUNCATION),
            (_seed_like(image, M, dsize, border, use_border=False), _NO_BORDER),
            (warp_affine_naive(image, M.detach(), dsize, 0.0), _NO_BORDER),
        ]  # fmt: skip
        for candidate, message in candidates:
            if _close(values, candidate, atol=1e-5):
                fail(name, message)
        if values.min() < -1e-6 or values.max() > 1 + 1e-6:
            fail(name, _OUT_OF_RANGE)
        worst = (values - expected).abs().max().item()
        fail(name, f"the output differs from cv2.warpAffine's by up to {worst:.3g}.")
    weights = torch.randn(expected.shape, generator=torch.Generator().manual_seed(53), dtype=F64)
    grad_image, grad_M = torch.autograd.grad(
        (got.to(F64) * weights).sum(), (image_v, M), allow_unused=True
    )
    if grad_M is None or (grad_M == 0).all():
        fail(name, _CONSTANT_M)
    image_r, M_r = image.clone().requires_grad_(True), M.detach().clone().requires_grad_(True)
    ref_image, ref_M = torch.autograd.grad(
        (warp_affine_naive(image_r, M_r, dsize, border) * weights).sum(), (image_r, M_r)
    )
    if grad_image is None or (grad_image == 0).all():
        fail(name, "no gradient reaches the image.")
    if not torch.allclose(grad_image.to(F64), ref_image, rtol=1e-4, atol=1e-6):
        trick = _detach_trick_gradient(image, M, dsize, border, weights)
        if torch.allclose(grad_image.to(F64), trick, rtol=1e-4, atol=1e-6):
            fail(
                name,
                "the forward values are right but each sampled pixel receives the gradient "
                "as if its bilinear weight were 1 (the `.detach()` trick). The output "
                "depends on a pixel through its weight, so the weight is its derivative; "
                "a pixel with weight 0 really has gradient 0.",
            )
        fail(
            name,
            "the image gradient is wrong: each pixel should receive the bilinear weights "
            "with which the output used it (and 0 if it was never used).",
        )
    if not torch.allclose(grad_M.to(F64), ref_M, rtol=1e-4, atol=1e-5):
        fail(name, "the gradient with respect to M is wrong (compare with central differences).")
    return passed(name, "cv2.warpAffine's output, with gradients to the image and to M.")


# ----------------------------------------------------------------------------- 5.4


def _registration_pair() -> tuple[Tensor, Tensor, Tensor]:
    """A smooth moving image, the true map and the fixed image it produces."""
    moving = synthetic_scene(48, 64, dtype=F64)
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=F64) / 16
    for _ in range(2):  # blur: a wider basin of attraction for gradient descent
        moving = F.conv2d(
            F.pad(moving[:, None], (2, 2, 0, 0), mode="replicate"), kernel.reshape(1, 1, 1, 5)
        )[:, 0]
        moving = F.conv2d(
            F.pad(moving[:, None], (0, 0, 2, 2), mode="replicate"), kernel.reshape(1, 1, 5, 1)
        )[:, 0]
    M_true = rotation_matrix_2d((31.5, 23.5), 6.0, 1.04)
    M_true = M_true + torch.tensor([[0.0, 0.0, 1.6], [0.0, 0.0, -1.1]], dtype=F64)
    fixed = warp_affine_naive(moving, M_true, (48, 64))
    return moving, fixed, M_true


def _displacement(M: Tensor, M_true: Tensor, size: tuple[int, int]) -> float:
    """Largest distance in pixels between where M and M_true send the image's pixels."""
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten(), torch.ones(h * w, dtype=F64)])
    return ((M.to(F64) - M_true) @ points).norm(dim=0).max().item()


def check_register(register: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 5.4: ``register(moving, fixed)`` -> ``M`` with ``warp(moving, M) ~ fixed``."""
    name = "Exercise 5.4 (image registration)"
    moving, fixed, M_true = _registration_pair()
    got = answer_tensor(name, attempt(name, register, moving.clone(), fixed.clone()), "M")
    if got.shape != (2, 3):
        fail(name, f"return the (2, 3) matrix M, got shape {tuple(got.shape)}.")
    M = got.detach().to(F64)
    if not torch.isfinite(M).all():
        fail(name, "M has NaN or infinite entries: is the learning rate too large?")
    identity = torch.eye(2, 3, dtype=F64)
    if torch.allclose(M, identity, atol=1e-8):
        fail(
            name,
            "M is still the identity: the optimiser never moved it. " + _CONSTANT_M,
        )
    error = _displacement(M, M_true, (48, 64))
    if error < 0.1:
        return passed(name, f"M is within {error:.3f} pixel of the true map.")
    if _displacement(M, invert_affine(M_true), (48, 64)) < 0.5:
        fail(
            name,
            "you found the inverse map (fixed to moving): warp_affine(moving, M) should "
            "look like fixed, with M mapping moving's pixels to fixed's.",
        )
    fail(
        name,
        f"M sends some pixels {error:.2f} pixels away from where the true map sends them "
        "(need < 0.1). Take more steps, or scale the steps of the linear part (a unit "
        "change there moves far pixels by tens of pixels) and of the translation "
        "differently.",
    )
