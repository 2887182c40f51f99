"""Checks that students call from the check cells of the exercise notebooks.

Each chapter has its own module (``gradbook.exercises.ch01`` ...). A check takes
the student's answer (usually a function), runs it on inputs of its own and
either prints a line starting with ``PASSED`` or raises :class:`ExerciseFailed`
with feedback that names the misconception and what to try, without giving the
solution away. A check called on an unattempted stub raises
:class:`ExerciseNotAttempted`.
"""

from gradbook.exercises._core import (
    ExerciseFailed,
    ExerciseNotAttempted,
    Passed,
    attempt,
    fail,
    passed,
)

__all__ = ["ExerciseFailed", "ExerciseNotAttempted", "Passed", "attempt", "fail", "passed"]
