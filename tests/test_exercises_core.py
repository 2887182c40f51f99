"""gradbook.exercises._core: the vocabulary every check is written in."""

from __future__ import annotations

import pytest
import torch

from gradbook.exercises._core import (
    STUB_MESSAGE,
    ExerciseFailed,
    ExerciseNotAttempted,
    Passed,
    answer_tensor,
    attempt,
    fail,
    passed,
)


def test_attempt_returns_the_answer():
    assert attempt("Exercise 0", lambda a, b=1: a + b, 2, b=3) == 5


def test_attempt_recognises_the_stub_and_a_bare_not_implemented():
    def stub():
        raise NotImplementedError(f"Exercise 0: {STUB_MESSAGE}")

    def bare():
        raise NotImplementedError

    for answer in (stub, bare):
        with pytest.raises(ExerciseNotAttempted, match=r"^Exercise 0: not attempted yet"):
            attempt("Exercise 0", answer)


def test_attempt_quotes_other_errors_as_feedback():
    def library_not_implemented():
        raise NotImplementedError("forward mode is not supported here")

    with pytest.raises(ExerciseFailed, match="raised NotImplementedError: forward mode") as info:
        attempt("Exercise 0", library_not_implemented)
    assert not isinstance(info.value, ExerciseNotAttempted)
    with pytest.raises(ExerciseFailed, match=r"^Exercise 0: your code raised ZeroDivisionError"):
        attempt("Exercise 0", lambda: 1 / 0)
    with pytest.raises(ExerciseFailed, match=r"^Exercise 0: expected a function, got int\.$"):
        attempt("Exercise 0", 3)


def test_fail_prefixes_the_exercise():
    with pytest.raises(ExerciseFailed, match=r"^Exercise 0: wrong sign\.$"):
        fail("Exercise 0", "wrong sign.")


def test_passed_prints_once_and_is_true(capsys):
    result = passed("Exercise 0", "all cases")
    assert isinstance(result, Passed) and bool(result)
    assert capsys.readouterr().out == "PASSED Exercise 0: all cases\n"
    assert repr(result) == "Passed('Exercise 0')"


def test_answer_tensor():
    x = torch.zeros(2, 3)
    assert answer_tensor("Exercise 0", x, "the gradient") is x
    assert answer_tensor("Exercise 0", x, "the gradient", (2, 3)) is x
    with pytest.raises(ExerciseFailed, match=r"expected the gradient as a torch\.Tensor, got list"):
        answer_tensor("Exercise 0", [0.0], "the gradient")
    wrong_shape = r"expected the gradient of shape \(3, 2\), got \(2, 3\)"
    with pytest.raises(ExerciseFailed, match=wrong_shape):
        answer_tensor("Exercise 0", x, "the gradient", (3, 2))
