"""Device selection and seeding, shared by notebooks and tests.

Every notebook and test picks its device through :func:`get_device`, so the same
notebooks run unchanged on a GPU runner (``GRADBOOK_DEVICE=cuda``), and seeds
everything through :func:`seed_everything`.

Convention for reproducible outputs on any device: draw random data on the CPU
from a seeded :class:`torch.Generator` and move it with ``.to(device)``; CUDA's
generators produce different streams from the CPU's.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

ENV_VAR = "GRADBOOK_DEVICE"


def get_device(name: str | None = None) -> torch.device:
    """Return the device to compute on.

    Order of precedence: the ``name`` argument, then the ``GRADBOOK_DEVICE``
    environment variable, then ``cuda`` when available, else ``cpu``.

    Raises:
        ValueError: the requested device is not a valid device string, or asks
            for CUDA on a machine where CUDA is not available.
    """
    requested = name if name is not None else os.environ.get(ENV_VAR, "").strip()
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # where the request came from, for the error messages
    source = "name" if name is not None else ENV_VAR
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise ValueError(
            f"{source}: expected a device such as 'cpu' or 'cuda', got {requested!r}"
        ) from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"{source}={requested!r} asks for CUDA, but torch {torch.__version__} "
            "sees no CUDA device (is a CUDA build of torch installed?)"
        )
    return device


def available_devices() -> list[torch.device]:
    """All devices tests should run on: the CPU, plus CUDA when present."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's ``random``, NumPy's legacy global generator and torch (CPU and CUDA).

    Returns:
        A fresh CPU :class:`torch.Generator` seeded with ``seed``: pass it as
        ``generator=`` to draw reproducible data, then move the data to the device.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds code that uses the legacy global
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)
