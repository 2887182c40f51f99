"""gradbook._checks: the shared tensor check and its messages."""

from __future__ import annotations

import pytest
import torch

from gradbook._checks import check_tensor


def test_returns_the_tensor_itself():
    x = torch.zeros(2, dtype=torch.float64)
    assert check_tensor("x", x) is x
    ints = torch.arange(3)
    assert check_tensor("n", ints, floating=False) is ints


def test_messages_name_the_argument_and_what_came():
    with pytest.raises(TypeError, match=r"^x: expected a torch\.Tensor, got list$"):
        check_tensor("x", [1.0])
    with pytest.raises(
        TypeError, match=r"^v: expected a floating-point tensor, got dtype torch\.int64$"
    ):
        check_tensor("v", torch.arange(3))


def test_a_hint_ends_the_dtype_message():
    with pytest.raises(
        TypeError,
        match=r"^c: expected a floating-point tensor, got dtype torch\.int64; cast it first$",
    ):
        check_tensor("c", torch.arange(3), hint="cast it first")
