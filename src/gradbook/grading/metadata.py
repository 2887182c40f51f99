"""The nbgrader metadata of the solutions notebooks, written by one idempotent command.

Every ``solutions/NN-slug.ipynb`` is an nbgrader source notebook. Its cells get
(``python -m gradbook.assignments metadata solutions/``, also run by
``make assignments``):

- a code cell holding ``### BEGIN SOLUTION``: an nbgrader *solution* cell,
  ``grade_id`` ``chNN-exK-answer`` (K: the check that follows it; a second answer
  cell before the same check is ``chNN-exK-answer2``);
- a code cell tagged ``check``: an autograded *test* cell, locked, ``grade_id``
  ``chNN-exK`` for the K-th check cell of the notebook, with ``points`` (1 unless a
  value is stored already: a stretch exercise may weigh more);
- every other code cell (setup, imports, demonstrations): locked, ``grade_id``
  ``chNN-lockedJ`` for the J-th such cell.

``NN`` is the number the file name starts with (``01-...`` gives ``ch01``; the
appendix ``A-...`` gives ``chA``). Markdown cells get no nbgrader metadata. Every
cell keeps its id (one is derived from the notebook name and position when
missing). Running the command twice changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

BEGIN = "### BEGIN SOLUTION"
CHECK_TAG = "check"
SCHEMA_VERSION = 3
DEFAULT_POINTS = 1.0

_CHAPTER = re.compile(r"^(?P<number>\d+[a-z]?|[A-Z])-")


def chapter_id(stem: str) -> str:
    """``chNN`` for a solutions notebook named ``NN-slug`` (``chA`` for ``A-slug``).

    >>> chapter_id("01-orthogonal-gradients"), chapter_id("A-related-questions")
    ('ch01', 'chA')

    Raises:
        ValueError: the name does not start with a chapter number or letter and a dash.
    """
    match = _CHAPTER.match(stem)
    if match is None:
        raise ValueError(
            f"notebook name must start with a chapter number or letter and a dash "
            f"(such as 01-slug or A-slug), got {stem!r}"
        )
    return f"ch{match['number']}"


def is_answer_cell(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and any(
        line.strip() == BEGIN for line in cell.source.splitlines()
    )


def is_check_cell(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and CHECK_TAG in cell.get("metadata", {}).get("tags", [])


def _points(cell: NotebookNode) -> float:
    stored = cell.get("metadata", {}).get("nbgrader", {}).get("points")
    if stored is None:
        return DEFAULT_POINTS
    points = float(stored)
    if not points > 0:
        raise ValueError(f"points of a check cell must be positive, got {stored!r}")
    return points


def expected_metadata(notebook: NotebookNode, stem: str) -> list[dict | None]:
    """The nbgrader metadata each cell of ``notebook`` must carry (``None``: none)."""
    chapter = chapter_id(stem)
    total_checks = sum(is_check_cell(cell) for cell in notebook.cells)
    out: list[dict | None] = []
    checks = locked = 0
    answers_for: dict[int, int] = {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            out.append(None)
            continue
        if is_check_cell(cell):
            if is_answer_cell(cell):
                raise ValueError(f"{stem}: a check cell holds a solution region")
            checks += 1
            out.append(
                {
                    "grade": True,
                    "grade_id": f"{chapter}-ex{checks}",
                    "locked": True,
                    "points": _points(cell),
                    "schema_version": SCHEMA_VERSION,
                    "solution": False,
                    "task": False,
                }
            )
        elif is_answer_cell(cell):
            exercise = checks + 1
            if exercise > total_checks:
                raise ValueError(f"{stem}: a solution cell has no check cell after it")
            answers_for[exercise] = answers_for.get(exercise, 0) + 1
            suffix = "" if answers_for[exercise] == 1 else str(answers_for[exercise])
            out.append(
                {
                    "grade": False,
                    "grade_id": f"{chapter}-ex{exercise}-answer{suffix}",
                    "locked": False,
                    "schema_version": SCHEMA_VERSION,
                    "solution": True,
                    "task": False,
                }
            )
        else:
            locked += 1
            out.append(
                {
                    "grade": False,
                    "grade_id": f"{chapter}-locked{locked}",
                    "locked": True,
                    "schema_version": SCHEMA_VERSION,
                    "solution": False,
                    "task": False,
                }
            )
    return out


def _cell_id(stem: str, index: int) -> str:
    return hashlib.sha1(f"{stem}/{index}".encode()).hexdigest()[:8]


def with_metadata(notebook: NotebookNode, stem: str) -> NotebookNode:
    """``notebook`` with fresh nbgrader metadata and an id on every cell (changed in place)."""
    wanted = expected_metadata(notebook, stem)
    seen: set[str] = set()
    for index, (cell, metadata) in enumerate(zip(notebook.cells, wanted, strict=True)):
        if not cell.get("id") or cell.id in seen:
            cell.id = _cell_id(stem, index)
        seen.add(cell.id)
        if metadata is None:
            cell.metadata.pop("nbgrader", None)
        else:
            cell.metadata["nbgrader"] = metadata
    if notebook.nbformat_minor < 5:
        notebook.nbformat_minor = 5
    return notebook


def _text(notebook: NotebookNode) -> str:
    return nbformat.writes(notebook) + "\n"


def stale(path: Path) -> bool:
    """Whether ``path`` lacks the nbgrader metadata :func:`write_metadata` would give it."""
    before = path.read_text()
    notebook = nbformat.reads(before, as_version=4)
    return _text(with_metadata(notebook, path.stem)) != before


def write_metadata(solutions: Path = Path("solutions")) -> list[Path]:
    """Add or refresh the nbgrader metadata of every ``solutions/*.ipynb``; the changed files."""
    changed = []
    for path in sorted(Path(solutions).glob("*.ipynb")):
        before = path.read_text()
        after = _text(with_metadata(nbformat.reads(before, as_version=4), path.stem))
        if after != before:
            path.write_text(after)
            changed.append(path)
    return changed
