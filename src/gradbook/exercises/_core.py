"""The small vocabulary every exercise check is written in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from torch import Tensor

#: The text of the stub that ``gradbook.assignments`` puts where a solution was.
STUB_MESSAGE = "replace this line with your solution"


class ExerciseFailed(AssertionError):
    """The answer is wrong; the message says which misconception it shows."""


class ExerciseNotAttempted(ExerciseFailed):
    """The answer is still the ``raise NotImplementedError`` stub."""


def attempt(exercise: str, answer: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the student's ``answer(*args, **kwargs)`` and return what it returns.

    The stub's ``NotImplementedError`` (or a bare one) becomes
    :class:`ExerciseNotAttempted`; any other exception becomes
    :class:`ExerciseFailed` quoting it, so the student sees which exercise broke
    and why.
    """
    if not callable(answer):
        fail(exercise, f"expected a function, got {type(answer).__name__}.")
    try:
        return answer(*args, **kwargs)
    except NotImplementedError as error:
        if str(error) and STUB_MESSAGE not in str(error):
            # raised by a library (e.g. forward mode on a Function without jvp): feedback
            raise ExerciseFailed(
                f"{exercise}: your code raised NotImplementedError: {error}"
            ) from error
        raise ExerciseNotAttempted(
            f"{exercise}: not attempted yet. Replace the `raise NotImplementedError` "
            "line in the cell above with your code, run that cell, then run this "
            "check again."
        ) from None
    except ExerciseFailed:
        raise
    except Exception as error:
        raise ExerciseFailed(
            f"{exercise}: your code raised {type(error).__name__}: {error}"
        ) from error


def answer_tensor(
    exercise: str, value: object, what: str, shape: tuple[int, ...] | None = None
) -> Tensor:
    """``value`` if it is a tensor (of ``shape``, when given); otherwise fail, naming ``what``."""
    if not isinstance(value, Tensor):
        fail(exercise, f"expected {what} as a torch.Tensor, got {type(value).__name__}.")
    if shape is not None and tuple(value.shape) != shape:
        fail(exercise, f"expected {what} of shape {shape}, got {tuple(value.shape)}.")
    return value


def fail(exercise: str, message: str) -> NoReturn:
    """Raise :class:`ExerciseFailed` with ``message``, prefixed by the exercise name."""
    raise ExerciseFailed(f"{exercise}: {message}")


class Passed:
    """What a check returns on success: true in ``if``/``assert``, silent in a notebook.

    The success line is printed when the check passes; returning this instead of
    ``True`` keeps a bare ``True`` from being echoed under every check cell.
    """

    def __init__(self, exercise: str) -> None:
        self.exercise = exercise

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"Passed({self.exercise!r})"

    def _ipython_display_(self) -> None:
        """Display nothing: the PASSED line has been printed already."""


def passed(exercise: str, message: str = "") -> Passed:
    """Print the success line for ``exercise`` and return a true, silent :class:`Passed`."""
    print(f"PASSED {exercise}" + (f": {message}" if message else ""))
    return Passed(exercise)
