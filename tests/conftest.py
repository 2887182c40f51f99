"""Shared fixtures: every test that computes takes ``device`` (and often ``dtype``)."""

from __future__ import annotations

import pytest
import torch

from gradbook.device import available_devices

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
