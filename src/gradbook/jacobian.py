"""Full Jacobians: a row loop (the ``theano.scan`` pattern), reverse and forward mode (chapter 3).

For ``f: R^n -> R^m`` the Jacobian is the ``m x n`` matrix

.. math::

    J_{ij} = \\frac{\\partial f_i}{\\partial x_j}.

Automatic differentiation never forms ``J`` directly. Reverse mode gives one
*row* per vector-Jacobian product (VJP), ``e_i^T J``; forward mode gives one
*column* per Jacobian-vector product (JVP), ``J e_j``. So a full Jacobian costs

- ``m`` VJPs in reverse mode (:func:`jacobian` with ``mode="rev"``, or the row
  loop :func:`jacobian_loop`, one ``torch.autograd.grad`` call per row, which is
  what ``theano.scan`` over ``T.grad(y[i], x)`` does);
- ``n`` JVPs in forward mode (``mode="fwd"``).

Reverse mode wins for *wide* Jacobians (few outputs, many inputs, ``m < n``),
forward mode for *tall* ones (``m > n``); ``mode="auto"`` picks between them with
:func:`choose_mode`. ``mode="rev"`` and ``mode="fwd"`` do not loop in Python: they
push all basis vectors through one batched VJP or JVP with :func:`torch.func.vmap`
(``chunk_size`` bounds how many at once, and hence the memory).

Convention (shapes):
    ``x`` may have any shape and ``f(x)`` any shape; the Jacobian has shape
    ``f(x).shape + x.shape``, entry ``[i..., j...] = d f(x)[i...] / d x[j...]``
    (the layout of :func:`torch.func.jacrev` and
    :func:`torch.autograd.functional.jacobian`). For a vector ``x`` of length
    ``n`` and a vector output of length ``m`` this is the ``(m, n)`` matrix above,
    rows indexed by outputs. Its transpose is a different matrix: check with a
    non-square example.

dtype and device:
    ``f(x)`` must have the dtype and device of ``x`` (a floating dtype); the
    Jacobian has that dtype and device too.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from gradbook._checks import check_callable, check_int, check_tensor

Mode = Literal["auto", "rev", "fwd", "loop"]

#: The modes :func:`jacobian` accepts.
MODES: tuple[str, ...] = ("auto", "rev", "fwd", "loop")

__all__ = [
    "MODES",
    "DtypeMismatchError",
    "choose_mode",
    "hessian",
    "jacobian",
    "jacobian_fwd_explicit",
    "jacobian_loop",
    "make_tanh_mlp",
    "tanh_affine",
    "tanh_affine_jacobian",
    "tanh_mlp",
    "tanh_mlp_jacobian",
]


# --------------------------------------------------------------------------- validation


class DtypeMismatchError(TypeError, ValueError):
    """``f(x)`` and ``x`` disagree on the dtype (a ``TypeError`` and a ``ValueError``)."""


def _check_input(x: object) -> Tensor:
    return check_tensor("x", x, hint="only floating-point tensors have derivatives")


def _check_output(out: object, x: Tensor) -> Tensor:
    """``f(x)`` must be a tensor with the dtype and device of ``x``."""
    if not isinstance(out, Tensor):
        raise TypeError(
            f"f: expected f(x) to return a torch.Tensor, got {type(out).__name__} "
            "(stack several outputs into one tensor, or take the Jacobian of each)"
        )
    if out.dtype != x.dtype:
        raise DtypeMismatchError(
            f"f: f(x) has dtype {out.dtype} but x has dtype {x.dtype}; the Jacobian needs "
            "one dtype, so cast inside f or pass x in the dtype f computes in"
        )
    if out.device != x.device:
        raise ValueError(f"f: f(x) is on {out.device} but x is on {x.device}")
    return out


def _evaluate(f: Callable[[Tensor], Tensor], z: Tensor, x: Tensor) -> Tensor:
    """``f(z)``, validated; dtype clashes inside ``f`` are reported in terms of ``x``."""
    try:
        out = f(z)
    except RuntimeError as error:
        text = str(error)
        if "dtype" in text or "scalar type" in text:
            raise DtypeMismatchError(
                f"f: failed for x of dtype {x.dtype} ({text}); are f's parameters in "
                "another dtype? Cast them, or pass x in their dtype"
            ) from error
        raise
    return _check_output(out, x)


def _checked(f: Callable[[Tensor], Tensor], x: Tensor) -> Callable[[Tensor], Tensor]:
    """``f`` with its output validated (also inside :mod:`torch.func` transforms)."""

    def wrapped(z: Tensor) -> Tensor:
        return _evaluate(f, z, x)

    return wrapped


def _probe_shape(f: Callable[[Tensor], Tensor], x: Tensor) -> torch.Size:
    """The shape of ``f(x)``, evaluated without building a graph."""
    with torch.no_grad():
        return _evaluate(f, x, x).shape


def choose_mode(n_in: int, n_out: int) -> str:
    """The cheaper AD mode for a Jacobian with ``n_out`` rows and ``n_in`` columns.

    Reverse mode needs ``n_out`` VJPs, forward mode ``n_in`` JVPs, each costing a
    small multiple of one evaluation of ``f``. So a *tall* Jacobian
    (``n_out > n_in``) goes forward and a *wide* or square one in reverse (a VJP
    and a JVP cost about the same; ties go to reverse, PyTorch's native mode).

    Args:
        n_in: number of input entries ``n = x.numel()`` (columns of ``J``).
        n_out: number of output entries ``m = f(x).numel()`` (rows of ``J``).

    Returns:
        ``"fwd"`` or ``"rev"``.

    Raises:
        TypeError: an argument is not an int.
        ValueError: an argument is negative.
    """
    n_in, n_out = check_int("n_in", n_in, minimum=0), check_int("n_out", n_out, minimum=0)
    return "fwd" if n_out > n_in else "rev"


# --------------------------------------------------------------------------- the modes


def _basis_chunks(
    count: int, shape: torch.Size, like: Tensor, chunk_size: int | None
) -> list[Tensor]:
    """Unit vectors ``e_0 ... e_{count-1}`` reshaped to ``shape``, in chunks.

    Each chunk is built on its own, so a chunked Jacobian never allocates the
    full ``count x count`` identity.
    """
    step = count if chunk_size is None else min(chunk_size, count)
    chunks = []
    for start in range(0, count, step):
        stop = min(start + step, count)
        chunk = torch.zeros(stop - start, count, dtype=like.dtype, device=like.device)
        rows = torch.arange(stop - start, device=like.device)
        chunk[rows, rows + start] = 1
        chunks.append(chunk.reshape(stop - start, *shape))
    return chunks


def _jacobian_rev(f: Callable[[Tensor], Tensor], x: Tensor, chunk_size: int | None) -> Tensor:
    """Reverse mode: one VJP per output entry, batched by :func:`torch.func.jacrev`."""
    if x.numel() == 0:
        return x.new_zeros(_probe_shape(f, x) + x.shape)
    return torch.func.jacrev(_checked(f, x), chunk_size=chunk_size)(x)


def _jacobian_fwd(f: Callable[[Tensor], Tensor], x: Tensor, chunk_size: int | None) -> Tensor:
    """Forward mode: one JVP per input entry, batched with ``vmap``.

    Without ``chunk_size`` this is :func:`torch.func.jacfwd`; with it (``jacfwd``
    has no such argument) the one-hot tangents go through ``vmap(jvp)`` a chunk
    at a time.
    """
    n = x.numel()
    if n == 0:
        return x.new_zeros(_probe_shape(f, x) + x.shape)
    checked = _checked(f, x)
    if chunk_size is None or chunk_size >= n:
        return torch.func.jacfwd(checked)(x)

    def push(tangent: Tensor) -> Tensor:
        return torch.func.jvp(checked, (x,), (tangent,))[1]

    return _push_basis(push, x, chunk_size)


def _push_basis(push: Callable[[Tensor], Tensor], x: Tensor, chunk_size: int | None) -> Tensor:
    """The Jacobian from ``push(tangent) = J tangent``, over one-hot tangents in chunks."""
    n = x.numel()

    push_all = torch.func.vmap(push)
    columns = torch.cat([push_all(chunk) for chunk in _basis_chunks(n, x.shape, x, chunk_size)])
    out_shape = columns.shape[1:]  # columns: (n, *out.shape), column j = J e_j
    return columns.reshape(n, -1).T.reshape(out_shape + x.shape)


Constants = Tensor | tuple[Tensor, ...] | list[Tensor] | dict[str, Tensor]


def _zero_tangents(constants: object) -> Constants:
    """Dense zeros shaped like ``constants`` (a tensor, or a tuple, list or dict of them)."""

    def zeros(value: object, where: str) -> Tensor:
        hint = "forward mode gives it a zero tangent of its dtype; close over it in f instead"
        return torch.zeros_like(check_tensor(where, value, hint=hint))

    if isinstance(constants, Tensor):
        return zeros(constants, "constants")
    if isinstance(constants, dict):
        return {key: zeros(value, f"constants[{key!r}]") for key, value in constants.items()}
    if isinstance(constants, (tuple, list)):
        return type(constants)(zeros(v, f"constants[{i}]") for i, v in enumerate(constants))
    raise TypeError(
        "constants: expected a tensor, or a tuple, list or dict of tensors, "
        f"got {type(constants).__name__}"
    )


def jacobian_fwd_explicit(
    f: Callable[[Tensor, Constants], Tensor],
    x: Tensor,
    constants: Constants,
    chunk_size: int | None = None,
) -> Tensor:
    """Forward-mode Jacobian of ``f(x, constants)`` in ``x``, constants passed explicitly.

    The same matrix as ``jacobian(lambda z: f(z, constants), x, mode="fwd")``,

    .. math::

        J[i..., j...] = \\frac{\\partial f(x, c)[i...]}{\\partial x[j...]},

    computed as ``n`` batched JVPs ``J e_j``, but the constants ``c`` (weights,
    biases) enter each JVP as primals with *dense zero* tangents instead of
    being captured by a closure. Inside :func:`torch.func.jvp` a captured tensor
    has no tangent, PyTorch stands in a ``ZeroTensor``, and every elementwise op
    that meets one (``W x + b``, ``c * x``) works out its result shape with a
    Python meta kernel, whose overhead per op and call dwarfs the arithmetic of
    a small network. A dense zero tangent costs one small extra multiply-add
    instead (chapter 3 measures both). Derivatives with respect to the constants
    themselves are *not* computed here; take ``jacobian`` in them for that.

    Args:
        f: ``f(x, constants) -> Tensor`` with the dtype and device of ``x``; it must
            work under :mod:`torch.func` transforms (as for :func:`jacobian`).
        x: ``(*in_shape)`` floating-point tensor.
        constants: a floating-point tensor, or a tuple, list or dict of them, passed
            to ``f`` as its second argument unchanged.
        chunk_size: at most this many JVPs at once; ``None`` for all ``n``.

    Returns:
        ``(*out_shape, *in_shape)`` tensor with the dtype and device of ``x``,
        differentiable like ``jacobian(..., mode="fwd")``.

    Raises:
        TypeError: as :func:`jacobian`; also when ``constants`` is not a tensor or a
            tuple, list or dict of floating-point tensors.
        DtypeMismatchError, ValueError: as :func:`jacobian`.

    Example:
        >>> W, b = torch.eye(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
        >>> x = torch.tensor([4.0, 4.0], dtype=torch.float64)
        >>> jacobian_fwd_explicit(lambda z, c: c[0] @ z**2 + c[1], x, (W, b)).tolist()
        [[8.0, 0.0], [0.0, 8.0]]
    """
    check_callable("f", f, "a callable f(x) -> Tensor")
    x = _check_input(x)
    chunk_size = check_int("chunk_size", chunk_size, allow_none=True)
    zero_tangents = _zero_tangents(constants)

    def with_constants(z: Tensor, c: Constants) -> Tensor:
        return _evaluate(lambda v: f(v, c), z, x)

    if x.numel() == 0:
        return x.new_zeros(_probe_shape(lambda z: with_constants(z, constants), x) + x.shape)

    def push(tangent: Tensor) -> Tensor:
        return torch.func.jvp(with_constants, (x, constants), (tangent, zero_tangents))[1]

    return _push_basis(push, x, chunk_size)


def jacobian_loop(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """The Jacobian row by row: one ``torch.autograd.grad`` call per output entry.

    This is the PyTorch twin of the ``theano.scan`` Jacobian,
    ``scan(lambda i: grad(y[i], x), sequences=arange(len(y)))``: row ``i`` is the
    gradient of the scalar ``y[i]`` (the VJP with the one-hot cotangent ``e_i``),

    .. math::

        J_{i,:} = e_i^\\top J = \\nabla_x\\, f_i(x).

    ``f`` runs once; the graph is kept (``retain_graph=True``) for every row but
    the last, since a backward pass frees the saved tensors it used. Costs ``m``
    backward passes with Python overhead each; it is the slow, obviously correct
    reference for :func:`jacobian`.

    Args:
        f: a function of one tensor returning one tensor of the same dtype and device.
        x: ``(*in_shape)`` floating-point tensor. It is detached first: the result
            carries no graph back to ``x`` (use ``mode="rev"``/``"fwd"`` of
            :func:`jacobian`, which compose with :mod:`torch.func`, for that).

    Returns:
        ``(*out_shape, *in_shape)`` tensor. Outputs that do not depend on ``x``
        have zero rows.

    Raises:
        TypeError: ``f`` is not callable, ``x`` is not a floating-point tensor,
            ``f(x)`` is not a tensor.
        DtypeMismatchError: (a TypeError and a ValueError) ``f(x)`` has another
            dtype than ``x``, or ``f`` fails on a dtype clash inside.
        ValueError: ``f(x)`` is on another device than ``x``.
    """
    check_callable("f", f, "a callable f(x) -> Tensor")
    x = _check_input(x)
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = _evaluate(f, leaf, x)
    flat = out.reshape(-1)
    m = flat.numel()
    if m == 0 or x.numel() == 0 or not flat.requires_grad:
        return x.new_zeros(out.shape + x.shape)
    rows = []
    for i in range(m):
        (row,) = torch.autograd.grad(
            flat[i], leaf, retain_graph=i < m - 1, allow_unused=True, materialize_grads=True
        )
        rows.append(row)
    return torch.stack(rows).reshape(out.shape + x.shape)


def jacobian(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    mode: Mode = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    """The Jacobian of ``f`` at ``x``, shape ``f(x).shape + x.shape``.

    .. math::

        J[i..., j...] = \\frac{\\partial f(x)[i...]}{\\partial x[j...]}

    Args:
        f: a function of one tensor returning one tensor with the dtype and device
            of ``x``. For ``"rev"``, ``"fwd"`` and ``"auto"`` it must work under
            :mod:`torch.func` transforms (no in-place edits of ``x``, no ``.item()``
            on values that depend on ``x``, no random ops).
        x: ``(*in_shape)`` floating-point tensor, on any device.
        mode:
            ``"rev"``: ``m = f(x).numel()`` VJPs with one-hot cotangents, batched
            with :func:`torch.func.vmap` (:func:`torch.func.jacrev`).
            ``"fwd"``: ``n = x.numel()`` JVPs with one-hot tangents, batched
            (:func:`torch.func.jacfwd`).
            ``"loop"``: :func:`jacobian_loop`, one ``autograd.grad`` per row.
            ``"auto"``: ``"fwd"`` for tall Jacobians (``m > n``), else ``"rev"``
            (see :func:`choose_mode`; the choice is remembered per function and
            input shape). It first evaluates ``f`` once, without a
            graph, to learn ``m``. The rule counts passes, not fixed costs: for
            small Jacobians the fixed cost per operation can decide instead, and
            forward mode of an ``f`` with captured constants pays extra per
            operation (see :func:`jacobian_fwd_explicit`).
        chunk_size: at most this many VJPs (reverse) or JVPs (forward) are batched
            at once; ``None`` batches all of them. Smaller chunks bound the memory
            (about ``chunk_size`` copies of the intermediates) at some speed cost.
            The loop computes one row at a time whatever its value.

    Returns:
        ``(*out_shape, *in_shape)`` tensor with the dtype and device of ``x``.
        ``"rev"``/``"fwd"``/``"auto"`` are differentiable (they compose, e.g.
        ``jacobian(lambda z: jacobian(f, z), x)`` for second derivatives); the
        loop returns a detached tensor.

    Raises:
        TypeError: ``f`` is not callable; ``x`` is not a floating-point tensor;
            ``f(x)`` is not a tensor; ``chunk_size`` is not an int.
        DtypeMismatchError: (both a TypeError and a ValueError) ``f(x)`` has
            another dtype than ``x``, or ``f`` fails on a dtype clash inside.
        ValueError: unknown ``mode``; ``chunk_size < 1``; ``f(x)`` is on another
            device than ``x``.

    Example:
        >>> x = torch.tensor([4.0, 4.0], dtype=torch.float64)
        >>> jacobian(lambda z: z**2, x).tolist()
        [[8.0, 0.0], [0.0, 8.0]]
    """
    check_callable("f", f, "a callable f(x) -> Tensor")
    x = _check_input(x)
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
    chunk_size = check_int("chunk_size", chunk_size, allow_none=True)
    if mode == "loop":
        return jacobian_loop(f, x)
    if mode == "fwd":
        return _jacobian_fwd(f, x, chunk_size)
    if mode == "rev":
        return _jacobian_rev(f, x, chunk_size)
    if _auto_mode(f, x) == "fwd":
        return _jacobian_fwd(f, x, chunk_size)
    return _jacobian_rev(f, x, chunk_size)


# f -> {(input shape, dtype, device type): mode}. The mode only decides speed, never
# the result (both modes compute the same Jacobian), so a stale entry for a function
# whose output size depends on the data costs time at worst, not correctness.
_AUTO_MODES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _auto_mode(f: Callable[[Tensor], Tensor], x: Tensor) -> str:
    """:func:`choose_mode` for ``f`` at ``x``, probing ``f``'s output size once per input shape.

    The probe is one evaluation of ``f`` without a graph; repeated Jacobians of
    the same function at inputs of the same shape (Newton steps, benchmarks,
    training loops) reuse its answer instead of paying for it again.
    """
    key = (tuple(x.shape), x.dtype, x.device.type)
    try:
        known = _AUTO_MODES.setdefault(f, {})
    except TypeError:  # not weak-referenceable (e.g. some builtins): probe every time
        known = {}
    if key not in known:
        known[key] = choose_mode(x.numel(), _probe_shape(f, x).numel())
    return known[key]


def hessian(f: Callable[[Tensor], Tensor], x: Tensor, chunk_size: int | None = None) -> Tensor:
    """The Hessian of a scalar function: the Jacobian of its gradient, forward over reverse.

    .. math::

        H_{jk} = \\frac{\\partial^2 f}{\\partial x_j \\partial x_k}
               = \\frac{\\partial (\\nabla f)_j}{\\partial x_k}

    The gradient (one reverse pass) has as many entries as ``x``, so its
    Jacobian is square; forward mode over it (``jacfwd(jacrev(f))``) avoids
    nesting reverse inside reverse and is the usual fastest choice.

    Args:
        f: a function of one tensor returning a 0-d (or one-element) tensor.
        x: ``(*in_shape)`` floating-point tensor.
        chunk_size: as in :func:`jacobian` (how many JVPs at once).

    Returns:
        ``(*in_shape, *in_shape)`` tensor, symmetric for twice continuously
        differentiable ``f``.

    Raises:
        TypeError, ValueError: as :func:`jacobian`; also ValueError when ``f(x)``
            has more than one entry.
    """
    check_callable("f", f, "a callable f(x) -> Tensor")
    x = _check_input(x)
    chunk_size = check_int("chunk_size", chunk_size, allow_none=True)

    def scalar_f(z: Tensor) -> Tensor:
        out = _evaluate(f, z, x)
        if out.numel() != 1:
            raise ValueError(
                f"f: expected a scalar output (one entry) for a Hessian, got shape "
                f"{tuple(out.shape)}; take jacobian(...) of a vector-valued f instead"
            )
        return out.reshape(())

    return _jacobian_fwd(torch.func.grad(scalar_f), x, chunk_size)


# --------------------------------------------------------------------------- examples


def tanh_affine(A: Tensor, x: Tensor) -> Tensor:
    """``tanh(A x)``: the chapter's running example, ``(m, n), (n,) -> (m,)``."""
    return torch.tanh(A @ x)


def tanh_affine_jacobian(A: Tensor, x: Tensor) -> Tensor:
    """Analytic Jacobian of :func:`tanh_affine`: ``diag(1 - tanh(Ax)^2) A``, shape ``(m, n)``.

    Written by hand (no autodiff), it is the reference the tests hold every mode to.
    """
    t = torch.tanh(A @ x)
    return (1 - t * t).unsqueeze(-1) * A


def make_tanh_mlp(
    n: int,
    m: int,
    hidden: int = 32,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> dict[str, Tensor]:
    """Parameters of a one-hidden-layer tanh MLP ``R^n -> R^m``, drawn on the CPU.

    ``W1: (hidden, n)``, ``b1: (hidden,)``, ``W2: (m, hidden)``, ``b2: (m,)``,
    scaled by ``1/sqrt(fan_in)`` so that activations stay in tanh's useful range.
    """
    n, m, hidden = check_int("n", n), check_int("m", m), check_int("hidden", hidden)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    params = {
        "W1": torch.randn(hidden, n, generator=g, dtype=dtype) / n**0.5,
        "b1": torch.randn(hidden, generator=g, dtype=dtype) * 0.1,
        "W2": torch.randn(m, hidden, generator=g, dtype=dtype) / hidden**0.5,
        "b2": torch.randn(m, generator=g, dtype=dtype) * 0.1,
    }
    return {k: v.to(device) for k, v in params.items()}


def tanh_mlp(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """``W2 tanh(W1 x + b1) + b2`` for ``x`` of shape ``(n,)``; returns ``(m,)``."""
    return params["W2"] @ torch.tanh(params["W1"] @ x + params["b1"]) + params["b2"]


def tanh_mlp_jacobian(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """Analytic Jacobian of :func:`tanh_mlp`: ``W2 diag(1 - h^2) W1``, ``h = tanh(W1 x + b1)``."""
    h = torch.tanh(params["W1"] @ x + params["b1"])
    return params["W2"] @ ((1 - h * h).unsqueeze(-1) * params["W1"])
