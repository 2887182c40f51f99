"""Shared fixtures: every test that computes takes ``device`` (and often ``dtype``)."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

from gradbook.device import available_devices

# Property tests draw the same examples on every run, so a test run is repeatable;
# HYPOTHESIS_PROFILE=explore searches afresh (locally, when hunting for bugs).
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

DEVICES = available_devices()


@pytest.fixture(params=DEVICES, ids=[d.type for d in DEVICES])
def device(request: pytest.FixtureRequest) -> torch.device:
    """Each available device: the CPU, and CUDA when present."""
    return request.param


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """Both floating dtypes the library supports."""
    return request.param


# Tolerances per dtype, for values (not gradients): rtol, atol.
TOLERANCES = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-12, 1e-13)}


@pytest.fixture
def generator() -> torch.Generator:
    """A seeded CPU generator: draw on the CPU, then move to ``device``."""
    return torch.Generator().manual_seed(0)


def central_differences(f, x: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    """The Jacobian ``f(x).shape + x.shape`` by float64 central differences, no autodiff.

    Entry ``[..., j...]`` is ``(f(x + h e_j) - f(x - h e_j)) / 2h``.
    """
    x = x.detach().to(torch.float64)
    columns = []
    for j in range(x.numel()):
        step = torch.zeros(x.numel(), dtype=torch.float64, device=x.device)
        step[j] = h
        step = step.reshape(x.shape)
        columns.append((f(x + step) - f(x - step)) / (2 * h))
    return torch.stack(columns, dim=-1).reshape(*columns[0].shape, *x.shape)
