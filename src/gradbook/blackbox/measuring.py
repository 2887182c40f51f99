"""What an estimator costs and how far off it is: evaluation counts and relative errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gradbook._checks import check_bool, check_callable
from gradbook.blackbox._calls import Array, to_tensor


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
        self.fun = check_callable("fun", fun)
        self.calls = 0
        self.record = check_bool("record", record)
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
        """Forget the calls, points and seconds counted so far."""
        self.calls = 0
        self.points = []
        self.seconds = 0.0

    def __repr__(self) -> str:
        return f"EvaluationCounter({getattr(self.fun, '__name__', self.fun)!r}, calls={self.calls})"


def vjp_relative_error(estimate: Array, reference: Array) -> float:
    """``||estimate - reference|| / ||reference||`` (the absolute error when the reference is 0)."""
    e, _ = to_tensor("estimate", estimate)
    r, _ = to_tensor("reference", reference)
    if e.shape != r.shape:
        raise ValueError(
            f"estimate: expected the reference's shape {tuple(r.shape)}, got {tuple(e.shape)}"
        )
    e, r = e.detach().cpu().double(), r.detach().cpu().double()
    denominator = torch.linalg.vector_norm(r)
    error = torch.linalg.vector_norm(e - r)
    return float(error / denominator) if denominator > 0 else float(error)
