"""gradbook._checks: the shared tensor check and its messages."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from gradbook._checks import (
    SizeError,
    check_bool,
    check_broadcasts_to,
    check_callable,
    check_choice,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
    check_size,
    check_tensor,
)


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


@pytest.mark.parametrize(
    ("value_shape", "like_shape"),
    [((3, 4), (3, 4)), ((1, 4), (3, 4)), ((4,), (2, 3, 4)), ((), (3,)), ((3, 1), (3, 0))],
)
def test_shapes_that_broadcast_to_the_target(value_shape, like_shape):
    check_broadcasts_to("ref", torch.zeros(value_shape), torch.zeros(like_shape), "v")
    check_broadcasts_to("fill", torch.zeros(value_shape), torch.Size(like_shape), "the result")


@pytest.mark.parametrize(
    ("value_shape", "like_shape"),
    [((3, 5), (3, 4)), ((2, 3, 4), (3, 4)), ((3, 1), (1, 4)), ((4,), ())],
)
def test_shapes_that_do_not_broadcast_to_the_target_name_both(value_shape, like_shape):
    """Growing the target (``(3, 1)`` with ``(1, 4)``) is not broadcasting *to* it."""
    value_text, like_text = re.escape(str(tuple(value_shape))), re.escape(str(tuple(like_shape)))
    with pytest.raises(
        ValueError,
        match=rf"^ref: shape {value_text} does not broadcast to the shape of v, {like_text}$",
    ):
        check_broadcasts_to("ref", torch.zeros(value_shape), torch.zeros(like_shape), "v")
    with pytest.raises(ValueError, match=r"^fill: shape .* of the result, "):
        check_broadcasts_to("fill", torch.zeros(value_shape), like_shape, "the result")


def test_broadcasts_to_checks_the_device_of_a_tensor_target():
    meta = torch.zeros(3, device="meta")
    with pytest.raises(ValueError, match=r"^ref: on meta, but v is on cpu$"):
        check_broadcasts_to("ref", meta, torch.zeros(3), "v")
    check_broadcasts_to("ref", meta, torch.Size([3]), "v")  # a bare shape has no device


def test_callables():
    assert check_callable("f", torch.sin) is torch.sin
    with pytest.raises(TypeError, match=r"^fun: expected a callable, got int$"):
        check_callable("fun", 3)
    with pytest.raises(TypeError, match=r"^f: expected a function of one tensor, got str$"):
        check_callable("f", "sin", "a function of one tensor")


def test_non_negative_numbers():
    assert check_nonnegative("rtol", 0) == 0.0
    assert check_nonnegative("rtol", np.float32(1e-3)) == pytest.approx(1e-3)
    for bad in (-1e-9, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"^rtol: expected a finite number >= 0"):
            check_nonnegative("rtol", bad)
    for bad in ("1e-3", True, None, torch.tensor(1.0)):
        with pytest.raises(TypeError, match=r"^rtol: expected a number >= 0, got "):
            check_nonnegative("rtol", bad)


@pytest.mark.parametrize("value", [1, 2.5, np.float32(0.25), 1e300])
def test_positive_numbers_come_back_as_floats(value):
    out = check_positive("lr", value)
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0.0, ValueError, r"^lr: expected a number > 0, got 0\.0$"),
        (-1, ValueError, r"^lr: expected a number > 0, got -1$"),
        (float("nan"), ValueError, r"^lr: expected a number > 0, got nan$"),
        (float("inf"), ValueError, r"^lr: expected a number > 0, got inf$"),
        (True, TypeError, r"^lr: expected a number > 0, got bool$"),
        ("0.1", TypeError, r"^lr: expected a number > 0, got str$"),
        (torch.tensor(0.1), TypeError, r"^lr: expected a number > 0, got Tensor$"),
    ],
)
def test_positive_numbers_refused(value, error, message):
    with pytest.raises(error, match=message):
        check_positive("lr", value)


def test_positive_numbers_with_an_upper_bound():
    assert check_positive("forgetting", 1, at_most=1) == 1.0
    with pytest.raises(ValueError, match=r"^forgetting: expected a number in \(0, 1\], got 1\.5$"):
        check_positive("forgetting", 1.5, at_most=1)


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(2)])
def test_ints_come_back_as_python_ints(value):
    out = check_int("n", value)
    assert type(out) is int and out == int(value)


@pytest.mark.parametrize(
    ("value", "minimum", "error", "message"),
    [
        (0, 1, ValueError, r"^n: expected an int >= 1, got 0$"),
        (-1, 0, ValueError, r"^n: expected an int >= 0, got -1$"),
        (True, 0, TypeError, r"^n: expected an int >= 0, got bool True$"),
        (2.0, 1, TypeError, r"^n: expected an int >= 1, got float 2\.0$"),
        ("3", 1, TypeError, r"^n: expected an int >= 1, got str '3'$"),
        (None, 1, TypeError, r"^n: expected an int >= 1, got NoneType None$"),
    ],
)
def test_ints_refused(value, minimum, error, message):
    with pytest.raises(error, match=message):
        check_int("n", value, minimum=minimum)


def test_optional_ints():
    assert check_int("chunk_size", None, allow_none=True) is None
    with pytest.raises(TypeError, match=r"^chunk_size: expected None or an int >= 1, got float"):
        check_int("chunk_size", 1.5, allow_none=True)


def test_bools_and_choices():
    assert check_bool("record", False) is False
    with pytest.raises(TypeError, match=r"^record: expected True or False, got int$"):
        check_bool("record", 1)
    assert check_choice("method", "gn", ("lm", "gn")) == "gn"
    with pytest.raises(ValueError, match=r"^method: expected one of 'lm', 'gn', got 'GN'$"):
        check_choice("method", "GN", ("lm", "gn"))
    with pytest.raises(ValueError, match=r"^method: expected one of 'lm', 'gn', got None$"):
        check_choice("method", None, ("lm", "gn"))


def test_finite_counts_what_is_not():
    x = torch.tensor([1.0, float("nan"), float("inf"), 0.0])
    with pytest.raises(
        ValueError, match=r"^x: expected finite values, got 2 non-finite \(nan/inf\) of 4$"
    ):
        check_finite("x", x)
    y = torch.ones(3)
    assert check_finite("y", y) is y
