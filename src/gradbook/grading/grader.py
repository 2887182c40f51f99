"""``make grade``: grade a folder of submissions with nbgrader, each kernel sandboxed.

Command line (``make grade SUBMISSIONS=DIR [TIMEOUT=s] [JOBS=n]`` calls it)::

    python -m gradbook.assignments grade DIR [--timeout 600] [--jobs 1] [--wall 900]
        [--memory 4096] [--output-limit 1000000] [--build _build] [--solutions solutions]

``DIR`` holds one folder per student (``DIR/<student>/<notebook>.ipynb``, at any depth
below the student's folder) or plain files (``DIR/<student>.ipynb``). Each notebook is
matched to the assignment whose ``grade_id``\\ s it carries (its file name when it
carries none). A file that is not a notebook, a corrupt notebook, a notebook of no
known assignment or a second notebook of the same student and assignment is listed
as not graded, and the others are graded.

How one submission is graded (:func:`execute_submission`, in a worker process):

1. nbgrader's sanitizing preprocessors (``ClearOutput``, ``DeduplicateIds``,
   ``OverwriteKernelspec``, ``OverwriteCells``, ``CheckCellMetadata``) restore the
   locked and test cells from the source stored in the gradebook.
2. Each test cell is run behind a preamble (:func:`preamble`) that drops every
   ``gradbook`` module from ``sys.modules``, re-imports the checks from disk and
   removes any custom exception handler, so a monkeypatch made in an earlier cell
   is undone. The preamble is taken out again before the notebook is saved.
3. nbgrader's ``Execute`` runs the notebook; only the kernel runs in the sandbox
   (:mod:`gradbook.grading.sandbox`). Each cell may take ``--timeout`` seconds, the
   whole notebook ``--wall`` seconds; output beyond ``--output-limit`` bytes per cell
   is dropped as it arrives (a note says so).
4. The verdict of a test cell is the status of the kernel's ``execute_reply`` to it:
   ``ok`` earns the cell's points (from the source), anything else, or a cell that
   never ran or was deleted, earns 0. Its message is the reply's ``ename: evalue``.

Then the grader alone, after the sandbox is gone, saves the grades in nbgrader's
gradebook (``SaveAutoGrades``, then the verdicts above; one writer at a time),
generates nbgrader's feedback HTML and writes ``grades.csv`` and ``report.md``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from gradbook.grading import course
from gradbook.grading.sandbox import (
    DEFAULT_MEMORY,
    INSTALL_HINT,
    SandboxedKernelManager,
    bwrap,
    bwrap_prefix,
)

#: What replaces the output of a cell past the limit.
OUTPUT_CUT = "[output cut: this cell printed more than {limit} bytes; the rest was dropped]\n"
MESSAGE_LIMIT = 300


@dataclass
class Submission:
    """One file found in the submissions folder."""

    path: Path
    student: str
    sha256: str
    assignment: str | None = None
    problem: str | None = None  # why it cannot be graded


@dataclass
class Check:
    """The verdict on one test cell of the source."""

    grade_id: str
    points: float
    max_points: float
    status: str  # "passed", "failed", "not attempted", "error", "not run", "deleted"
    message: str


@dataclass
class Outcome:
    """The result of grading one submission."""

    submission: Submission
    checks: list[Check] = field(default_factory=list)
    score: float = 0.0
    max_score: float = 0.0
    note: str = ""
    seconds: float = 0.0


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _safe_id(name: str) -> str:
    """A student id nbgrader can use as a folder name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "student"
    return cleaned


def grade_ids(notebook: NotebookNode) -> set[str]:
    """The nbgrader ``grade_id`` of every cell of ``notebook`` that has one."""
    ids = set()
    for cell in notebook.get("cells", []):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if isinstance(grade_id, str):
            ids.add(grade_id)
    return ids


def match_assignment(
    notebook: NotebookNode, filename: str, sources: dict[str, set[str]]
) -> str | None:
    """The assignment whose grade ids ``notebook`` shares most; else the one named like it."""
    ids = grade_ids(notebook)
    overlap = {name: len(ids & source) for name, source in sources.items()}
    best = max(overlap.values(), default=0)
    if best > 0:
        winners = sorted(name for name, count in overlap.items() if count == best)
        stem = Path(filename).stem
        return stem if stem in winners else winners[0]
    stem = Path(filename).stem
    return stem if stem in sources else None


def discover(folder: Path, sources: dict[str, set[str]]) -> list[Submission]:
    """Every file under ``folder`` as a :class:`Submission` (with a problem when ungradable).

    ``folder/<name>.ipynb`` belongs to student ``<name>``; any file below
    ``folder/<student>/`` belongs to ``<student>``. Hidden files and
    ``.ipynb_checkpoints`` folders are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"SUBMISSIONS must be a folder, got {str(folder)!r}")
    found: list[Submission] = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if path.is_symlink():
            continue
        student = relative.stem if len(relative.parts) == 1 else relative.parts[0]
        entry = Submission(path, _safe_id(student), sha256(path))
        if path.suffix != ".ipynb":
            entry.problem = "not a notebook (only .ipynb files are graded)"
        else:
            try:
                notebook = nbformat.read(path, as_version=4)
                nbformat.validate(notebook)
            except Exception as error:
                entry.problem = f"not a readable notebook: {_one_line(error)}"
            else:
                entry.assignment = match_assignment(notebook, path.name, sources)
                if entry.assignment is None:
                    entry.problem = (
                        "matches no assignment (no grade_id of any assignment, and the file "
                        f"name is none of {', '.join(sorted(sources))})"
                    )
        found.append(entry)
    seen: dict[tuple[str, str], Path] = {}
    for entry in found:
        if entry.problem is None and entry.assignment is not None:
            key = (entry.student, entry.assignment)
            if key in seen:
                entry.problem = f"a second notebook of {entry.assignment} (graded: {seen[key]})"
            else:
                seen[key] = entry.path
    return found


def _one_line(error: BaseException | str, limit: int = MESSAGE_LIMIT) -> str:
    text = str(error).strip()
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_imports(source: NotebookNode) -> list[str]:
    """The ``gradbook.exercises`` import statements of the locked cells of ``source``."""
    statements = []
    for cell in source.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("locked") or meta.get("grade"):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "gradbook.exercises"
            ):
                statements.append(ast.unparse(node))
            elif isinstance(node, ast.Import) and any(
                alias.name.startswith("gradbook.exercises") for alias in node.names
            ):
                statements.append(ast.unparse(node))
    return statements


PREAMBLE_MARK = "# gradbook: reload the checks from disk (added by the grader)"


def preamble(imports: list[str]) -> str:
    """Code run at the top of each test cell: fresh ``gradbook`` modules, no custom handler."""
    lines = [
        PREAMBLE_MARK,
        "import sys as _gradbook_sys",
        "for _gradbook_name in [n for n in list(_gradbook_sys.modules)"
        " if n == 'gradbook' or n.startswith('gradbook.')]:",
        "    del _gradbook_sys.modules[_gradbook_name]",
        "get_ipython().set_custom_exc((), None)",
        *imports,
        "del _gradbook_sys",
    ]
    return "\n".join(lines) + "\n"


def _status(reply: dict | None) -> tuple[str, str]:
    if reply is None:
        return "not run", "the cell did not run (the notebook stopped before it)"
    content = reply.get("content", {})
    if content.get("status") == "ok":
        return "passed", ""
    ename, evalue = str(content.get("ename", "")), str(content.get("evalue", ""))
    message = _one_line(f"{ename}: {evalue}" if evalue else ename or "error")
    kind = {"ExerciseNotAttempted": "not attempted", "ExerciseFailed": "failed"}
    return kind.get(ename, "error"), message


@dataclass
class Job:
    """What a worker needs to execute one submission."""

    notebook: str  # the copy in the course's submitted/ folder
    student: str
    assignment: str
    db_url: str
    source: str  # the source notebook
    timeout: int
    wall: int
    memory: int
    output_limit: int
    threads: int
    sandboxed: bool


def _execute_class():
    from nbgrader.preprocessors import Execute
    from traitlets import Integer

    class SandboxedExecute(Execute):
        """nbgrader's Execute recording each reply, with a per-cell output cap and a deadline."""

        output_limit = Integer(1_000_000)
        deadline = None

        def preprocess(self, nb, resources=None, km=None):
            self.replies: dict[int, dict] = {}
            self._sizes: dict[int, int] = {}
            return super().preprocess(nb, resources, km=km)

        def on_cell_executed(self, **kwargs):
            super().on_cell_executed(**kwargs)
            self.replies[kwargs["cell_index"]] = kwargs["execute_reply"]

        def _get_timeout(self, cell):
            timeout = super()._get_timeout(cell)
            if self.deadline is None:
                return timeout
            left = max(1, int(self.deadline - time.monotonic()))
            return left if timeout is None else min(timeout, left)

        def handle_comm_msg(self, outs, msg, cell_index):
            return None  # no widgets: a comm could bypass the output cap

        def output(self, outs, msg, display_id, cell_index):
            content = msg.get("content", {})
            data = content.get("data")
            size = len(str(content.get("text", ""))) + (len(json.dumps(data)) if data else 0)
            size += sum(len(str(line)) for line in content.get("traceback", []))
            used = self._sizes.get(cell_index, 0)
            self._sizes[cell_index] = used + size
            if used + size <= self.output_limit:
                return super().output(outs, msg, display_id, cell_index)
            if used > self.output_limit:
                return None  # past the limit, and the note is there already
            left = self.output_limit - used
            if msg.get("msg_type") == "stream" and left > 0:  # keep the head of the text
                head = {**msg, "content": {**content, "text": str(content["text"])[:left]}}
                super().output(outs, head, display_id, cell_index)
            self._sizes[cell_index] = self.output_limit + 1
            note = nbformat.v4.new_output(
                "stream", name="stdout", text=OUTPUT_CUT.format(limit=self.output_limit)
            )
            outs.append(note)
            return note

    return SandboxedExecute


def execute_submission(job: Job) -> dict[str, Any]:
    """Sanitize and execute one submission; its notebook, replies and why it stopped.

    Runs in a worker process. Nothing here writes to the gradebook.
    """
    from nbgrader.preprocessors import (
        CheckCellMetadata,
        ClearOutput,
        DeduplicateIds,
        LimitOutput,
        OverwriteCells,
        OverwriteKernelspec,
    )

    started = time.monotonic()
    notebook = nbformat.read(job.notebook, as_version=4)
    resources = {
        "nbgrader": {
            "notebook": Path(job.notebook).stem,
            "assignment": job.assignment,
            "student": job.student,
            "db_url": job.db_url,
        }
    }
    for kind in (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells):
        notebook, resources = kind().preprocess(notebook, resources)
    for cell in notebook.cells:  # a grade_id the source does not know was removed above
        if "nbgrader" in cell.metadata and "grade_id" not in cell.metadata.nbgrader:
            del cell.metadata["nbgrader"]
    try:
        notebook, resources = CheckCellMetadata().preprocess(notebook, resources)
    except Exception as error:
        return {"notebook": None, "replies": {}, "stopped": f"invalid metadata: {error}"}
    source = nbformat.read(job.source, as_version=4)
    prefix = preamble(check_imports(source))
    graded = {}
    for index, cell in enumerate(notebook.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and meta.get("grade_id"):
            graded[index] = (meta["grade_id"], cell.source)
            cell.source = prefix + cell.source

    scratch = Path(tempfile.mkdtemp(prefix="gradbook-sandbox-"))
    work, run = scratch / "work", scratch / "run"
    work.mkdir()
    run.mkdir()
    os.chmod(scratch, 0o755)
    os.chmod(work, 0o777)
    os.chmod(run, 0o777)
    shutil.copyfile(job.notebook, work / Path(job.notebook).name)
    sandbox = (
        bwrap_prefix([work, run], work, memory_bytes=job.memory, threads=job.threads)
        if job.sandboxed
        else []
    )
    km = SandboxedKernelManager(
        kernel_name="python3",
        transport="ipc",
        connection_file=str(run / "kernel.json"),
        sandbox_prefix=sandbox,
    )
    executor = _execute_class()(
        timeout=job.timeout,
        interrupt_on_timeout=False,
        allow_errors=True,
        output_limit=job.output_limit,
        startup_timeout=120,
    )
    executor.deadline = started + job.wall
    watchdog = threading.Timer(job.wall + 30, km.kill_now)
    watchdog.daemon = True
    watchdog.start()
    stopped = ""
    try:
        executor.preprocess(notebook, {"metadata": {"path": str(work)}}, km=km)
    except Exception as error:  # a timeout, a dead kernel: the cells that ran still count
        stopped = _one_line(error)
        if time.monotonic() - started >= job.wall:
            stopped = f"the notebook ran past its {job.wall} s limit ({stopped})"
    finally:
        watchdog.cancel()
        km.kill_now()
        shutil.rmtree(scratch, ignore_errors=True)
    replies = {}
    for index, (grade_id, original) in graded.items():
        notebook.cells[index].source = original
        reply = executor.replies.get(index)
        replies[grade_id] = None if reply is None else {"content": reply.get("content", {})}
    notebook, resources = LimitOutput().preprocess(notebook, resources)
    return {
        "notebook": nbformat.writes(notebook),
        "replies": replies,
        "stopped": stopped,
        "seconds": time.monotonic() - started,
    }


class Course:
    """The nbgrader course of ``solutions/`` in ``root``, its gradebook at ``db_url``."""

    def __init__(self, root: Path, solutions: Path, db_url: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.db_url = db_url or course.default_db_url(self.root)
        self.solutions = sorted(Path(solutions).glob("*.ipynb"))
        if not self.solutions:
            raise ValueError(f"no solutions notebook in {solutions}/")
        self.sources = {
            path.stem: grade_ids(nbformat.read(path, as_version=4)) for path in self.solutions
        }
        self.points = {}
        for path in self.solutions:
            notebook = nbformat.read(path, as_version=4)
            self.points[path.stem] = {
                cell.metadata["nbgrader"]["grade_id"]: float(cell.metadata["nbgrader"]["points"])
                for cell in notebook.cells
                if cell.get("metadata", {}).get("nbgrader", {}).get("grade")
            }

    def prepare(self, assignments: set[str] | None = None) -> None:
        """Copy the sources and run generate_assignment (fills the gradebook).

        ``assignments``: only these (the ones with submissions); ``None``: all.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        wanted = [p for p in self.solutions if assignments is None or p.stem in assignments]
        course.generate(self.root, wanted, self.db_url)

    def source(self, assignment: str) -> Path:
        return self.root / "source" / assignment / f"{assignment}.ipynb"

    def submitted(self, student: str, assignment: str) -> Path:
        return self.root / "submitted" / student / assignment / f"{assignment}.ipynb"

    def autograded(self, student: str, assignment: str) -> Path:
        return self.root / "autograded" / student / assignment / f"{assignment}.ipynb"


def save(course_: Course, submission: Submission, result: dict[str, Any]) -> Outcome:
    """Write one executed submission to the gradebook (the only writer); its outcome."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import SaveAutoGrades

    student, assignment = submission.student, submission.assignment
    assert assignment is not None
    outcome = Outcome(submission, seconds=result.get("seconds", 0.0))
    outcome.note = result.get("stopped", "")
    with Gradebook(course_.db_url) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes from inside nbgrader
        gb.update_or_create_student(student)
        gb.update_or_create_submission(assignment, student)
    if result["notebook"] is not None:
        notebook = nbformat.reads(result["notebook"], as_version=4)
        resources = {
            "nbgrader": {
                "notebook": assignment,
                "assignment": assignment,
                "student": student,
                "db_url": course_.db_url,
            }
        }
        notebook, _ = SaveAutoGrades().preprocess(notebook, resources)
        target = course_.autograded(student, assignment)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)
    replies = result.get("replies", {})
    with Gradebook(course_.db_url) as gb:
        for grade_id, max_points in course_.points[assignment].items():
            grade = gb.find_grade(grade_id, assignment, assignment, student)
            if grade_id in replies:
                status, message = _status(replies[grade_id])
            else:
                status, message = "deleted", "the check cell is missing from the submission"
            points = max_points if status == "passed" else 0.0
            grade.auto_score = points
            grade.needs_manual_grade = False
            outcome.checks.append(Check(grade_id, points, max_points, status, message))
        gb.db.commit()
        stored = gb.find_submission_notebook(assignment, assignment, student)
        outcome.score, outcome.max_score = float(stored.score), float(stored.max_score)
    return outcome


def feedback_one(root: str, db_url: str, student: str, assignment: str, build: str) -> bool:
    """nbgrader's feedback HTML of one graded submission, copied to ``build/feedback``."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = course.nbgrader_config(Path(root), db_url)
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    result = api.generate_feedback(assignment, student, force=True)
    made = Path(root) / "feedback" / student / assignment
    target = Path(build) / "feedback" / student / assignment
    if not (result["success"] and made.is_dir()):
        return False
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(made, target)
    return True


def _feedback_star(arguments: tuple) -> bool:
    return feedback_one(*arguments)


def _key(outcome: Outcome) -> tuple[str, str]:
    return outcome.submission.student, outcome.submission.assignment


def write_csv(outcomes: list[Outcome], path: Path) -> None:
    """``student,assignment,score,max_score`` then the points of each check."""
    ids = sorted({c.grade_id for o in outcomes for c in o.checks}, key=_natural)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "assignment", "score", "max_score", *ids])
        for o in sorted(outcomes, key=lambda o: (o.submission.student, o.submission.assignment)):
            points = {c.grade_id: c.points for c in o.checks}
            row = [o.submission.student, o.submission.assignment, _num(o.score)]
            row += [_num(o.max_score), *(_num(points[i]) if i in points else "" for i in ids)]
            writer.writerow(row)


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _num(value: float) -> str:
    return f"{value:g}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_report(
    outcomes: list[Outcome], ungraded: list[Submission], path: Path, folder: Path
) -> None:
    """The markdown report: scores, then every check's verdict and message, then the rest."""
    lines = ["# Grading report", "", f"Submissions: `{folder}`", ""]
    lines += ["| student | assignment | score | max | note | sha256 |", "|---|---|---|---|---|---|"]
    ordered = sorted(outcomes, key=lambda o: (o.submission.student, o.submission.assignment))
    for o in ordered:
        s = o.submission
        lines.append(
            f"| {s.student} | {s.assignment} | {_num(o.score)} | {_num(o.max_score)} | "
            f"{_md(o.note)} | `{s.sha256}` |"
        )
    lines += ["", "## Checks", ""]
    lines += ["| student | assignment | check | points | status | message |"]
    lines += ["|---|---|---|---|---|---|"]
    for o in ordered:
        for c in o.checks:
            lines.append(
                f"| {o.submission.student} | {o.submission.assignment} | "
                f"{course.exercise_name(c.grade_id)} (`{c.grade_id}`) | "
                f"{_num(c.points)}/{_num(c.max_points)} | {c.status} | {_md(c.message)} |"
            )
    if ungraded:
        lines += ["", "## Not graded", "", "| file | why | sha256 |", "|---|---|---|"]
        for s in ungraded:
            lines.append(f"| `{_md(str(s.path))}` | {_md(s.problem or '')} | `{s.sha256}` |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def grade(
    submissions: Path,
    *,
    solutions: Path = Path("solutions"),
    build: Path = Path("_build"),
    timeout: int = 600,
    jobs: int = 1,
    wall: int = 900,
    memory: int = DEFAULT_MEMORY,
    output_limit: int = 1_000_000,
    sandboxed: bool = True,
    feedback_html: bool = True,
    log=print,
) -> tuple[list[Outcome], list[Submission]]:
    """Grade every submission under ``submissions``; the outcomes and the ungraded files.

    Writes ``build/grades.csv``, ``build/report.md``, ``build/feedback/`` and the
    nbgrader course in ``build/nbgrader`` (its gradebook unless ``GRADEBOOK_DB`` is set).

    Raises:
        RuntimeError: ``sandboxed`` and bubblewrap is missing (the message says how
            to install it).
        ValueError: an option is out of range or ``submissions`` is not a folder.
    """
    for name, value in (("timeout", timeout), ("jobs", jobs), ("wall", wall)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    if memory < 2**28 or output_limit < 1000:
        raise ValueError(
            f"memory must be at least 256 MiB and output_limit at least 1000 bytes, "
            f"got {memory} and {output_limit}"
        )
    if sandboxed and bwrap() is None:
        raise RuntimeError(INSTALL_HINT)
    submissions, build = Path(submissions).resolve(), Path(build).resolve()
    course_ = Course(build / "nbgrader", solutions)
    found = discover(submissions, course_.sources)
    log(f"{len(found)} file(s) in {submissions}; gradebook: {course_.db_url}")
    course_.prepare({s.assignment for s in found if s.problem is None})
    gradable = [s for s in found if s.problem is None]
    jobs_list = []
    for s in gradable:
        target = course_.submitted(s.student, s.assignment)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(s.path, target)
        jobs_list.append(
            Job(
                str(target),
                s.student,
                s.assignment,
                course_.db_url,
                str(course_.source(s.assignment)),
                timeout,
                wall,
                memory,
                output_limit,
                max(1, (os.cpu_count() or 1) // jobs),
                sandboxed,
            )
        )
    outcomes: list[Outcome] = []
    pool = None
    if jobs > 1 and len(jobs_list) > 1:
        # workers start from a fresh server process: a parent that has already run a
        # notebook client holds a ZeroMQ context that a forked child cannot use
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["gradbook.grading.grader"])
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    run = pool.map if pool is not None else map
    try:
        for s, result in zip(gradable, run(execute_submission, jobs_list), strict=True):
            outcome = save(course_, s, result)  # the only writer of the gradebook
            outcomes.append(outcome)
            log(
                f"graded {s.student}/{s.assignment}: {_num(outcome.score)}/"
                f"{_num(outcome.max_score)}" + (f" ({outcome.note})" if outcome.note else "")
            )
        if feedback_html:  # reads the gradebook only: in parallel too
            graded = [o for o in outcomes if course_.autograded(*_key(o)).exists()]
            arguments = [(str(course_.root), course_.db_url, *_key(o), str(build)) for o in graded]
            for outcome, made in zip(graded, run(_feedback_star, arguments), strict=True):
                if not made:
                    outcome.note = (outcome.note + "; " if outcome.note else "") + "no feedback"
    finally:
        if pool is not None:
            pool.shutdown()
    for s in found:
        if sha256(s.path) != s.sha256:  # never expected: the submission is never mounted
            raise RuntimeError(f"{s.path} changed while it was graded")
    ungraded = [s for s in found if s.problem is not None]
    write_csv(outcomes, build / "grades.csv")
    write_report(outcomes, ungraded, build / "report.md", submissions)
    return outcomes, ungraded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gradbook.assignments grade",
        description="grade a folder of submissions with nbgrader, each kernel in a sandbox",
    )
    parser.add_argument("submissions", type=Path, help="folder of submissions")
    parser.add_argument("--solutions", type=Path, default=Path("solutions"))
    parser.add_argument("--build", type=Path, default=Path("_build"))
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--wall", type=int, default=900, help="seconds per notebook")
    parser.add_argument("--jobs", type=int, default=1, help="submissions run at once")
    parser.add_argument("--memory", type=int, default=DEFAULT_MEMORY // 2**20, help="MiB")
    parser.add_argument("--output-limit", type=int, default=1_000_000, help="bytes per cell")
    parser.add_argument("--no-feedback", action="store_true", help="skip the feedback HTML")
    args = parser.parse_args(argv)
    unsafe = os.environ.get("UNSAFE_NO_SANDBOX", "") not in ("", "0")
    if not unsafe and bwrap() is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    if unsafe:
        print("UNSAFE_NO_SANDBOX is set: submissions run unsandboxed, as you", file=sys.stderr)
    outcomes, ungraded = grade(
        args.submissions,
        solutions=args.solutions,
        build=args.build,
        timeout=args.timeout,
        jobs=args.jobs,
        wall=args.wall,
        memory=args.memory * 2**20,
        output_limit=args.output_limit,
        sandboxed=not unsafe,
        feedback_html=not args.no_feedback,
    )
    build = args.build
    print(f"{len(outcomes)} submission(s) graded: {build / 'grades.csv'}, {build / 'report.md'}")
    print(f"feedback: {build / 'feedback'}/<student>/<assignment>/")
    for s in ungraded:
        print(f"NOT GRADED {s.path}: {s.problem}")
    return 1 if ungraded else 0
