"""Orthogonal and parallel components of tensors seen as vectors (chapter 1).

A tensor ``v`` of any shape is a vector in ``R^N`` with ``N = v.numel()``. The
component of ``v`` orthogonal to a reference ``r`` is

.. math::

    v_\\perp = v - \\frac{\\langle v, r\\rangle}{\\langle r, r\\rangle}\\, r,

the projection of ``v`` onto the tangent space of the sphere ``||r|| = const``
at ``r`` (the Riemannian gradient there when ``v`` is a Euclidean gradient).

Convention (``dims``):
    ``dims=None`` treats the whole tensor as one vector. Otherwise ``dims`` names
    the dimensions that make up one vector and the remaining dimensions index
    independent vectors: on ``(B, C, H, W)``, ``dims=(1, 2, 3)`` projects each
    sample separately and ``dims=(2, 3)`` each channel of each sample. The
    reference ``ref`` broadcasts against ``v`` (``(C, H, W)`` against
    ``(B, C, H, W)`` uses the same reference for every sample).

Zero references (or zero groups) leave ``v`` unchanged: they span nothing, so
nothing is removed, and no division by zero takes place, in the value or in the
gradient. All functions are differentiable; project under ``torch.no_grad()``
or on detached tensors when editing ``.grad`` in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce

import torch
from torch import Tensor

from gradbook._checks import check_broadcasts_to, check_nonnegative, check_tensor

Dims = int | Sequence[int] | None

#: Default tolerances of :func:`is_orthogonal`, a bound on ``|cosine|`` per dtype.
ORTHOGONALITY_TOL = {
    torch.float16: 1e-2,
    torch.bfloat16: 1e-2,
    torch.float32: 1e-5,
    torch.float64: 1e-12,
}


def _normalize_dims(dims: Dims, ndim: int, shape: torch.Size) -> tuple[int, ...]:
    """Turn ``dims`` into sorted, non-negative, unique dimensions of a tensor of rank ``ndim``."""
    if dims is None:
        return tuple(range(ndim))
    if isinstance(dims, int):
        dims = (dims,)
    if not isinstance(dims, Sequence) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in dims
    ):
        raise TypeError(f"dims: expected None, an int or a sequence of ints, got {dims!r}")
    if len(dims) == 0:
        raise ValueError("dims: expected at least one dimension (or None for all), got ()")
    out = []
    for d in dims:
        if not -ndim <= d < ndim:
            raise ValueError(
                f"dims: dimension {d} is out of range for a tensor of shape {tuple(shape)}"
            )
        out.append(d % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"dims: expected distinct dimensions, got {tuple(dims)}")
    return tuple(sorted(out))


def _prepare(
    v: Tensor, ref: Tensor, dims: Dims, names: tuple[str, str] = ("v", "ref")
) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """Validate a pair: ``(v, ref expanded to v's shape, both in the promoted dtype, dims)``."""
    check_tensor(names[0], v)
    check_tensor(names[1], ref)
    check_broadcasts_to(names[1], ref, v, names[0])
    dtype = torch.promote_types(v.dtype, ref.dtype)
    return v.to(dtype), ref.expand_as(v).to(dtype), _normalize_dims(dims, v.ndim, v.shape)


def inner(u: Tensor, v: Tensor, dims: Dims = None, keepdim: bool = False) -> Tensor:
    """Inner product ``<u, v>`` summed over ``dims`` (all dimensions when ``None``).

    This is what ``torch.dot(u.flatten(), v.flatten())`` computes for
    ``dims=None``; ``u @ v`` is *not* it for tensors of rank above one (it is a
    batched matrix product).

    Args:
        u: ``(*shape)`` floating tensor.
        v: a floating tensor that broadcasts to ``u``'s shape.
        dims: the dimensions summed over (see the module's Convention).
        keepdim: keep the summed dimensions with size 1, as in :func:`torch.sum`.

    Returns:
        The shape of ``u`` without ``dims`` (a 0-d tensor for ``dims=None``).

    Raises:
        TypeError: ``u`` or ``v`` is not a floating-point tensor, or ``dims`` has the wrong type.
        ValueError: ``v`` does not broadcast to ``u``, or ``dims`` is out of range or repeated.
    """
    u, v, dims = _prepare(u, v, dims, ("u", "v"))
    return (u * v).sum(dim=dims, keepdim=keepdim)


def _nonzero(x: Tensor) -> Tensor:
    """``x`` with its zeros replaced by ones (a divisor that is safe in value and gradient)."""
    return torch.where(x > 0, x, torch.ones_like(x))


def _scaled(x: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """``(largest, scaled)``: ``largest = max |x|`` per group (kept dims), ``scaled = x / largest``.

    ``||x|| = largest * ||scaled||``, and ``||scaled||`` lies in ``[1, sqrt(N)]``
    (0 for a zero group), so it neither underflows (``1e-30`` squared is 0 in
    float32) nor overflows (``1e30`` squared is inf). Groups with no entries have
    ``largest = 0``.
    """
    if x.numel() == 0:
        kept = [1 if d in dims else size for d, size in enumerate(x.shape)]
        largest = x.new_zeros(kept)
    else:
        largest = x.abs().amax(dim=dims, keepdim=True)
    return largest, x / _nonzero(largest)


def _unit(ref: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``ref / ||ref||`` per group, exactly zero where the group is zero (norm computed scaled)."""
    _, scaled = _scaled(ref, dims)
    norm = torch.linalg.vector_norm(scaled, dim=dims, keepdim=True)
    return scaled / _nonzero(norm)


def _split(v: Tensor, ref: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """``(parallel, orthogonal)`` parts of ``v`` along ``u = ref / ||ref||`` per group.

    Two passes ("twice is enough"): ``w1 = v - <v, u> u`` is orthogonal to ``u``
    only up to ``eps * ||v||`` (each entry of ``v`` is rounded in the subtraction),
    which is large relative to ``||w1||`` when ``v`` is nearly parallel to ``ref``.
    A second pass ``w2 = w1 - <w1, u> u`` removes what rounding left, to
    ``eps * ||w1||``. ``parallel = <v, u> u + <w1, u> u``, so that
    ``parallel + orthogonal == v`` to rounding. No validation: ``v`` and ``ref``
    have one shape and dtype, ``dims`` is normalised (``()`` for a 0-d ``v``).
    """
    unit = _unit(ref, dims)
    first = (v * unit).sum(dim=dims, keepdim=True) * unit
    once = v - first
    second = (once * unit).sum(dim=dims, keepdim=True) * unit
    return first + second, once - second


def _parallel(v: Tensor, ref: Tensor, dims: tuple[int, ...]) -> Tensor:
    """The parallel part of :func:`_split`: ``<v, u> u`` with ``u = ref / ||ref||``."""
    return _split(v, ref, dims)[0]


def _orthogonal(v: Tensor, ref: Tensor, dims: tuple[int, ...]) -> Tensor:
    """The orthogonal part of :func:`_split`, projected twice."""
    return _split(v, ref, dims)[1]


def parallel_component(v: Tensor, ref: Tensor, dims: Dims = None) -> Tensor:
    """The projection of ``v`` onto the line spanned by ``ref``: ``(<v, r>/<r, r>) r``.

    Args:
        v: ``(*shape)`` floating tensor.
        ref: a tensor that broadcasts to ``v``'s shape.
        dims: the dimensions forming one vector (see the module's Convention).

    Returns:
        ``(*shape)``: zero where ``ref`` is zero. ``parallel + orthogonal == v`` to
        rounding (both come from the same two projection passes, see
        :func:`orthogonal_component`).

    Raises:
        TypeError: ``v`` or ``ref`` is not a floating-point tensor, or ``dims`` has the wrong type.
        ValueError: ``ref`` does not broadcast to ``v``, or ``dims`` is out of range or repeated.
    """
    v, ref, dims_t = _prepare(v, ref, dims)
    return _parallel(v, ref, dims_t)


def orthogonal_component(v: Tensor, ref: Tensor, dims: Dims = None) -> Tensor:
    """``v`` minus its projection onto ``ref``: ``v - (<v, r>/<r, r>) r``.

    The reference is normalised first (``r / ||r||``, scaled so that the norm
    neither underflows nor overflows) and the projection is applied twice
    ("twice is enough"): one pass leaves a component along ``ref`` of order
    ``eps * ||v||``, which is large next to the result when ``v`` is strongly
    correlated with ``ref``; the second pass removes it. Measured on
    ``3 x 224 x 224`` images and on the ``64 x 64`` channels of a batch, the
    component of the result along ``ref`` stays below ``3e-8 * ||v||`` in float32
    and ``1e-16 * ||v||`` in float64 for every ``v``, so
    ``|cosine(result, ref)| <= 3e-8 * ||v|| / ||result||``. For a
    ``3 x 224 x 224`` image that is about ``1e-9`` in float32 (``1e-18`` in
    float64) for a random gradient and for one strongly correlated with the
    image such as ``noise + image``, and below ``1e-7`` while the orthogonal
    part holds at least ``1e-3`` of ``||v||``; never exactly 0. When ``v`` is
    parallel to ``ref`` (to rounding), the result is rounding noise of size
    ``eps * ||v||`` and its cosine with ``ref`` is not small.

    Args:
        v: ``(*shape)`` floating tensor, e.g. a gradient ``(B, C, H, W)``.
        ref: a tensor that broadcasts to ``v``'s shape, e.g. the image.
        dims: the dimensions forming one vector; ``(1, 2, 3)`` projects each
            sample of a batch separately, ``(2, 3)`` each channel, ``None`` the
            whole tensor as one vector.

    Returns:
        ``(*shape)``, the orthogonal component; ``v`` itself where ``ref`` is zero.

    Raises:
        TypeError: ``v`` or ``ref`` is not a floating-point tensor, or ``dims`` has the wrong type.
        ValueError: ``ref`` does not broadcast to ``v``, or ``dims`` is out of range or repeated.
    """
    v, ref, dims_t = _prepare(v, ref, dims)
    _, orthogonal = _split(v, ref, dims_t)
    return orthogonal


def _move_to_last(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Permute ``dims`` to the end and flatten them: ``(*batch, N)`` (``(1,)`` for a 0-d ``x``)."""
    rest = [d for d in range(x.ndim) if d not in dims]
    permuted = x.permute([*rest, *dims])
    return permuted.reshape(*permuted.shape[: len(rest)], -1)


def _restore(flat: Tensor, like: Tensor, dims: tuple[int, ...]) -> Tensor:
    """The inverse of :func:`_move_to_last`: ``(*batch, N)`` back to ``like``'s shape."""
    rest = [d for d in range(like.ndim) if d not in dims]
    order = rest + list(dims)
    permuted_shape = [like.shape[d] for d in order]
    inverse = [order.index(d) for d in range(like.ndim)]
    return flat.reshape(permuted_shape).permute(inverse)


def orthogonal_to_subspace(
    v: Tensor, basis: Tensor | Sequence[Tensor], dims: Dims = None, rtol: float | None = None
) -> Tensor:
    """Remove from ``v`` its projection onto the span of several reference vectors.

    The basis is orthonormalised by Householder QR (``torch.linalg.qr``), whose
    ``Q`` is orthonormal to machine precision even when the references are
    nearly dependent (classical Gram-Schmidt is not). Columns whose ``|R_jj|`` is
    below ``rtol * max_j |R_jj|`` add (almost) nothing to the span and are
    dropped, so exactly dependent references remove nothing extra. The
    projection is applied twice ("twice is enough"), which makes the result
    orthogonal to the span to rounding level: measured on three ``3 x 64 x 64``
    references, the component of the result along each stays below
    ``3e-8 * ||v||`` in float32, also when ``v`` lies in the span or nearly so.

    Args:
        v: ``(*shape)`` floating tensor.
        basis: ``k`` tensors that each broadcast to ``v``'s shape, as a sequence
            or stacked as a ``(k, *ref_shape)`` tensor.
        dims: the dimensions forming one vector (see the module's Convention).
        rtol: rank tolerance, a finite number ``>= 0``; default ``max(N, k) * eps``
            of the dtype.

    Returns:
        ``(*shape)``, the component of ``v`` orthogonal to every reference, in the
        dtype promoted over ``v`` and all references.

    Raises:
        TypeError, ValueError: as :func:`orthogonal_component`, for an empty basis,
            and for an ``rtol`` that is not a finite non-negative number.
    """
    check_tensor("v", v)
    if rtol is not None:
        rtol = check_nonnegative("rtol", rtol)
    if isinstance(basis, Tensor):
        check_tensor("basis", basis)
        if basis.ndim == 0:
            raise ValueError("basis: expected k stacked references, got a 0-d tensor")
        refs = list(basis.unbind(0))
    elif isinstance(basis, Sequence) and not isinstance(basis, str):
        refs = [check_tensor(f"basis[{i}]", b) for i, b in enumerate(basis)]
    else:
        raise TypeError(
            "basis: expected a tensor (k, ...) or a sequence of tensors, "
            f"got {type(basis).__name__}"
        )
    if len(refs) == 0:
        raise ValueError("basis: expected at least one reference vector, got none")
    dims_t = _normalize_dims(dims, v.ndim, v.shape)
    for i, r in enumerate(refs):
        check_broadcasts_to(f"basis[{i}]", r, v, "v")
    dtype = reduce(torch.promote_types, (r.dtype for r in refs), v.dtype)
    refs = [r.expand_as(v).to(dtype) for r in refs]
    v = v.to(dtype)
    v_flat = _move_to_last(v, dims_t)  # (*batch, N)
    b_flat = torch.stack([_move_to_last(r, dims_t) for r in refs], -1)  # (*batch, N, k)
    n, k = b_flat.shape[-2:]
    # Scale each column to unit norm first (without overflow or underflow of the norm):
    # QR's rank test is then relative to each reference.
    b_flat = _unit(b_flat, (b_flat.ndim - 2,))
    q, r = torch.linalg.qr(b_flat, mode="reduced")  # q: (*batch, N, min(N, k))
    diag = r.diagonal(dim1=-2, dim2=-1).abs()
    if rtol is None:
        rtol = max(n, k) * torch.finfo(dtype).eps
    if diag.shape[-1] == 0:  # vectors with no entries: nothing to remove
        return v.clone()
    scale = diag.amax(dim=-1, keepdim=True)
    keep = (diag > rtol * scale) & (scale > 0)
    q = q * keep.unsqueeze(-2).to(dtype)
    out = v_flat
    for _ in range(2):
        out = out - (q @ (q.mT @ out.unsqueeze(-1))).squeeze(-1)
    return _restore(out, v, dims_t)


def cosine(u: Tensor, v: Tensor, dims: Dims = None) -> Tensor:
    """Cosine of the angle between ``u`` and ``v``: ``<u, v> / (||u|| ||v||)``.

    Scale-free, so it is the right test of orthogonality in floating point
    (``<u, v> == 0`` fails by rounding). Defined as 0 when either vector is zero.

    Returns:
        The shape of ``u`` without ``dims`` (a 0-d tensor for ``dims=None``).

    Raises:
        TypeError, ValueError: as :func:`inner`.
    """
    u, v, dims = _prepare(u, v, dims, ("u", "v"))
    if u.ndim == 0:
        # sign(u) sign(v): the general path has this value too, but a gradient of
        # +-1 with respect to a zero argument; sign's gradient is 0 everywhere
        return torch.sign(u) * torch.sign(v)
    # Normalise before multiplying: no overflow or underflow of the inner product.
    return (_unit(u, dims) * _unit(v, dims)).sum(dim=dims)


def is_orthogonal(u: Tensor, v: Tensor, dims: Dims = None, tol: float | None = None) -> Tensor:
    """Whether ``|cosine(u, v)| <= tol`` for each vector pair.

    Args:
        tol: bound on the absolute cosine; default from :data:`ORTHOGONALITY_TOL`
            for the dtype (``1e-5`` for float32, ``1e-12`` for float64).

    Returns:
        A bool tensor with the shape of :func:`cosine`'s result (0-d for ``dims=None``,
        usable directly in ``if``).
    """
    c = cosine(u, v, dims)
    if tol is None:
        tol = ORTHOGONALITY_TOL.get(c.dtype, 1e-5)
    if not tol >= 0:
        raise ValueError(f"tol: expected a non-negative number, got {tol!r}")
    return c.abs() <= tol


def sphere_step(x: Tensor, egrad: Tensor, lr: float | Tensor, dims: Dims = None) -> Tensor:
    """One Riemannian gradient-descent step on the sphere ``||x|| = const``.

    .. math::

        y = x - \\eta\\, (g - \\tfrac{\\langle g, x\\rangle}{\\langle x, x\\rangle} x),
        \\qquad x_{new} = \\frac{\\lVert x\\rVert}{\\lVert y\\rVert}\\, y

    The step follows the Riemannian gradient (the component of the Euclidean
    gradient ``g`` orthogonal to ``x``), then the retraction rescales, so the
    norm of each vector is kept to rounding. A zero ``x`` stays zero. Both norms
    are computed scaled by the largest entry, so the step works for vectors of
    any magnitude the dtype holds (``1e-30`` or ``1e30`` in float32). A 0-d ``x``
    is a point of the 0-sphere ``{-|x|, |x|}`` with no tangent direction: it does not move.

    Args:
        x: ``(*shape)`` the current point(s).
        egrad: the Euclidean gradient at ``x``; broadcasts to ``x``'s shape.
        lr: the step size ``eta >= 0`` (a number or a tensor that broadcasts per vector).
        dims: the dimensions forming one vector (see the module's Convention).

    Returns:
        ``(*shape)``, the new point(s), with ``||x_new|| == ||x||`` per vector.
    """
    x, egrad, dims_t = _prepare(x, egrad, dims, ("x", "egrad"))
    lr_t = torch.as_tensor(lr, dtype=x.dtype, device=x.device)
    if not bool(torch.isfinite(lr_t).all()) or bool((lr_t < 0).any()):
        raise ValueError(f"lr: expected a finite, non-negative step size, got {lr!r}")
    y = x - lr_t * _orthogonal(egrad, x, dims_t)
    # ||x|| / ||y|| as (max|x| / max|y|) * (||x / max|x||| / ||y / max|y|||): no overflow
    x_largest, x_scaled = _scaled(x, dims_t)
    y_largest, y_scaled = _scaled(y, dims_t)
    x_norm = torch.linalg.vector_norm(x_scaled, dim=dims_t, keepdim=True)
    y_norm = torch.linalg.vector_norm(y_scaled, dim=dims_t, keepdim=True)
    return y * ((x_largest / _nonzero(y_largest)) * (x_norm / _nonzero(y_norm)))


def pcgrad(
    grads: Sequence[Tensor],
    generator: torch.Generator | None = None,
    reduction: str = "sum",
) -> Tensor | list[Tensor]:
    """PCGrad's gradient surgery for several task gradients (Yu et al., 2020).

    For each task ``i``, visit the other tasks ``j`` in random order; whenever the
    (already edited) ``g_i`` conflicts with the *original* ``g_j`` (``<g_i, g_j> < 0``),
    remove the conflicting part: ``g_i <- g_i - <g_i, g_j>/||g_j||^2 g_j``. The
    edited gradients are then summed.

    Args:
        grads: ``T`` tensors of one shape, the gradients of ``T`` task losses with
            respect to the same parameters (flatten and concatenate parameters first).
        generator: fixes the order in which the other tasks are visited.
        reduction: ``"sum"`` (the update PCGrad applies), ``"mean"`` or ``"none"``
            (the list of edited gradients).

    Returns:
        A tensor of the common shape, or a list of ``T`` tensors for ``"none"``, in
        the dtype promoted over all gradients.

    Raises:
        TypeError: a gradient is not a floating-point tensor.
        ValueError: ``grads`` is empty or not a list, the gradients differ in shape or
            device, or ``reduction`` is unknown.
    """
    if isinstance(grads, Tensor) or not isinstance(grads, Sequence) or len(grads) == 0:
        raise ValueError("grads: expected a non-empty list of gradient tensors")
    originals = [check_tensor(f"grads[{i}]", g) for i, g in enumerate(grads)]
    first = originals[0]
    for i, g in enumerate(originals):
        if g.shape != first.shape:
            raise ValueError(
                f"grads[{i}]: expected the shape of grads[0], {tuple(first.shape)}, "
                f"got {tuple(g.shape)}"
            )
        if g.device != first.device:
            raise ValueError(f"grads[{i}]: on {g.device}, but grads[0] is on {first.device}")
    dtype = reduce(torch.promote_types, (g.dtype for g in originals))
    originals = [g.to(dtype) for g in originals]
    all_dims = tuple(range(first.ndim))
    if reduction not in ("sum", "mean", "none"):
        raise ValueError(f"reduction: expected 'sum', 'mean' or 'none', got {reduction!r}")
    edited = []
    for i, g_i in enumerate(originals):
        g = g_i.clone()
        others = [j for j in range(len(originals)) if j != i]
        order = torch.randperm(len(others), generator=generator).tolist()
        for position in order:
            g_j = originals[others[position]]
            if (g * g_j).sum() < 0:
                g = _orthogonal(g, g_j, all_dims)
        edited.append(g)
    if reduction == "none":
        return edited
    total = torch.stack(edited).sum(0)
    return total / len(edited) if reduction == "mean" else total
