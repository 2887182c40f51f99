"""gradbook.projection against an independent float64 NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradbook.projection import (
    cosine,
    inner,
    is_orthogonal,
    orthogonal_component,
    orthogonal_to_subspace,
    parallel_component,
    pcgrad,
    sphere_step,
)

# ---------------------------------------------------------------------------
# Independent references, written with NumPy in float64 and explicit loops.


def np_orthogonal(v: np.ndarray, r: np.ndarray, dims) -> np.ndarray:
    """Project group by group with explicit flattening (the textbook formula)."""
    r = np.broadcast_to(r, v.shape)
    if dims is None:
        dims = tuple(range(v.ndim))
    rest = [d for d in range(v.ndim) if d not in dims]
    out = np.empty_like(v, dtype=np.float64)
    for index in np.ndindex(*[v.shape[d] for d in rest]):
        sl = [slice(None)] * v.ndim
        for d, i in zip(rest, index, strict=True):
            sl[d] = i
        sl = tuple(sl)
        a, b = v[sl].astype(np.float64).ravel(), r[sl].astype(np.float64).ravel()
        bb = b @ b
        coef = 0.0 if bb == 0 else (a @ b) / bb
        out[sl] = (a - coef * b).reshape(v[sl].shape)
    return out


def np_parallel(v: np.ndarray, r: np.ndarray, dims) -> np.ndarray:
    """``((v . r) / (r . r)) r`` group by group, ``0`` where ``r`` is zero.

    ``r`` is first divided by its largest ``|entry|`` in the group, which leaves
    the projection unchanged (it is scale-free in ``r``) and keeps ``r . r`` from
    underflowing for subnormal references.
    """
    r = np.broadcast_to(r, v.shape)
    if dims is None:
        dims = tuple(range(v.ndim))
    rest = [d for d in range(v.ndim) if d not in dims]
    out = np.zeros(v.shape, dtype=np.float64)
    for index in np.ndindex(*[v.shape[d] for d in rest]):
        sl = [slice(None)] * v.ndim
        for d, i in zip(rest, index, strict=True):
            sl[d] = i
        sl = tuple(sl)
        a, b = v[sl].astype(np.float64).ravel(), r[sl].astype(np.float64).ravel()
        largest = np.abs(b).max(initial=0.0)
        if largest == 0:
            continue
        b = b / largest
        out[sl] = ((a @ b) / (b @ b) * b).reshape(v[sl].shape)
    return out


def np_pcgrad(grads: list[np.ndarray], orders: list[list[int]]) -> np.ndarray:
    """PCGrad as in Yu et al. (2020), Algorithm 1, with a given visiting order per task."""
    edited = []
    for i, g in enumerate(grads):
        g = g.astype(np.float64).copy()
        for j in orders[i]:
            dot = g.ravel() @ grads[j].ravel()
            if dot < 0:
                g -= dot / (grads[j].ravel() @ grads[j].ravel()) * grads[j]
        edited.append(g)
    return np.sum(edited, axis=0)


def randn(generator, *shape, dtype=torch.float64, device="cpu"):
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(device, dtype)


# ---------------------------------------------------------------------------
# Values against the reference


@pytest.mark.parametrize(
    ("shape", "ref_shape", "dims"),
    [
        ((3, 8, 8), (3, 8, 8), None),
        ((4, 3, 5, 5), (4, 3, 5, 5), (1, 2, 3)),
        ((4, 3, 5, 5), (4, 3, 5, 5), (2, 3)),
        ((4, 3, 5, 5), (3, 5, 5), (1, 2, 3)),  # one reference for every sample
        ((4, 3, 5, 5), (4, 3, 5, 5), (-1, -2)),
        ((6, 7), (1, 7), 1),
        ((5,), (5,), None),
    ],
)
def test_orthogonal_component_matches_reference(shape, ref_shape, dims, device, dtype, generator):
    v = randn(generator, *shape, dtype=dtype, device=device)
    r = randn(generator, *ref_shape, dtype=dtype, device=device)
    got = orthogonal_component(v, r, dims)
    norm_dims = None if dims is None else tuple(d % len(shape) for d in np.atleast_1d(dims))
    expected = np_orthogonal(v.double().cpu().numpy(), r.double().cpu().numpy(), norm_dims)
    rtol, atol = (1e-5, 1e-5) if dtype == torch.float32 else (1e-12, 1e-12)
    np.testing.assert_allclose(got.double().cpu().numpy(), expected, rtol=rtol, atol=atol)
    assert got.dtype == dtype and got.device.type == device.type


@pytest.mark.parametrize(
    ("shape", "ref_shape", "dims"),
    [
        ((3, 8, 8), (3, 8, 8), None),
        ((4, 3, 5, 5), (4, 3, 5, 5), (1, 2, 3)),
        ((4, 3, 5, 5), (3, 5, 5), (2, 3)),  # one reference per channel, shared by the samples
        ((6, 7), (6, 1), 0),  # a column reference broadcast along dimension 1
        ((), (), None),
    ],
)
def test_parallel_component_matches_the_formula(shape, ref_shape, dims, device, dtype, generator):
    """``((v . r) / (r . r)) r``, computed apart from the library (which goes through r/||r||)."""
    v = randn(generator, *shape, dtype=dtype, device=device)
    r = randn(generator, *ref_shape, dtype=dtype, device=device)
    got = parallel_component(v, r, dims)
    norm_dims = None if dims is None else tuple(d % len(shape) for d in np.atleast_1d(dims))
    expected = np_parallel(v.double().cpu().numpy(), r.double().cpu().numpy(), norm_dims)
    rtol, atol = (1e-5, 1e-5) if dtype == torch.float32 else (1e-12, 1e-12)
    np.testing.assert_allclose(got.double().cpu().numpy(), expected, rtol=rtol, atol=atol)
    assert got.shape == v.shape and got.dtype == dtype and got.device.type == device.type


def test_parallel_plus_orthogonal_is_v(device, generator):
    v, r = randn(generator, 2, 3, 4, 4, device=device), randn(generator, 2, 3, 4, 4, device=device)
    for dims in (None, (1, 2, 3), (2, 3)):
        total = parallel_component(v, r, dims) + orthogonal_component(v, r, dims)
        torch.testing.assert_close(total, v, rtol=1e-13, atol=1e-13)


def test_inner_is_flattened_dot(generator):
    u, v = randn(generator, 3, 4, 5), randn(generator, 3, 4, 5)
    expected = float(np.dot(u.numpy().ravel(), v.numpy().ravel()))
    assert inner(u, v).item() == pytest.approx(expected, rel=1e-13)
    per_sample = inner(u, v, dims=(1, 2))
    assert per_sample.shape == (3,)
    np.testing.assert_allclose(per_sample.numpy(), np.einsum("ijk,ijk->i", u, v), rtol=1e-13)


def test_seed_image_is_orthogonal_to_rounding_not_exactly():
    """The forum's 3 x 224 x 224 case: cosine ~1e-10 in float32, ~1e-19 in float64, != 0."""
    g = torch.Generator().manual_seed(1)
    for dtype, bound in ((torch.float32, 1e-7), (torch.float64, 1e-15)):
        img = torch.rand(3, 224, 224, generator=g, dtype=torch.float64).to(dtype)
        grad = torch.randn(3, 224, 224, generator=g, dtype=torch.float64).to(dtype)
        orth = orthogonal_component(grad, img)
        c = cosine(orth, img).item()
        assert abs(c) < bound
        assert bool(is_orthogonal(orth, img))
        # the raw inner product is not a scale-free test: it is far from zero in float32
        assert not bool(is_orthogonal(grad, img))


def _along_ref(result: torch.Tensor, ref: torch.Tensor, dims=None) -> np.ndarray:
    """``|<result, ref>| / ||ref||`` per vector, in float64 NumPy (independent of the code)."""
    a, r = result.double().cpu().numpy(), ref.double().cpu().numpy()
    r = np.broadcast_to(r, a.shape)
    axes = tuple(range(a.ndim)) if dims is None else dims
    return np.abs((a * r).sum(axis=axes)) / np.sqrt((r * r).sum(axis=axes))


def _one_pass(v: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The textbook single projection in ``v``'s dtype, with a unit reference."""
    u = ref / torch.linalg.vector_norm(ref)
    return v - (v * u).sum() * u


# the docstring's bound on the component along ref, relative to ||v||
ALONG_REF_BOUND = {torch.float32: 3e-8, torch.float64: 1e-16}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("correlation", [0.0, 1.0, 100.0], ids=["noise", "noise+x", "noise+100x"])
def test_gradient_correlated_with_the_image_is_still_orthogonal(dtype, correlation):
    """The docstring's promise on 3 x 224 x 224 images, g = noise + c x: |cos| ~1e-9 in
    float32, ~1e-18 in float64. A single projection pass gives ~1e-6 for c = 1."""
    bound = {torch.float32: 1e-8, torch.float64: 1e-16}[dtype]
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        img = torch.rand(3, 224, 224, generator=g, dtype=torch.float64)
        noise = torch.randn(3, 224, 224, generator=g, dtype=torch.float64)
        v, x = (noise + correlation * img).to(dtype), img.to(dtype)
        orth = orthogonal_component(v, x)
        along = _along_ref(orth, x).item()
        assert along / np.linalg.norm(orth.double().numpy()) < bound
        np.testing.assert_allclose(
            orth.double().numpy(),
            np_orthogonal(v.double().numpy(), x.double().numpy(), None),
            rtol=0,
            atol=(1e-6 if dtype == torch.float32 else 1e-14) * v.abs().max().item(),
        )
    if dtype == torch.float32 and correlation == 1.0:
        # the failure the second pass repairs: one pass is a thousand times worse here
        once = _one_pass(v, x)
        assert _along_ref(once, x).item() / np.linalg.norm(once.double().numpy()) > 1e-7


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("share", [1e-3, 0.0], ids=["nearly-parallel", "parallel"])
def test_nearly_parallel_gradient_meets_the_absolute_bound(dtype, share):
    """The hardest inputs: v = x + t noise with ||v_perp|| ~ 1e-3 ||v|| (the smallest share
    for which the docstring promises |cos| < 1e-7 in float32) and v = x exactly, whose
    orthogonal part is rounding noise: the part along ref stays below 3e-8 ||v|| (float32)."""
    g = torch.Generator().manual_seed(3)
    img = torch.rand(3, 224, 224, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 224, 224, generator=g, dtype=torch.float64)
    t = share / float(noise.norm() / img.norm())
    v64 = img + t * noise
    v, x = v64.to(dtype), img.to(dtype)
    orth = orthogonal_component(v, x)
    v_norm = np.linalg.norm(v.double().numpy())
    assert _along_ref(orth, x).item() < ALONG_REF_BOUND[dtype] * v_norm
    if share > 0:
        cos = _along_ref(orth, x).item() / np.linalg.norm(orth.double().numpy())
        assert cos < (1e-7 if dtype == torch.float32 else 1e-15)


@pytest.mark.parametrize("dims", [(1, 2, 3), (2, 3)])
def test_batched_projection_of_correlated_gradients_float32(dims):
    """Batched forms: each sample (or channel) of g = noise + c x with c up to 100."""
    g = torch.Generator().manual_seed(4)
    img = torch.rand(6, 3, 64, 64, generator=g, dtype=torch.float64)
    noise = torch.randn(6, 3, 64, 64, generator=g, dtype=torch.float64)
    c = torch.tensor([0.0, 0.3, 1.0, 3.0, 10.0, 100.0], dtype=torch.float64).view(6, 1, 1, 1)
    v, x = (noise + c * img).float(), img.float()
    orth = orthogonal_component(v, x, dims=dims)
    orth_norm = np.sqrt((orth.double().numpy() ** 2).sum(axis=dims))
    v_norm = np.sqrt((v.double().numpy() ** 2).sum(axis=dims))
    assert (_along_ref(orth, x, dims) / v_norm).max() < ALONG_REF_BOUND[torch.float32]
    assert (_along_ref(orth, x, dims) / orth_norm).max() < 1e-7
    # the sphere step and PCGrad use the same projection
    step = sphere_step(x, v, 0.1, dims=dims)
    np.testing.assert_allclose(
        np.sqrt((step.double().numpy() ** 2).sum(axis=dims)),
        np.sqrt((img.numpy() ** 2).sum(axis=dims)),
        rtol=1e-6,
    )


def test_pcgrad_of_strongly_conflicting_float32_gradients():
    """g1 = -g2 + small noise: the edited g1 is orthogonal to g2 to rounding."""
    g = torch.Generator().manual_seed(5)
    a = torch.randn(3, 64, 64, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 64, 64, generator=g, dtype=torch.float64)
    g1, g2 = (-a + 0.5 * noise).float(), a.float()
    e1, e2 = pcgrad([g1, g2], reduction="none")
    assert _along_ref(e1, g2).item() / np.linalg.norm(e1.double().numpy()) < 1e-8
    assert _along_ref(e2, g1).item() / np.linalg.norm(e2.double().numpy()) < 1e-8


def test_whole_batch_projection_leaves_samples_non_orthogonal(generator):
    """Projecting the batch as one vector is the wrong thing for a batch (chapter 1's claim)."""
    x = torch.rand(8, 3, 16, 16, generator=generator, dtype=torch.float64)
    g = torch.randn(8, 3, 16, 16, generator=generator, dtype=torch.float64) + 0.3
    whole = orthogonal_component(g, x)  # dims=None
    per_sample = orthogonal_component(g, x, dims=(1, 2, 3))
    assert cosine(whole, x, dims=(1, 2, 3)).abs().max() > 1e-3
    assert cosine(per_sample, x, dims=(1, 2, 3)).abs().max() < 1e-14
    # but the whole-batch result is orthogonal to the batch as one vector
    assert abs(cosine(whole, x).item()) < 1e-14


# ---------------------------------------------------------------------------
# Edge cases


def test_zero_reference_leaves_v_unchanged_without_nan(device):
    v = torch.arange(12.0, device=device, dtype=torch.float64).reshape(3, 4)
    zero = torch.zeros_like(v)
    assert torch.equal(orthogonal_component(v, zero), v)
    assert torch.equal(parallel_component(v, zero), torch.zeros_like(v))
    # one zero sample among non-zero ones
    r = torch.ones(3, 4, device=device, dtype=torch.float64)
    r[1] = 0
    out = orthogonal_component(v, r, dims=1)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], v[1])
    assert cosine(v, zero).item() == 0.0


def test_zero_reference_gradient_is_finite(device):
    v = torch.randn(5, device=device, dtype=torch.float64, requires_grad=True)
    r = torch.zeros(5, device=device, dtype=torch.float64, requires_grad=True)
    orthogonal_component(v, r).sum().backward()
    assert torch.isfinite(v.grad).all() and torch.isfinite(r.grad).all()


def test_tiny_and_huge_references_do_not_overflow():
    v = torch.tensor([1.0, 2.0, 3.0])
    for scale in (1e-30, 1e30):
        r = torch.tensor([1.0, 1.0, 0.0]) * scale
        out = orthogonal_component(v, r)
        torch.testing.assert_close(out, torch.tensor([-0.5, 0.5, 3.0]))


def test_zero_dimensional_tensors_are_one_dimensional_vectors(device):
    """A 0-d tensor is a vector of R^1: the line it spans is all of R^1 (if it is non-zero)."""
    v = torch.tensor(3.0, dtype=torch.float64, device=device)
    r = torch.tensor(-2.0, dtype=torch.float64, device=device)
    zero = torch.zeros((), dtype=torch.float64, device=device)
    assert inner(v, r).item() == -6.0 and inner(v, r).shape == ()
    assert parallel_component(v, r).item() == 3.0
    assert orthogonal_component(v, r).item() == 0.0
    assert orthogonal_component(v, zero).item() == 3.0
    assert cosine(v, r).item() == -1.0 and cosine(v, zero).item() == 0.0
    assert orthogonal_to_subspace(v, [r]).item() == 0.0
    assert orthogonal_to_subspace(v, [zero]).item() == 3.0
    # the 0-sphere {-|x|, |x|} has no tangent direction: the step leaves x where it is
    for x in (v, r):
        new = sphere_step(x, torch.tensor(5.0, dtype=torch.float64, device=device), 0.1)
        assert new.shape == () and new.item() == x.item()
    assert sphere_step(zero, v, 0.1).item() == 0.0
    assert pcgrad([v, r]).item() == 0.0  # each conflicts with the other and loses all of itself


def test_zero_dimensional_gradients(device):
    x = torch.tensor(2.0, dtype=torch.float64, device=device, requires_grad=True)
    g = torch.tensor(1.0, dtype=torch.float64, device=device, requires_grad=True)
    dx, dg = torch.autograd.grad(sphere_step(x, g, 0.1), (x, g))
    assert dx.item() == 1.0 and dg.item() == 0.0
    # cosine is piecewise constant in 1-D: its gradient is zero, also at a zero argument
    zero = torch.zeros((), dtype=torch.float64, device=device, requires_grad=True)
    grads = torch.autograd.grad(cosine(x, zero), (x, zero))
    assert [t.item() for t in grads] == [0.0, 0.0]


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_sphere_step_at_extreme_magnitudes_float32(scale):
    """||x||^2 underflows (1e-60) or overflows (1e60) in float32; the retraction must not."""
    x64 = torch.tensor([[1.0, 2.0, 3.0], [-4.0, 0.5, 2.0]], dtype=torch.float64) * scale
    g64 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -1.0]], dtype=torch.float64) * scale
    new = sphere_step(x64.float(), g64.float(), 0.3, dims=1)
    # float64 holds these squares: the textbook formula is the reference there
    x, g = x64.numpy(), g64.numpy()
    g_perp = g - (np.sum(g * x, 1) / np.sum(x * x, 1))[:, None] * x
    y = x - 0.3 * g_perp
    expected = y * (np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1))[:, None]
    assert torch.isfinite(new).all() and (new != 0).any()
    np.testing.assert_allclose(new.double().numpy(), expected, rtol=1e-5, atol=0)
    np.testing.assert_allclose(
        np.linalg.norm(new.double().numpy(), axis=1), np.linalg.norm(x, axis=1), rtol=1e-6
    )


def test_sphere_step_keeps_a_zero_vector_zero(device):
    """The docstring's "A zero x stays zero", per sample, next to a moving one."""
    x = torch.zeros(2, 5, dtype=torch.float64, device=device)
    x[1] = torch.arange(1.0, 6.0, dtype=torch.float64, device=device)
    g = torch.ones(2, 5, dtype=torch.float64, device=device)
    new = sphere_step(x, g, 0.5, dims=1)
    assert torch.equal(new[0], x[0]) and torch.isfinite(new).all()
    assert not torch.equal(new[1], x[1])


def test_vectors_with_no_entries(device):
    v = torch.zeros(3, 0, device=device)
    assert orthogonal_component(v, v, dims=1).shape == (3, 0)
    assert sphere_step(v, v, 0.1, dims=1).shape == (3, 0)
    assert orthogonal_to_subspace(v, [v, v], dims=1).shape == (3, 0)
    assert cosine(v, v, dims=1).tolist() == [0.0, 0.0, 0.0]


def test_empty_batch(device):
    v = torch.zeros(0, 3, 4, 4, device=device)
    out = orthogonal_component(v, v, dims=(1, 2, 3))
    assert out.shape == v.shape
    assert cosine(v, v, dims=(1, 2, 3)).shape == (0,)
    assert sphere_step(v, v, 0.1, dims=(1, 2, 3)).shape == v.shape


def test_gradcheck(generator):
    v = randn(generator, 2, 5).requires_grad_()
    r = randn(generator, 2, 5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: orthogonal_component(a, b, dims=1), (v, r))
    assert torch.autograd.gradcheck(lambda a, b: cosine(a, b, dims=1), (v, r))
    basis = randn(generator, 2, 2, 5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: orthogonal_to_subspace(a, b, dims=1), (v, basis))
    assert torch.autograd.gradcheck(lambda a, b: parallel_component(a, b, dims=1), (v, r))
    assert torch.autograd.gradgradcheck(lambda a, b: orthogonal_component(a, b, dims=1), (v, r))
    assert torch.autograd.gradcheck(lambda a, b: sphere_step(a, b, 0.3, dims=1), (r, v))
    assert torch.autograd.gradcheck(lambda a, b: pcgrad([a, b]), (v, -r + 0.1 * v.detach()))


# ---------------------------------------------------------------------------
# Property tests

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=finite),
    st.data(),
)
def test_properties_orthogonality_decomposition_idempotence(v_np, data):
    r_np = data.draw(hnp.arrays(np.float64, v_np.shape, elements=finite))
    v, r = torch.from_numpy(v_np), torch.from_numpy(r_np)
    orth = orthogonal_component(v, r)
    par = parallel_component(v, r)
    scale = max(1.0, float(np.abs(v_np).max()))
    torch.testing.assert_close(orth + par, v, rtol=0, atol=1e-12 * scale)
    # the parallel part against the formula, computed independently
    np.testing.assert_allclose(
        par.numpy(), np_parallel(v_np, r_np, None), rtol=0, atol=1e-12 * scale * v.numel()
    )
    # orthogonal to r (relative to the sizes involved)
    assert (
        abs(inner(orth, r).item())
        <= 1e-11 * scale * max(1.0, float(np.abs(r_np).max())) * v.numel()
    )
    # idempotent: projecting again changes nothing
    torch.testing.assert_close(orthogonal_component(orth, r), orth, rtol=0, atol=1e-12 * scale)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 6)), elements=finite),
    st.data(),
    st.floats(0, 10),
)
def test_property_sphere_step_keeps_each_norm(x_np, data, lr):
    g_np = data.draw(hnp.arrays(np.float64, x_np.shape, elements=finite))
    x, g = torch.from_numpy(x_np), torch.from_numpy(g_np)
    new = sphere_step(x, g, lr, dims=1)
    np.testing.assert_allclose(
        np.linalg.norm(new.numpy(), axis=1), np.linalg.norm(x_np, axis=1), rtol=1e-13, atol=1e-300
    )


def test_sphere_step_descends_on_the_sphere(device):
    """Minimising <c, x> on the unit sphere converges to -c/||c||."""
    c = torch.tensor([1.0, -2.0, 2.0], dtype=torch.float64, device=device)
    x = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64, device=device)
    for _ in range(200):
        x = sphere_step(x, c, 0.1)
    torch.testing.assert_close(x, -c / c.norm(), rtol=1e-8, atol=1e-8)
    assert abs(x.norm().item() - 1.0) < 1e-14


# ---------------------------------------------------------------------------
# Subspaces


def test_orthogonal_to_subspace_matches_lstsq(generator, device):
    v = randn(generator, 20, device=device)
    basis = randn(generator, 3, 20, device=device)
    got = orthogonal_to_subspace(v, basis)
    a = basis.cpu().numpy().T
    coef, *_ = np.linalg.lstsq(a, v.cpu().numpy(), rcond=None)
    np.testing.assert_allclose(got.cpu().numpy(), v.cpu().numpy() - a @ coef, atol=1e-12)


def test_orthogonal_to_subspace_nearly_dependent_basis(generator):
    """Gram-Schmidt loses orthogonality here; QR does not."""
    a = randn(generator, 50)
    b = a + 1e-9 * randn(generator, 50)
    v = randn(generator, 50)
    out = orthogonal_to_subspace(v, [a, b])
    assert abs(cosine(out, a).item()) < 1e-12
    assert abs(cosine(out, b).item()) < 1e-12
    # an exactly repeated reference removes nothing more than one copy
    torch.testing.assert_close(orthogonal_to_subspace(v, [a, a]), orthogonal_component(v, a))


@pytest.mark.parametrize("scale", [1e-25, 1e25])
def test_orthogonal_to_subspace_extreme_references_float32(scale, generator):
    """Column norms of 1e25 entries overflow float32 (1e50), of 1e-25 underflow; neither
    reference may be dropped: the result is that of the same references at scale 1."""
    v = randn(generator, 6, dtype=torch.float32)
    basis = randn(generator, 2, 6, dtype=torch.float32)
    expected = orthogonal_to_subspace(v, basis)
    got = orthogonal_to_subspace(v, basis * scale)
    assert basis.abs().max() * scale < torch.finfo(torch.float32).max
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert cosine(got, basis[0]).abs() < 1e-5 and cosine(got, basis[1]).abs() < 1e-5


@pytest.mark.parametrize("share", [1.0, 1e-3, 0.0], ids=["noise", "nearly-in-span", "in-span"])
def test_orthogonal_to_subspace_float32_near_the_span(share):
    """The docstring's bound on its hardest inputs: v in (or nearly in) the span of three
    positive, strongly correlated images; the part along each stays below 3e-8 ||v||."""
    g = torch.Generator().manual_seed(6)
    basis = torch.rand(3, 3, 64, 64, generator=g, dtype=torch.float64)
    noise = torch.randn(3, 64, 64, generator=g, dtype=torch.float64)
    v = basis.sum(0) + share * noise
    out = orthogonal_to_subspace(v.float(), basis.float())
    v_norm = np.linalg.norm(v.float().double().numpy())
    for b in basis.float():
        assert _along_ref(out, b).item() < ALONG_REF_BOUND[torch.float32] * v_norm
        if share > 0:
            assert _along_ref(out, b).item() / np.linalg.norm(out.double().numpy()) < 1e-7


def test_orthogonal_to_subspace_promotes_over_every_reference(generator):
    v = randn(generator, 8, dtype=torch.float32)
    a, b = randn(generator, 8, dtype=torch.float32), randn(generator, 8)
    got = orthogonal_to_subspace(v, [a, b])
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, orthogonal_to_subspace(v.double(), [a.double(), b]))


def test_orthogonal_to_subspace_rtol(generator):
    a = randn(generator, 10)
    b = a + 1e-6 * randn(generator, 10)
    v = randn(generator, 10)
    # b is independent of a at rtol=0, the same direction at rtol=1e-3
    assert cosine(orthogonal_to_subspace(v, [a, b], rtol=0.0), b).abs() < 1e-12
    torch.testing.assert_close(
        orthogonal_to_subspace(v, [a, b], rtol=1e-3), orthogonal_component(v, a)
    )


def test_orthogonal_to_subspace_per_sample(generator):
    v = randn(generator, 4, 3, 5)
    basis = randn(generator, 2, 4, 3, 5)
    out = orthogonal_to_subspace(v, basis, dims=(1, 2))
    for b in range(4):
        expected = orthogonal_to_subspace(v[b], basis[:, b])
        torch.testing.assert_close(out[b], expected)
    for k in range(2):
        assert cosine(out, basis[k], dims=(1, 2)).abs().max() < 1e-13


# ---------------------------------------------------------------------------
# PCGrad


def test_pcgrad_matches_reference(generator):
    grads = [randn(generator, 6) for _ in range(3)]
    grads[1] = -grads[0] + 0.3 * randn(generator, 6)  # a conflicting pair
    order_gen = torch.Generator().manual_seed(5)
    got = pcgrad(grads, generator=order_gen)
    # replay the same visiting order for the reference
    replay = torch.Generator().manual_seed(5)
    orders = []
    for i in range(3):
        others = [j for j in range(3) if j != i]
        orders.append([others[p] for p in torch.randperm(2, generator=replay).tolist()])
    expected = np_pcgrad([g.numpy() for g in grads], orders)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-13)


def test_pcgrad_two_tasks_removes_the_conflict():
    g1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g2 = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    edited = pcgrad([g1, g2], reduction="none")
    assert inner(edited[0], g2).item() >= -1e-15
    assert inner(edited[1], g1).item() >= -1e-15
    torch.testing.assert_close(edited[0], torch.tensor([0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(edited[1], torch.tensor([0.0, 1.0], dtype=torch.float64))
    # non-conflicting gradients pass untouched
    same = pcgrad([g1, g1 + g2 * 0.1], reduction="none")
    torch.testing.assert_close(same[0], g1)


# ---------------------------------------------------------------------------
# Bad input


def test_bad_shapes_name_both_shapes():
    with pytest.raises(ValueError, match=r"ref: shape \(3, 5\).*\(3, 4\)"):
        orthogonal_component(torch.zeros(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"ref: shape \(2, 3, 4\).*\(3, 4\)"):
        orthogonal_component(torch.zeros(3, 4), torch.zeros(2, 3, 4))


def test_bad_dims():
    v = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"dims: dimension 3 is out of range.*\(2, 3, 4\)"):
        orthogonal_component(v, v, dims=(1, 3))
    with pytest.raises(ValueError, match="distinct"):
        orthogonal_component(v, v, dims=(1, -2))
    with pytest.raises(TypeError, match="dims"):
        orthogonal_component(v, v, dims="12")
    with pytest.raises(ValueError, match="at least one"):
        orthogonal_component(v, v, dims=())


def test_bad_types_and_values():
    with pytest.raises(
        TypeError, match=r"v: expected a floating-point tensor, got dtype torch\.int64"
    ):
        orthogonal_component(torch.arange(3), torch.ones(3))
    with pytest.raises(TypeError, match=r"ref: expected a torch\.Tensor, got list"):
        orthogonal_component(torch.ones(3), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="lr: expected a finite, non-negative"):
        sphere_step(torch.ones(3), torch.ones(3), -0.1)
    with pytest.raises(ValueError, match="tol"):
        is_orthogonal(torch.ones(3), torch.ones(3), tol=-1.0)
    with pytest.raises(ValueError, match="basis: expected at least one"):
        orthogonal_to_subspace(torch.ones(3), [])
    with pytest.raises(
        ValueError, match=r"grads\[1\]: expected the shape of grads\[0\], \(3,\), got \(4,\)"
    ):
        pcgrad([torch.ones(3), torch.ones(4)])
    with pytest.raises(ValueError, match="non-empty"):
        pcgrad([])
    with pytest.raises(ValueError, match="reduction"):
        pcgrad([torch.ones(3)], reduction="max")
    with pytest.raises(ValueError, match=r"grads\[1\]: on meta, but grads\[0\] is on cpu"):
        pcgrad([torch.ones(3), torch.ones(3, device="meta")])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: inner(torch.arange(3), torch.ones(3)),
            TypeError,
            r"^u: expected a floating-point tensor, got dtype torch\.int64$",
        ),
        (
            lambda: inner(torch.ones(3), (1.0, 2.0, 3.0)),
            TypeError,
            r"^v: expected a torch\.Tensor, got tuple$",
        ),
        (
            lambda: inner(torch.ones(3), torch.ones(2, 3)),
            ValueError,
            r"^v: shape \(2, 3\) does not broadcast to the shape of u, \(3,\)$",
        ),
        (
            lambda: cosine(3.0, torch.ones(3)),
            TypeError,
            r"^u: expected a torch\.Tensor, got float$",
        ),
        (
            lambda: cosine(torch.ones(3), torch.ones(4)),
            ValueError,
            r"^v: shape \(4,\) does not broadcast to the shape of u, \(3,\)$",
        ),
        (
            lambda: parallel_component(torch.ones(3), torch.ones(3, dtype=torch.int32)),
            TypeError,
            r"^ref: expected a floating-point tensor, got dtype torch\.int32$",
        ),
        (
            lambda: parallel_component(torch.ones(2, 3), torch.ones(3), dims=2),
            ValueError,
            r"^dims: dimension 2 is out of range for a tensor of shape \(2, 3\)$",
        ),
        (
            lambda: orthogonal_to_subspace(torch.ones(3), 3),
            TypeError,
            r"^basis: expected a tensor \(k, \.\.\.\) or a sequence of tensors, got int$",
        ),
        (
            lambda: orthogonal_to_subspace(torch.ones(3), [torch.ones(3), [0.0, 1.0, 0.0]]),
            TypeError,
            r"^basis\[1\]: expected a torch\.Tensor, got list$",
        ),
        (
            lambda: orthogonal_to_subspace(torch.ones(3), torch.eye(3, dtype=torch.int64)),
            TypeError,
            r"^basis: expected a floating-point tensor, got dtype torch\.int64$",
        ),
        (
            lambda: orthogonal_to_subspace(torch.ones(3), [torch.ones(3), torch.ones(4)]),
            ValueError,
            r"^basis\[1\]: shape \(4,\) does not broadcast to the shape of v, \(3,\)$",
        ),
        (
            lambda: orthogonal_to_subspace(torch.ones(3), torch.tensor(1.0)),
            ValueError,
            r"^basis: expected k stacked references, got a 0-d tensor$",
        ),
        (
            lambda: orthogonal_to_subspace(torch.ones(3), [torch.ones(3)], rtol=float("nan")),
            ValueError,
            r"^rtol: expected a finite number >= 0, got nan$",
        ),
        (
            lambda: orthogonal_to_subspace(torch.ones(3), [torch.ones(3)], rtol=-1e-3),
            ValueError,
            r"^rtol: expected a finite number >= 0, got -0\.001$",
        ),
        (
            lambda: orthogonal_to_subspace(torch.ones(3), [torch.ones(3)], rtol="1e-3"),
            TypeError,
            r"^rtol: expected a number >= 0, got str$",
        ),
    ],
)
def test_bad_input_names_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()
