"""Exercise notebooks: generate them from the solutions, check they are in sync, grade them.

``solutions/NN-slug.ipynb`` is the source of truth. A solution region in a code
cell is marked as in nbgrader::

    def orthogonal_component(g, x):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

:func:`strip_solutions` replaces every region with a ``raise NotImplementedError``
stub at the marker's indentation, drops the markdown cells that only open or close
a sphinx-exercise solution (and cells tagged ``solution``), turns
``:::{exercise}`` blocks into plain headings and clears all outputs.

Command line (also reached through ``make assignments`` and ``make grade``)::

    python -m gradbook.assignments generate [solutions/] [notebooks/]
    python -m gradbook.assignments check    [solutions/] [notebooks/]
    python -m gradbook.assignments grade    SUBMISSIONS_DIR [--report report.md]
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from gradbook.exercises._core import STUB_MESSAGE

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CHECK_TAG = "check"
SOLUTION_TAG = "solution"

_SOLUTION_MARKER = re.compile(r"^\s*:{3,}\s*\{solution-(start|end)\}")
_EXERCISE_OPEN = re.compile(r"^(?P<fence>:{3,})\{exercise\}\s*(?P<title>.*)$")


def _stub(exercise: str) -> str:
    return f'raise NotImplementedError("{exercise}: {STUB_MESSAGE}")'


def strip_code(source: str, exercise: str = "exercise") -> str:
    """Replace each BEGIN/END SOLUTION region of ``source`` by a stub.

    Raises:
        ValueError: a region is opened twice, closed without being opened, or left open.
    """
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{exercise}: line {number} opens a solution inside another")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + _stub(exercise))
        elif stripped == END:
            if not inside:
                raise ValueError(f"{exercise}: line {number} closes a solution never opened")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{exercise}: a solution region is never closed ({END!r} missing)")
    return "\n".join(out)


def _plain_exercise_markdown(source: str) -> str:
    """Turn ``:::{exercise} Title`` blocks (options, closing fence) into plain markdown."""
    lines = source.splitlines()
    out: list[str] = []
    fence = None
    for line in lines:
        opened = _EXERCISE_OPEN.match(line.strip())
        if fence is None and opened:
            fence = opened["fence"]
            title = opened["title"].strip()
            out.append(f"**Exercise{': ' + title if title else ''}**")
            continue
        if fence is not None and re.match(r"^\s*:[a-z-]+:", line) and out[-1].startswith("**"):
            continue  # a directive option such as :label:
        if fence is not None and line.strip() == fence:
            fence = None
            continue
        out.append(line)
    return "\n".join(out)


def strip_solutions(notebook: NotebookNode, name: str = "notebook") -> NotebookNode:
    """Return the student version of a solutions ``notebook`` (the input is not changed)."""
    student = copy.deepcopy(notebook)
    cells = []
    for index, cell in enumerate(student.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_TAG in tags:
            continue
        if cell.cell_type == "markdown":
            if any(_SOLUTION_MARKER.match(line) for line in cell.source.splitlines()):
                continue
            cell.source = _plain_exercise_markdown(cell.source)
        elif cell.cell_type == "code":
            cell.source = strip_code(cell.source, f"{name}, cell {index}")
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        cells.append(cell)
    student.cells = cells
    return student


def _pairs(solutions: Path, notebooks: Path) -> list[tuple[Path, Path]]:
    return [(path, notebooks / path.name) for path in sorted(solutions.glob("*.ipynb"))]


def render(solution_path: Path) -> str:
    """The text the student notebook generated from ``solution_path`` must have."""
    notebook = nbformat.read(solution_path, as_version=4)
    return nbformat.writes(strip_solutions(notebook, solution_path.stem)) + "\n"


def generate(
    solutions: Path = Path("solutions"), notebooks: Path = Path("notebooks")
) -> list[Path]:
    """Write the student version of every solutions notebook; return the paths written."""
    notebooks.mkdir(parents=True, exist_ok=True)
    written = []
    for solution, student in _pairs(solutions, notebooks):
        student.write_text(render(solution))
        written.append(student)
    return written


def out_of_sync(
    solutions: Path = Path("solutions"), notebooks: Path = Path("notebooks")
) -> list[str]:
    """Describe every way ``notebooks/`` differs from what ``solutions/`` generates."""
    problems = []
    expected = {student.name for _, student in _pairs(solutions, notebooks)}
    for extra in sorted(p.name for p in notebooks.glob("*.ipynb")):
        if extra not in expected:
            problems.append(f"{notebooks / extra} has no source in {solutions}/")
    for solution, student in _pairs(solutions, notebooks):
        if not student.exists():
            problems.append(f"{student} is missing")
        elif student.read_text() != render(solution):
            problems.append(f"{student} differs from what {solution} generates")
    return problems


@dataclass
class CheckResult:
    """The outcome of one check cell in a graded notebook."""

    notebook: str
    cell: int
    check: str
    status: str  # "passed", "failed", "not attempted" or "error"
    message: str


def _status(cell: NotebookNode) -> tuple[str, str]:
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            kind = {"ExerciseNotAttempted": "not attempted", "ExerciseFailed": "failed"}
            return kind.get(output.ename, "error"), f"{output.ename}: {output.evalue}"
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")
    if "PASSED" in text:
        return "passed", text.strip().splitlines()[-1]
    return "error", "the check printed no PASSED line"


def execute_allowing_errors(path: Path, timeout: int = 600) -> NotebookNode:
    """Execute a copy of the notebook at ``path`` to the end, errors allowed; return the copy."""
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=timeout,
        allow_errors=True,
        kernel_name=notebook.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    return notebook


def grade_notebook(path: Path, timeout: int = 600) -> list[CheckResult]:
    """Execute ``path`` (errors allowed) and read the outcome of every check cell."""
    notebook = execute_allowing_errors(path, timeout)
    results = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and CHECK_TAG in cell.metadata.get("tags", []):
            status, message = _status(cell)
            check = cell.source.strip().splitlines()[-1] if cell.source.strip() else "?"
            results.append(CheckResult(path.name, index, check, status, message))
    return results


def write_report(results: list[CheckResult], report: Path) -> None:
    """Write a markdown report: a summary per notebook, then every check."""
    lines = ["# Exercise report", "", "| notebook | passed | checks |", "|---|---|---|"]
    for name in sorted({r.notebook for r in results}):
        mine = [r for r in results if r.notebook == name]
        lines.append(f"| {name} | {sum(r.status == 'passed' for r in mine)} | {len(mine)} |")
    lines += ["", "| notebook | cell | check | status | message |", "|---|---|---|---|---|"]
    for r in results:
        message = r.message.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r.notebook} | {r.cell} | `{r.check}` | {r.status} | {message} |")
    report.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradbook.assignments")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("generate", "check"):
        sub = commands.add_parser(command)
        sub.add_argument("solutions", nargs="?", type=Path, default=Path("solutions"))
        sub.add_argument("notebooks", nargs="?", type=Path, default=Path("notebooks"))
    grade = commands.add_parser("grade")
    grade.add_argument("submissions", type=Path)
    grade.add_argument("--report", type=Path, default=Path("report.md"))
    args = parser.parse_args(argv)

    if args.command == "generate":
        for path in generate(args.solutions, args.notebooks):
            print(f"wrote {path}")
        return 0
    if args.command == "check":
        problems = out_of_sync(args.solutions, args.notebooks)
        for problem in problems:
            print(problem)
        if problems:
            print("run `make assignments` to regenerate notebooks/")
        return 1 if problems else 0
    results = []
    for path in sorted(args.submissions.glob("*.ipynb")):
        print(f"grading {path} ...", flush=True)
        results += grade_notebook(path)
    write_report(results, args.report)
    passed = sum(r.status == "passed" for r in results)
    print(f"{passed} of {len(results)} checks passed; report in {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
