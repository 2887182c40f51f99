"""Training through a black box: Adam on ``mean((fun(theta) - data)^2)``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradbook._checks import check_finite, check_int, check_positive
from gradbook.blackbox._calls import Array, check_point, to_tensor
from gradbook.blackbox.autograd import wrap_blackbox
from gradbook.blackbox.estimators import VJPEstimator
from gradbook.blackbox.measuring import EvaluationCounter


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
    budget = check_int("budget", budget)
    lr = check_positive("lr", lr)
    counted = EvaluationCounter(fun)
    model = wrap_blackbox(counted, jacobian=jacobian)
    theta_t, _ = to_tensor("theta0", theta0)
    check_point("theta0", theta_t)
    theta = theta_t.detach().to(device=device, dtype=torch.float64).clone().requires_grad_(True)
    data_t, _ = to_tensor("data", data)
    check_finite("data", data_t)
    target = data_t.to(device=theta.device, dtype=torch.float64)
    optimiser = torch.optim.Adam([theta], lr=lr)
    history = FitHistory([], [], [], np.empty(0), float("nan"))
    start = time.perf_counter()
    while counted.calls < budget:
        optimiser.zero_grad()
        prediction = model(theta)
        if target.shape != prediction.shape:  # broadcasting would hide it
            raise ValueError(
                f"data: expected the black box's output shape {tuple(prediction.shape)}, "
                f"got {tuple(target.shape)}"
            )
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
