"""The autograd boundary: black boxes as ``torch.autograd.Function`` s, first order only.

:func:`wrap_blackbox` (a NumPy black box and a VJP estimator) and
:func:`gradiator` (a black box and its known VJP) both evaluate the black box
through :func:`gradbook.blackbox._calls.evaluate`, the one place that calls it
and converts what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradbook._checks import check_callable, check_finite, check_tensor
from gradbook.blackbox._calls import evaluate
from gradbook.blackbox.estimators import VJPEstimator, resolve_estimator

_FLOAT64_CPU = torch.empty(0, dtype=torch.float64)


def _numpy_output(fun: Callable, x: np.ndarray, where: str) -> np.ndarray:
    """``fun(x)`` as a float64 NumPy array, ``(n,)`` or 0-d, checked to be finite."""
    return evaluate(fun, x, _FLOAT64_CPU, where).numpy()


DOUBLE_BACKWARD_MESSAGE = (
    "{name}: the VJP of this black box is estimated from evaluations, not derived, so it "
    "cannot be differentiated again (double backward, or create_graph=True followed by a "
    "second derivative through the black box)"
)


class _RefuseDoubleBackward(torch.autograd.Function):
    """Identity on ``value`` whose own backward raises: marks a gradient as first-order only.

    ``torch.autograd.function.once_differentiable`` attaches its error node to
    *detached* copies of the outputs, so ``torch.autograd.grad(g, x)`` never
    reaches it and returns a silently incomplete second derivative (it raises
    only when ``.backward()`` runs every node). Routing the gradient through this
    Function, with the tensors it depends on as extra inputs, keeps the graph
    connected, so every path to a second derivative meets the error.
    """

    @staticmethod
    def forward(value: Tensor, message: str, *depends_on: Tensor) -> Tensor:
        return value.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        ctx.message = inputs[1]

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> None:
        raise RuntimeError(ctx.message)


def _first_order_only(grad: Tensor, name: str, *depends_on: Tensor) -> Tensor:
    """``grad``, made to raise if anything differentiates it (only when a graph is being built)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in depends_on):
        return _RefuseDoubleBackward.apply(
            grad, DOUBLE_BACKWARD_MESSAGE.format(name=name), *depends_on
        )
    return grad


class BlackBoxFunction(torch.autograd.Function):
    """``y = fun(x)`` for a NumPy black box, with ``x`` float64 of shape ``(m,)`` or ``(B, m)``."""

    @staticmethod
    def forward(x: Tensor, fun: Callable, estimator: VJPEstimator) -> Tensor:
        rows = x.detach().cpu().numpy().reshape(-1, x.shape[-1])
        outs = [_numpy_output(fun, row, f" at input row {b}") for b, row in enumerate(rows)]
        shapes = {o.shape for o in outs}
        if len(shapes) > 1:
            raise ValueError(f"fun: expected the same output shape for every row, got {shapes}")
        out = torch.from_numpy(np.stack(outs)).to(x.device)
        return out.reshape(tuple(x.shape[:-1]) + outs[0].shape)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, fun, estimator = inputs
        ctx.save_for_backward(x, output)
        ctx.fun, ctx.estimator = fun, estimator

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        x, output = ctx.saved_tensors
        with torch.no_grad():
            grad = BlackBoxFunction._vjp(ctx, x, output, grad_output)
        return _first_order_only(grad, "wrap_blackbox", x, grad_output), None, None

    @staticmethod
    def _vjp(ctx: Any, x: Tensor, output: Tensor, grad_output: Tensor) -> Tensor:
        m = x.shape[-1]
        xs = x.detach().cpu().numpy().reshape(-1, m)
        fxs = output.detach().cpu().numpy().reshape(xs.shape[0], -1)
        gs = grad_output.detach().to(torch.float64).cpu().numpy().reshape(xs.shape[0], -1)

        def checked(point: np.ndarray) -> np.ndarray:
            return _numpy_output(ctx.fun, point, " during the VJP estimate")

        rows = []
        for xb, fb, gb in zip(xs, fxs, gs, strict=True):
            v = np.asarray(ctx.estimator.vjp(checked, xb, fb, gb), dtype=np.float64)
            if v.shape != (m,):
                raise ValueError(f"estimator: expected a VJP of shape ({m},), got {v.shape}")
            rows.append(v)
        return torch.from_numpy(np.stack(rows)).reshape(x.shape).to(x.device, x.dtype)


class BlackBox:
    """A NumPy black box as a differentiable torch function (made by :func:`wrap_blackbox`)."""

    def __init__(self, fun: Callable, estimator: VJPEstimator) -> None:
        self.fun = fun
        self.estimator = estimator

    def __call__(self, x: Tensor) -> Tensor:
        check_tensor("x", x)
        if x.ndim not in (1, 2) or x.shape[-1] == 0:
            raise ValueError(
                f"x: expected shape (m,) or a batch (B, m) with m >= 1, got {tuple(x.shape)}"
            )
        if x.ndim == 2 and x.shape[0] == 0:
            raise ValueError("x: expected a non-empty batch, got shape (0, m)")
        check_finite("x", x.detach())
        y = BlackBoxFunction.apply(x.to(torch.float64), self.fun, self.estimator)
        return y.to(x.dtype)

    def __repr__(self) -> str:
        return f"BlackBox({getattr(self.fun, '__name__', self.fun)!r}, {self.estimator!r})"


def wrap_blackbox(
    fun: Callable[[np.ndarray], Any],
    jacobian: str | VJPEstimator | Callable[[np.ndarray], Any] = "central",
    eps: float | None = None,
) -> BlackBox:
    """Turn a NumPy black box ``(m,) -> (n,)`` into a differentiable torch function.

    The returned ``model(x)`` takes a floating tensor ``x`` of shape ``(m,)`` or a
    batch ``(B, m)`` on any device, evaluates ``fun`` row by row on float64
    NumPy copies, and returns ``(n,)`` or ``(B, n)`` (or ``()``/``(B,)`` for a
    scalar black box) in ``x``'s dtype and on ``x``'s device. Its backward
    returns ``g^T J(x)`` row by row, estimated by ``jacobian``:

    - ``"central"`` (default): central differences, ``2m`` evaluations per row,
      error ``~ 1e-10`` relative with the default step on unit-sized inputs;
      passes ``torch.autograd.gradcheck`` in float64 on a smooth ``fun``;
    - ``"forward"`` / ``"backward"``: one-sided differences, ``m`` evaluations
      (``f(x)`` comes from the forward pass), error ``~ 1e-8`` on unit-sized
      inputs (``~ 2e-7`` at ``|x| ~ 1e3`` on the chapter's test function);
    - an estimator object with ``.vjp(fun, x, fx, g)`` (:class:`SPSA`,
      :class:`JacobianTracker`, :class:`FiniteDifferences`);
    - a callable ``x -> (n, m)`` Jacobian, when one is known.

    The black box always runs in float64, whatever the dtype of ``x``: in
    float32 the rounding of ``f`` (``~1e-7``) divided by a step would swamp
    the differences. The gradient is first-order only: a second derivative
    through an estimated first one would be silently wrong, so any attempt to
    differentiate it (double backward) raises ``RuntimeError``, also through
    ``torch.autograd.grad``, where ``@once_differentiable`` stays silent.

    Args:
        fun: NumPy function ``(m,) -> (n,)`` or ``(m,) -> scalar``.
        jacobian: how to estimate VJPs (see above).
        eps: step of the finite-difference methods (default :func:`default_step`).

    Returns:
        A callable :class:`BlackBox` (``.fun``, ``.estimator``).

    Raises:
        ValueError/TypeError: for an unknown ``jacobian`` or ``eps`` with an
            estimator; when called, for an ``x`` of the wrong rank, dtype, or with
            non-finite entries, and for non-finite black-box output.
    """
    check_callable("fun", fun)
    return BlackBox(fun, resolve_estimator(jacobian, eps))


class _GradiatorFunction(torch.autograd.Function):
    """The forum's ``GradiatorFunction``, in the modern ``setup_context`` style."""

    @staticmethod
    def forward(x: Tensor, fun: Callable, grad_fun: Callable, numpy: bool) -> Tensor:
        arg = x.detach().cpu().numpy() if numpy else x.detach()
        return evaluate(fun, arg, x, vector=False)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, _, grad_fun, numpy = inputs
        ctx.save_for_backward(x)
        ctx.grad_fun, ctx.numpy = grad_fun, numpy

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, None, None, None]:
        if not ctx.needs_input_grad[0]:  # another input asked; x needs nothing
            return None, None, None, None
        (x,) = ctx.saved_tensors
        with torch.no_grad():
            grad = _GradiatorFunction._vjp(ctx, x, grad_output)
        return _first_order_only(grad, "gradiator", x, grad_output), None, None, None

    @staticmethod
    def _vjp(ctx: Any, x: Tensor, grad_output: Tensor) -> Tensor:
        if ctx.numpy:
            grad = ctx.grad_fun(x.detach().cpu().numpy(), grad_output.detach().cpu().numpy())
        else:
            grad = ctx.grad_fun(x.detach(), grad_output.detach())
        grad = grad.detach() if isinstance(grad, Tensor) else torch.as_tensor(np.asarray(grad))
        if tuple(grad.shape) != tuple(x.shape):
            raise ValueError(
                f"grad_fun: expected a gradient of the input's shape {tuple(x.shape)}, got "
                f"{tuple(grad.shape)}; grad_fun(x, g) must return g^T J, one entry per input"
            )
        grad = grad.to(device=x.device, dtype=x.dtype)
        if not bool(torch.isfinite(grad).all()):
            raise ValueError("grad_fun: returned non-finite values (nan/inf)")
        return grad


def gradiator(
    fun: Callable[[Any], Any],
    grad_fun: Callable[[Any, Any], Any],
    *,
    numpy: bool = False,
) -> Callable[[Tensor], Tensor]:
    """A black box ``y = fun(x)`` in autograd, whose backward is ``grad_fun(x, g)``.

    ``grad_fun(x, g)`` must return ``g^T J_f(x)``, an array of ``x``'s shape.

    - ``setup_context`` style: ``forward`` does not see ``ctx`` (the style
      torch recommends, and the one ``torch.func`` builds on); ``fun`` and
      ``grad_fun`` travel as non-tensor arguments, so one class serves every call;
    - ``fun`` and ``grad_fun`` see detached values (NumPy arrays on the CPU when
      ``numpy=True``), so a NumPy black box can call ``numpy()`` on them;
      results come back in ``x``'s dtype and on ``x``'s device;
    - the backward returns ``None`` when ``x`` needs no gradient, checks the
      shape of what ``grad_fun`` returns, and refuses double backward (a
      ``RuntimeError``, where ``@once_differentiable`` can stay silent);
    - batches are whatever ``fun`` and ``grad_fun`` accept: ``x`` is passed whole.

    Args:
        fun: ``x -> f(x)``, tensor or NumPy (see ``numpy``).
        grad_fun: ``(x, g) -> g^T J(x)``, with ``g`` of ``f(x)``'s shape.
        numpy: hand NumPy arrays to ``fun`` and ``grad_fun`` instead of tensors.

    Returns:
        ``apply(x)``, usable anywhere in an autograd graph.

    Raises:
        TypeError: ``fun`` or ``grad_fun`` is not callable; when called, ``x`` is
            not a floating tensor. ValueError in backward when ``grad_fun``
            returns the wrong shape or non-finite values.
    """
    check_callable("fun", fun)
    check_callable("grad_fun", grad_fun)

    def apply(x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"x: expected a floating-point torch.Tensor, got {got}")
        return _GradiatorFunction.apply(x, fun, grad_fun, numpy)

    apply.__doc__ = f"gradiator({getattr(fun, '__name__', 'fun')}, ...): differentiable black box"
    return apply
