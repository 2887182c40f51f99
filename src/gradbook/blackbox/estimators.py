"""The VJP estimators :func:`~gradbook.blackbox.wrap_blackbox` takes: ``.vjp(fun, x, fx, g)``.

They work on NumPy float64 arrays, the form in which the autograd boundary
hands them the black box, its input, its output and the cotangent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from gradbook._checks import check_choice, check_finite, check_int, check_positive
from gradbook.blackbox._calls import to_tensor
from gradbook.blackbox.differences import FD_METHODS, finite_difference_jacobian
from gradbook.blackbox.perturbations import (
    DISTRIBUTIONS,
    check_generator,
    draw_directions,
    spsa_vjp,
)
from gradbook.blackbox.secants import RecursiveLeastSquares, broyden_update


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
        check_choice("method", self.method, FD_METHODS)
        if self.eps is not None:
            self.eps = check_positive("eps", self.eps)

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
        self.num_samples = check_int("num_samples", self.num_samples)
        self.c = check_positive("c", self.c)
        check_choice("distribution", self.distribution, DISTRIBUTIONS)
        check_generator(self.generator)

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
        check_choice("update", self.update, ("broyden", "rls"))
        self.probes = check_int("probes", self.probes, minimum=0)
        self.eps = check_positive("eps", self.eps)
        self.delta = check_positive("delta", self.delta)
        self.forgetting = check_positive("forgetting", self.forgetting, at_most=1)
        if isinstance(self.initial, str):
            if self.initial not in ("forward", "zeros"):
                raise ValueError(
                    f"initial: expected 'forward', 'zeros' or an (n, m) array, got {self.initial!r}"
                )
        else:
            J0, _ = to_tensor("initial", self.initial)
            if J0.ndim != 2:
                raise ValueError(
                    f"initial: expected 'forward', 'zeros' or an (n, m) array, "
                    f"got shape {tuple(J0.shape)}"
                )
            check_finite("initial", J0)
        check_generator(self.generator)

    def _start(self, fun: Callable, x: np.ndarray, fx: np.ndarray) -> None:
        n, m = fx.size, x.size
        if isinstance(self.initial, str) and self.initial == "forward":
            J = finite_difference_jacobian(fun, x, method="forward", fx=fx)
            self.evaluations += m
        elif isinstance(self.initial, str):
            J = np.zeros((n, m))
        else:
            J = to_tensor("initial", self.initial)[0].detach().cpu().double().numpy()
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
            u = draw_directions(self.probes, x.size, "gaussian", self.generator).numpy()
            h = self.eps * max(1.0, float(np.abs(x).max()))
            for direction in u:
                dx = h * direction / np.linalg.norm(direction)
                dx = (x + dx) - x
                df = np.asarray(fun(x + dx), dtype=np.float64).reshape(-1) - fx
                self.evaluations += 1
                self.observe(dx, df)
        self._previous = (x.copy(), fx.copy())
        return np.asarray(g, dtype=np.float64) @ self.jacobian


def resolve_estimator(jacobian: object, eps: float | None) -> VJPEstimator:
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
