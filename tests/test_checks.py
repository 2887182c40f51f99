"""gradbook._checks: the shared tensor check and its messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradbook._checks import SizeError, check_size, check_tensor


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


def test_sizes_are_pairs_of_positive_ints():
    assert check_size("size", (3, 4)) == (3, 4)
    assert check_size("size", torch.Size([5, 6])) == (5, 6)
    assert check_size("size", [np.int64(2), 7]) == (2, 7)
    height, width = check_size("size", (np.int32(2), 1))
    assert type(height) is int and type(width) is int


@pytest.mark.parametrize("size", [(4,), (1, 2, 3), 4, "ab", (2.0, 3), (True, 3), None])
def test_sizes_that_are_not_two_ints(size):
    with pytest.raises(SizeError, match=r"^dsize: expected \(height, width\) as two ints, got "):
        check_size("dsize", size)
    assert issubclass(SizeError, TypeError) and issubclass(SizeError, ValueError)


@pytest.mark.parametrize("size", [(0, 3), (3, -1)])
def test_sizes_below_one(size):
    with pytest.raises(ValueError, match=r"^size: expected \(height, width\) of positive ints"):
        check_size("size", size)


def test_dtypes_lists_what_is_accepted():
    x = torch.zeros(2, dtype=torch.float32)
    assert check_tensor("x", x, dtypes=(torch.float32, torch.float64)) is x
    with pytest.raises(
        TypeError, match=r"^x: expected dtype torch\.float32 or torch\.float64, got torch\.float16$"
    ):
        check_tensor("x", x.half(), dtypes=(torch.float32, torch.float64))
