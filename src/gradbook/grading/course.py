"""The nbgrader course built from ``solutions/`` and the student release made by nbgrader.

The course lives in a folder (``_build/nbgrader`` for ``make grade``, a temporary
one for ``make assignments``) laid out as nbgrader expects::

    ROOT/source/<assignment>/<assignment>.ipynb     one assignment per solutions notebook
    ROOT/release/<assignment>/<assignment>.ipynb    written by nbgrader's generate_assignment
    ROOT/gradebook.db                               unless GRADEBOOK_DB names another database

The configuration is :func:`nbgrader_config` (nothing is read from a config file):
nbgrader's own ``GenerateAssignment`` pipeline, with :class:`ExerciseStubs` in place
of ``ClearSolutions`` so each solution region becomes the stub students know,
``raise NotImplementedError("Exercise 1.2: write your solution here")``.
:func:`student_version` then applies the clean-up the book's MyST needs
(:func:`gradbook.assignments.plain_markdown`) and drops the cells tagged ``solution``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import ClearSolutions
from traitlets.config import Config

_GRADE_ID = re.compile(r"^ch0*(?P<chapter>\d+|[A-Z])-ex(?P<exercise>\d+)")


def exercise_name(grade_id: str) -> str:
    """``Exercise 1.2`` for the grade id ``ch01-ex2`` (or ``ch01-ex2-answer``).

    >>> exercise_name("ch01-ex2-answer"), exercise_name("chA-ex3")
    ('Exercise 1.2', 'Exercise A.3')
    """
    match = _GRADE_ID.match(grade_id)
    if match is None:
        raise ValueError(f"expected a grade id such as ch01-ex2, got {grade_id!r}")
    return f"Exercise {match['chapter']}.{match['exercise']}"


def stub(grade_id: str) -> str:
    """The line that replaces a solution region in the student release."""
    from gradbook.exercises._core import STUB_MESSAGE  # imports torch: only when needed

    return f'raise NotImplementedError("{exercise_name(grade_id)}: {STUB_MESSAGE}")'


class ExerciseStubs(ClearSolutions):
    """nbgrader's ClearSolutions with a stub naming the exercise of each cell."""

    def _replace_solution_region(self, cell: NotebookNode, language: str) -> bool:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if _GRADE_ID.match(grade_id) is None:  # not an answer cell: no region to replace
            return super()._replace_solution_region(cell, language)
        saved = self.code_stub
        self.code_stub = {**saved, language: stub(grade_id)}
        try:
            return super()._replace_solution_region(cell, language)
        finally:
            self.code_stub = saved


def default_db_url(root: Path) -> str:
    """``GRADEBOOK_DB`` when set (any SQLAlchemy URL), else SQLite in ``root``."""
    return os.environ.get("GRADEBOOK_DB") or f"sqlite:///{Path(root).resolve() / 'gradebook.db'}"


def nbgrader_config(root: Path, db_url: str | None = None) -> Config:
    """The nbgrader configuration of the course in ``root``."""
    from nbgrader.converters import GenerateAssignment

    config = Config()
    config.CourseDirectory.root = str(Path(root).resolve())
    config.CourseDirectory.db_url = db_url or default_db_url(root)
    config.CourseDirectory.course_id = "gradients-in-practice"
    preprocessors = list(GenerateAssignment.class_traits()["preprocessors"].default())
    config.GenerateAssignment.preprocessors = [
        ExerciseStubs if p is ClearSolutions else p for p in preprocessors
    ]
    return config


def write_sources(root: Path, solutions: list[Path]) -> list[str]:
    """Copy each solutions notebook to ``root/source/<stem>/<stem>.ipynb``; the assignment ids."""
    names = []
    for path in solutions:
        target = Path(root) / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != path.read_bytes():
            shutil.copyfile(path, target)
        names.append(path.stem)
    return names


def generate(root: Path, solutions: list[Path], db_url: str | None = None) -> dict[str, Path]:
    """Run nbgrader's generate_assignment for each notebook; the released file of each.

    Raises:
        RuntimeError: nbgrader failed (its log is in the message).
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = nbgrader_config(root, db_url)
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    released = {}
    for name in write_sources(root, solutions):
        result = api.generate_assignment(name, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(
                f"nbgrader generate_assignment {name} failed:\n{result.get('log', '')}"
                f"\n{result.get('error', '')}"
            )
        released[name] = Path(root) / "release" / name / f"{name}.ipynb"
    return released


def student_version(released: NotebookNode, name: str = "notebook") -> NotebookNode:
    """nbgrader's release made readable outside the book (changed in place).

    Cells tagged ``solution`` and the markdown cells that open or close a
    sphinx-exercise solution are dropped; exercise blocks become headings
    numbered as in the book (``Exercise 1.2``, from the notebook ``name``) and
    MyST-only markup becomes plain text. Code cells are left as nbgrader wrote
    them (their checksums stay valid).
    """
    from gradbook.assignments import (
        SOLUTION_TAG,
        exercise_numbers,
        is_solution_marker,
        plain_markdown,
    )

    numbers = exercise_numbers(name)
    cells = []
    for cell in released.cells:
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "markdown":
            if is_solution_marker(cell.source):
                continue
            cell.source = plain_markdown(cell.source, numbers)
        else:
            cell.metadata.pop("execution", None)
        cells.append(cell)
    released.cells = cells
    return released


def release(solutions: list[Path], root: Path | None = None) -> dict[str, str]:
    """The text of the student notebook of each solutions notebook, keyed by file name.

    ``root``: the course folder (a temporary one, removed afterwards, when ``None``).
    """
    with tempfile.TemporaryDirectory(prefix="gradbook-course-") as scratch:
        course = Path(root) if root is not None else Path(scratch)
        db_url = None if root is not None else f"sqlite:///{Path(scratch) / 'gradebook.db'}"
        out = {}
        for name, path in generate(course, solutions, db_url).items():
            notebook = student_version(nbformat.read(path, as_version=4), name)
            out[f"{name}.ipynb"] = nbformat.writes(notebook) + "\n"
        return out
