"""The small vocabulary every exercise check is written in.

A check is a test of a student: it runs the student's function on inputs of its
own, recognises the known wrong answers and names the misconception each one
shows, and never shows the answer. The pieces:

- :func:`attempt` calls the student's function; the unattempted stub, an
  exception of the student's code and a call to a forbidden library function
  each become a short :class:`ExerciseFailed` message;
- :func:`close`, :func:`randn`, :func:`answer_tensor`: comparing and making data;
- :func:`diagnose` matches an answer against the known wrong variants;
- :func:`forbid` makes the gradbook function that solves an exercise raise while
  the student's answer runs, so that delegating to it is caught;
- :func:`fail` and :func:`passed` end a check.

A failing check shows the student the message and the frames of their own code
only (``ExerciseFailed._render_traceback_``), never the check's source.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sysconfig
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import CodeType, FunctionType
from typing import Any, NoReturn

import torch
from torch import Tensor

#: The text of the stub that ``gradbook.assignments`` puts where a solution was.
STUB_MESSAGE = "write your solution here"

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBRARY_DIRS = tuple(
    {os.path.abspath(sysconfig.get_paths()[key]) for key in ("stdlib", "purelib", "platlib")}
)


def _is_student_frame(filename: str) -> bool:
    """True for code the student wrote: a notebook cell or a file outside any library."""
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE_DIR + os.sep):
        return False
    return not path.startswith(_LIBRARY_DIRS) and not filename.startswith("<frozen")


class ExerciseFailed(AssertionError):
    """The answer is wrong; the message says which misconception it shows.

    In IPython and Jupyter the error renders as its message plus the frames of the
    student's own code that raised (if any): the check's source, which holds the
    reference computations, is never displayed.
    """

    def _render_traceback_(self) -> list[str]:
        lines: list[str] = []
        cause = self.__cause__
        if cause is not None and cause.__traceback__ is not None:
            frames = [
                frame
                for frame in traceback.extract_tb(cause.__traceback__)
                if _is_student_frame(frame.filename)
            ]
            if frames:
                lines.append("Your code raised (most recent call last):")
                lines.extend(
                    entry.rstrip("\n")
                    for entry in traceback.StackSummary.from_list(frames).format()
                )
                lines.append(f"{type(cause).__name__}: {cause}")
                lines.append("")
        lines.append(f"{type(self).__name__}: {self}")
        return lines


class ExerciseNotAttempted(ExerciseFailed):
    """The answer is still the ``raise NotImplementedError`` stub."""


class _Delegated(BaseException):
    """Raised by a function that :func:`forbid` disabled; a BaseException so that a
    student's ``except Exception`` cannot swallow it."""

    def __init__(self, qualified_name: str) -> None:
        super().__init__(qualified_name)
        self.qualified_name = qualified_name


def attempt(
    exercise: str,
    answer: Callable[..., Any],
    *args: Any,
    hints: Mapping[type[BaseException] | str, str] | None = None,
    **kwargs: Any,
) -> Any:
    """Call the student's ``answer(*args, **kwargs)`` and return what it returns.

    - the stub's ``NotImplementedError`` (or a bare one) becomes
      :class:`ExerciseNotAttempted`;
    - a call to a function disabled by :func:`forbid` becomes :class:`ExerciseFailed`
      saying which gradbook function the exercise asks the student to write;
    - any other exception becomes :class:`ExerciseFailed`: the first entry of
      ``hints`` whose key is the exception's type (or a base class), or a substring
      of its message, gives the explanation; otherwise the exception is quoted.
    """
    if not callable(answer):
        fail(exercise, f"expected a function, got {type(answer).__name__}.")
    try:
        return answer(*args, **kwargs)
    except _Delegated as signal:
        fail(
            exercise,
            f"write it yourself: this is what {signal.qualified_name} does, and the "
            "exercise is to build it from the operations the chapter explains.",
        )
    except NotImplementedError as error:
        if str(error) and STUB_MESSAGE not in str(error):
            # raised by a library (e.g. forward mode on a Function without jvp): feedback
            raise ExerciseFailed(
                f"{exercise}: your code raised NotImplementedError: {error}"
            ) from error
        raise ExerciseNotAttempted(
            f"{exercise}: not attempted yet. Replace the `raise NotImplementedError` "
            "line in your function with your code, run that cell, then run this "
            "check again."
        ) from None
    except ExerciseFailed:
        raise
    except Exception as error:
        for key, hint in (hints or {}).items():
            matches = isinstance(error, key) if isinstance(key, type) else key in str(error)
            if matches:
                raise ExerciseFailed(f"{exercise}: {hint}") from error
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


def close(got: object, expected: Tensor, *, rtol: float = 1e-7, atol: float = 1e-10) -> bool:
    """True when ``got`` is a tensor of ``expected``'s shape with values within tolerance.

    ``|got - expected| <= atol + rtol |expected|`` elementwise, compared in
    ``expected``'s dtype on ``expected``'s device; a shape mismatch, a non-tensor,
    NaN or infinity where ``expected`` is finite, all give False (never an error).
    """
    if not isinstance(got, Tensor) or tuple(got.shape) != tuple(expected.shape):
        return False
    got = got.detach().to(device=expected.device)
    if got.is_complex() != expected.is_complex():
        return False
    if not (got.is_floating_point() or got.is_complex()):
        got = got.to(expected.dtype if expected.is_floating_point() else torch.float64)
    reference = expected.detach().to(got.dtype) if expected.is_floating_point() else expected
    return bool(torch.allclose(got, reference.to(got.dtype), rtol=rtol, atol=atol))


def randn(
    seed: int,
    *shape: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Standard normal samples of ``shape`` from a generator seeded with ``seed`` (reproducible).

    The samples are drawn on the CPU (the same numbers on every machine) and then
    moved to ``device``.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=dtype).to(device)


def diagnose(
    exercise: str,
    got: object,
    wrong_answers: Iterable[tuple[Tensor | Callable[[Tensor], bool], str]],
    *,
    rtol: float = 1e-7,
    atol: float = 1e-10,
) -> None:
    """Fail with the message of the first known wrong answer that ``got`` matches.

    Each entry of ``wrong_answers`` is ``(variant, message)``: ``variant`` is the
    tensor a known mistake produces (matched with :func:`close`) or a predicate
    on ``got``. Returns quietly when no variant matches.
    """
    for variant, message in wrong_answers:
        if callable(variant) and not isinstance(variant, Tensor):
            matched = isinstance(got, Tensor) and bool(variant(got))
        else:
            matched = close(got, variant, rtol=rtol, atol=atol)
        if matched:
            fail(exercise, message)


@contextlib.contextmanager
def forbid(*functions: Callable[..., Any]) -> Iterator[None]:
    """Within the block, every call of ``functions`` raises (and :func:`attempt` reports it).

    Swaps each function's code object, so every reference to it is disabled:
    ``gradbook.projection.orthogonal_component(...)``, a name imported with
    ``from ... import`` before the check, and library functions that call it.
    Compute reference values before entering the block. Functions with closure
    variables cannot be swapped and raise ``TypeError`` here.
    """
    saved: list[tuple[FunctionType, Any]] = []
    try:
        for function in functions:
            if not isinstance(function, FunctionType) or function.__closure__:
                raise TypeError(f"forbid: cannot disable {function!r}")
            qualified_name = f"{function.__module__}.{function.__qualname__}"
            saved.append((function, function.__code__))
            function.__code__ = _raiser_code(qualified_name)
        yield
    finally:
        for function, code in reversed(saved):
            function.__code__ = code


def _raiser_code(qualified_name: str) -> CodeType:
    """A closure-free code object that raises :class:`_Delegated` for ``qualified_name``.

    It runs with the disabled function's globals, so it imports this module by name.
    """
    namespace: dict[str, Any] = {}
    exec(
        "def disabled(*args, **kwargs):\n"
        f"    from {__name__} import _Delegated\n"
        f"    raise _Delegated({qualified_name!r})\n",
        namespace,
    )
    return namespace["disabled"].__code__


def blame_earlier_stub(
    exercise: str, answer: object, error: ExerciseNotAttempted, earlier: Mapping[str, str]
) -> None:
    """Fail naming the earlier exercise when the stub that raised is not ``answer`` itself.

    ``error`` is what :func:`attempt` raised for a stub; ``earlier`` maps the names of
    the functions of earlier exercises to those exercises (``{"hat": "Exercise 6.1"}``).
    A function of this exercise that builds on an unsolved one is then told to solve
    that one first, instead of being called unattempted. Returns quietly otherwise.
    """
    raised = error.__context__
    frames = getattr(raised, "__traceback__", None)
    if frames is None:
        return
    while frames.tb_next is not None:
        frames = frames.tb_next
    code = frames.tb_frame.f_code
    if code is getattr(answer, "__code__", None):
        return
    which = f"the stub of {earlier[code.co_name]}" if code.co_name in earlier else None
    fail(
        exercise,
        f"your function calls `{code.co_name}`, which is still {which or 'an unsolved stub'} "
        "(it raises NotImplementedError). Solve that exercise first, until its check "
        "passes, then run this check again.",
    )


def one_thread(check: Callable[..., Passed]) -> Callable[..., Passed]:
    """Run ``check`` on one CPU thread (the thread count is restored afterwards).

    For checks made of thousands of tiny tensor operations: one thread is as fast as
    several on an idle machine and many times faster on a busy one.
    """

    @functools.wraps(check)
    def single_threaded(*args: Any, **kwargs: Any) -> Passed:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return single_threaded


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
    """Print the success line for ``exercise`` and return a true, silent :class:`Passed`.

    ``message`` states what was verified, never how the answer is computed.
    """
    print(f"PASSED {exercise}" + (f": {message}" if message else ""))
    return Passed(exercise)
