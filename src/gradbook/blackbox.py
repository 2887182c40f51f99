"""Gradients of black boxes: secants, Broyden, recursive least squares, SPSA (chapter 7).

A *black box* is a function ``f: R^m -> R^n`` that autograd cannot see into: a
NumPy or SciPy routine, a simulator, a compiled solver. To train through it we
need its vector-Jacobian product (VJP) ``g^T J(x)``, where ``J(x)`` is the
``(n, m)`` Jacobian, and all we can do is evaluate ``f``. Every estimator here
rests on the *secant condition*: for a probe ``dx`` and ``df = f(x + dx) - f(x)``,

.. math::

    J(x)\\, dx = df + O(\\lVert dx \\rVert^2).

- :func:`finite_difference_jacobian` probes along the ``m`` coordinate axes
  (forward, backward or central differences): ``m`` or ``2m`` evaluations.
- :func:`secant_jacobian` solves the secant conditions of ``k`` probes taken at
  the same point, ``J = dF dX^+`` (minimum-norm least squares);
  :func:`rank_one_jacobian` is the one-probe case ``df dx^T / ||dx||^2``.
- :func:`broyden_update` makes the smallest change to a current estimate that
  satisfies the newest secant; :class:`RecursiveLeastSquares` solves the ridge
  regression over all probes so far, one probe at a time, optionally forgetting
  old ones.
- :func:`spsa_vjp` estimates ``g^T J`` directly from random simultaneous
  perturbations: unbiased, with an error that shrinks like ``k^{-1/2}``.

:func:`wrap_blackbox` and :func:`gradiator` turn a black box into a
``torch.autograd.Function`` (``setup_context`` style) that keeps the caller's
dtype and device, handles a batch of inputs and refuses double backward.

Convention (shapes):
    ``x`` has shape ``(m,)`` and ``f(x)`` shape ``(n,)`` (a 0-d output counts as
    ``n = 1``). The Jacobian is ``(n, m)``: ``J[i, j] = d f_i / d x_j``. Probes
    are *columns*: ``dX`` is ``(m, k)`` and ``dF`` is ``(n, k)``. A VJP takes
    ``g`` of shape ``(n,)`` to ``g^T J`` of shape ``(m,)``.

Functions that take arrays accept NumPy arrays or torch tensors and return the
same kind (a tensor result keeps the input's dtype and device).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from gradbook._checks import check_nonnegative

__all__ = [
    "SPSA",
    "DrivenPendulum",
    "EvaluationCounter",
    "FiniteDifferences",
    "FitHistory",
    "JacobianTracker",
    "RecursiveLeastSquares",
    "SmoothTestFunction",
    "VJPEstimator",
    "broyden_update",
    "default_step",
    "finite_difference_jacobian",
    "fit_through_blackbox",
    "gradiator",
    "rank_one_jacobian",
    "secant_jacobian",
    "smooth_test_function",
    "spsa_vjp",
    "vjp_relative_error",
    "wrap_blackbox",
]

Array = np.ndarray | Tensor
FD_METHODS = ("central", "forward", "backward")  # the default first


# ---------------------------------------------------------------------------
# Array kinds, validation, black-box calls


def _to_tensor(name: str, a: object) -> tuple[Tensor, bool]:
    """``(tensor, was_numpy)``; NumPy input becomes a float64 (or its float dtype) CPU tensor."""
    if isinstance(a, Tensor):
        if not (a.is_floating_point() or a.is_complex()):
            a = a.to(torch.get_default_dtype())
        if a.is_complex():
            raise TypeError(f"{name}: expected a real floating-point tensor, got dtype {a.dtype}")
        return a, False
    if isinstance(a, np.ndarray | list | tuple | float | int | np.floating | np.integer):
        arr = np.asarray(a)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
        if arr.dtype.kind != "f" or arr.dtype == np.float16:
            arr = arr.astype(np.float64)
        return torch.from_numpy(np.array(arr, copy=True)), True
    raise TypeError(f"{name}: expected a NumPy array or a torch.Tensor, got {type(a).__name__}")


def _back(t: Tensor, was_numpy: bool) -> Array:
    return t.detach().cpu().numpy() if was_numpy else t


def _check_finite(name: str, t: Tensor, what: str = "") -> None:
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(
            f"{name}: expected finite values{what}, got {bad} non-finite (nan/inf) of {t.numel()}"
        )


def _positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{name}: expected a positive number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return value


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name}: expected a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return int(value)


def _call(fun: Callable, point: Tensor, as_numpy: bool, like: Tensor, where: str) -> Tensor:
    """Evaluate the black box at ``point`` and return its output flattened to ``(n,)``.

    ``as_numpy`` decides whether ``fun`` sees a NumPy array or a tensor; the
    output comes back as a tensor with ``like``'s dtype and device.

    Raises:
        ValueError: the output is not finite, or has more than one dimension.
    """
    arg = point.detach().cpu().numpy() if as_numpy else point.detach()
    with torch.no_grad():
        out = fun(arg)
    if isinstance(out, Tensor):
        out = out.detach().to(device=like.device, dtype=like.dtype)
    else:
        try:
            out = torch.as_tensor(np.asarray(out, dtype=np.float64)).to(like.device, like.dtype)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"fun: expected an array or tensor output{where}, got {type(out).__name__}"
            ) from error
    if out.ndim > 1:
        raise ValueError(
            f"fun: expected an output of shape (n,) or a scalar{where}, "
            f"got shape {tuple(out.shape)}"
        )
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            f"fun: returned non-finite values (nan/inf){where}; the black box failed there, "
            "so no secant or difference through it means anything"
        )
    return out.reshape(-1)


def _output_at_x(name: str, value: object, like: Tensor) -> Tensor:
    """A given ``f(x)``, ``(n,)`` or a scalar, as an ``(n,)`` tensor like ``like`` (dtype, device).

    Raises:
        TypeError: ``value`` is not a real array or tensor.
        ValueError: ``value`` has more than one dimension or is not finite.
    """
    t, _ = _to_tensor(name, value)
    if t.ndim > 1:
        raise ValueError(
            f"{name}: expected f(x) of shape (n,) or a scalar, got shape {tuple(t.shape)}"
        )
    t = t.detach().to(like.device, like.dtype).reshape(-1)
    _check_finite(name, t)
    return t


def default_step(method: str = "central", dtype: torch.dtype | np.dtype = torch.float64) -> float:
    """The classical finite-difference step for unit-sized inputs in ``dtype``.

    Balancing truncation error against rounding error gives ``h ~ u^(1/2)`` for
    one-sided (forward/backward) differences, whose truncation error is
    ``O(h)``, and ``h ~ u^(1/3)`` for central differences, ``O(h^2)``; ``u`` is
    the unit roundoff (``2.2e-16`` in float64). With these the error of a
    derivative is about ``u^(1/2) ~ 1.5e-8`` and ``u^(2/3) ~ 3.7e-11`` relative
    to the function's scale.

    Raises:
        ValueError: ``method`` is not one of ``forward``, ``backward``, ``central``.
        TypeError: ``dtype`` is not a real floating-point dtype (torch or NumPy).
    """
    if method not in FD_METHODS:
        raise ValueError(f"method: expected one of {FD_METHODS}, got {method!r}")
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating-point dtype, got {dtype}")
        u = torch.finfo(dtype).eps
    else:
        try:
            np_dtype = np.dtype(dtype)
        except TypeError as error:
            raise TypeError(f"dtype: expected a floating-point dtype, got {dtype!r}") from error
        if np_dtype.kind != "f":
            raise TypeError(f"dtype: expected a floating-point dtype, got {np_dtype}")
        u = float(np.finfo(np_dtype).eps)
    return u ** (1 / 3) if method == "central" else u**0.5


# ---------------------------------------------------------------------------
# Finite differences


def finite_difference_jacobian(
    fun: Callable[[Any], Any],
    x: Array,
    eps: float | None = None,
    method: str = "central",
    fx: Array | None = None,
) -> Array:
    """The ``(n, m)`` Jacobian of ``fun`` at ``x`` by finite differences along the axes.

    .. math::

        J_{:, j} \\approx \\frac{f(x + h_j e_j) - f(x)}{h_j} \\;(\\text{forward}),\\quad
        \\frac{f(x + h_j e_j) - f(x - h_j e_j)}{2 h_j} \\;(\\text{central})

    with ``h_j = eps * max(1, |x_j|)``, rounded so that ``x_j + h_j`` is exact
    (``h_j = (x_j + h_j) - x_j``): the step is absolute for small entries and
    relative for large ones. Forward and backward differences cost ``m``
    evaluations (plus one for ``f(x)`` unless ``fx`` is given), central ones
    ``2m``.

    Args:
        fun: the black box, ``(m,) -> (n,)`` or ``(m,) -> scalar``. It is called
            with NumPy arrays when ``x`` is a NumPy array and with tensors (under
            ``torch.no_grad()``) when ``x`` is a tensor.
        x: ``(m,)`` point, NumPy array or floating tensor.
        eps: base step; ``None`` picks :func:`default_step` for ``method`` and
            ``x``'s dtype (``1.5e-8`` forward, ``6.1e-6`` central in float64).
        method: ``"central"`` (default), ``"forward"`` or ``"backward"``.
        fx: optional ``f(x)`` (``(n,)`` or a scalar, finite), reused by the
            one-sided methods instead of evaluating ``fun`` at ``x``.

    Returns:
        ``(n, m)`` Jacobian: a NumPy array when ``x`` is one, else a tensor with
        ``x``'s dtype and device.

    Raises:
        TypeError: ``x`` or ``fx`` is not a real array or tensor, ``eps`` not a number.
        ValueError: ``x`` is not 1-D or not finite, ``eps`` is not positive,
            ``method`` is unknown, ``fx`` is not finite or not of ``fun``'s
            output shape, or ``fun`` returns non-finite values (the message
            names the probe).
    """
    xt, as_numpy = _to_tensor("x", x)
    if xt.ndim != 1:
        raise ValueError(f"x: expected a 1-D point of shape (m,), got shape {tuple(xt.shape)}")
    if xt.numel() == 0:
        raise ValueError("x: expected at least one input (m >= 1), got shape (0,)")
    _check_finite("x", xt)
    if method not in FD_METHODS:
        raise ValueError(f"method: expected one of {FD_METHODS}, got {method!r}")
    eps = default_step(method, xt.dtype) if eps is None else _positive_float("eps", eps)
    xt = xt.detach()
    h = eps * torch.clamp(xt.abs(), min=1.0)
    up, down = (xt + h) - xt, xt - (xt - h)  # exactly representable steps
    if bool((up == 0).any()) or bool((down == 0).any()):
        raise ValueError(
            f"eps: a step of {eps:g} vanishes next to x in {xt.dtype} (x + h == x); "
            "use a larger eps"
        )
    given_fx = None if fx is None else _output_at_x("fx", fx, xt)

    def evaluate(point: Tensor, where: str) -> Tensor:
        out = _call(fun, point, as_numpy, xt, where)
        if given_fx is not None and out.numel() != given_fx.numel():
            raise ValueError(
                f"fx: expected f(x), with as many entries as fun's output ({out.numel()}), "
                f"got {given_fx.numel()}"
            )
        return out

    f0 = None
    if method != "central":
        f0 = given_fx if given_fx is not None else evaluate(xt, " at x")
    columns = []
    for j in range(xt.numel()):
        e = torch.zeros_like(xt)
        if method == "forward":
            e[j] = up[j]
            col = (evaluate(xt + e, f" at x + h e_{j}") - f0) / up[j]
        elif method == "backward":
            e[j] = down[j]
            col = (f0 - evaluate(xt - e, f" at x - h e_{j}")) / down[j]
        else:
            e_up, e_down = e.clone(), e
            e_up[j], e_down[j] = up[j], down[j]
            plus = evaluate(xt + e_up, f" at x + h e_{j}")
            minus = evaluate(xt - e_down, f" at x - h e_{j}")
            col = (plus - minus) / (up[j] + down[j])
        columns.append(col)
    return _back(torch.stack(columns, dim=1), as_numpy)


# ---------------------------------------------------------------------------
# Secants


def _probe_matrices(
    dX: object, dF: object, names: tuple[str, str] = ("dX", "dF")
) -> tuple[Tensor, Tensor, bool]:
    nx, nf = names
    tX, np_x = _to_tensor(nx, dX)
    tF, np_f = _to_tensor(nf, dF)
    if tX.ndim != 2:
        raise ValueError(
            f"{nx}: expected probes as columns, shape (m, k), got shape {tuple(tX.shape)}"
        )
    if tF.ndim != 2:
        raise ValueError(
            f"{nf}: expected output changes as columns, shape (n, k), got shape {tuple(tF.shape)}"
        )
    if tX.shape[1] != tF.shape[1]:
        raise ValueError(
            f"{nf}: expected one column per probe in {nx} ({tX.shape[1]} probes, {nx} is "
            f"{tuple(tX.shape)}), got shape {tuple(tF.shape)}; probes are columns, not rows"
        )
    if tX.shape[1] == 0:
        raise ValueError(f"{nx}: expected at least one probe (k >= 1), got 0 columns")
    if tX.device != tF.device:
        raise ValueError(f"{nf}: on {tF.device}, but {nx} is on {tX.device}")
    dtype = torch.promote_types(tX.dtype, tF.dtype)
    tX, tF = tX.to(dtype), tF.to(dtype)
    _check_finite(nx, tX)
    _check_finite(nf, tF, " (a black box that failed on a probe?)")
    zero = (tX == 0).all(dim=0).nonzero().flatten().tolist()
    if zero:
        raise ValueError(
            f"{nx}: probe(s) {zero} have zero length; a zero step says nothing about J "
            "(drop it, or probe with a nonzero step)"
        )
    return tX, tF, np_x and np_f


def secant_jacobian(dX: Array, dF: Array, rcond: float | None = None) -> Array:
    """Minimum-norm least-squares Jacobian from ``k`` probes: ``J = dF dX^+``.

    Each column is one secant condition ``J dX[:, i] = dF[:, i]``. The
    Moore-Penrose pseudo-inverse picks, among all minimisers of
    ``||J dX - dF||_F``, the one of smallest ``||J||_F``:

    - ``k = 1``: ``J = df dx^T / ||dx||^2`` (see :func:`rank_one_jacobian`);
    - ``k >= m`` with ``rank(dX) = m``: the unique least-squares solution
      ``dF dX^T (dX dX^T)^{-1}``, and ``dF dX^{-1}`` for ``k = m``;
    - ``k < m``: ``J`` is exact on ``span(dX)`` and zero on its complement.

    The probes must be taken *at the same point* ``x`` (``dF[:, i] = f(x +
    dX[:, i]) - f(x)``): secants between points on a path estimate different
    Jacobians, and stacking them mixes them.

    Args:
        dX: ``(m, k)`` probe steps as columns, none of zero length.
        dF: ``(n, k)`` output changes as columns.
        rcond: relative cut-off (finite, ``>= 0``) for small singular values of
            ``dX`` (default: torch's, ``max(m, k) * eps``).

    Returns:
        ``(n, m)``; NumPy when both inputs are NumPy, else a tensor on their device.

    Raises:
        ValueError: shapes do not match, ``k = 0``, a probe has zero length, an
            entry is not finite, or ``rcond`` is negative or not finite.
        TypeError: ``rcond`` is not a number.
    """
    tX, tF, as_numpy = _probe_matrices(dX, dF)
    if rcond is not None:
        rcond = check_nonnegative("rcond", rcond)
    pinv = torch.linalg.pinv(tX, rtol=rcond) if rcond is not None else torch.linalg.pinv(tX)
    return _back(tF @ pinv, as_numpy)


def _secant_outer(df: Tensor, dx: Tensor) -> Tensor:
    """The rank-one ``(n, m)`` matrix ``df dx^T / (dx^T dx)``, ``df`` ``(n,)``, ``dx`` ``(m,)``.

    ``dx`` must be nonzero. Both are divided by ``max |dx_i|`` first, so that
    ``||dx||^2`` neither underflows nor overflows for tiny or huge probes.
    """
    scale = dx.abs().max()
    unit = dx / scale
    return torch.outer(df / scale, unit) / (unit @ unit)


def rank_one_jacobian(dx: Array, df: Array) -> Array:
    """The minimum-norm Jacobian from one probe: ``J = df dx^T / (dx^T dx)``.

    ``dx^+ = dx^T / ||dx||^2`` is the pseudo-inverse of the column ``dx`` (its
    *left* inverse, which exists); the right inverse ``dx^T (dx dx^T)^{-1}``
    does not, because ``dx dx^T`` is an ``(m, m)`` matrix of rank one. The VJP
    ``g^T J = (g^T df) dx^T / ||dx||^2`` is right along ``dx`` and zero across it.

    Args:
        dx: ``(m,)`` probe step, nonzero.
        df: ``(n,)`` output change.

    Returns:
        ``(n, m)``, the same kind as the inputs.

    Raises:
        ValueError: ``dx`` or ``df`` is not 1-D, ``dx`` is zero, or not finite.
    """
    tx, np_x = _to_tensor("dx", dx)
    tf, np_f = _to_tensor("df", df)
    if tx.ndim != 1:
        raise ValueError(f"dx: expected one probe of shape (m,), got shape {tuple(tx.shape)}")
    if tf.ndim != 1:
        raise ValueError(f"df: expected one output change (n,), got shape {tuple(tf.shape)}")
    tX, tF, _ = _probe_matrices(tx[:, None], tf[:, None], ("dx", "df"))
    return _back(_secant_outer(tF[:, 0], tX[:, 0]), np_x and np_f)


def broyden_update(J: Array, dx: Array, df: Array) -> Array:
    """Broyden's ("good") update: the smallest change to ``J`` satisfying the newest secant.

    .. math::

        J_+ = J + \\frac{(df - J\\,dx)\\, dx^T}{dx^T dx},

    the unique minimiser of ``||J_+ - J||_F`` subject to ``J_+ dx = df``. It
    leaves ``J`` unchanged on every direction orthogonal to ``dx``. Started from
    zero, ``m`` mutually orthogonal probes of a linear map recover it exactly;
    random probes converge geometrically, about like ``(1 - 1/m)^{k/2}``.

    Args:
        J: ``(n, m)`` current estimate (not modified).
        dx: ``(m,)`` probe step, nonzero.
        df: ``(n,)`` output change ``f(x + dx) - f(x)``.

    Returns:
        ``(n, m)`` new estimate, the same kind as ``J``.

    Raises:
        ValueError: shapes do not match, ``dx`` is zero, or an input is not finite.
    """
    tJ, as_numpy = _to_tensor("J", J)
    tx, _ = _to_tensor("dx", dx)
    tf, _ = _to_tensor("df", df)
    if tJ.ndim != 2:
        raise ValueError(f"J: expected a Jacobian of shape (n, m), got shape {tuple(tJ.shape)}")
    n, m = tJ.shape
    if tuple(tx.shape) != (m,):
        raise ValueError(f"dx: expected shape ({m},) (J has {m} columns), got {tuple(tx.shape)}")
    if tuple(tf.shape) != (n,):
        raise ValueError(f"df: expected shape ({n},) (J has {n} rows), got {tuple(tf.shape)}")
    tx = tx.to(tJ.device, tJ.dtype)
    tf = tf.to(tJ.device, tJ.dtype)
    for name, t in (("J", tJ), ("dx", tx), ("df", tf)):
        _check_finite(name, t)
    if not bool((tx != 0).any()):
        raise ValueError("dx: expected a nonzero probe, got a zero-length step")
    return _back(tJ + _secant_outer(tf - tJ @ tx, tx), as_numpy)


class RecursiveLeastSquares:
    """Ridge regression for the Jacobian, updated one probe at a time.

    After probes ``(dx_1, df_1) ... (dx_t, df_t)`` the estimate is

    .. math::

        J_t = \\arg\\min_J \\sum_{i=1}^t \\lambda^{t-i} \\lVert J dx_i - df_i \\rVert^2
              + \\lambda^t \\delta \\lVert J - J_0 \\rVert_F^2
            = \\Big(J_0 \\lambda^t\\delta + \\sum_i \\lambda^{t-i} df_i dx_i^T\\Big)
              \\Big(\\lambda^t \\delta I + \\sum_i \\lambda^{t-i} dx_i dx_i^T\\Big)^{-1}

    with ``lambda = forgetting``: with ``forgetting=1`` it *is* ridge regression
    with penalty ``delta`` on all probes so far; with ``forgetting < 1`` old
    probes fade geometrically (memory about ``1 / (1 - lambda)`` probes), which
    lets the estimate follow a Jacobian that changes as ``x`` moves. Each update
    costs ``O(m^2 + nm)`` through the Sherman-Morrison formula on
    ``P = (lambda^t delta I + sum ...)^{-1}``:

    .. math::

        k = \\frac{P dx}{\\lambda + dx^T P dx},\\quad
        J \\leftarrow J + (df - J dx) k^T,\\quad
        P \\leftarrow (P - k\\, dx^T P) / \\lambda .

    Note:
        Least squares weighs probes by their length: a probe ten times longer
        counts a hundred times more. Divide ``dx`` and ``df`` by ``||dx||``
        to give every direction the same weight (:class:`JacobianTracker` does).
        With ``forgetting < 1`` and probes that stop exciting some direction,
        ``P`` grows like ``lambda^{-t}`` there ("covariance wind-up").

    Args:
        n_out: ``n``, the number of outputs.
        n_in: ``m``, the number of inputs.
        delta: ridge penalty (``> 0``); small means "trust the probes".
        forgetting: ``lambda`` in ``(0, 1]``.
        initial: optional ``(n, m)`` prior ``J_0`` (default zero).
        dtype, device: of the stored estimate (default float64 on the CPU).

    Raises:
        TypeError, ValueError: for sizes that are not positive ints, ``delta``
            not positive, ``forgetting`` outside ``(0, 1]``, a wrong ``initial``.
    """

    def __init__(
        self,
        n_out: int,
        n_in: int,
        delta: float = 1.0,
        forgetting: float = 1.0,
        initial: Array | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        self.n_out = _positive_int("n_out", n_out)
        self.n_in = _positive_int("n_in", n_in)
        self.delta = _positive_float("delta", delta)
        self.forgetting = _positive_float("forgetting", forgetting)
        if self.forgetting > 1:
            raise ValueError(f"forgetting: expected a number in (0, 1], got {forgetting!r}")
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if initial is None:
            self._J = torch.zeros(self.n_out, self.n_in, dtype=dtype, device=self.device)
        else:
            tJ, _ = _to_tensor("initial", initial)
            if tuple(tJ.shape) != (self.n_out, self.n_in):
                raise ValueError(
                    f"initial: expected shape ({self.n_out}, {self.n_in}) (n_out, n_in), "
                    f"got {tuple(tJ.shape)}"
                )
            _check_finite("initial", tJ)
            self._J = tJ.detach().to(self.device, dtype).clone()
        self._P = torch.eye(self.n_in, dtype=dtype, device=self.device) / self.delta
        self.num_updates = 0

    @property
    def jacobian(self) -> Tensor:
        """The current ``(n_out, n_in)`` estimate (a copy)."""
        return self._J.clone()

    @property
    def precision_inverse(self) -> Tensor:
        """``P``, the inverse of the weighted Gram matrix ``lambda^t delta I + sum dx dx^T``."""
        return self._P.clone()

    def vjp(self, g: Array) -> Array:
        """``g^T J`` for ``g`` of shape ``(n_out,)`` (or ``(B, n_out)``), the same kind as ``g``."""
        tg, as_numpy = _to_tensor("g", g)
        if tg.shape[-1:] != (self.n_out,) or tg.ndim > 2:
            raise ValueError(
                f"g: expected shape ({self.n_out},) or (B, {self.n_out}), got {tuple(tg.shape)}"
            )
        out = tg.to(self.device, self.dtype) @ self._J
        return _back(out, as_numpy)

    def update(self, dx: Array, df: Array) -> RecursiveLeastSquares:
        """Add one probe (``dx`` ``(m,)``, ``df`` ``(n,)``) or ``k`` probes as columns.

        Returns ``self``, so that updates chain.

        Raises:
            ValueError: shapes differ from ``(n_in,)``/``(n_out,)`` (or ``(n_in, k)``
                and ``(n_out, k)``), a probe has zero length, or a value is not finite.
        """
        tX, _ = _to_tensor("dx", dx)
        tF, _ = _to_tensor("df", df)
        shapes = tuple(tX.shape), tuple(tF.shape)
        if tX.ndim == 1:
            tX = tX[:, None]
        if tF.ndim == 1:
            tF = tF[:, None]
        if tX.ndim != 2 or tX.shape[0] != self.n_in:
            raise ValueError(
                f"dx: expected shape ({self.n_in},) or ({self.n_in}, k), got {shapes[0]}"
            )
        if tF.ndim != 2 or tF.shape[0] != self.n_out:
            raise ValueError(
                f"df: expected shape ({self.n_out},) or ({self.n_out}, k), got {shapes[1]}"
            )
        tX = tX.to(self.device, self.dtype)
        tF = tF.to(self.device, self.dtype)
        tX, tF, _ = _probe_matrices(tX, tF, ("dx", "df"))
        lam = self.forgetting
        for i in range(tX.shape[1]):
            x, f = tX[:, i], tF[:, i]
            px = self._P @ x
            gain = px / (lam + x @ px)
            self._J = self._J + torch.outer(f - self._J @ x, gain)
            P = (self._P - torch.outer(gain, px)) / lam
            self._P = 0.5 * (P + P.T)  # keep it symmetric against rounding drift
            self.num_updates += 1
        return self


# ---------------------------------------------------------------------------
# Random perturbations


DISTRIBUTIONS = ("rademacher", "gaussian")


def _check_distribution(distribution: object) -> None:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution: expected 'rademacher' or 'gaussian', got {distribution!r}")


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator | np.random.Generator):
        raise TypeError(
            "generator: expected a torch.Generator, a numpy.random.Generator or None, "
            f"got {type(generator).__name__}"
        )


def _draw_directions(
    k: int, m: int, distribution: str, generator: torch.Generator | np.random.Generator | None
) -> Tensor:
    """``(k, m)`` float64 CPU directions with ``E[u u^T] = I``."""
    _check_distribution(distribution)
    _check_generator(generator)
    if isinstance(generator, np.random.Generator):
        if distribution == "rademacher":
            u = generator.integers(0, 2, size=(k, m)) * 2.0 - 1.0
        else:
            u = generator.standard_normal((k, m))
        return torch.from_numpy(np.asarray(u, dtype=np.float64))
    if distribution == "rademacher":
        u = torch.randint(0, 2, (k, m), generator=generator).to(torch.float64) * 2 - 1
    else:
        u = torch.randn(k, m, generator=generator, dtype=torch.float64)
    return u


def spsa_vjp(
    fun: Callable[[Any], Any],
    x: Array,
    g: Array,
    num_samples: int,
    c: float,
    generator: torch.Generator | np.random.Generator | None = None,
    *,
    distribution: str = "rademacher",
) -> Array:
    """Simultaneous-perturbation estimate of the VJP ``g^T J(x)``.

    .. math::

        \\widehat{J^T g} = \\frac1k \\sum_{s=1}^k
        \\frac{g^T\\big(f(x + c\\,u_s) - f(x - c\\,u_s)\\big)}{2c}\\; u_s,
        \\qquad \\mathbb E[u u^T] = I,

    with ``u_s`` Rademacher (``+-1`` entries, SPSA) or standard normal (the
    "forward gradient"). Since ``E[u u^T J^T g] = J^T g``, the estimate is
    unbiased up to the ``O(c^2)`` error of the central difference (exactly
    unbiased for a quadratic ``f``). Its error shrinks like ``k^{-1/2}``:
    for Rademacher directions ``E||est - J^T g||^2 = (m - 1) ||J^T g||^2 / k``
    when ``f`` is linear (``(m + 1)/k`` for Gaussian ones). Cost: ``2k``
    evaluations, whatever ``m`` is.

    Args:
        fun: the black box, ``(m,) -> (n,)``, called with the kind of ``x``.
        x: ``(m,)`` point.
        g: ``(n,)`` output cotangent.
        num_samples: ``k >= 1`` perturbations.
        c: perturbation size (``> 0``), absolute.
        generator: a CPU ``torch.Generator`` or a ``numpy.random.Generator``
            (``None``: torch's global generator). Directions are drawn on the CPU.
        distribution: ``"rademacher"`` (default) or ``"gaussian"``.

    Returns:
        ``(m,)`` estimate, the same kind as ``x``.

    Raises:
        ValueError: ``x`` not 1-D, ``g`` not of the output's size or not
            finite, ``c`` or ``num_samples`` not positive, or a non-finite
            black-box output.
    """
    xt, as_numpy = _to_tensor("x", x)
    if xt.ndim != 1 or xt.numel() == 0:
        raise ValueError(f"x: expected a 1-D point of shape (m,), got shape {tuple(xt.shape)}")
    _check_finite("x", xt)
    k = _positive_int("num_samples", num_samples)
    c = _positive_float("c", c)
    tg, _ = _to_tensor("g", g)
    tg = tg.detach().to(xt.device, xt.dtype).reshape(-1)
    _check_finite("g", tg)
    xt = xt.detach()
    u = _draw_directions(k, xt.numel(), distribution, generator).to(xt.device, xt.dtype)
    total = torch.zeros_like(xt)
    for s in range(k):
        plus = _call(fun, xt + c * u[s], as_numpy, xt, f" at x + c u_{s}")
        if s == 0 and plus.numel() != tg.numel():
            raise ValueError(
                f"g: expected {plus.numel()} entries (the size of fun's output), got {tg.numel()}"
            )
        minus = _call(fun, xt - c * u[s], as_numpy, xt, f" at x - c u_{s}")
        total = total + (tg @ (plus - minus)) / (2 * c) * u[s]
    return _back(total / k, as_numpy)


def vjp_relative_error(estimate: Array, reference: Array) -> float:
    """``||estimate - reference|| / ||reference||`` (the absolute error when the reference is 0)."""
    e, _ = _to_tensor("estimate", estimate)
    r, _ = _to_tensor("reference", reference)
    if e.shape != r.shape:
        raise ValueError(
            f"estimate: expected the reference's shape {tuple(r.shape)}, got {tuple(e.shape)}"
        )
    e, r = e.detach().cpu().double(), r.detach().cpu().double()
    denominator = torch.linalg.vector_norm(r)
    error = torch.linalg.vector_norm(e - r)
    return float(error / denominator) if denominator > 0 else float(error)


# ---------------------------------------------------------------------------
# Estimators for wrap_blackbox: anything with .vjp(fun, x, fx, g)


@runtime_checkable
class VJPEstimator(Protocol):
    """What :func:`wrap_blackbox` needs: ``vjp(fun, x, fx, g) -> (m,)``, all NumPy float64.

    ``fun`` is the counted, checked black box (``(m,) -> (n,)``), ``x`` the
    point, ``fx = fun(x)`` already computed by the forward pass, ``g`` the
    ``(n,)`` cotangent. An estimator may keep state between calls (a tracker).
    """

    def vjp(self, fun: Callable, x: np.ndarray, fx: np.ndarray, g: np.ndarray) -> np.ndarray: ...


@dataclass
class FiniteDifferences:
    """VJP through a finite-difference Jacobian (``m`` or ``2m`` evaluations per call)."""

    method: str = "central"
    eps: float | None = None

    def __post_init__(self) -> None:
        if self.method not in FD_METHODS:
            raise ValueError(f"method: expected one of {FD_METHODS}, got {self.method!r}")
        if self.eps is not None:
            self.eps = _positive_float("eps", self.eps)

    def jacobian(self, fun: Callable, x: np.ndarray, fx: np.ndarray | None = None) -> np.ndarray:
        return finite_difference_jacobian(fun, x, eps=self.eps, method=self.method, fx=fx)

    def vjp(self, fun: Callable, x: np.ndarray, fx: np.ndarray, g: np.ndarray) -> np.ndarray:
        return g @ self.jacobian(fun, x, fx)


@dataclass
class AnalyticJacobian:
    """VJP through a known Jacobian function ``jacobian(x) -> (n, m)`` (no extra evaluations)."""

    jacobian: Callable[[np.ndarray], Any]

    def vjp(self, fun: Callable, x: np.ndarray, fx: np.ndarray, g: np.ndarray) -> np.ndarray:
        J = np.asarray(self.jacobian(x), dtype=np.float64)
        if J.shape != (g.size, x.size):
            raise ValueError(f"jacobian: expected shape ({g.size}, {x.size}) (n, m), got {J.shape}")
        return g @ J


@dataclass
class SPSA:
    """VJP by :func:`spsa_vjp` (``2 * num_samples`` evaluations per call).

    Raises:
        TypeError, ValueError: ``num_samples`` not a positive int, ``c`` not a
            positive number, an unknown ``distribution`` or a ``generator`` of
            the wrong type.
    """

    num_samples: int = 1
    c: float = 1e-4
    generator: torch.Generator | np.random.Generator | None = None
    distribution: str = "rademacher"

    def __post_init__(self) -> None:
        self.num_samples = _positive_int("num_samples", self.num_samples)
        self.c = _positive_float("c", self.c)
        _check_distribution(self.distribution)
        _check_generator(self.generator)

    def vjp(self, fun: Callable, x: np.ndarray, fx: np.ndarray, g: np.ndarray) -> np.ndarray:
        return spsa_vjp(
            fun, x, g, self.num_samples, self.c, self.generator, distribution=self.distribution
        )


@dataclass
class JacobianTracker:
    """Track the Jacobian along a sequence of points with Broyden or RLS updates.

    On each call at a point ``x`` (with ``fx = f(x)`` from the forward pass):

    1. the first call initialises ``J``: ``"forward"`` (forward differences,
       ``m`` evaluations), ``"zeros"``, or a given ``(n, m)`` array;
    2. later calls first use the *free* secant between the previous point and
       this one, ``(x - x_prev, fx - fx_prev)``: no evaluation needed, but it
       describes the average Jacobian along the step, not ``J(x)``;
    3. then ``probes`` random probes at ``x`` (``probes`` evaluations), each a
       random direction of length ``eps * max(1, ||x||_inf)``.

    ``update="broyden"`` applies :func:`broyden_update`; ``update="rls"`` feeds a
    :class:`RecursiveLeastSquares` with ``forgetting`` and ``delta`` (probes
    normalised to unit length, so every direction weighs the same).

    Attributes:
        evaluations: black-box evaluations spent by the tracker itself.
        jacobian: the current ``(n, m)`` estimate (``None`` before the first call).

    Both are state, not settings: the constructor does not take them.

    Raises:
        TypeError, ValueError: an unknown ``update`` or ``initial``, ``probes``
            not an int ``>= 0``, ``eps`` or ``delta`` not positive,
            ``forgetting`` outside ``(0, 1]``, an ``initial`` array that is not
            2-D and finite, or a ``generator`` of the wrong type.
    """

    update: str = "broyden"
    probes: int = 1
    eps: float = 1e-6
    initial: str | np.ndarray = "forward"
    forgetting: float = 1.0
    delta: float = 1.0
    step_secants: bool = True
    generator: torch.Generator | np.random.Generator | None = None
    evaluations: int = field(default=0, init=False)
    jacobian: np.ndarray | None = field(default=None, init=False)
    _previous: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False)
    _rls: RecursiveLeastSquares | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.update not in ("broyden", "rls"):
            raise ValueError(f"update: expected 'broyden' or 'rls', got {self.update!r}")
        if isinstance(self.probes, bool) or not isinstance(self.probes, int | np.integer):
            raise TypeError(f"probes: expected an int >= 0, got {type(self.probes).__name__}")
        if self.probes < 0:
            raise ValueError(f"probes: expected an int >= 0, got {self.probes}")
        self.probes = int(self.probes)
        self.eps = _positive_float("eps", self.eps)
        self.delta = _positive_float("delta", self.delta)
        self.forgetting = _positive_float("forgetting", self.forgetting)
        if self.forgetting > 1:
            raise ValueError(f"forgetting: expected a number in (0, 1], got {self.forgetting!r}")
        if isinstance(self.initial, str):
            if self.initial not in ("forward", "zeros"):
                raise ValueError(
                    f"initial: expected 'forward', 'zeros' or an (n, m) array, got {self.initial!r}"
                )
        else:
            J0, _ = _to_tensor("initial", self.initial)
            if J0.ndim != 2:
                raise ValueError(
                    f"initial: expected 'forward', 'zeros' or an (n, m) array, "
                    f"got shape {tuple(J0.shape)}"
                )
            _check_finite("initial", J0)
        _check_generator(self.generator)

    def _start(self, fun: Callable, x: np.ndarray, fx: np.ndarray) -> None:
        n, m = fx.size, x.size
        if isinstance(self.initial, str) and self.initial == "forward":
            J = finite_difference_jacobian(fun, x, method="forward", fx=fx)
            self.evaluations += m
        elif isinstance(self.initial, str):
            J = np.zeros((n, m))
        else:
            J = _to_tensor("initial", self.initial)[0].detach().cpu().double().numpy()
            if J.shape != (n, m):
                raise ValueError(f"initial: expected shape ({n}, {m}) (n, m), got {J.shape}")
        self.jacobian = np.array(J, dtype=np.float64)
        if self.update == "rls":
            self._rls = RecursiveLeastSquares(
                n, m, delta=self.delta, forgetting=self.forgetting, initial=self.jacobian
            )

    def observe(self, dx: np.ndarray, df: np.ndarray) -> None:
        """Fold one secant ``(dx, df)`` into the estimate (ignored when ``dx`` is zero)."""
        norm = float(np.linalg.norm(dx))
        if norm == 0.0:
            return
        if self.update == "broyden":
            self.jacobian = broyden_update(self.jacobian, dx, df)
        else:
            self._rls.update(dx / norm, df / norm)
            self.jacobian = self._rls.jacobian.numpy()

    def vjp(self, fun: Callable, x: np.ndarray, fx: np.ndarray, g: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        fx = np.asarray(fx, dtype=np.float64).reshape(-1)
        if self.jacobian is None:
            self._start(fun, x, fx)
        elif self.step_secants and self._previous is not None:
            x0, f0 = self._previous
            self.observe(x - x0, fx - f0)
        if self.probes:
            u = _draw_directions(self.probes, x.size, "gaussian", self.generator).numpy()
            h = self.eps * max(1.0, float(np.abs(x).max()))
            for direction in u:
                dx = h * direction / np.linalg.norm(direction)
                dx = (x + dx) - x
                df = np.asarray(fun(x + dx), dtype=np.float64).reshape(-1) - fx
                self.evaluations += 1
                self.observe(dx, df)
        self._previous = (x.copy(), fx.copy())
        return np.asarray(g, dtype=np.float64) @ self.jacobian


# ---------------------------------------------------------------------------
# Evaluation counting


class EvaluationCounter:
    """Wrap a black box and count its calls: ``counted = EvaluationCounter(fun); counted.calls``.

    Passes every argument through (black boxes of several inputs work too).
    Optionally records the points it was called at (``record=True``, the
    arguments flattened and concatenated), which is how the exercise checks see
    *where* a function was probed; ``seconds`` adds up the time spent inside.

    Raises:
        TypeError: ``fun`` is not callable or ``record`` is not a bool.
    """

    def __init__(self, fun: Callable[[Any], Any], record: bool = False) -> None:
        if not callable(fun):
            raise TypeError(f"fun: expected a callable, got {type(fun).__name__}")
        if not isinstance(record, bool):
            raise TypeError(f"record: expected True or False, got {type(record).__name__}")
        self.fun = fun
        self.calls = 0
        self.record = record
        self.points: list[np.ndarray] = []
        self.seconds = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.record:
            parts = [
                a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a) for a in args
            ]
            point = np.concatenate([np.ravel(a) for a in parts]) if parts else np.zeros(0)
            self.points.append(np.array(point, dtype=np.float64, copy=True))
        start = time.perf_counter()
        try:
            return self.fun(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def reset(self) -> None:
        self.calls = 0
        self.points = []
        self.seconds = 0.0

    def __repr__(self) -> str:
        return f"EvaluationCounter({getattr(self.fun, '__name__', self.fun)!r}, calls={self.calls})"


# ---------------------------------------------------------------------------
# The autograd Functions


def _numpy_black_box(fun: Callable, x: np.ndarray, where: str) -> np.ndarray:
    """Call a NumPy black box and check its output: 1-D or scalar, finite."""
    out = fun(x)
    if isinstance(out, Tensor):
        out = out.detach().cpu().numpy()
    out = np.asarray(out, dtype=np.float64)
    if out.ndim > 1:
        raise ValueError(
            f"fun: expected an output of shape (n,) or a scalar{where}, got shape {out.shape}"
        )
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"fun: returned non-finite values (nan/inf){where}; the black box failed there"
        )
    return out


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


class _BlackBoxFunction(torch.autograd.Function):
    """``y = fun(x)`` for a NumPy black box, with ``x`` float64 of shape ``(m,)`` or ``(B, m)``."""

    @staticmethod
    def forward(x: Tensor, fun: Callable, estimator: VJPEstimator) -> Tensor:
        rows = x.detach().cpu().numpy().reshape(-1, x.shape[-1])
        outs = [_numpy_black_box(fun, row, f" at input row {b}") for b, row in enumerate(rows)]
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
            grad = _BlackBoxFunction._vjp(ctx, x, output, grad_output)
        return _first_order_only(grad, "wrap_blackbox", x, grad_output), None, None

    @staticmethod
    def _vjp(ctx: Any, x: Tensor, output: Tensor, grad_output: Tensor) -> Tensor:
        m = x.shape[-1]
        xs = x.detach().cpu().numpy().reshape(-1, m)
        fxs = output.detach().cpu().numpy().reshape(xs.shape[0], -1)
        gs = grad_output.detach().to(torch.float64).cpu().numpy().reshape(xs.shape[0], -1)

        def checked(point: np.ndarray) -> np.ndarray:
            return _numpy_black_box(ctx.fun, point, " during the VJP estimate")

        rows = []
        for xb, fb, gb in zip(xs, fxs, gs, strict=True):
            v = np.asarray(ctx.estimator.vjp(checked, xb, fb, gb), dtype=np.float64)
            if v.shape != (m,):
                raise ValueError(f"estimator: expected a VJP of shape ({m},), got {v.shape}")
            rows.append(v)
        return torch.from_numpy(np.stack(rows)).reshape(x.shape).to(x.device, x.dtype)


def _estimator(jacobian: object, eps: float | None) -> VJPEstimator:
    """The estimator :func:`wrap_blackbox` uses for ``jacobian`` (and ``eps``)."""
    methods = ", ".join(repr(method) for method in FD_METHODS)
    if isinstance(jacobian, str):
        if jacobian not in FD_METHODS:
            raise ValueError(
                f"jacobian: expected {methods}, an estimator with "
                f".vjp(fun, x, fx, g) or a function x -> (n, m) Jacobian, got {jacobian!r}"
            )
        return FiniteDifferences(jacobian, eps)
    if eps is not None:
        raise ValueError(
            f"eps: only used with jacobian={'/'.join(map(repr, FD_METHODS))}; "
            f"set the step on the estimator instead (got eps={eps!r} with "
            f"{type(jacobian).__name__})"
        )
    if isinstance(jacobian, VJPEstimator):
        return jacobian
    if callable(jacobian):
        return AnalyticJacobian(jacobian)
    raise TypeError(
        f"jacobian: expected {methods}, an estimator or a callable, got {type(jacobian).__name__}"
    )


class BlackBox:
    """A NumPy black box as a differentiable torch function (made by :func:`wrap_blackbox`)."""

    def __init__(self, fun: Callable, estimator: VJPEstimator) -> None:
        self.fun = fun
        self.estimator = estimator

    def __call__(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
        if x.ndim not in (1, 2) or x.shape[-1] == 0:
            raise ValueError(
                f"x: expected shape (m,) or a batch (B, m) with m >= 1, got {tuple(x.shape)}"
            )
        if x.ndim == 2 and x.shape[0] == 0:
            raise ValueError("x: expected a non-empty batch, got shape (0, m)")
        _check_finite("x", x.detach())
        y = _BlackBoxFunction.apply(x.to(torch.float64), self.fun, self.estimator)
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
      error ``~ 1e-10`` relative with the default step; passes
      ``torch.autograd.gradcheck`` in float64 on a smooth ``fun``;
    - ``"forward"`` / ``"backward"``: one-sided differences, ``m`` evaluations
      (``f(x)`` comes from the forward pass), error ``~ 1e-8``;
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
    if not callable(fun):
        raise TypeError(f"fun: expected a callable, got {type(fun).__name__}")
    return BlackBox(fun, _estimator(jacobian, eps))


class _GradiatorFunction(torch.autograd.Function):
    """The seed's ``GradiatorFunction``, in the modern ``setup_context`` style."""

    @staticmethod
    def forward(x: Tensor, fun: Callable, grad_fun: Callable, numpy: bool) -> Tensor:
        arg = x.detach().cpu().numpy() if numpy else x.detach()
        out = fun(arg)
        if isinstance(out, Tensor):
            out = out.detach()
        else:
            try:
                out = torch.as_tensor(np.asarray(out))
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"fun: expected an array or tensor output, got {type(out).__name__}"
                ) from error
        if not out.is_floating_point():
            out = out.to(x.dtype)
        return out.to(device=x.device, dtype=x.dtype)

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
    """The seed's wrapper, made correct: ``y = fun(x)`` whose backward is ``grad_fun(x, g)``.

    ``grad_fun(x, g)`` must return ``g^T J_f(x)``, an array of ``x``'s shape.
    Compared with the original:

    - ``setup_context`` style: ``forward`` does not see ``ctx`` (the style
      torch recommends, and the one ``torch.func`` builds on); ``fun`` and
      ``grad_fun`` travel as non-tensor arguments, so one class serves every call;
    - ``fun`` and ``grad_fun`` see detached values (NumPy arrays on the CPU when
      ``numpy=True``), so a NumPy black box no longer fails with "Can't call
      numpy() on Tensor that requires grad"; results come back in ``x``'s dtype
      and on ``x``'s device;
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
    for name, f in (("fun", fun), ("grad_fun", grad_fun)):
        if not callable(f):
            raise TypeError(f"{name}: expected a callable, got {type(f).__name__}")

    def apply(x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"x: expected a floating-point torch.Tensor, got {got}")
        return _GradiatorFunction.apply(x, fun, grad_fun, numpy)

    apply.__doc__ = f"gradiator({getattr(fun, '__name__', 'fun')}, ...): differentiable black box"
    return apply


# ---------------------------------------------------------------------------
# The chapter's black boxes


@dataclass
class SmoothTestFunction:
    """The chapter's test black box ``f: R^m -> R^n`` (NumPy), with its exact Jacobian.

    .. math::

        f(x) = \\tanh(A x + b) + 0.1\\,(B x)^{\\odot 2},\\qquad
        J(x) = \\operatorname{diag}(1 - \\tanh^2(A x + b))\\, A
              + 0.2\\, \\operatorname{diag}(B x)\\, B

    with ``A``, ``B`` of shape ``(n, m)`` scaled by ``1/sqrt(m)`` so that
    ``f`` and ``J`` are of order one at ``x ~ N(0, I)``.
    """

    A: np.ndarray
    B: np.ndarray
    b: np.ndarray
    x0: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, m)``, the Jacobian's shape."""
        return self.A.shape

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.tanh(self.A @ x + self.b) + 0.1 * (self.B @ x) ** 2

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        t = np.tanh(self.A @ x + self.b)
        return (1 - t**2)[:, None] * self.A + 0.2 * (self.B @ x)[:, None] * self.B


def smooth_test_function(m: int = 20, n: int = 10, seed: int = 0) -> SmoothTestFunction:
    """Draw the chapter's test function (see :class:`SmoothTestFunction`) from ``seed``.

    Args:
        m: the number of inputs (``>= 1``).
        n: the number of outputs (``>= 1``).
        seed: an int ``>= 0`` for ``numpy.random.default_rng``.

    Raises:
        TypeError, ValueError: ``m`` or ``n`` not a positive int, ``seed`` not
            an int ``>= 0``.
    """
    m, n = _positive_int("m", m), _positive_int("n", n)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed: expected an int >= 0, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed}")
    gen = np.random.default_rng(seed)
    A = gen.standard_normal((n, m)) / math.sqrt(m)
    B = gen.standard_normal((n, m)) / math.sqrt(m)
    b = 0.5 * gen.standard_normal(n)
    x0 = gen.standard_normal(m)
    return SmoothTestFunction(A, B, b, x0)


class DrivenPendulum:
    """A damped pendulum driven by a smooth torque, integrated by SciPy: the training black box.

    .. math::

        \\ddot q = -\\sin q - c\\,\\dot q + u(t),\\qquad
        u(t) = \\sum_{k=1}^{p} \\theta_k\\, \\varphi_k(t),\\qquad
        \\varphi_k(t) = \\exp\\!\\Big(-\\frac{(t - t_k)^2}{2 w^2}\\Big),

    from rest (``q(0) = 0``, ``q'(0) = 0``), with ``p`` bumps centred at
    ``t_k`` evenly spread over ``[0, T]`` and width ``w = T / p``. The black box
    maps the torque coefficients ``theta`` (``(p,)``) to the angle at
    ``num_obs`` times in ``(0, T]`` (``(n,)``). It is integrated by
    ``scipy.integrate.odeint`` (LSODA) with tight tolerances, so torch cannot
    differentiate it; :meth:`jacobian` gets the exact ``(n, p)`` Jacobian from
    the forward sensitivity equations ``S' = A(t) S + B(t)``,
    ``A = [[0, 1], [-cos q, -c]]``, ``B = [0; phi(t)^T]``, integrated alongside.

    Args:
        num_params: ``p``, the number of torque bumps (``>= 1``).
        num_obs: ``n``, the number of observation times (``>= 1``).
        horizon: ``T > 0``.
        damping: ``c >= 0``.
        rtol, atol: the integrator's tolerances (``> 0``).

    Raises:
        TypeError, ValueError: a size that is not a positive int, or a number
            outside its range.
    """

    def __init__(
        self,
        num_params: int = 8,
        num_obs: int = 32,
        horizon: float = 8.0,
        damping: float = 0.3,
        rtol: float = 1e-10,
        atol: float = 1e-12,
    ) -> None:
        self.num_params = _positive_int("num_params", num_params)
        self.num_obs = _positive_int("num_obs", num_obs)
        self.horizon = _positive_float("horizon", horizon)
        self.damping = check_nonnegative("damping", damping)
        self.rtol, self.atol = _positive_float("rtol", rtol), _positive_float("atol", atol)
        self.centers = np.linspace(0.0, self.horizon, self.num_params)
        self.width = self.horizon / self.num_params
        self.times = np.linspace(self.horizon / self.num_obs, self.horizon, self.num_obs)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, p)``, the Jacobian's shape."""
        return (self.num_obs, self.num_params)

    def basis(self, t: float | np.ndarray) -> np.ndarray:
        """``phi(t)``: ``(p,)`` for a scalar ``t``, ``(len(t), p)`` for an array."""
        t = np.asarray(t, dtype=np.float64)
        return np.exp(-0.5 * ((t[..., None] - self.centers) / self.width) ** 2)

    def torque(self, theta: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``u(t)`` on an array of times."""
        return self.basis(t) @ np.asarray(theta, dtype=np.float64)

    def _theta(self, theta: object) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.num_params,):
            raise ValueError(
                f"theta: expected shape ({self.num_params},) (one weight per torque bump), "
                f"got {theta.shape}"
            )
        if not np.all(np.isfinite(theta)):
            raise ValueError("theta: expected finite values")
        return theta

    def _torque_function(self, theta: np.ndarray) -> Callable[[float], float]:
        """``t -> u(t)`` in plain Python floats: the right-hand side is called hundreds of times."""
        centers, weights = self.centers.tolist(), theta.tolist()
        inv = 1.0 / (2.0 * self.width**2)

        def torque(t: float) -> float:
            total = 0.0
            for center, weight in zip(centers, weights, strict=True):
                d = t - center
                total += weight * math.exp(-d * d * inv)
            return total

        return torque

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        from scipy.integrate import odeint

        theta = self._theta(theta)
        c, torque = self.damping, self._torque_function(theta)

        def rhs(s: np.ndarray, t: float) -> tuple[float, float]:
            return (s[1], -math.sin(s[0]) - c * s[1] + torque(t))

        grid = np.concatenate([[0.0], self.times])
        states = odeint(rhs, [0.0, 0.0], grid, rtol=self.rtol, atol=self.atol)
        return states[1:, 0]

    def simulate_with_jacobian(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(q(t_j), dq(t_j)/dtheta)``: ``(n,)`` and ``(n, p)`` from the sensitivity equations."""
        from scipy.integrate import odeint

        theta = self._theta(theta)
        p, c = self.num_params, self.damping
        centers, inv = self.centers, 1.0 / (2.0 * self.width**2)
        dz = np.empty(2 + 2 * p)

        def rhs(z: np.ndarray, t: float) -> np.ndarray:
            q, v = z[0], z[1]
            s_q, s_v = z[2 : 2 + p], z[2 + p :]
            phi = np.exp(-((t - centers) ** 2) * inv)
            dz[0] = v
            dz[1] = -math.sin(q) - c * v + phi @ theta
            dz[2 : 2 + p] = s_v
            dz[2 + p :] = -math.cos(q) * s_q - c * s_v + phi
            return dz.copy()

        grid = np.concatenate([[0.0], self.times])
        z = odeint(rhs, np.zeros(2 + 2 * p), grid, rtol=self.rtol, atol=self.atol)[1:]
        return z[:, 0], z[:, 2 : 2 + p]

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """The exact ``(n, p)`` Jacobian (forward sensitivities)."""
        return self.simulate_with_jacobian(theta)[1]


# ---------------------------------------------------------------------------
# Training through a black box


def _check_point(name: str, t: Tensor) -> None:
    """Raise unless ``t`` is a finite 1-D point ``(m,)`` with ``m >= 1``."""
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(
            f"{name}: expected a 1-D point of shape (m,) with m >= 1, got shape {tuple(t.shape)}"
        )
    _check_finite(name, t)


def _check_target_shape(name: str, target: Tensor, prediction: Tensor) -> None:
    """Raise unless ``target`` has the black box's output shape (broadcasting would hide it)."""
    if target.shape != prediction.shape:
        raise ValueError(
            f"{name}: expected the black box's output shape {tuple(prediction.shape)}, "
            f"got {tuple(target.shape)}"
        )


@dataclass
class FitHistory:
    """What :func:`fit_through_blackbox` records, one entry per optimiser step."""

    evaluations: list[int]
    seconds: list[float]
    loss: list[float]
    theta: np.ndarray
    final_loss: float


def fit_through_blackbox(
    fun: Callable[[np.ndarray], Any],
    data: Array,
    theta0: Array,
    jacobian: str | VJPEstimator | Callable[[np.ndarray], Any] = "central",
    budget: int = 150,
    lr: float = 0.1,
    device: torch.device | str | None = None,
) -> FitHistory:
    """Fit ``theta`` so that ``fun(theta) ~ data`` by Adam through :func:`wrap_blackbox`.

    Minimises the mean squared error ``mean((fun(theta) - data)^2)`` with
    ``torch.optim.Adam(lr)``; each step runs one forward evaluation and whatever
    the VJP estimator ``jacobian`` spends. Stops at the first step that brings
    the black-box evaluations to ``budget`` or beyond (forward passes and
    probes all count; the final loss is evaluated once more, uncounted).

    Args:
        fun: NumPy black box ``(p,) -> (n,)``.
        data: ``(n,)`` target.
        theta0: ``(p,)`` start.
        jacobian: as in :func:`wrap_blackbox`.
        budget: black-box evaluations allowed.
        lr: Adam's learning rate.
        device: where ``theta`` lives (the black box itself runs on the CPU).

    Returns:
        A :class:`FitHistory`: per step the evaluations so far, the seconds so
        far and the loss *before* the step; the final ``theta`` and its loss.

    Raises:
        TypeError, ValueError: ``fun`` not callable, ``budget`` or ``lr`` not
            positive, ``theta0`` not a finite ``(p,)`` array, ``data`` not
            finite or not of the black box's output shape (found at the first
            forward pass), or an unknown ``jacobian``.
    """
    budget = _positive_int("budget", budget)
    lr = _positive_float("lr", lr)
    counted = EvaluationCounter(fun)
    model = wrap_blackbox(counted, jacobian=jacobian)
    theta_t, _ = _to_tensor("theta0", theta0)
    _check_point("theta0", theta_t)
    theta = theta_t.detach().to(device=device, dtype=torch.float64).clone().requires_grad_(True)
    data_t, _ = _to_tensor("data", data)
    _check_finite("data", data_t)
    target = data_t.to(device=theta.device, dtype=torch.float64)
    optimiser = torch.optim.Adam([theta], lr=lr)
    history = FitHistory([], [], [], np.empty(0), float("nan"))
    start = time.perf_counter()
    while counted.calls < budget:
        optimiser.zero_grad()
        prediction = model(theta)
        _check_target_shape("data", target, prediction)
        loss = ((prediction - target) ** 2).mean()
        loss.backward()
        optimiser.step()
        history.evaluations.append(counted.calls)
        history.seconds.append(time.perf_counter() - start)
        history.loss.append(float(loss.detach()))
    history.theta = theta.detach().cpu().numpy()
    final = np.asarray(fun(history.theta), dtype=np.float64) - data_t.cpu().double().numpy()
    history.final_loss = float(np.mean(final**2))
    return history
