"""gradbook.exercises._core: the vocabulary every check is written in."""

from __future__ import annotations

import pytest
import torch

import gradbook.projection
from gradbook.exercises._core import (
    STUB_MESSAGE,
    ExerciseFailed,
    ExerciseNotAttempted,
    Passed,
    answer_tensor,
    attempt,
    close,
    diagnose,
    fail,
    forbid,
    passed,
    randn,
)
from gradbook.projection import orthogonal_component


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


def test_attempt_turns_a_known_error_into_its_hint():
    hints = {"1D tensors": "flatten both first.", KeyError: "no such key."}
    with pytest.raises(ExerciseFailed, match=r"^Exercise 0: flatten both first\.$"):
        attempt("Exercise 0", lambda: torch.dot(torch.ones(2, 2), torch.ones(2, 2)), hints=hints)
    with pytest.raises(ExerciseFailed, match=r"^Exercise 0: no such key\.$"):
        attempt("Exercise 0", lambda: {}["a"], hints=hints)
    with pytest.raises(ExerciseFailed, match="raised ZeroDivisionError"):
        attempt("Exercise 0", lambda: 1 / 0, hints=hints)


def test_close_is_shape_aware_and_never_raises():
    x = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert close(x + 1e-12, x)
    assert not close(x + 1e-3, x)
    assert not close(x.reshape(2, 1), x)  # broadcasting would hide this
    assert not close([1.0, 2.0], x)
    assert not close(torch.tensor([float("nan"), 2.0]), x)
    assert close(torch.tensor([1, 2]), x)  # an integer answer is compared by value
    assert not close(torch.ones(2, dtype=torch.complex128), x)


def test_randn_is_reproducible_and_seed_dependent():
    assert torch.equal(randn(3, 2, 4), randn(3, 2, 4))
    assert not torch.equal(randn(3, 2, 4), randn(4, 2, 4))
    assert randn(0, 5, dtype=torch.float32).dtype == torch.float32
    assert randn(0, 2, 3).shape == (2, 3)


def test_diagnose_names_the_first_matching_mistake():
    expected = torch.tensor([1.0, 2.0], dtype=torch.float64)
    wrong = [(expected * 2, "doubled."), (lambda got: bool((got < 0).any()), "negative.")]
    diagnose("Exercise 0", expected, wrong)  # the right answer matches no mistake
    with pytest.raises(ExerciseFailed, match=r"^Exercise 0: doubled\.$"):
        diagnose("Exercise 0", expected * 2, wrong)
    with pytest.raises(ExerciseFailed, match=r"^Exercise 0: negative\.$"):
        diagnose("Exercise 0", -expected, wrong)
    diagnose("Exercise 0", "not a tensor", wrong)  # left to answer_tensor to report


def test_forbid_disables_every_reference_and_restores_it():
    from gradbook.projection import orthogonal_component as imported_before

    g, x = randn(0, 3, 4), randn(1, 3, 4)
    expected = orthogonal_component(g, x)

    def delegating(grad, image):
        return imported_before(grad, image)

    def through_module(grad, image):
        return gradbook.projection.orthogonal_component(grad, image)

    def swallowing(grad, image):
        try:
            return imported_before(grad, image)
        except Exception:  # a student's catch-all must not hide the delegation
            return grad

    def own(grad, image):
        return grad - (grad * image).sum() / (image * image).sum() * image

    with forbid(orthogonal_component):
        for answer in (delegating, through_module, swallowing):
            with pytest.raises(
                ExerciseFailed,
                match=r"write it yourself: this is what "
                r"gradbook\.projection\.orthogonal_component does",
            ):
                attempt("Exercise 0", answer, g, x)
        assert torch.allclose(attempt("Exercise 0", own, g, x), expected)
    assert torch.equal(orthogonal_component(g, x), expected)  # restored


def test_forbid_restores_after_an_error_and_refuses_closures():
    def outer():
        y = 1

        def inner():
            return y

        return inner

    with pytest.raises(TypeError, match="cannot disable"):
        with forbid(orthogonal_component, outer()):
            pass
    g, x = randn(0, 3), randn(1, 3)
    assert orthogonal_component(g, x).shape == (3,)


def student_function():
    return torch.dot(torch.ones(2, 2), torch.ones(2, 2))


def test_a_failure_renders_the_message_and_the_students_frames_only():
    with pytest.raises(ExerciseFailed) as info:
        attempt("Exercise 0", student_function)
    lines = info.value._render_traceback_()
    text = "\n".join(lines)
    assert "student_function" in text  # the student's own frame
    assert "exercises/_core.py" not in text  # not the check's frames
    assert "torch/" not in text  # nor the library's
    assert lines[-1].startswith("ExerciseFailed: Exercise 0: your code raised RuntimeError")


def test_a_failure_of_the_check_itself_shows_no_check_source():
    def check():
        expected = torch.tensor(42.0)  # a reference value the student must not see
        fail("Exercise 0", f"wrong (not {expected.shape}).")

    with pytest.raises(ExerciseFailed) as info:
        check()
    assert info.value._render_traceback_() == [
        "ExerciseFailed: Exercise 0: wrong (not torch.Size([]))."
    ]
    with pytest.raises(ExerciseNotAttempted) as info:
        attempt("Exercise 0", lambda: (_ for _ in ()).throw(NotImplementedError()))
    assert len(info.value._render_traceback_()) == 1


def test_blame_earlier_stub_names_the_unsolved_exercise():
    from gradbook.exercises._core import STUB_MESSAGE, blame_earlier_stub

    def hat(v):
        raise NotImplementedError(f"Exercise 6.1: {STUB_MESSAGE}")

    def exp(v):
        return hat(v)

    def own_stub(v):
        raise NotImplementedError(f"Exercise 6.2: {STUB_MESSAGE}")

    for answer, expected in [(exp, "still the stub of Exercise 6.1"), (own_stub, None)]:
        with pytest.raises(ExerciseNotAttempted) as info:
            attempt("Exercise 6.2", answer, 0)
        if expected is None:  # the answer itself is the stub: quiet
            blame_earlier_stub("Exercise 6.2", answer, info.value, {"hat": "Exercise 6.1"})
        else:
            with pytest.raises(ExerciseFailed, match=f"calls `hat`, which is {expected}"):
                blame_earlier_stub("Exercise 6.2", answer, info.value, {"hat": "Exercise 6.1"})
    with pytest.raises(ExerciseNotAttempted) as info:
        attempt("Exercise 6.2", exp, 0)
    with pytest.raises(ExerciseFailed, match="still an unsolved stub"):
        blame_earlier_stub("Exercise 6.2", exp, info.value, {})


def test_one_thread_runs_on_one_thread_and_restores():
    from gradbook.exercises._core import one_thread

    before = torch.get_num_threads()
    seen = []

    @one_thread
    def check():
        seen.append(torch.get_num_threads())
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        check()
    assert seen == [1] and torch.get_num_threads() == before
    assert check.__name__ == "check"
