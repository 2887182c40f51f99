"""Checks for chapter 1, orthogonal gradients.

Each check takes the student's function, runs it on inputs of its own and
recognises the usual mistakes: ``@`` on images (a batched matrix product, not a
dot product), exact ``== 0`` tests, projecting onto the gradient instead of the
image, whole-batch or per-channel projections where per-sample ones are meant,
and division by a zero norm.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gradbook.exercises._core import ExerciseFailed, Passed, answer_tensor, attempt, fail, passed
from gradbook.projection import cosine, orthogonal_component

_MATMUL_HINT = (
    "`@` (torch.matmul) on tensors of rank 3 or more is a batched matrix product, "
    "not a dot product. Treat each tensor as one long vector first."
)


def _data(seed: int, *shape: int, dtype=torch.float64) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _call_dot(name: str, dot: Callable, a: Tensor, b: Tensor) -> object:
    """Call the student's ``dot``; turn the typical shape errors into hints."""
    try:
        return attempt(name, dot, a, b)
    except ExerciseFailed as error:
        cause = str(error.__cause__ or "")
        if "1D tensors expected" in cause:
            fail(name, "torch.dot only accepts 1-D tensors: flatten both images first.")
        if "size" in cause or "shape" in cause:
            fail(name, _MATMUL_HINT)
        raise


def check_dot(dot: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 1.1: ``dot(a, b)`` is the inner product of two same-shape tensors as vectors."""
    name = "Exercise 1.1 (dot product of two images)"
    a, b = _data(0, 3, 4, 4), _data(1, 3, 4, 4)
    expected = (a * b).sum()
    got = answer_tensor(name, _call_dot(name, dot, a, b), "the inner product")
    if got.shape == torch.matmul(a, b).shape and torch.allclose(got, torch.matmul(a, b)):
        fail(name, _MATMUL_HINT)
    if got.shape == a.shape:
        fail(name, "you returned a tensor the shape of the images: multiply, then sum everything.")
    if got.numel() != 1:
        fail(name, f"the inner product is one number, you returned shape {tuple(got.shape)}.")
    if not torch.allclose(got.reshape(()), expected, rtol=1e-10, atol=1e-12):
        fail(name, f"expected {expected.item():.6f}, got {got.reshape(()).item():.6f}.")
    # a non-square case, where a matrix product cannot even be formed
    a2, b2 = _data(2, 2, 3, 5), _data(3, 2, 3, 5)
    got2 = answer_tensor(name, _call_dot(name, dot, a2, b2), "the inner product")
    if got2.numel() != 1 or not torch.allclose(got2.reshape(()), (a2 * b2).sum(), rtol=1e-10):
        fail(name, "right for square images but wrong for a 2 x 3 x 5 tensor: " + _MATMUL_HINT)
    return passed(name, "a flattened inner product, whatever the shape.")


def check_orthogonal_part(orthogonal_part: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 1.2: ``orthogonal_part(grad, image)``: ``grad`` minus its part along ``image``."""
    name = "Exercise 1.2 (orthogonal component)"
    image = _data(10, 3, 8, 8).abs() + 0.5  # norm far from 1, so norm vs norm^2 shows
    grad = _data(11, 3, 8, 8)
    expected = orthogonal_component(grad, image)
    got = answer_tensor(name, attempt(name, orthogonal_part, grad, image), "the component")
    if got.shape != grad.shape:
        fail(name, f"expected the gradient's shape {tuple(grad.shape)}, got {tuple(got.shape)}.")
    if torch.allclose(got, orthogonal_component(grad, grad), atol=1e-8) or (
        abs(cosine(got, grad).item()) < 1e-8 and abs(cosine(got, image).item()) > 1e-6
    ):
        fail(name, "your result is orthogonal to the gradient, not to the image: project onto x.")
    not_squared = grad - (grad * image).sum() / image.norm() * image
    if torch.allclose(got, not_squared, atol=1e-8):
        fail(name, "divide <g, x> by ||x||^2 (the squared norm), not by ||x||.")
    if not torch.allclose(got, expected, rtol=1e-8, atol=1e-10):
        c = cosine(got, image).item()
        fail(name, f"not the orthogonal component (cosine with the image is {c:.2e}).")
    zero = torch.zeros_like(image)
    at_zero = answer_tensor(name, attempt(name, orthogonal_part, grad, zero), "the component")
    if not torch.isfinite(at_zero).all():
        fail(
            name,
            "a zero image gives 0/0 = NaN. A zero vector spans nothing: return the "
            "gradient unchanged in that case.",
        )
    if not torch.allclose(at_zero, grad):
        fail(name, "for a zero image nothing should be removed: return the gradient unchanged.")
    return passed(name, "orthogonal to the image, and safe for a zero image.")


def check_is_orthogonal(is_orth: Callable[[Tensor, Tensor], bool]) -> Passed:
    """Exercise 1.3: ``is_orth(u, v)`` decides orthogonality in a scale-free, rounding-aware way."""
    name = "Exercise 1.3 (testing orthogonality)"
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(22))
    grad = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(23))
    orth = orthogonal_component(grad, image)  # float32: orthogonal up to rounding
    if (orth * image).sum().item() == 0.0:  # pragma: no cover - guards the test data itself
        raise RuntimeError("test data happens to be exactly orthogonal; change the seed")
    verdict = attempt(name, is_orth, orth, image)
    if not bool(verdict):
        fail(
            name,
            "a float32 projection is orthogonal only up to rounding: an exact `== 0` "
            "test (or a tolerance too tight) rejects it. Compare a scale-free quantity "
            "with a tolerance.",
        )
    if not bool(attempt(name, is_orth, orth * 1e4, image * 1e4)):
        fail(
            name,
            "scaling both tensors by 1e4 should not change the verdict: the raw inner "
            "product grows with the scale, so a fixed threshold on it is not scale-free.",
        )
    small_u = torch.tensor([1.0, 1.0, 0.0]) * 1e-4
    small_v = torch.tensor([1.0, 0.0, 0.0]) * 1e-4
    if bool(attempt(name, is_orth, small_u, small_v)):
        fail(
            name,
            "two small vectors 45 degrees apart were called orthogonal: their inner "
            "product is tiny only because they are small. Normalise first.",
        )
    if bool(attempt(name, is_orth, grad, image)):
        fail(name, "a random gradient and its image are not orthogonal, but you said they are.")
    return passed(name, "scale-free and tolerant of rounding.")


def check_project_batch(project_batch: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 1.4: ``project_batch(grads, images)`` projects each sample of ``(B, C, H, W)``."""
    name = "Exercise 1.4 (a batch of images)"
    images = _data(30, 4, 3, 6, 6).abs() + 0.1
    grads = _data(31, 4, 3, 6, 6) + 0.5
    expected = orthogonal_component(grads, images, dims=(1, 2, 3))
    got = answer_tensor(name, attempt(name, project_batch, grads, images), "the projected batch")
    if got.shape != grads.shape:
        fail(name, f"expected shape {tuple(grads.shape)}, got {tuple(got.shape)}.")
    if torch.allclose(got, orthogonal_component(grads, images), atol=1e-8):
        fail(
            name,
            "you projected the whole batch as one vector: the batch is orthogonal as a "
            "whole, but each sample is not orthogonal to its own image. Reduce over "
            "(C, H, W) only.",
        )
    if torch.allclose(got, orthogonal_component(grads, images, dims=(2, 3)), atol=1e-8):
        fail(
            name,
            "you projected each channel separately: that removes C directions per sample "
            "instead of one, so it also changes the part of the gradient that was already "
            "orthogonal. Treat each whole sample (C, H, W) as one vector.",
        )
    if not torch.allclose(got, expected, rtol=1e-8, atol=1e-10):
        worst = cosine(got, images, dims=(1, 2, 3)).abs().max().item()
        fail(name, f"not the per-sample orthogonal component (worst |cosine| {worst:.2e}).")
    images_with_zero = images.clone()
    images_with_zero[2] = 0
    got_zero = answer_tensor(
        name, attempt(name, project_batch, grads, images_with_zero), "the projected batch"
    )
    if not torch.isfinite(got_zero).all():
        fail(name, "a zero image in the batch produced NaN: guard the division by its norm.")
    if not torch.allclose(got_zero[2], grads[2]):
        fail(name, "the gradient of a zero image should be left unchanged.")
    return passed(name, "each sample orthogonal to its own image.")
