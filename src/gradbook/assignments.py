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
``:::{exercise}`` blocks into plain headings, removes the MyST that only the book
understands (``(label)=`` targets; ``{ref}`` and ``{doc}`` roles become plain text)
and clears all outputs.

Command line (also reached through ``make assignments`` and ``make grade``)::

    python -m gradbook.assignments generate [solutions/] [notebooks/]
    python -m gradbook.assignments check    [solutions/] [notebooks/]
    python -m gradbook.assignments grade    SUBMISSIONS_DIR [--report _build/report.md]
                                            [--kernel python3] [--timeout 600]

``generate`` writes one student notebook per solutions notebook and deletes the
notebooks in the target folder that no longer have a source; ``check`` reports
every difference without changing anything. ``grade`` runs each submission
under one kernel (whatever its metadata says); a submission that cannot be run
to the end (a cell past the timeout, a dead kernel) gets an error row in the
report, and the other submissions are still graded.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import nbformat
from nbformat import NotebookNode

from gradbook.exercises._core import STUB_MESSAGE

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CHECK_TAG = "check"
SOLUTION_TAG = "solution"

_SOLUTION_MARKER = re.compile(r"^\s*:{3,}\s*\{solution-(start|end)\}")
_EXERCISE_OPEN = re.compile(r"^(?P<fence>:{3,})\{exercise\}\s*(?P<title>.*)$")
_TARGET_LINE = re.compile(r"^\s*\([^()\s]+\)=\s*$")  # a MyST target such as (ex01)=
_CROSS_REFERENCE = re.compile(r"\{(?:ref|doc)\}`(?P<body>[^`]+)`")
_EXPLICIT_TITLE = re.compile(r"^(?P<text>.*\S)\s*<(?P<target>[^<>]+)>$", re.DOTALL)
_CODE_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


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


def readable_target(target: str) -> str:
    """Plain words for a cross-reference target of the book (a label or a document).

    >>> readable_target("ch03a"), readable_target("ex01"), readable_target("appendix-related")
    ('chapter 3a', 'exercises 1', 'the appendix')
    >>> readable_target("../book/04-convolution-pseudo-inverse"), readable_target("introduction")
    ('chapter 4', 'introduction')
    """
    name = target.strip().rstrip("/").rsplit("/", 1)[-1]
    if chapter := re.fullmatch(r"ch0*(\d+[a-z]?)", name) or re.match(r"0*(\d+[a-z]?)-", name):
        return f"chapter {chapter[1]}"
    if exercises := re.fullmatch(r"ex0*(\d+[a-z]?)", name):
        return f"exercises {exercises[1]}"
    if name.lower().startswith(("appendix", "a-")):
        return "the appendix"
    return name.replace("-", " ").replace("_", " ")


def _plain_myst_markdown(source: str) -> str:
    """Drop ``(label)=`` lines and turn ``{ref}``/``{doc}`` roles into plain text.

    Outside the book these are shown literally. ``{ref}`text <target>``` becomes
    ``text``; ``{ref}`target``` becomes :func:`readable_target`'s words. Fenced
    code blocks are left as they are.
    """

    def replace(match: re.Match[str]) -> str:
        body = match["body"]
        explicit = _EXPLICIT_TITLE.match(body)
        return explicit["text"] if explicit else readable_target(body)

    def plain(lines: list[str]) -> list[str]:
        kept = [line for line in lines if not _TARGET_LINE.match(line)]
        return _CROSS_REFERENCE.sub(replace, "\n".join(kept)).split("\n") if kept else []

    out: list[str] = []
    prose: list[str] = []  # lines outside code fences, rewritten together (a role may wrap)
    fence = None
    for line in source.splitlines():
        opened = _CODE_FENCE.match(line)
        if fence is None and opened:
            out += plain(prose)
            prose = []
            fence = opened[1]
            out.append(line)
        elif fence is not None:
            closing = opened and opened[1].startswith(fence)
            if closing and not line.strip()[len(opened[1]) :].strip():
                fence = None
            out.append(line)
        else:
            prose.append(line)
    out += plain(prose)
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
            cell.source = _plain_myst_markdown(_plain_exercise_markdown(cell.source))
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


class Generated(NamedTuple):
    """What :func:`generate` did: the student notebooks written and the orphans removed."""

    written: list[Path]
    removed: list[Path]


def orphans(solutions: Path = Path("solutions"), notebooks: Path = Path("notebooks")) -> list[Path]:
    """The ``.ipynb`` files in ``notebooks`` that no notebook in ``solutions`` generates."""
    expected = {student.name for _, student in _pairs(solutions, notebooks)}
    return sorted(p for p in notebooks.glob("*.ipynb") if p.name not in expected)


def generate(solutions: Path = Path("solutions"), notebooks: Path = Path("notebooks")) -> Generated:
    """Write the student version of every solutions notebook and delete the orphans.

    Orphans are the ``.ipynb`` files in ``notebooks`` without a source in
    ``solutions`` (left behind when an exercise notebook is renamed or removed);
    nothing else in ``notebooks`` is touched.
    """
    notebooks.mkdir(parents=True, exist_ok=True)
    removed = orphans(solutions, notebooks)
    for path in removed:
        path.unlink()
    written = []
    for solution, student in _pairs(solutions, notebooks):
        student.write_text(render(solution))
        written.append(student)
    return Generated(written, removed)


def out_of_sync(
    solutions: Path = Path("solutions"), notebooks: Path = Path("notebooks")
) -> list[str]:
    """Describe every way ``notebooks/`` differs from what ``solutions/`` generates."""
    problems = [f"{path} has no source in {solutions}/" for path in orphans(solutions, notebooks)]
    for solution, student in _pairs(solutions, notebooks):
        if not student.exists():
            problems.append(f"{student} is missing")
        elif student.read_text() != render(solution):
            problems.append(f"{student} differs from what {solution} generates")
    return problems


@dataclass
class CheckResult:
    """The outcome of one check cell in a graded notebook.

    A row with ``cell=None`` is about the whole notebook: it could not be run to
    the end, and ``message`` says why.
    """

    notebook: str
    cell: int | None
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


def execute_notebook(
    path_or_nb: Path | str | NotebookNode,
    *,
    allow_errors: bool,
    timeout: int = 600,
    kernel: str | None = None,
    cwd: Path | str | None = None,
    **client_options: Any,
) -> NotebookNode:
    """Execute a notebook from top to bottom and return it with fresh outputs.

    Used for grading, for the student-notebook tests and by
    ``tools/execute_notebooks.py``, which writes the result back.

    Args:
        path_or_nb: a path (read, never written: the executed copy is returned)
            or a notebook (executed in place and returned).
        allow_errors: go on after a cell raises (its error becomes an output)
            instead of raising :class:`nbclient.exceptions.CellExecutionError`.
        timeout: seconds each cell may take.
        kernel: the kernel to run under; ``None``: the one the notebook's
            metadata names (``python3`` when it names none).
        cwd: the working directory of the kernel; by default the notebook's
            folder for a path, the current directory for a notebook.
        client_options: passed on to :class:`nbclient.NotebookClient` (hooks
            such as ``on_cell_executed``).

    No timestamps are recorded (and old ones are dropped), so executing a
    notebook twice changes nothing but what its code prints.

    Raises:
        nbclient.exceptions.CellTimeoutError: a cell ran longer than ``timeout``.
        nbclient.exceptions.DeadKernelError: the kernel died.
        jupyter_client.kernelspec.NoSuchKernel: no kernel of that name is installed.
    """
    from nbclient import NotebookClient

    if isinstance(path_or_nb, NotebookNode):
        notebook = path_or_nb
        folder = Path(cwd) if cwd is not None else Path.cwd()
    else:
        path = Path(path_or_nb)
        notebook = nbformat.read(path, as_version=4)
        folder = Path(cwd) if cwd is not None else path.parent
    if kernel is None:
        kernel = notebook.metadata.get("kernelspec", {}).get("name", "python3")
    for cell in notebook.cells:
        cell.get("metadata", {}).pop("execution", None)
    NotebookClient(
        notebook,
        timeout=timeout,
        allow_errors=allow_errors,
        kernel_name=kernel,
        record_timing=False,
        resources={"metadata": {"path": str(folder)}},
        **client_options,
    ).execute()
    return notebook


def _first_line(error: BaseException, limit: int = 200) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def grade_notebook(path: Path, timeout: int = 600, kernel: str = "python3") -> list[CheckResult]:
    """Execute ``path`` (errors allowed) under ``kernel`` and read every check cell.

    Outputs stored in the submission are cleared first, so only what this run
    prints counts. When the notebook cannot be run to the end (it cannot be
    read, the kernel does not start or dies, a cell exceeds ``timeout``), the
    checks that did run are still read, every other check is an ``error`` row,
    and one more ``error`` row with ``cell=None`` says what stopped the run.
    """
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # a submission that is not a notebook at all
        return [CheckResult(path.name, None, "(notebook)", "error", _first_line(error))]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None

    executed: set[int] = set()

    def record(cell: NotebookNode, cell_index: int, **_: Any) -> None:
        executed.add(cell_index)

    stopped = None
    try:
        execute_notebook(
            notebook,
            allow_errors=True,
            timeout=timeout,
            kernel=kernel,
            cwd=path.parent,
            on_cell_executed=record,
        )
    except Exception as error:  # one broken submission must not end the grading run
        stopped = error

    code = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.source.strip()]
    unfinished = [i for i in code if i not in executed]
    why = ""
    if stopped is not None:
        where = f"cell {unfinished[0]}" if unfinished and executed else "the start"
        why = f"the run stopped at {where}: {_first_line(stopped)}"

    results = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and CHECK_TAG in cell.metadata.get("tags", []):
            check = cell.source.strip().splitlines()[-1] if cell.source.strip() else "?"
            if index in executed:
                status, message = _status(cell)
            elif stopped is not None:
                status, message = "error", f"not run ({why})"
            else:
                status, message = "error", "the check cell did not run (it is empty or skipped)"
            results.append(CheckResult(path.name, index, check, status, message))
    if stopped is not None:
        results.append(CheckResult(path.name, None, "(notebook)", "error", why))
    return results


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_report(results: list[CheckResult], report: Path) -> None:
    """Write a markdown report: a summary per notebook, then every check.

    The summary counts the check rows (not the ``cell=None`` rows); its ``note``
    says when a notebook could not be run to the end.
    """
    lines = [
        "# Exercise report",
        "",
        "| notebook | passed | checks | note |",
        "|---|---|---|---|",
    ]
    for name in sorted({r.notebook for r in results}):
        checks = [r for r in results if r.notebook == name and r.cell is not None]
        stopped = [r for r in results if r.notebook == name and r.cell is None]
        passed = sum(r.status == "passed" for r in checks)
        note = "did not run to the end: " + _cell(stopped[0].message) if stopped else ""
        lines.append(f"| {name} | {passed} | {len(checks)} | {note} |")
    lines += ["", "| notebook | cell | check | status | message |", "|---|---|---|---|---|"]
    for r in results:
        cell = "-" if r.cell is None else r.cell
        lines.append(f"| {r.notebook} | {cell} | `{r.check}` | {r.status} | {_cell(r.message)} |")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gradbook.assignments", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {
        "generate": "write notebooks/ from solutions/ and delete notebooks without a source",
        "check": "report every way notebooks/ differs from what solutions/ generates",
    }
    for command, text in helps.items():
        sub = commands.add_parser(command, help=text, description=text)
        sub.add_argument("solutions", nargs="?", type=Path, default=Path("solutions"))
        sub.add_argument("notebooks", nargs="?", type=Path, default=Path("notebooks"))
    text = "run every notebook in a folder and write a report of its checks"
    grade = commands.add_parser("grade", help=text, description=text)
    grade.add_argument("submissions", type=Path, help="folder of submitted .ipynb files")
    grade.add_argument(
        "--report",
        type=Path,
        default=Path("_build/report.md"),
        help="where the markdown report goes (default: %(default)s)",
    )
    grade.add_argument(
        "--kernel",
        default="python3",
        help="kernel every submission runs under, whatever its metadata names "
        "(default: %(default)s)",
    )
    grade.add_argument(
        "--timeout", type=int, default=600, help="seconds each cell may take (default: 600)"
    )
    args = parser.parse_args(argv)

    if args.command == "generate":
        done = generate(args.solutions, args.notebooks)
        for path in done.removed:
            print(f"removed {path} (no source in {args.solutions}/)")
        for path in done.written:
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
        results += grade_notebook(path, timeout=args.timeout, kernel=args.kernel)
    write_report(results, args.report)
    checks = [r for r in results if r.cell is not None]
    passed = sum(r.status == "passed" for r in checks)
    print(f"{passed} of {len(checks)} checks passed; report in {args.report}")
    stopped = sorted({r.notebook for r in results if r.cell is None})
    if stopped:
        print(f"{len(stopped)} notebook(s) did not run to the end: {', '.join(stopped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
