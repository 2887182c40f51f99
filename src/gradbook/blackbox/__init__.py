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

The package, one reason to change per file:

- :mod:`~gradbook.blackbox.differences`   finite differences along the axes
- :mod:`~gradbook.blackbox.secants`       least-squares secants, Broyden, recursive least squares
- :mod:`~gradbook.blackbox.perturbations` random simultaneous perturbations (SPSA)
- :mod:`~gradbook.blackbox.estimators`    the VJP estimators that :func:`wrap_blackbox` takes
- :mod:`~gradbook.blackbox.autograd`      the autograd boundary: wrap_blackbox, gradiator
- :mod:`~gradbook.blackbox.measuring`     evaluation counts and relative errors
- :mod:`~gradbook.blackbox.problems`      the chapter's example black boxes
- :mod:`~gradbook.blackbox.training`      fitting parameters through a black box

Every public name is importable from ``gradbook.blackbox`` itself.
"""

from gradbook.blackbox._calls import Array
from gradbook.blackbox.autograd import (
    DOUBLE_BACKWARD_MESSAGE,
    BlackBox,
    gradiator,
    wrap_blackbox,
)
from gradbook.blackbox.differences import FD_METHODS, default_step, finite_difference_jacobian
from gradbook.blackbox.estimators import (
    SPSA,
    AnalyticJacobian,
    FiniteDifferences,
    JacobianTracker,
    VJPEstimator,
)
from gradbook.blackbox.measuring import EvaluationCounter, vjp_relative_error
from gradbook.blackbox.perturbations import DISTRIBUTIONS, spsa_vjp
from gradbook.blackbox.problems import DrivenPendulum, SmoothTestFunction, smooth_test_function
from gradbook.blackbox.secants import (
    RecursiveLeastSquares,
    broyden_update,
    rank_one_jacobian,
    secant_jacobian,
)
from gradbook.blackbox.training import FitHistory, fit_through_blackbox

__all__ = [
    "DISTRIBUTIONS",
    "DOUBLE_BACKWARD_MESSAGE",
    "FD_METHODS",
    "SPSA",
    "AnalyticJacobian",
    "Array",
    "BlackBox",
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
