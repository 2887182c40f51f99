"""Checks for chapter 1, orthogonal gradients.

Each check takes the student's function, runs it on inputs of its own and
recognises the usual mistakes: ``@`` on images (a batched matrix product, not a
dot product), exact ``== 0`` tests, projecting onto the gradient instead of the
image, a zero-image guard that tests the sum instead of the norm, an epsilon in
the divisor, a ``torch.where`` guard whose gradient is NaN, whole-batch or
per-channel projections where per-sample ones are meant, a loop over the batch,
and a step on the sphere that drifts off it. Calling the gradbook function that
solves an exercise is reported as such.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from gradbook.exercises._core import (
    Passed,
    answer_tensor,
    attempt,
    close,
    diagnose,
    fail,
    forbid,
    passed,
    randn,
)
from gradbook.projection import (
    cosine,
    inner,
    is_orthogonal,
    orthogonal_component,
    orthogonal_to_subspace,
    parallel_component,
    sphere_step,
)

F64 = torch.float64

_MATMUL_HINT = (
    "`@` (torch.matmul) on tensors of rank 3 or more is a batched matrix product, "
    "not a dot product. Treat each tensor as one long vector first."
)
_DOT_HINTS = {
    "1D tensors expected": "torch.dot only accepts 1-D tensors: flatten both tensors first.",
    "size": _MATMUL_HINT,
    "shape": _MATMUL_HINT,
}
#: Everything in gradbook.projection that computes a projection.
_PROJECTIONS = (orthogonal_component, parallel_component, orthogonal_to_subspace)


def _scalar(name: str, value: object, what: str) -> Tensor:
    """The student's one-number answer as a 0-d tensor, or a failure naming the shape."""
    got = answer_tensor(name, value, what)
    if got.numel() != 1:
        fail(name, f"{what} is one number, you returned shape {tuple(got.shape)}.")
    return got.reshape(())


def _on_copies(
    name: str,
    answer: Callable,
    *tensors: Tensor,
    names: tuple[str, ...] = ("grad", "image"),
    hints: dict | None = None,
) -> object:
    """``attempt`` on copies of ``tensors``; fail if the answer changed one of them in place."""
    copies = [tensor.clone() for tensor in tensors]
    result = attempt(name, answer, *copies, hints=hints)
    for label, tensor, copy in zip(names, tensors, copies, strict=False):
        if not torch.equal(tensor, copy):
            fail(
                name,
                f"your function changed its argument `{label}` in place, so the caller's "
                "tensor is lost. Compute the result out of place (a - b, not a -= b).",
            )
    return result


class _OperationCounter(TorchFunctionMode):
    """Counts the torch functions and tensor methods called while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _operations(name: str, answer: Callable, *args: Tensor) -> int:
    """How many tensor operations ``answer(*args)`` runs (to tell a loop from broadcasting)."""
    counter = _OperationCounter()
    with counter:
        attempt(name, answer, *args)
    return counter.count


# Exercise 1.1 ------------------------------------------------------------------------


def check_dot(dot: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 1.1: ``dot(a, b)`` is the inner product of two same-shape tensors as vectors."""
    name = "Exercise 1.1 (the inner product of two images)"
    a, b = randn(0, 3, 4, 4), randn(1, 3, 4, 4)
    expected = (a.flatten()[:, None] * b.flatten()[:, None]).sum()
    a2, b2 = randn(2, 2, 3, 5), randn(3, 2, 3, 5)  # no matrix product of these exists
    expected2 = (a2.flatten()[:, None] * b2.flatten()[:, None]).sum()
    batched_matmul = torch.matmul(a, b)
    with forbid(inner):
        got = answer_tensor(
            name,
            _on_copies(name, dot, a, b, names=("a", "b"), hints=_DOT_HINTS),
            "the inner product",
        )
        diagnose(
            name,
            got,
            [
                (batched_matmul, _MATMUL_HINT),
                (
                    lambda g: g.shape == a.shape,
                    "you returned a tensor the shape of the images: multiply, then add "
                    "up everything.",
                ),
            ],
        )
        got = _scalar(name, got, "the inner product")
        diagnose(
            name,
            got,
            [
                (expected / a.numel(), "that is the mean of the products: add them up instead."),
                (
                    a.norm() * b.norm(),
                    "that is ||a|| ||b||, an upper bound of the inner product "
                    "(Cauchy-Schwarz), not the inner product itself.",
                ),
                ((a * a).sum(), "that is <a, a>: the second argument was not used."),
            ],
        )
        if not close(got, expected, rtol=1e-10, atol=1e-12):
            fail(name, "not the inner product: multiply the entries pairwise and add them up.")
        got2 = _scalar(
            name,
            _on_copies(name, dot, a2, b2, names=("a", "b"), hints=_DOT_HINTS),
            "the inner product",
        )
        if not close(got2, expected2, rtol=1e-10, atol=1e-12):
            fail(
                name, "right for one 3 x 4 x 4 pair but wrong for a 2 x 3 x 5 pair. " + _MATMUL_HINT
            )
    return passed(name, "the inner product of two tensors of shapes (3, 4, 4) and (2, 3, 5).")


# Exercise 1.2 ------------------------------------------------------------------------


def _grads_through(
    name: str, answer: Callable, grad: Tensor, image: Tensor, weights: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Run ``answer`` on leaf copies of ``grad`` and ``image``; return the value and the
    gradients of ``<weights, answer(grad, image)>`` with respect to both (zeros where unused)."""
    g = grad.clone().requires_grad_(True)
    x = image.clone().requires_grad_(True)
    out = answer_tensor(name, attempt(name, answer, g, x), "the component", tuple(grad.shape))
    if not out.requires_grad:
        fail(
            name,
            "your result has no gradient (it left the graph: .item(), float(), .detach(), "
            "torch.no_grad or a NumPy round trip). Stay in torch operations on the inputs.",
        )
    dg, dx = torch.autograd.grad((out * weights).sum(), (g, x), allow_unused=True)
    dg = torch.zeros_like(grad) if dg is None else dg
    dx = torch.zeros_like(image) if dx is None else dx
    return out.detach(), dg, dx


def _reference_grads(
    grad: Tensor, image: Tensor, weights: Tensor, dims=None
) -> tuple[Tensor, Tensor]:
    g = grad.clone().requires_grad_(True)
    x = image.clone().requires_grad_(True)
    out = orthogonal_component(g, x, dims)
    return torch.autograd.grad((out * weights).sum(), (g, x))


def _nan_gradient_message(what: str) -> str:
    return (
        f"{what} your value is right, but the gradient through it is NaN. torch.where "
        "(or a mask) picks a value, yet the gradient still flows through both branches, "
        "and the branch you discard divides by zero: 0 * inf = NaN. Make the divisor "
        "itself safe where the image is zero, before dividing."
    )


def check_orthogonal_part(orthogonal_part: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 1.2: ``orthogonal_part(grad, image)``: ``grad`` minus its part along ``image``,
    ``grad`` itself for a zero image, differentiable with finite gradients everywhere."""
    name = "Exercise 1.2 (the orthogonal component)"
    image = randn(10, 3, 8, 8).abs() + 0.5  # norm far from 1, so norm vs norm^2 shows
    grad = randn(11, 3, 8, 8)
    weights = randn(12, 3, 8, 8)
    expected = orthogonal_component(grad, image)
    ref_dg, ref_dx = _reference_grads(grad, image, weights)
    par = parallel_component(grad, image)
    swapped = orthogonal_component(image, grad)
    unscaled = (grad * image).sum() * image
    wrong = [
        (
            lambda got: (
                close(got, swapped)
                or (abs(cosine(got, grad).item()) < 1e-8 and abs(cosine(got, image).item()) > 1e-6)
            ),
            "your result is orthogonal to the gradient, not to the image: remove from g "
            "its part along x.",
        ),
        (
            grad - (grad * image).sum() / image.norm() * image,
            "divide <g, x> by ||x||^2 (the squared norm), not by ||x||.",
        ),
        (grad - unscaled, "the part along x is <g, x> x / ||x||^2: you did not divide by ||x||^2."),
        (par, "you returned the part of g along x; the exercise asks for what is left of g."),
        (grad + par, "the sign: subtract the part along x, do not add it."),
        (
            orthogonal_component(grad, image, dims=(1, 2)),
            "you projected each channel separately: the image is one vector, so take one "
            "inner product over all its entries.",
        ),
    ]
    # a nonzero image whose entries add up to exactly 0 (small integers: no rounding)
    balanced = torch.randint(-3, 4, (3, 8, 8), generator=torch.Generator().manual_seed(13))
    balanced = balanced.to(F64)
    balanced[0, 0, 0] -= balanced.sum()
    if balanced.sum().item() != 0 or balanced.abs().sum() == 0:  # pragma: no cover
        raise RuntimeError("test data: the balanced image must be nonzero with sum 0")
    expected_balanced = orthogonal_component(grad, balanced)
    tiny = image * 1e-9
    expected_tiny = orthogonal_component(grad, tiny)
    zero = torch.zeros_like(image)

    with forbid(*_PROJECTIONS):
        got = answer_tensor(name, _on_copies(name, orthogonal_part, grad, image), "the component")
        if got.shape != grad.shape:
            fail(
                name, f"expected the gradient's shape {tuple(grad.shape)}, got {tuple(got.shape)}."
            )
        diagnose(name, got, wrong, rtol=1e-8, atol=1e-10)
        if not close(got, expected, rtol=1e-8, atol=1e-10):
            c = cosine(got.to(F64), image).item()
            fail(name, f"not the orthogonal component (cosine with the image is {c:.2e}).")

        got_balanced = _on_copies(name, orthogonal_part, grad, balanced)
        if close(got_balanced, grad):
            fail(
                name,
                "your zero-image test fired for an image that is not zero: its positive and "
                "negative entries add up to 0. A sum (or a mean) of zero does not make a "
                "vector zero; test its norm, or every entry.",
            )
        if not close(got_balanced, expected_balanced, rtol=1e-8, atol=1e-10):
            fail(name, "not the orthogonal component for an image with negative entries.")

        got_tiny = _on_copies(name, orthogonal_part, grad, tiny)
        if not close(got_tiny, expected_tiny, rtol=1e-6, atol=1e-8):
            fail(
                name,
                "right for an ordinary image, wrong for the same image times 1e-9: a small "
                "image still spans a direction. An epsilon added to ||x||^2 (or a clamp) "
                "changes the answer for small images; treat only an exactly zero image "
                "specially.",
            )

        at_zero = answer_tensor(
            name, _on_copies(name, orthogonal_part, grad, zero), "the component"
        )
        if not torch.isfinite(at_zero).all():
            fail(
                name,
                "a zero image gives 0/0 = NaN. A zero vector spans nothing: return the "
                "gradient unchanged in that case.",
            )
        if not close(at_zero, grad):
            fail(name, "for a zero image nothing should be removed: return the gradient unchanged.")

        _, dg, dx = _grads_through(name, orthogonal_part, grad, image, weights)
        if not (
            close(dg, ref_dg, rtol=1e-7, atol=1e-9) and close(dx, ref_dx, rtol=1e-7, atol=1e-9)
        ):
            fail(
                name,
                "the values are right but the gradient through your function is not: part "
                "of the computation left the graph (.item(), float(), .detach() or "
                "torch.no_grad), so autograd treats it as a constant.",
            )
        _, dg0, dx0 = _grads_through(name, orthogonal_part, grad, zero, weights)
        if not (torch.isfinite(dg0).all() and torch.isfinite(dx0).all()):
            fail(name, _nan_gradient_message("at a zero image"))
        if not close(dg0, weights):
            fail(
                name,
                "at a zero image the result is the gradient itself, so the gradient with "
                "respect to grad must pass through unchanged.",
            )
    return passed(
        name,
        "right for ordinary, tiny, zero-sum and zero images, with correct and finite gradients.",
    )


# Exercise 1.3 ------------------------------------------------------------------------


def check_is_orthogonal(is_orth: Callable[[Tensor, Tensor], bool]) -> Passed:
    """Exercise 1.3: ``is_orth(u, v)`` decides orthogonality in a scale-free, rounding-aware way;
    a zero tensor is orthogonal to every tensor."""
    name = "Exercise 1.3 (testing orthogonality)"
    gen = torch.Generator().manual_seed(22)
    image = torch.rand(3, 64, 64, generator=gen)
    grad = randn(23, 3, 64, 64, dtype=torch.float32)
    orth = orthogonal_component(grad, image)  # float32: orthogonal up to rounding
    if (orth * image).sum().item() == 0.0:  # pragma: no cover - guards the test data itself
        raise RuntimeError("test data happens to be exactly orthogonal; change the seed")
    # a pair 0.06 degrees away from orthogonal: |cos| = 1e-3, far above rounding
    unit = image / image.norm()
    orth_unit = orth / orth.norm()
    almost = (orth_unit + 1e-3 * unit).to(torch.float32)
    hints = {
        "1D tensors expected": "torch.dot only accepts 1-D tensors: flatten both tensors first.",
        "more than one value is ambiguous": (
            "you turned a tensor of many entries into True/False: the quantity you compare "
            "must be one number. (" + _MATMUL_HINT + ")"
        ),
        "size": _MATMUL_HINT,
    }

    def verdict(u: Tensor, v: Tensor) -> bool:
        result = attempt(name, is_orth, u, v, hints=hints)
        if isinstance(result, Tensor) and result.numel() != 1:
            fail(name, f"return one True or False, got a tensor of shape {tuple(result.shape)}.")
        return bool(result)

    with forbid(is_orthogonal, cosine):
        if not verdict(orth, image):
            fail(
                name,
                "a float32 projection is orthogonal only up to rounding: an exact `== 0` "
                "test (or a tolerance too tight) rejects it. Compare a scale-free quantity "
                "with a tolerance.",
            )
        if not verdict(orth * 1e4, image * 1e4):
            fail(
                name,
                "scaling both tensors by 1e4 should not change the verdict: the raw inner "
                "product grows with the scale, so a fixed threshold on it is not scale-free.",
            )
        small_u = torch.tensor([1.0, 1.0, 0.0]) * 1e-4
        small_v = torch.tensor([1.0, 0.0, 0.0]) * 1e-4
        if verdict(small_u, small_v):
            fail(
                name,
                "two small vectors 45 degrees apart were called orthogonal: their inner "
                "product is tiny only because they are small. Normalise first.",
            )
        if verdict(grad + 0.5, image):
            fail(name, "a random gradient and its image are not orthogonal, but you said they are.")
        if verdict(almost, image):
            fail(
                name,
                "a pair whose cosine is 1e-3 was called orthogonal: your tolerance is far "
                "above rounding (a float32 projection leaves a cosine below 1e-7).",
            )
        for u, v in ((torch.zeros_like(image), image), (orth, torch.zeros_like(orth))):
            if not verdict(u, v):
                fail(
                    name,
                    "a zero tensor is orthogonal to every tensor (<0, v> = 0), but you said "
                    "no. Dividing by its zero norm gives NaN, and a comparison with NaN is "
                    "always False: treat a zero norm first.",
                )
    return passed(
        name,
        "accepts a float32 projection at two scales, rejects small, random and 1e-3 "
        "cosines, and accepts zero tensors.",
    )


# Exercise 1.4 ------------------------------------------------------------------------


def check_project_batch(project_batch: Callable[[Tensor, Tensor], Tensor]) -> Passed:
    """Exercise 1.4: ``project_batch(grads, images)`` projects each sample of ``(B, C, H, W)``,
    without a loop over the batch, leaving samples with a zero image unchanged."""
    name = "Exercise 1.4 (a batch of images)"
    images = randn(30, 4, 3, 6, 5).abs() + 0.1
    grads = randn(31, 4, 3, 6, 5) + 0.5
    weights = randn(32, 4, 3, 6, 5)
    per_sample = (1, 2, 3)
    expected = orthogonal_component(grads, images, dims=per_sample)
    images_with_zero = images.clone()
    images_with_zero[2] = 0
    expected_zero = orthogonal_component(grads, images_with_zero, dims=per_sample)
    _, ref_dx = _reference_grads(grads, images, weights, per_sample)
    wrong = [
        (
            orthogonal_component(grads, images),
            "you projected the whole batch as one vector: the batch is orthogonal as a "
            "whole, but each sample is not orthogonal to its own image. Reduce over "
            "(C, H, W) only.",
        ),
        (
            orthogonal_component(grads, images, dims=(2, 3)),
            "you projected each channel separately: that removes C directions per sample "
            "instead of one, so it also changes the part of the gradient that was already "
            "orthogonal. Treat each whole sample (C, H, W) as one vector.",
        ),
        (
            orthogonal_component(grads, images[:1], dims=per_sample),
            "every sample was projected off the first image: use each sample's own image.",
        ),
    ]
    hints = {
        "must match the size": (
            "a per-sample sum of shape (B,) does not broadcast against (B, C, H, W): "
            "keep the summed dimensions (keepdim=True) so that it has shape (B, 1, 1, 1)."
        ),
    }
    small_g, small_x = grads[:2], images[:2]
    large_g, large_x = torch.cat([grads] * 3), torch.cat([images] * 3)

    with forbid(*_PROJECTIONS):
        got = answer_tensor(
            name,
            _on_copies(name, project_batch, grads, images, names=("grads", "images"), hints=hints),
            "the projected batch",
        )
        if got.shape != grads.shape:
            fail(name, f"expected shape {tuple(grads.shape)}, got {tuple(got.shape)}.")
        diagnose(name, got, wrong, rtol=1e-8, atol=1e-8)
        if not close(got, expected, rtol=1e-8, atol=1e-10):
            worst = cosine(got.to(F64), images, dims=per_sample).abs().max().item()
            fail(name, f"not the per-sample orthogonal component (worst |cosine| {worst:.2e}).")

        got_zero = answer_tensor(
            name,
            _on_copies(name, project_batch, grads, images_with_zero, names=("grads", "images")),
            "the projected batch",
        )
        if not torch.isfinite(got_zero).all():
            fail(name, "a zero image in the batch produced NaN: guard the division by its norm.")
        if close(got_zero, grads):
            fail(
                name,
                "one zero image made you return the whole batch unchanged: the other "
                "samples still need their projection. Guard each sample separately.",
            )
        if not close(got_zero, expected_zero, rtol=1e-8, atol=1e-10):
            fail(
                name,
                "with one zero image in the batch: its gradient should be left unchanged, "
                "and every other sample projected as before.",
            )

        _, dg0, dx0 = _grads_through(name, project_batch, grads, images_with_zero, weights)
        if not (torch.isfinite(dg0).all() and torch.isfinite(dx0).all()):
            fail(name, _nan_gradient_message("for the batch with a zero image"))
        _, _, dx = _grads_through(name, project_batch, grads, images, weights)
        if not close(dx, ref_dx, rtol=1e-7, atol=1e-9):
            fail(
                name,
                "the values are right but the gradient with respect to the images is not: "
                "part of the computation left the graph (.item(), .detach(), torch.no_grad).",
            )

        if _operations(name, project_batch, large_g, large_x) > _operations(
            name, project_batch, small_g, small_x
        ):
            fail(
                name,
                "your function runs more tensor operations for a batch of 12 than for a "
                "batch of 2: it loops over the samples. Reduce over (C, H, W) for all "
                "samples at once and let broadcasting do the rest.",
            )
    return passed(
        name,
        "each sample orthogonal to its own image, zero images kept, finite gradients, "
        "and the same operations for any batch size.",
    )


# Stretch exercise --------------------------------------------------------------------


def check_sphere_descent(
    sphere_descent: Callable[[Callable[[Tensor], Tensor], Tensor, float, int], Tensor],
) -> Passed:
    """Stretch exercise: ``sphere_descent(loss_fn, x0, lr, steps)`` runs Riemannian gradient
    descent on the sphere ``||x|| = ||x0||`` (tangent step, then rescaling) and returns x."""
    name = "Exercise 1.5 (Stretch: gradient descent on a sphere)"
    # A symmetric matrix with known eigenvalues 1..6 and a random eigenbasis.
    q, _ = torch.linalg.qr(randn(40, 6, 6))
    eigenvalues = torch.arange(1.0, 7.0, dtype=F64)
    a = q @ torch.diag(eigenvalues) @ q.T
    x0 = randn(41, 2, 3)
    x0 = 3.0 * x0 / x0.norm()
    radius = x0.norm()
    lr, steps = 0.1, 300

    def rayleigh(x: Tensor) -> Tensor:
        flat = x.reshape(-1)
        return 0.5 * flat @ (a @ flat)

    def euclidean_gradient(x: Tensor) -> Tensor:
        return (a @ x.reshape(-1)).reshape(x.shape)

    # reference trajectory (computed before the student's code runs)
    trajectory = [x0]
    for _ in range(3):
        trajectory.append(sphere_step(trajectory[-1], euclidean_gradient(trajectory[-1]), lr))
    ev = q[:, 0].reshape(2, 3)  # eigenvector of the smallest eigenvalue
    minimiser = radius * ev * torch.sign((ev * x0).sum())
    g0 = euclidean_gradient(x0)
    tangent0 = orthogonal_component(g0, x0)
    first_step_mistakes = [
        (
            x0 - lr * tangent0,
            "the step left the sphere: after the tangent step the norm grows (by "
            "lr^2 ||g_perp||^2 in its square); rescale the point back to the norm of x0.",
        ),
        (
            (x0 - lr * tangent0) / (x0 - lr * tangent0).norm(),
            "you rescaled to norm 1: the sphere is the one of radius ||x0||, keep that norm.",
        ),
        (
            (x0 - lr * g0) * radius / (x0 - lr * g0).norm(),
            "you stepped along the whole Euclidean gradient and then rescaled: remove the "
            "gradient's part along x first (its tangent part is the Riemannian gradient).",
        ),
        (
            (x0 + lr * tangent0) * radius / (x0 + lr * tangent0).norm(),
            "you stepped uphill: descent goes against the gradient.",
        ),
        (
            x0 - lr * g0,
            "that is a plain gradient step: project onto the tangent space and rescale.",
        ),
    ]

    visited: list[Tensor] = []

    def loss_fn(x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.shape != x0.shape:
            fail(name, f"call loss_fn with a tensor of x0's shape {tuple(x0.shape)}.")
        if not visited or not torch.equal(visited[-1], x.detach()):
            visited.append(x.detach().clone())
        return rayleigh(x)

    x0_given = x0.clone()
    with forbid(sphere_step, *_PROJECTIONS):
        result = attempt(name, sphere_descent, loss_fn, x0_given, lr, steps)
    got = answer_tensor(name, result, "the final point", tuple(x0.shape)).detach()
    if not torch.equal(x0_given, x0):
        fail(name, "your function changed x0 in place: work on a copy.")
    if len(visited) < 3:
        fail(
            name,
            f"loss_fn was evaluated at {len(visited)} distinct point(s) in {steps} steps: "
            "take the gradient of loss_fn at the current point in every step.",
        )
    if not close(visited[0], x0):
        fail(name, "the first evaluation of loss_fn should be at x0.")
    diagnose(name, visited[1], first_step_mistakes, rtol=1e-9, atol=1e-12)
    if not close(visited[1], trajectory[1], rtol=1e-9, atol=1e-12):
        fail(name, "the first step does not go where a Riemannian gradient step goes.")
    if not close(visited[2], trajectory[2], rtol=1e-9, atol=1e-12):
        fail(
            name,
            "the first step is right, the second is not: .grad accumulates over backward() "
            "calls, so the second gradient includes the first. Zero it between steps, or "
            "use torch.autograd.grad.",
        )
    drift = max(abs(x.norm().item() / radius.item() - 1) for x in [*visited, got])
    if drift > 1e-12:
        fail(
            name,
            f"the norm changed by up to {drift:.1e} (relative) along the way: rescale after "
            "every step, to the norm of x0.",
        )
    if not close(got, minimiser, rtol=1e-6, atol=1e-6):
        fail(
            name,
            "the returned point is not the minimiser (an eigenvector of the smallest "
            f"eigenvalue, of norm ||x0||) after {steps} steps: return x after the last step.",
        )
    return passed(
        name,
        f"the first steps match, the norm stays within 1e-12 over {steps} steps, and the "
        "result is the known minimiser (an eigenvector of the smallest eigenvalue).",
    )
