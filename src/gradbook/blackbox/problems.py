"""The chapter's example black boxes: a smooth test function and a driven pendulum.

Tests, benchmarks and the lesson of chapter 7 all draw their problems from here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradbook._checks import check_int, check_nonnegative, check_positive


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
        """``f(x)``: ``(n,)`` for ``x`` of shape ``(m,)``."""
        x = np.asarray(x, dtype=np.float64)
        return np.tanh(self.A @ x + self.b) + 0.1 * (self.B @ x) ** 2

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """The exact ``(n, m)`` Jacobian ``J(x)``."""
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
    m, n, seed = check_int("m", m), check_int("n", n), check_int("seed", seed, minimum=0)
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
        self.num_params = check_int("num_params", num_params)
        self.num_obs = check_int("num_obs", num_obs)
        self.horizon = check_positive("horizon", horizon)
        self.damping = check_nonnegative("damping", damping)
        self.rtol, self.atol = check_positive("rtol", rtol), check_positive("atol", atol)
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
        """The angles ``q(t_j)``, ``(n,)``, for torque weights ``theta`` of shape ``(p,)``."""
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
