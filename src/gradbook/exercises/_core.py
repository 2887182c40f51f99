"""The small vocabulary every exercise check is written in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn


class ExerciseFailed(AssertionError):
    """The answer is wrong; the message says which misconception it shows."""


class ExerciseNotAttempted(ExerciseFailed):
    """The answer is still the ``raise NotImplementedError`` stub."""


def attempt(exercise: str, answer: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the student's ``answer(*args, **kwargs)`` and return what it returns.

    A ``NotImplementedError`` (the stub) becomes :class:`ExerciseNotAttempted`;
    any other exception becomes :class:`ExerciseFailed` quoting it, so the
    student sees which exercise broke and why.
    """
    if not callable(answer):
        fail(exercise, f"expected a function, got {type(answer).__name__}.")
    try:
        return answer(*args, **kwargs)
    except NotImplementedError:
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


def fail(exercise: str, message: str) -> NoReturn:
    """Raise :class:`ExerciseFailed` with ``message``, prefixed by the exercise name."""
    raise ExerciseFailed(f"{exercise}: {message}")


def passed(exercise: str, message: str = "") -> bool:
    """Print the success line for ``exercise`` and return ``True``."""
    print(f"PASSED {exercise}" + (f": {message}" if message else ""))
    return True
