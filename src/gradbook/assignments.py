"""Exercise notebooks: nbgrader metadata, the student release, the sync check, grading.

``solutions/NN-slug.ipynb`` is the source of truth and an nbgrader source
notebook. A solution region in a code cell is marked as in nbgrader::

    def orthogonal_component(g, x):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

``metadata`` writes the nbgrader metadata of every cell
(:mod:`gradbook.grading.metadata`: answer cells are solution cells, check cells
autograded test cells with points and a ``grade_id`` such as ``ch01-ex2``, other
code cells locked). ``generate`` runs nbgrader's ``generate_assignment`` on each
notebook (:mod:`gradbook.grading.course`: each solution region becomes
``raise NotImplementedError("Exercise 1.2: write your solution here")``,
checksums included), then drops the markdown cells that only open or close a
sphinx-exercise solution (and cells tagged ``solution``), turns ``:::{exercise}``
blocks into plain headings and removes the MyST that only the book understands
(``(label)=`` targets; ``{ref}`` and ``{doc}`` roles become plain text).
:func:`strip_solutions` is the same clean-up without nbgrader.

Command line (also reached through ``make assignments`` and ``make grade``)::

    python -m gradbook.assignments metadata [solutions/] [--check]
    python -m gradbook.assignments generate [solutions/] [notebooks/]
    python -m gradbook.assignments check    [solutions/] [notebooks/]
    python -m gradbook.assignments grade    SUBMISSIONS_DIR [--timeout S] [--jobs N] ...

``generate`` writes one student notebook per solutions notebook and deletes the
notebooks in the target folder that no longer have a source; ``check`` reports
every difference (stale metadata included) without changing anything.
``grade`` is :func:`gradbook.grading.grader.main` (``--help`` lists its options).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import re
import sys
from collections.abc import Iterator
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


def chapter_key(name: str) -> str | None:
    """The chapter of a notebook as its exercises are numbered (``"1"``, ``"A"``), or None.

    >>> chapter_key("01-orthogonal-gradients"), chapter_key("A-related-questions.ipynb")
    ('1', 'A')
    >>> chapter_key("scratch") is None
    True
    """
    match = re.match(r"(?:0*(\d+[a-z]?)|([A-Z]))-", Path(name).name)
    return None if match is None else match[1] or match[2]


def _plain_exercise_markdown(source: str, numbers: Iterator[str] | None = None) -> str:
    """Turn ``:::{exercise} Title`` blocks (options, closing fence) into plain markdown.

    Each block becomes a bold ``Exercise N.k: Title`` heading, ``N.k`` taken from
    ``numbers`` (the book numbers its exercises the same way), or ``Exercise: Title``.
    """
    lines = source.splitlines()
    out: list[str] = []
    fence = None
    for line in lines:
        opened = _EXERCISE_OPEN.match(line.strip())
        if fence is None and opened:
            fence = opened["fence"]
            title = opened["title"].strip()
            number = f" {next(numbers)}" if numbers is not None else ""
            out.append(f"**Exercise{number}{': ' + title if title else ''}**")
            continue
        if fence is not None and re.match(r"^\s*:[a-z-]+:", line) and out[-1].startswith("**"):
            continue  # a directive option such as :label:
        if fence is not None and line.strip() == fence:
            fence = None
            continue
        out.append(line)
    return "\n".join(out)


def exercise_numbers(name: str) -> Iterator[str] | None:
    """``"N.1"``, ``"N.2"``, ... for the exercises of the notebook ``name`` (chapter N).

    None when ``name`` names no chapter: its exercises stay unnumbered.
    """
    chapter = chapter_key(name)
    return None if chapter is None else (f"{chapter}.{k}" for k in itertools.count(1))


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


def is_solution_marker(markdown: str) -> bool:
    """Whether a markdown cell only opens or closes a sphinx-exercise solution."""
    return any(_SOLUTION_MARKER.match(line) for line in markdown.splitlines())


def plain_markdown(markdown: str, numbers: Iterator[str] | None = None) -> str:
    """Markdown of the book made readable outside it: exercise blocks, targets, roles.

    ``numbers`` (see :func:`exercise_numbers`) numbers the exercise headings.
    """
    return _plain_myst_markdown(_plain_exercise_markdown(markdown, numbers))


def strip_solutions(notebook: NotebookNode, name: str = "notebook") -> NotebookNode:
    """Return the student version of a solutions ``notebook`` (the input is not changed)."""
    student = copy.deepcopy(notebook)
    numbers = exercise_numbers(name)
    cells = []
    for index, cell in enumerate(student.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_TAG in tags:
            continue
        if cell.cell_type == "markdown":
            if is_solution_marker(cell.source):
                continue
            cell.source = plain_markdown(cell.source, numbers)
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


def render_all(solutions: Path = Path("solutions")) -> dict[str, str]:
    """The text of every student notebook, keyed by file name, as nbgrader releases it.

    Each solutions notebook goes through nbgrader's ``generate_assignment`` in a
    temporary course (:func:`gradbook.grading.course.release`), then through the
    MyST clean-up of :func:`gradbook.grading.course.student_version`.
    """
    from gradbook.grading.course import release

    paths = sorted(Path(solutions).glob("*.ipynb"))
    key = tuple((path.name, hashlib.sha256(path.read_bytes()).hexdigest()) for path in paths)
    if key not in _RENDERED:  # one nbgrader run per content of solutions/ in a process
        _RENDERED[key] = release(paths)
    return dict(_RENDERED[key])


_RENDERED: dict[tuple, dict[str, str]] = {}


def render(solution_path: Path) -> str:
    """The text the student notebook generated from ``solution_path`` must have."""
    from gradbook.grading.course import release

    return release([Path(solution_path)])[Path(solution_path).name]


class Generated(NamedTuple):
    """What :func:`generate` did: the student notebooks written and the orphans removed."""

    written: list[Path]
    removed: list[Path]


def orphans(solutions: Path = Path("solutions"), notebooks: Path = Path("notebooks")) -> list[Path]:
    """The ``.ipynb`` files in ``notebooks`` that no notebook in ``solutions`` generates."""
    expected = {student.name for _, student in _pairs(solutions, notebooks)}
    return sorted(p for p in notebooks.glob("*.ipynb") if p.name not in expected)


def _metadata_problems(solutions: Path) -> list[str]:
    from gradbook.grading.metadata import stale

    return [
        f"{path} lacks fresh nbgrader metadata (run `make assignments`)"
        for path in sorted(Path(solutions).glob("*.ipynb"))
        if stale(path)
    ]


def generate(solutions: Path = Path("solutions"), notebooks: Path = Path("notebooks")) -> Generated:
    """Write the student version of every solutions notebook and delete the orphans.

    Orphans are the ``.ipynb`` files in ``notebooks`` without a source in
    ``solutions`` (left behind when an exercise notebook is renamed or removed);
    nothing else in ``notebooks`` is touched.

    Raises:
        ValueError: a solutions notebook lacks fresh nbgrader metadata (run
            ``python -m gradbook.assignments metadata`` first).
    """
    if problems := _metadata_problems(solutions):
        raise ValueError("\n".join(problems))
    notebooks.mkdir(parents=True, exist_ok=True)
    removed = orphans(solutions, notebooks)
    for path in removed:
        path.unlink()
    texts = render_all(solutions)
    written = []
    for _, student in _pairs(solutions, notebooks):
        if not student.exists() or student.read_text() != texts[student.name]:
            student.write_text(texts[student.name])
        written.append(student)
    return Generated(written, removed)


def out_of_sync(
    solutions: Path = Path("solutions"), notebooks: Path = Path("notebooks")
) -> list[str]:
    """Describe every way ``notebooks/`` differs from what ``solutions/`` generates.

    Stale nbgrader metadata in ``solutions/`` counts as a difference too.
    """
    problems = _metadata_problems(solutions)
    problems += [f"{path} has no source in {solutions}/" for path in orphans(solutions, notebooks)]
    texts = render_all(solutions)
    for _, student in _pairs(solutions, notebooks):
        if not student.exists():
            problems.append(f"{student} is missing")
        elif student.read_text() != texts[student.name]:
            problems.append(f"{student} differs from what {solutions}/{student.name} generates")
    return problems


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gradbook.assignments", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {
        "generate": "write notebooks/ from solutions/ with nbgrader and delete notebooks "
        "without a source",
        "check": "report every way notebooks/ differs from what solutions/ generates",
    }
    for command, text in helps.items():
        sub = commands.add_parser(command, help=text, description=text)
        sub.add_argument("solutions", nargs="?", type=Path, default=Path("solutions"))
        sub.add_argument("notebooks", nargs="?", type=Path, default=Path("notebooks"))
    text = "add or refresh the nbgrader metadata of every solutions notebook"
    metadata = commands.add_parser("metadata", help=text, description=text)
    metadata.add_argument("solutions", nargs="?", type=Path, default=Path("solutions"))
    metadata.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a notebook is stale"
    )
    text = "grade a folder of submissions with nbgrader, each kernel in a sandbox"
    commands.add_parser("grade", help=text, description=text, add_help=False)
    args, rest = parser.parse_known_args(argv)

    if args.command == "grade":
        from gradbook.grading.grader import main as grade_main

        return grade_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "metadata":
        from gradbook.grading.metadata import stale, write_metadata

        if args.check:
            paths = [p for p in sorted(args.solutions.glob("*.ipynb")) if stale(p)]
            for path in paths:
                print(f"{path} lacks fresh nbgrader metadata")
            return 1 if paths else 0
        for path in write_metadata(args.solutions):
            print(f"wrote nbgrader metadata into {path}")
        return 0
    if args.command == "generate":
        done = generate(args.solutions, args.notebooks)
        for path in done.removed:
            print(f"removed {path} (no source in {args.solutions}/)")
        for path in done.written:
            print(f"wrote {path}")
        return 0
    problems = out_of_sync(args.solutions, args.notebooks)
    for problem in problems:
        print(problem)
    if problems:
        print("run `make assignments` to regenerate notebooks/")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
