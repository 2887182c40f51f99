"""Lessons never type a measured timing or speed ratio into their prose.

Timings change from run to run and machine to machine; a number typed into the
markdown stays behind when the notebook is re-executed. The lessons glue such
numbers from the cell that measures them (``{glue:text}`name```) or print the
sentence; this test fails on a literal timing (``3.7 ms``, ``2 s``) or speed
ratio (``15x faster``, ``two to three times slower``) in any lesson's markdown.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "book").glob("*.ipynb"))

_WORD = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|a hundred)"
_NUMBER = rf"(?:\d+(?:[.,]\d+)?\s*|{_WORD}\s+)"  # a word needs a space before its unit
_RANGE = rf"(?:{_NUMBER}(?:(?:to|-|–|or)\s*))?{_NUMBER}"
LITERAL_TIMING = re.compile(
    rf"(?<![\w.{{`]){_RANGE}(?:ms|µs|us|ns|(?<=\s)s|sec|seconds?|milliseconds?|microseconds?)\b"
)
LITERAL_RATIO = re.compile(
    rf"(?<![\w.{{`]){_RANGE}(?:x|×|times)\s+"
    r"(?:faster|slower|as fast|as slow|as long|the time|longer|quicker|more expensive|cheaper)",
    re.IGNORECASE,
)
_SKIPPED = re.compile(r"```.*?```|\$\$.*?\$\$|\$[^$\n]*\$|`[^`\n]*`", re.DOTALL)


def literal_measurements(markdown: str) -> list[str]:
    """The literal timings and speed ratios in ``markdown`` (code and maths left out).

    >>> literal_measurements("jacrev takes 3.7 ms, 15x faster than the loop")
    ['3.7 ms', '15x faster']
    >>> literal_measurements("{glue:text}`ch03-ratio:.1f`x faster; `time.sleep(2 s)`; 3 rows")
    []
    """
    prose = _SKIPPED.sub(" ", markdown)
    found = [m.group(0) for m in LITERAL_TIMING.finditer(prose)]
    return found + [m.group(0) for m in LITERAL_RATIO.finditer(prose)]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda path: path.stem)
def test_no_literal_timing_or_speed_ratio_in_prose(lesson):
    notebook = nbformat.read(lesson, as_version=4)
    found = [
        (index, literal)
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "markdown"
        for literal in literal_measurements(cell.source)
    ]
    assert not found, f"{lesson.name}: glue these from the cell that measures them: {found}"


def test_the_patterns_catch_what_they_are_for():
    assert literal_measurements("the loop takes 3.70 ms and the legacy paths 1.30 ms") == [
        "3.70 ms",
        "1.30 ms",
    ]
    assert literal_measurements("OpenCV is two to three times faster") == [
        "two to three times faster"
    ]
    assert literal_measurements("about 8x slower on CPU") == ["8x slower"]
    assert literal_measurements("3 steps, 5 probes, a 2 x 3 matrix, 10 times in a row") == []


def test_plural_numerals_are_not_seconds():
    assert literal_measurements("contain exactly three 2s only 28% of the time") == []
    assert literal_measurements("it took 2 s") == ["2 s"]
