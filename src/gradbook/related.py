"""The earlier home of the appendix's tools; they now live in modules named for what they compute.

Every public name this module had is re-exported from its new home, so
``from gradbook.related import soft_count`` keeps working:

- :mod:`gradbook.counting`: :data:`~gradbook.counting.KERNELS`,
  :func:`~gradbook.counting.soft_count`, :func:`~gradbook.counting.hard_count`,
  :func:`~gradbook.counting.expected_counts`,
  :func:`~gradbook.counting.count_distribution`,
  :func:`~gradbook.counting.count_distribution_naive`;
- :mod:`gradbook.safe_division`: :func:`~gradbook.safe_division.safe_divide`;
- :mod:`gradbook.named_gradients`: :func:`~gradbook.named_gradients.named_grad`.

New code imports from those modules.
"""

from __future__ import annotations

from gradbook.counting import (
    KERNELS,
    count_distribution,
    count_distribution_naive,
    expected_counts,
    hard_count,
    soft_count,
)
from gradbook.named_gradients import named_grad
from gradbook.safe_division import safe_divide

__all__ = [
    "KERNELS",
    "count_distribution",
    "count_distribution_naive",
    "expected_counts",
    "hard_count",
    "named_grad",
    "safe_divide",
    "soft_count",
]
