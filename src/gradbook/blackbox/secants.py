"""Jacobians from secants: least squares over probes, Broyden's update, recursive least squares.

Every estimator here rests on the *secant condition* ``J dx = df + O(||dx||^2)``
for a probe ``dx`` and ``df = f(x + dx) - f(x)``. Probes are columns: ``dX`` is
``(m, k)``, ``dF`` is ``(n, k)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gradbook._checks import check_finite, check_int, check_nonnegative, check_positive
from gradbook.blackbox._calls import Array, back, to_tensor


def _probe_matrices(
    dX: object, dF: object, names: tuple[str, str] = ("dX", "dF")
) -> tuple[Tensor, Tensor, bool]:
    nx, nf = names
    tX, np_x = to_tensor(nx, dX)
    tF, np_f = to_tensor(nf, dF)
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
    check_finite(nx, tX)
    check_finite(nf, tF, " (a black box that failed on a probe?)")
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
    return back(tF @ pinv, as_numpy)


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
    tx, np_x = to_tensor("dx", dx)
    tf, np_f = to_tensor("df", df)
    if tx.ndim != 1:
        raise ValueError(f"dx: expected one probe of shape (m,), got shape {tuple(tx.shape)}")
    if tf.ndim != 1:
        raise ValueError(f"df: expected one output change (n,), got shape {tuple(tf.shape)}")
    tX, tF, _ = _probe_matrices(tx[:, None], tf[:, None], ("dx", "df"))
    return back(_secant_outer(tF[:, 0], tX[:, 0]), np_x and np_f)


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
    tJ, as_numpy = to_tensor("J", J)
    tx, _ = to_tensor("dx", dx)
    tf, _ = to_tensor("df", df)
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
        check_finite(name, t)
    if not bool((tx != 0).any()):
        raise ValueError("dx: expected a nonzero probe, got a zero-length step")
    return back(tJ + _secant_outer(tf - tJ @ tx, tx), as_numpy)


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
        self.n_out = check_int("n_out", n_out)
        self.n_in = check_int("n_in", n_in)
        self.delta = check_positive("delta", delta)
        self.forgetting = check_positive("forgetting", forgetting, at_most=1)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if initial is None:
            self._J = torch.zeros(self.n_out, self.n_in, dtype=dtype, device=self.device)
        else:
            tJ, _ = to_tensor("initial", initial)
            if tuple(tJ.shape) != (self.n_out, self.n_in):
                raise ValueError(
                    f"initial: expected shape ({self.n_out}, {self.n_in}) (n_out, n_in), "
                    f"got {tuple(tJ.shape)}"
                )
            check_finite("initial", tJ)
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
        tg, as_numpy = to_tensor("g", g)
        if tg.shape[-1:] != (self.n_out,) or tg.ndim > 2:
            raise ValueError(
                f"g: expected shape ({self.n_out},) or (B, {self.n_out}), got {tuple(tg.shape)}"
            )
        out = tg.to(self.device, self.dtype) @ self._J
        return back(out, as_numpy)

    def update(self, dx: Array, df: Array) -> RecursiveLeastSquares:
        """Add one probe (``dx`` ``(m,)``, ``df`` ``(n,)``) or ``k`` probes as columns.

        Returns ``self``, so that updates chain.

        Raises:
            ValueError: shapes differ from ``(n_in,)``/``(n_out,)`` (or ``(n_in, k)``
                and ``(n_out, k)``), a probe has zero length, or a value is not finite.
        """
        tX, _ = to_tensor("dx", dx)
        tF, _ = to_tensor("df", df)
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
