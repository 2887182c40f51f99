"""Every check, given the stub a student notebook holds, says the exercise is not attempted."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import gradbook.exercises
from gradbook.assignments import strip_code
from gradbook.exercises import ExerciseNotAttempted

CHAPTERS = [
    importlib.import_module(info.name)
    for info in pkgutil.iter_modules(gradbook.exercises.__path__, "gradbook.exercises.")
    if not info.name.rsplit(".", 1)[1].startswith("_")
]
CHECKS = [
    check
    for module in CHAPTERS
    for name, check in inspect.getmembers(module, inspect.isfunction)
    if name.startswith("check_") and check.__module__ == module.__name__
]


def student_stub():
    """The function a student notebook starts with: its body is what ``strip_code`` writes."""
    body = strip_code("    ### BEGIN SOLUTION\n    return 0\n    ### END SOLUTION", "Exercise")
    namespace: dict = {}
    exec(f"def stub(*args, **kwargs):\n{body}\n", namespace)
    return namespace["stub"]


def test_every_chapter_has_checks():
    solutions = Path(__file__).resolve().parent.parent / "solutions"
    keys = sorted(re.match(r"([0-9]{2}|A)-", p.name)[1] for p in solutions.glob("*-*.ipynb"))
    assert sorted(module.__name__.rsplit(".ch", 1)[1] for module in CHAPTERS) == keys
    assert {check.__module__ for check in CHECKS} == {module.__name__ for module in CHAPTERS}


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: f"{check.__module__}.{check.__name__}")
def test_stub_is_not_attempted(check):
    stubs = [student_stub() for _ in inspect.signature(check).parameters]
    with pytest.raises(ExerciseNotAttempted, match="not attempted yet"):
        check(*stubs)
