"""Vector-Jacobian and Jacobian-vector products, and the adjoint test (chapter 2).

For ``f`` mapping a tensor ``x`` of shape ``S_in`` to ``y = f(x)`` of shape
``S_out``, the Jacobian is the tensor ``J`` of shape ``S_out + S_in`` with

.. math::

    J_{k, i} = \\frac{\\partial y_k}{\\partial x_i}

(``k`` runs over the output's entries, ``i`` over the input's). Two products
with ``J`` never need ``J`` itself:

- the **vector-Jacobian product** (reverse mode, "pullback"), input-shaped:
  ``(v^T J)_i = sum_k v_k dy_k/dx_i`` for ``v`` of the *output's* shape. This is
  what ``torch.autograd.grad(y, x, grad_outputs=v)`` and ``y.backward(v)``
  compute; ``v`` plays the role of ``dL/dy`` and the result is ``dL/dx``.
- the **Jacobian-vector product** (forward mode, "pushforward"),
  output-shaped: ``(J t)_k = sum_i dy_k/dx_i t_i`` for ``t`` of the *input's*
  shape: the directional derivative ``d/de f(x + e t)`` at ``e = 0``.

They are adjoint to each other: ``<v, J t> = <v^T J, t>`` for every ``v`` and
``t``. :func:`dot_product_test` measures how far a VJP and a JVP are from that
identity; it is the sharpest way to check a hand-written backward.

The full Jacobian row by row is :func:`gradbook.jacobian.jacobian_loop`
(chapter 3); :func:`vjp_from_jacobian` contracts it with ``v``, the slow,
obviously correct twin of :func:`vjp`.

Every function here takes one tensor ``x`` and a function ``f`` of one tensor
that returns one tensor. Results are differentiable: when ``x``, ``v`` or ``t``
requires grad, the product carries a graph (what ``create_graph=True`` does for
``torch.autograd.grad``), so products of products (double backward) work.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from gradbook._checks import check_callable, check_int, check_tensor
from gradbook.jacobian import jacobian_loop

Function = Callable[[Tensor], Tensor]


def _check_output(out: object) -> Tensor:
    if not isinstance(out, Tensor):
        raise TypeError(f"f: expected f(x) to return a torch.Tensor, got {type(out).__name__}")
    if not out.is_floating_point():
        raise TypeError(f"f: expected f(x) to return a floating-point tensor, got {out.dtype}")
    return out


def _check_like(name: str, value: Tensor, like: Tensor, what: str) -> None:
    """``value`` must match ``like`` (the input or the output) in shape, dtype and device."""
    if value.shape != like.shape:
        raise ValueError(
            f"{name}: expected shape {tuple(like.shape)} ({what}'s shape), got {tuple(value.shape)}"
        )
    if value.dtype != like.dtype:
        raise ValueError(f"{name}: expected dtype {like.dtype} ({what}'s dtype), got {value.dtype}")
    if value.device != like.device:
        raise ValueError(
            f"{name}: expected device {like.device} ({what}'s device), got {value.device}"
        )


def _as_input(x: Tensor) -> Tensor:
    """``x`` itself when it already requires grad (keeps its history), else a fresh leaf."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


def vjp(f: Function, x: Tensor, v: Tensor) -> Tensor:
    """The vector-Jacobian product ``v^T J`` of ``f`` at ``x``: ``sum_k v_k dy_k/dx_i``.

    The same as ``torch.autograd.grad(f(x), x, grad_outputs=v)``: ``v`` has the
    *output's* shape (it is ``dL/dy``), the result has the *input's* shape (it is
    ``dL/dx``).

    Args:
        f: a function of one tensor, ``S_in -> S_out``.
        x: ``S_in`` floating tensor, the point.
        v: ``S_out`` tensor with ``f(x)``'s dtype and device.

    Returns:
        ``S_in``, the pullback of ``v``. Zeros when ``f(x)`` does not depend on
        ``x``. Differentiable in ``x`` and ``v`` when either requires grad.

    Raises:
        TypeError: ``x``, ``v`` or ``f(x)`` is not a floating tensor, or ``f`` is not callable.
        ValueError: ``v`` does not have the output's shape, dtype or device (the
            message names both shapes).
    """
    check_callable("f", f, "a function of one tensor")
    check_tensor("x", x)
    check_tensor("v", v)
    with torch.enable_grad():
        xin = _as_input(x)
        out = _check_output(f(xin))
        _check_like("v", v, out, "the output f(x)")
        if not out.requires_grad:
            return torch.zeros_like(x)
        create_graph = x.requires_grad or v.requires_grad
        (grad,) = torch.autograd.grad(
            out, xin, grad_outputs=v, create_graph=create_graph, allow_unused=True
        )
    return torch.zeros_like(x) if grad is None else grad


def jvp(f: Function, x: Tensor, t: Tensor) -> Tensor:
    """The Jacobian-vector product ``J t`` of ``f`` at ``x``, by true forward mode.

    ``(J t)_k = sum_i dy_k/dx_i t_i = d/de f(x + e t)`` at ``e = 0``, computed
    with dual numbers (``torch.autograd.forward_ad``): one pass of ``f``
    carrying a tangent beside every value, no backward pass.

    Args:
        f: a function of one tensor, ``S_in -> S_out``; every operation in it
            needs a forward-mode formula (built-in operations have one; a custom
            ``autograd.Function`` needs a ``jvp`` method).
        x: ``S_in`` floating tensor, the point.
        t: ``S_in`` tensor with ``x``'s dtype and device, the tangent (direction).

    Returns:
        ``S_out``, the pushforward of ``t``; zeros when ``f(x)`` does not depend
        on ``x``. Differentiable in ``x`` and ``t`` when either requires grad.

    Raises:
        TypeError: ``x``, ``t`` or ``f(x)`` is not a floating tensor, or ``f`` is not callable.
        ValueError: ``t`` does not have the input's shape, dtype or device.
    """
    check_callable("f", f, "a function of one tensor")
    check_tensor("x", x)
    check_tensor("t", t)
    _check_like("t", t, x, "the input x")
    with fwAD.dual_level():
        out = _check_output(f(fwAD.make_dual(x, t)))
        primal, tangent = fwAD.unpack_dual(out)
    return torch.zeros_like(primal) if tangent is None else tangent


def jvp_double_backward(f: Function, x: Tensor, t: Tensor) -> Tensor:
    """``J t`` from two reverse passes: the double-backward trick.

    ``g(u) = u^T J`` is linear in ``u``, and its own VJP with ``t`` is
    ``(d g / d u)^T t = J t``. So ``J t = vjp(u -> vjp(f, x, u), u0, t)`` for any
    ``u0`` of the output's shape (zeros here). This needs a backward that is
    itself differentiable, costs about two backward passes, and is what
    ``torch.autograd.functional.jvp`` does; :func:`jvp` (forward mode) is cheaper.

    Args, Returns, Raises: as :func:`jvp`.
    """
    check_callable("f", f, "a function of one tensor")
    check_tensor("x", x)
    check_tensor("t", t)
    _check_like("t", t, x, "the input x")
    with torch.enable_grad():
        xin = _as_input(x)
        out = _check_output(f(xin))
        if not out.requires_grad:
            return torch.zeros_like(out)
        u = torch.zeros_like(out, requires_grad=True)
        (pullback,) = torch.autograd.grad(
            out, xin, grad_outputs=u, create_graph=True, allow_unused=True
        )
        if pullback is None or not pullback.requires_grad:  # f(x) does not depend on x
            return torch.zeros_like(out)
        (push,) = torch.autograd.grad(
            pullback,
            u,
            grad_outputs=t,
            create_graph=x.requires_grad or t.requires_grad,
            allow_unused=True,
        )
    return torch.zeros_like(out) if push is None else push


def vjp_from_jacobian(f: Function, x: Tensor, v: Tensor) -> Tensor:
    """``v^T J`` by materialising the Jacobian and contracting it with ``v``.

    ``J = jacobian_loop(f, x)`` (:func:`gradbook.jacobian.jacobian_loop`, one
    backward pass per output entry), then ``(v^T J)_i = sum_k v_k J[k][i]``, a
    ``tensordot`` over the output's axes. The slow, obviously correct twin of
    :func:`vjp` (``out.numel()`` backward passes and ``out.numel() * x.numel()``
    memory), for tests and pictures.

    Args:
        f: a function of one tensor, ``S_in -> S_out``, in ``x``'s dtype and device.
        x: ``S_in`` floating tensor, the point.
        v: ``S_out`` tensor (cast to the Jacobian's dtype).

    Returns:
        ``S_in``, the pullback of ``v``. Not differentiable (the Jacobian is
        built from a detached ``x``).

    Raises:
        TypeError: ``x``, ``v`` or ``f(x)`` is not a floating tensor, or ``f`` is not callable.
        ValueError: ``v`` does not have the output's shape.
    """
    check_tensor("v", v)
    jac = jacobian_loop(f, x)
    out_shape = jac.shape[: jac.ndim - x.ndim]
    if v.shape != out_shape:
        raise ValueError(
            f"v: expected shape {tuple(out_shape)} (the output f(x)'s shape), got {tuple(v.shape)}"
        )
    return torch.tensordot(v.to(jac.dtype), jac, dims=v.ndim)


#: The earlier name of :func:`vjp_from_jacobian` (``v^T J`` from the materialised
#: Jacobian; "explicit" now only means explicit tangents, as in
#: :func:`gradbook.jacobian.jacobian_fwd_explicit`).
vjp_explicit = vjp_from_jacobian

#: The earlier name of :func:`gradbook.jacobian.jacobian_loop`, the full Jacobian
#: one vector-Jacobian product per output entry (row ``k`` is ``e_k^T J``).
jacobian_explicit = jacobian_loop


def _inner(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum()


def _largest(a: Tensor) -> float:
    """``max |a|`` as a Python float, 0.0 for an empty tensor."""
    return a.abs().max().item() if a.numel() else 0.0


def dot_product_test(
    f: Function,
    x: Tensor,
    generator: torch.Generator | None = None,
    *,
    vjp_fn: Callable[[Tensor], Tensor] | None = None,
    jvp_fn: Callable[[Tensor], Tensor] | None = None,
    trials: int = 3,
) -> float:
    """Relative discrepancy of the adjoint identity ``<v, J t> = <v^T J, t>``.

    For random ``v`` (the output's shape) and ``t`` (the input's shape), with
    ``a = <v, J t>`` from a JVP and ``b = <v^T J, t>`` from a VJP, returns the
    largest over ``trials`` of

    .. math::

        \\frac{|a - b|}{\\lVert v\\rVert \\lVert J t\\rVert
                      + \\lVert v^T J\\rVert \\lVert t\\rVert},

    a number between 0 and 1 (Cauchy-Schwarz bounds both ``|a|`` and ``|b|`` by
    the denominator, so the test is scale-free and cannot be fooled by a
    nearly-zero ``a``). ``J t`` and ``v^T J`` are divided by their largest entry
    before the products, so Jacobians with entries near the dtype's overflow or
    underflow threshold (``1e20`` or ``1e-25`` in float32) are tested as well.
    A correct pair gives a few units of rounding (``~1e-16`` in float64,
    ``~1e-7`` in float32); a wrong VJP (a missing term, a transposed Jacobian,
    a wrong sign) gives ``1e-3`` to ``1``.

    By default the JVP is forward mode through ``f`` (:func:`jvp`) and the VJP
    is reverse mode (:func:`vjp`): the test then checks autograd's backward of
    ``f`` (for example a custom ``autograd.Function``) against forward mode.
    To check a hand-written backward, pass it as ``vjp_fn(v) -> v^T J`` at
    ``x`` and keep ``f`` the plain forward code; pass ``jvp_fn(t) -> J t`` when
    ``f`` has no forward-mode formula.

    Args:
        f: a function of one tensor, ``S_in -> S_out``.
        x: ``S_in`` floating tensor, the point.
        generator: CPU generator for ``v`` and ``t`` (drawn on the CPU, then
            moved to ``x``'s device, so the draw is the same on every device).
        vjp_fn: optional ``S_out -> S_in`` map to test instead of autograd's VJP.
        jvp_fn: optional ``S_in -> S_out`` map to use instead of forward mode.
        trials: number of random pairs ``(v, t)``; at least 1.

    Returns:
        The largest relative discrepancy, a Python float; 0.0 when ``J t`` and
        ``v^T J`` are both zero.

    Raises:
        TypeError: as :func:`vjp`, or ``vjp_fn``/``jvp_fn`` return a non-tensor.
        TypeError: ``trials`` is not an int.
        ValueError: ``trials < 1``, or ``vjp_fn``/``jvp_fn`` return the wrong shape.
    """
    check_callable("f", f, "a function of one tensor")
    check_tensor("x", x)
    trials = check_int("trials", trials)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    x = x.detach()
    with torch.no_grad():
        out = _check_output(f(x))
    worst = 0.0
    for _ in range(trials):
        v = torch.randn(out.shape, generator=generator, dtype=torch.float64).to(
            out.device, out.dtype
        )
        t = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(x.device, x.dtype)
        jt = jvp(f, x, t) if jvp_fn is None else jvp_fn(t)
        vj = vjp(f, x, v) if vjp_fn is None else vjp_fn(v)
        check_tensor("jvp_fn(t)", jt)
        check_tensor("vjp_fn(v)", vj)
        _check_like("jvp_fn(t)", jt, out, "the output f(x)")
        _check_like("vjp_fn(v)", vj, x, "the input x")
        jt, vj = jt.detach(), vj.detach()
        # one common factor for J t and v^T J leaves the ratio unchanged, and no square
        # in the norms under- or overflows, however large or small J is
        common = max(_largest(jt), _largest(vj))
        if common > 0:
            jt, vj = jt / common, vj / common
        a, b = _inner(v, jt), _inner(vj, t)
        scale = v.norm() * jt.norm() + vj.norm() * t.norm()
        if scale > 0:
            worst = max(worst, ((a - b).abs() / scale).item())
    return worst
