"""gradbook.device: device choice and seeding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gradbook.device import available_devices, get_device, seed_everything


def test_explicit_name_wins(monkeypatch):
    monkeypatch.setenv("GRADBOOK_DEVICE", "cuda")
    assert get_device("cpu") == torch.device("cpu")


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("GRADBOOK_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_default_follows_cuda_availability(monkeypatch):
    monkeypatch.delenv("GRADBOOK_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_device().type == expected


def test_bad_device_names(monkeypatch):
    monkeypatch.setenv("GRADBOOK_DEVICE", "gpu0")
    with pytest.raises(
        ValueError, match=r"GRADBOOK_DEVICE: expected a device such as 'cpu'.*'gpu0'"
    ):
        get_device()
    with pytest.raises(ValueError, match=r"^name: expected a device such as 'cpu'.*'gpu1'"):
        get_device("gpu1")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device"):
            get_device("cuda")


def test_cuda_on_a_cpu_only_machine_names_where_the_request_came_from(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("GRADBOOK_DEVICE", raising=False)
    with pytest.raises(ValueError, match=r"^name='cuda' asks for CUDA.*sees no CUDA device") as err:
        get_device("cuda")
    assert "GRADBOOK_DEVICE" not in str(err.value)
    # the argument wins over the variable, and the message says so
    monkeypatch.setenv("GRADBOOK_DEVICE", "cpu")
    with pytest.raises(ValueError, match=r"^name='cuda:1' asks for CUDA") as err:
        get_device("cuda:1")
    assert "GRADBOOK_DEVICE" not in str(err.value)
    monkeypatch.setenv("GRADBOOK_DEVICE", "cuda")
    with pytest.raises(ValueError, match=r"^GRADBOOK_DEVICE='cuda' asks for CUDA.*no CUDA device"):
        get_device()


def test_available_devices_start_with_cpu():
    devices = available_devices()
    assert devices[0] == torch.device("cpu")
    assert (torch.device("cuda") in devices) == torch.cuda.is_available()


def test_seed_everything_makes_every_generator_repeat():
    def draw():
        generator = seed_everything(123)
        return (
            random.random(),
            np.random.rand(),  # noqa: NPY002 - the legacy global is what it seeds
            torch.rand(1).item(),
            torch.rand(1, generator=generator).item(),
        )

    assert draw() == draw()
    seed_everything(124)
    assert torch.rand(1).item() != draw()[2]


def test_seed_must_be_an_int():
    with pytest.raises(TypeError, match="seed: expected an int, got float"):
        seed_everything(1.5)
