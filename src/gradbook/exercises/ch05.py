"""Checks for chapter 5, gradients through an affine warp.

Each check runs the student's function on inputs of its own and recognises the
usual mistakes, the forum's among them: ``.long()`` truncating toward zero instead
of flooring, a matrix copied out of the graph with ``torch.tensor(M)`` (a constant,
no gradient), bilinear weights computed after clamping the indices (extrapolation),
an unused border value, OpenCV's ``(width, height)`` order where ``(height, width)``
is meant, an ``align_corners`` setting that differs between ``theta`` and
``grid_sample``, a matrix that was not inverted, and the "detach trick" that gives
every sampled pixel a gradient of 1, and, when M is learnt, an optimiser that
never steps or steps too far.

While the student's function runs, the ``gradbook.warp`` functions that solve the
exercise are disabled (:func:`~gradbook.exercises._core.forbid`), so that
delegating to them is caught.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_pre_hook

from gradbook import warp as _warp
from gradbook.exercises._core import (
    ExerciseNotAttempted,
    Passed,
    answer_tensor,
    attempt,
    blame_earlier_stub,
    close,
    fail,
    forbid,
    passed,
)
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
    return close(a, b.to(F64), rtol=0, atol=atol)


#: The functions of the earlier exercises, by the names the notebook gives them.
_EARLIER = {
    "cv2_to_theta": "Exercise 5.1",
    "bilinear_sample": "Exercise 5.2",
    "warp": "Exercise 5.3",
    "similarity_matrix": "Exercise 5.4",
    "register_similarity": "Exercise 5.4",
}

#: What each exercise asks the student to write, and what in gradbook does it.
_SOLVERS: dict[str, tuple[Callable[..., Any], ...]] = {
    "theta": (
        _warp.affine_to_theta,
        _warp._theta_from_dst_to_src,
        _warp.normalization_matrix,
        _warp._normalization_matrix,
        _warp._axis_normalizations,
    ),
    "sample": (_warp.warp_affine, _warp.warp_affine_naive),
    "warp": (
        _warp.warp_affine,
        _warp.warp_affine_naive,
        _warp.warp_affine_cv2,
        _warp.affine_to_theta,
        _warp._theta_from_dst_to_src,
        _warp._affine_grid,
    ),
    "similarity": (_warp.rotation_matrix_2d,),
    # not the private helpers of warp_affine, which these two exercises use
    "register": (
        _warp.theta_to_affine,
        _warp.affine_to_theta,
        _warp.normalization_matrix,
        _warp._normalization_matrix,
    ),
}


def _run(exercise: str, solvers: str, answer: Callable[..., Any], *args: Any) -> Any:
    """``attempt`` with the solving gradbook functions disabled.

    A stub of an *earlier* exercise that the answer calls is reported as such (solve
    that one first), not as this exercise being unattempted.
    """
    try:
        with forbid(*_SOLVERS[solvers]):
            return attempt(exercise, answer, *args, hints=_HINTS)
    except ExerciseNotAttempted as error:
        blame_earlier_stub(exercise, answer, error, _EARLIER)
        raise


_DIVERGED = (
    "the optimisation diverged: the parameters ran off (M became NaN, infinite or "
    "singular, which the warp refuses, or sends pixels far outside the image). The step "
    "size (learning rate) is too large for at least one parameter: a step moves far "
    "pixels by many pixels. Reduce it, or give each kind of parameter its own step size."
)
_NO_GRAPH = (
    "the loss does not depend on your parameters through autograd: M was built outside "
    "the graph (`torch.tensor([[...]])` of tensors, `.detach()`, `.item()`, `.numpy()`). "
    "Build M with torch.stack/torch.cat from the parameters themselves."
)
_HINTS: dict[type[BaseException] | str, str] = {
    "expected finite entries": _DIVERGED,
    "is singular": _DIVERGED,
    "does not require grad and does not have a grad_fn": _NO_GRAPH,
}


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
    got = _run(name, "theta", cv2_to_theta, M.clone(), src_size, dst_size)
    got = answer_tensor(name, got, "theta")
    if got.shape == (3, 3):
        fail(name, "affine_grid takes the first two rows of the 3 x 3 matrix: shape (2, 3).")
    if got.shape != (2, 3):
        fail(name, f"theta has shape (2, 3), you returned shape {tuple(got.shape)}.")
    if _close(got, expected, atol=1e-6):
        return passed(
            name, "theta for non-square source and destination sizes, align_corners=False."
        )
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
    samples = _run(name, "sample", bilinear_sample, image_v, x_v, y_v, border)
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
            if what != "image":
                coordinate = x if what == "x" else y
                differs = ((grad - ref).abs() > 1e-9).to(torch.bool)
                integer = coordinate == torch.round(coordinate)
                if differs.any() and not (differs & ~integer).any():
                    fail(
                        name,
                        f"the gradient with respect to {what} is right at sub-pixel points but "
                        "not where the coordinate is an integer: there the interpolant has a "
                        "kink, and the neighbours must be floor(x) and floor(x) + 1 (the "
                        "slope of the cell to the right), as OpenCV and grid_sample use.",
                    )
            fail(name, f"the values are right but the gradient with respect to {what} is not.")
    return passed(
        name,
        "values inside, across the border and outside match, with the gradients to the image "
        "and to both coordinates.",
    )


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
    got = answer_tensor(
        name, _run(name, "warp", warp, image_v, M, dsize, border), "the warped image"
    )
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
    trick = _detach_trick_gradient(image, M, dsize, border, weights)
    if grad_image is not None and torch.allclose(grad_image.to(F64), trick, rtol=1e-4, atol=1e-6):
        fail(
            name,
            "this is the forum's detach trick, `(w * p).detach() + p - p.detach()`: the "
            "forward values are right, but the backward replaces each bilinear weight w by "
            "1, a wrong gradient that torch.autograd.gradcheck rejects (and with w detached "
            "no gradient reaches M). The output depends on a pixel through its weight, so "
            "the weight is its derivative; a pixel with weight 0 really has gradient 0. "
            "Plain `w * p` is already differentiable in both.",
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
        fail(
            name,
            "the image gradient is wrong: each pixel should receive the bilinear weights "
            "with which the output used it (and 0 if it was never used).",
        )
    if not torch.allclose(grad_M.to(F64), ref_M, rtol=1e-4, atol=1e-5):
        fail(name, "the gradient with respect to M is wrong (compare with central differences).")
    return passed(
        name,
        "the output of cv2.warpAffine for a non-square dsize and a border value, with the "
        "gradients to the image and to M.",
    )


# ----------------------------------------------------------------------------- 5.4


def _blurred_scene(height: int, width: int) -> Tensor:
    """A smooth ``(3, height, width)`` float64 scene: blur widens the basin of attraction."""
    image = synthetic_scene(height, width, dtype=F64)
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=F64) / 16
    for _ in range(2):
        image = F.conv2d(
            F.pad(image[:, None], (2, 2, 0, 0), mode="replicate"), kernel.reshape(1, 1, 1, 5)
        )[:, 0]
        image = F.conv2d(
            F.pad(image[:, None], (0, 0, 2, 2), mode="replicate"), kernel.reshape(1, 1, 5, 1)
        )[:, 0]
    return image


def _similarity(
    params: Tensor, size: tuple[int, int], *, radians: bool = False, center: str = "pixels"
) -> Tensor:
    """M for ``params = (angle, scale, tx, ty)``: cv2.getRotationMatrix2D about the centre, plus t.

    ``radians`` reads the angle in radians; ``center`` is ``"pixels"`` (``((W-1)/2,
    (H-1)/2)``, the exercise's), ``"half"`` (``(W/2, H/2)``) or ``"origin"``.
    """
    height, width = size
    cx, cy = {
        "pixels": ((width - 1) / 2, (height - 1) / 2),
        "half": (width / 2, height / 2),
        "origin": (0.0, 0.0),
    }[center]
    angle, scale, tx, ty = params.to(F64).unbind()
    angle = angle if radians else angle * (math.pi / 180)
    a, b = scale * torch.cos(angle), scale * torch.sin(angle)
    return torch.stack(
        [
            torch.stack([a, b, (1 - a) * cx - b * cy + tx]),
            torch.stack([-b, a, b * cx + (1 - a) * cy + ty]),
        ]
    )


_SIZE_54 = (36, 48)
_TRUE_54 = (5.0, 1.03, 1.2, -0.8)


def _similarity_pair() -> tuple[Tensor, Tensor, Tensor]:
    """The moving image, the fixed image (a similarity warp of it) and the true M."""
    moving = _blurred_scene(*_SIZE_54)
    M_true = _similarity(torch.tensor(_TRUE_54, dtype=F64), _SIZE_54)
    return moving, warp_affine_naive(moving, M_true, _SIZE_54), M_true


@contextlib.contextmanager
def _watch_optimisers() -> Iterator[dict[str, int]]:
    """Count the ``step()`` calls of every torch optimiser, and those that found a gradient."""
    record = {"steps": 0, "with_gradient": 0}

    def before_step(optimiser: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        record["steps"] += 1
        grads = [p.grad for group in optimiser.param_groups for p in group["params"]]
        if any(g is not None and bool((g != 0).any()) for g in grads):
            record["with_gradient"] += 1

    handle = register_optimizer_step_pre_hook(before_step)
    try:
        yield record
    finally:
        handle.remove()


def _never_moved(name: str, record: dict[str, int]) -> None:
    """Fail with the reason the parameters kept their starting values."""
    if record["steps"] == 0:
        fail(
            name,
            "the parameters never change: optimiser.step() is missing. loss.backward() only "
            "computes the gradients; step() is what moves the parameters.",
        )
    if record["with_gradient"] == 0:
        fail(
            name,
            "every optimiser.step() found no gradient, so the parameters never changed: "
            "call zero_grad() before backward(), not between backward() and step(), and "
            "check that the loss reaches the parameters (" + _NO_GRAPH + ")",
        )
    fail(
        name,
        "the parameters never changed although the optimiser stepped with a gradient: is "
        "the learning rate 0, or do you return the starting values instead of the "
        "optimised ones?",
    )


def check_register_similarity(register_similarity: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 5.4: ``register_similarity(moving, fixed)`` -> ``(angle, scale, tx, ty)``."""
    name = "Exercise 5.4 (registration with four parameters)"
    moving, fixed, M_true = _similarity_pair()
    with _watch_optimisers() as record:
        got = _run(name, "similarity", register_similarity, moving.clone(), fixed.clone())
    params = answer_tensor(name, got, "(angle, scale, tx, ty)")
    if params.shape != (4,):
        fail(
            name,
            "return the four numbers (angle, scale, tx, ty) as shape (4,), got "
            f"{tuple(params.shape)}.",
        )
    params = params.detach().to(F64)
    if not bool(torch.isfinite(params).all()):
        fail(name, _DIVERGED)
    if close(params, torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=F64), rtol=0, atol=1e-12):
        _never_moved(name, record)
    error = _displacement(_similarity(params, _SIZE_54), M_true, _SIZE_54)
    if error > math.hypot(*_SIZE_54):
        fail(name, _DIVERGED)
    if error < 0.05:
        return passed(name, "the four parameters give a map within 0.05 pixel of the true one.")
    conventions = [
        (
            dict(radians=True),
            "your angle is in radians: torch.cos and torch.sin take radians, but the "
            "exercise's angle is in degrees, like cv2.getRotationMatrix2D's. Convert inside "
            "M and return degrees.",
        ),
        (
            dict(center="origin"),
            "you rotated about the origin (0, 0), the top-left pixel: the exercise's angle "
            "and scale act about the image centre, with (tx, ty) added afterwards.",
        ),
        (
            dict(center="half"),
            "your centre is (W/2, H/2), half a pixel off: pixel centres sit at integer "
            "coordinates, so the image centre is ((W - 1)/2, (H - 1)/2).",
        ),
    ]
    for options, message in conventions:
        if _displacement(_similarity(params, _SIZE_54, **options), M_true, _SIZE_54) < 0.05:
            fail(name, message)
    flipped = params * torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=F64)
    if _displacement(_similarity(flipped, _SIZE_54), M_true, _SIZE_54) < 0.05:
        fail(
            name,
            "your angle has the wrong sign: in OpenCV's convention (y pointing down) M[0, 1] "
            "is +scale sin(angle) and M[1, 0] is -scale sin(angle).",
        )
    inverse = invert_affine(M_true)
    if _displacement(_similarity(params, _SIZE_54), inverse, _SIZE_54) < 0.5:
        fail(
            name,
            "you found the inverse map (fixed to moving): warp_affine(moving, M) should "
            "look like fixed, with M mapping moving's pixels to fixed's.",
        )
    fail(
        name,
        f"the map of your parameters sends some pixels {error:.2f} pixels away from where "
        "the true map sends them (need < 0.05). Take more steps, or give the angle "
        "(degrees), the scale (a change of 0.01 moves far pixels by a quarter pixel) and the "
        "shift (pixels) their own step sizes.",
    )


# ----------------------------------------------------------------------------- 5.5


def _registration_pair() -> tuple[Tensor, Tensor, Tensor]:
    """A smooth moving image, a general affine map (shear, anisotropic scale) and its result."""
    moving = _blurred_scene(48, 64)
    M_true = rotation_matrix_2d((31.5, 23.5), 6.0, 1.04)
    M_true = M_true + torch.tensor([[0.03, -0.02, 1.6], [0.02, -0.03, -1.1]], dtype=F64)
    fixed = warp_affine_naive(moving, M_true, (48, 64))
    return moving, fixed, M_true


def _displacement(M: Tensor, M_true: Tensor, size: tuple[int, int]) -> float:
    """Largest distance in pixels between where M and M_true send the image's pixels."""
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=F64), torch.arange(w, dtype=F64), indexing="ij")
    points = torch.stack([xs.flatten(), ys.flatten(), torch.ones(h * w, dtype=F64)])
    return ((M.to(F64) - M_true) @ points).norm(dim=0).max().item()


def check_register(register: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 5.5: ``register(moving, fixed)`` -> ``M`` with ``warp(moving, M) ~ fixed``."""
    name = "Exercise 5.5 (Stretch: recover a general affine map)"
    moving, fixed, M_true = _registration_pair()
    with _watch_optimisers() as record:
        got = _run(name, "register", register, moving.clone(), fixed.clone())
    got = answer_tensor(name, got, "M")
    if got.shape != (2, 3):
        fail(name, f"return the (2, 3) matrix M, got shape {tuple(got.shape)}.")
    M = got.detach().to(F64)
    if not torch.isfinite(M).all():
        fail(name, _DIVERGED)
    if torch.allclose(M, torch.eye(2, 3, dtype=F64), atol=1e-8):
        _never_moved(name, record)
    error = _displacement(M, M_true, (48, 64))
    if error > math.hypot(48, 64):
        fail(name, _DIVERGED)
    if error < 0.1:
        return passed(name, "M sends every pixel within 0.1 pixel of where the true map does.")
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
