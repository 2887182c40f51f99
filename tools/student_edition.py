"""Write the source tree of the book's student edition: ``make book EDITION=student``.

The student edition is the same book without the solutions, for instructors who
assign the exercises. Its exercise pages keep, from ``solutions/NN-slug.ipynb``:
the text, the ``{exercise}`` statements (labels and numbering intact, so every
cross-reference still resolves), the code a student starts from (each
``### BEGIN SOLUTION`` region replaced by the stub ``make assignments`` writes)
and the check cells; they drop the ``{solution}`` blocks, cells tagged
``solution``, the discussion after a check up to the next exercise or heading
(it gives answers away), and every stored output (they came from the solutions).

The tree (``_build/student/src`` by default) holds copies of ``_config.yml``
(title marked, repository buttons kept), ``_toc.yml``, ``book/``, ``notebooks/``
(which the exercise pages launch and download) and the rewritten ``solutions/``.

Usage: ``python tools/student_edition.py DEST``
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat
import yaml

from gradbook.assignments import CHECK_TAG, SOLUTION_TAG, strip_code
from gradbook.grading.course import exercise_name

ROOT = Path(__file__).resolve().parent.parent

SOLUTION_DIRECTIVE = re.compile(r"^\s*:{3,}\s*\{solution(?:-start|-end)?\}", re.MULTILINE)
EXERCISE_DIRECTIVE = re.compile(r"^\s*:{3,}\s*\{exercise(?:-start)?\}", re.MULTILINE)
HEADING = re.compile(r"^\s*(?:\([^()\s]+\)=\s*\n)?#{1,6}\s", re.MULTILINE)
TITLE_SUFFIX = " (student edition)"


def student_page(notebook: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The student edition of a solutions notebook (``notebook`` is not changed)."""
    cells = []
    after_check = False
    for index, cell in enumerate(notebook.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_TAG in tags:
            continue
        if cell.cell_type == "markdown":
            opens = EXERCISE_DIRECTIVE.search(cell.source) or HEADING.match(cell.source)
            if opens:
                after_check = False
            if SOLUTION_DIRECTIVE.search(cell.source) or after_check:
                continue
            cells.append(nbformat.from_dict(dict(cell)))
            continue
        if cell.cell_type != "code":
            continue
        if after_check and CHECK_TAG not in tags:
            continue
        new = nbformat.from_dict(dict(cell))
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        exercise = exercise_name(grade_id) if "-ex" in grade_id else f"{name}, cell {index}"
        new.source = strip_code(cell.source, exercise)
        new.outputs = []
        new.execution_count = None
        new.metadata = {k: v for k, v in cell.metadata.items() if k != "execution"}
        cells.append(new)
        after_check = CHECK_TAG in tags
    student = nbformat.from_dict(dict(notebook))
    student.cells = cells
    return student


def student_config(config: dict) -> dict:
    """``_config.yml`` for the student edition: the same book, its title marked."""
    config = dict(config)
    config["title"] = config.get("title", "") + TITLE_SUFFIX
    return config


def write_tree(dest: Path, root: Path = ROOT) -> list[Path]:
    """Write the student edition's sources into ``dest`` (emptied first); return its pages."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    config = yaml.safe_load((root / "_config.yml").read_text())
    (dest / "_config.yml").write_text(yaml.safe_dump(student_config(config), sort_keys=False))
    shutil.copy2(root / "_toc.yml", dest / "_toc.yml")
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    shutil.copytree(root / "book", dest / "book", ignore=ignore)
    shutil.copytree(root / "notebooks", dest / "notebooks", ignore=ignore)
    pages = []
    (dest / "solutions").mkdir()
    for path in sorted((root / "solutions").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        target = dest / "solutions" / path.name
        nbformat.write(student_page(notebook, path.stem), target)
        pages.append(target)
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="folder for the sources, e.g. _build/student/src")
    args = parser.parse_args(argv)
    pages = write_tree(args.dest)
    print(f"student edition: {len(pages)} exercise pages in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
