"""Grading a class of adversarial submissions, for real, in the bubblewrap sandbox.

The class (``tests/adversarial_class.py``) holds a correct, a wrong, an untouched
and a looping notebook, five forgeries, a malicious notebook, a corrupt one, a
non-notebook, a per-student subfolder and flat files. What each student deserves
is decided by the answers written into their notebook, not by the grader.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import adversarial_class
import nbformat
import pytest

from gradbook.assignments import main
from gradbook.grading import grader, sandbox

ROOT = Path(__file__).resolve().parent.parent

TIMEOUT = 40  # seconds per cell: the import cell must fit on a busy machine, the loop not


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _processes_with(word: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if word.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _grade_the_class(tmp_path_factory):
    """Build the class, grade it with two jobs; everything the tests look at."""
    assert shutil.which("bwrap"), "bubblewrap must be installed (`make env` installs it)"
    root = tmp_path_factory.mktemp("class")
    submissions, build, outside = root / "submissions", root / "build", root / "outside"
    listener = socket.create_server(("127.0.0.1", 0))  # the host's loopback
    listener.settimeout(0)
    made = adversarial_class.build(submissions, outside, listener.getsockname()[1])
    outside.mkdir(exist_ok=True)
    before = _digests(submissions)
    sandboxes = set(Path(tempfile.gettempdir()).glob("gradbook-sandbox-*"))
    protected = {p: p.read_bytes() for p in (ROOT / "README.md", adversarial_class.SOURCE)}
    args = ["grade", str(submissions), "--build", str(build), "--timeout", str(TIMEOUT)]
    code = main([*args, "--jobs", "2", "--wall", "400"])
    finished = time.monotonic()
    time.sleep(max(0.0, finished + 6 - time.monotonic()))  # the detached writer waits 4 s
    try:  # nothing inside the sandbox reached the host's loopback
        listener.accept()
        reached = True
    except BlockingIOError:
        reached = False
    listener.close()
    assert not reached, "a submission connected to a port on the grader's loopback"
    with (build / "grades.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return {
        "made": made,
        "code": code,
        "rows": {row["student"]: row for row in rows},
        "report": (build / "report.md").read_text(),
        "build": build,
        "submissions": submissions,
        "before": before,
        "protected": protected,
        "sandboxes": sandboxes,
    }


def _every_student_gets_what_their_answers_deserve(graded):
    expected = graded["made"]["expected"]
    rows = graded["rows"]
    assert sorted(rows) == sorted(expected)
    for student, score in expected.items():
        row = rows[student]
        assert row["assignment"] == adversarial_class.NAME
        assert (float(row["score"]), float(row["max_score"])) == (
            score,
            adversarial_class.MAX_SCORE,
        ), student
        per_check = [float(row[f"ch01-ex{k}"]) for k in range(1, adversarial_class.MAX_SCORE + 1)]
        assert sum(per_check) == score, student


def _ungradable_files_are_listed_and_the_exit_status_says_so(graded):
    assert graded["code"] == 1
    report = graded["report"]
    section = report.split("## Not graded", 1)[1]
    for name in graded["made"]["not_graded"]:
        assert name in section
    assert "not a readable notebook" in section and "not a notebook" in section


def _report_agrees_with_the_csv_and_names_misconceptions(graded):
    report, rows = graded["report"], graded["rows"]
    summary = [line for line in report.split("## Checks")[0].splitlines() if line.startswith("| ")]
    parsed = {}
    for line in summary[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        parsed[cells[0]] = (float(cells[2]), float(cells[3]), cells[5].strip("`"))
    assert set(parsed) == set(rows)
    for student, (score, maximum, digest) in parsed.items():
        assert (score, maximum) == (
            float(rows[student]["score"]),
            float(rows[student]["max_score"]),
        )
        path = next(
            p
            for p in graded["submissions"].rglob("*.ipynb")
            if p.stem == student or p.relative_to(graded["submissions"]).parts[0] == student
        )
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    checks = report.split("## Checks")[1]
    wrong = next(line for line in checks.splitlines() if line.startswith("| wrong |"))
    assert "failed" in wrong and "multiply, then add up" in wrong, wrong
    untouched = [line for line in checks.splitlines() if line.startswith("| untouched |")]
    assert all("ExerciseNotAttempted" in line for line in untouched)
    deleted = next(
        line for line in checks.splitlines() if "forged-deleted" in line and "ex2" in line
    )
    assert "deleted" in deleted
    loop = next(line for line in report.splitlines() if line.startswith("| loop |"))
    assert "timed out" in loop


def _submissions_are_unchanged_and_nothing_escaped(graded):
    assert _digests(graded["submissions"]) == graded["before"]
    for path, content in graded["protected"].items():
        assert path.read_bytes() == content, path
    for path in graded["made"]["outside"]:
        assert not Path(path).exists(), path
    assert _processes_with(adversarial_class.MARKER) == []
    left = set(Path(tempfile.gettempdir()).glob("gradbook-sandbox-*")) - graded["sandboxes"]
    assert not left, "the sandbox folders are removed"


def _malicious_output_is_capped_and_its_attempts_failed(graded):
    autograded = graded["build"] / "nbgrader" / "autograded" / "malicious"
    path = autograded / adversarial_class.NAME / f"{adversarial_class.NAME}.ipynb"
    assert path.stat().st_size < 2_000_000
    text = "".join(
        str(o.get("text", ""))
        for c in nbformat.read(path, as_version=4).cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "output cut" in text
    # "WROTE" may appear: a path under /tmp is the sandbox's own tmpfs there. The
    # host's files are what counts: unchanged (protected) or absent (outside).
    assert "READ THE SOLUTIONS" not in text
    assert "ALLOCATED" not in text and "REACHED" not in text
    assert "cannot read the solutions" in text and "memory capped" in text
    assert "no network" in text
    assert "EDITED" in text  # it edited the throw-away copy, never the submission


def _feedback_html_for_every_graded_student(graded):
    for student in graded["rows"]:
        folder = graded["build"] / "feedback" / student / adversarial_class.NAME
        html = (folder / f"{adversarial_class.NAME}.html").read_text()
        assert "ch01-ex1" in html or "Exercise" in html


def test_the_adversarial_class(tmp_path_factory):
    """One grading run (with two jobs), then every property of its results.

    A single test, so that pytest-xdist never grades the class twice.
    """
    graded = _grade_the_class(tmp_path_factory)
    _every_student_gets_what_their_answers_deserve(graded)
    _ungradable_files_are_listed_and_the_exit_status_says_so(graded)
    _report_agrees_with_the_csv_and_names_misconceptions(graded)
    _submissions_are_unchanged_and_nothing_escaped(graded)
    _malicious_output_is_capped_and_its_attempts_failed(graded)
    _feedback_html_for_every_graded_student(graded)


def test_grading_refuses_without_bubblewrap(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(grader, "bwrap", lambda: None)
    monkeypatch.delenv("UNSAFE_NO_SANDBOX", raising=False)
    assert main(["grade", str(tmp_path)]) == 2
    assert "apt-get install bubblewrap" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="UNSAFE_NO_SANDBOX"):
        grader.grade(tmp_path)


def test_sandbox_command_and_option_checks(tmp_path):
    prefix = sandbox.bwrap_prefix([tmp_path], tmp_path, memory_bytes=2**30, threads=1)
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in prefix
    assert prefix[-3:] == [prefix[-3], f"--as={2**30}", "--"]
    assert ["--bind", str(tmp_path), str(tmp_path)] == prefix[
        prefix.index("--bind") : prefix.index("--bind") + 3
    ]
    assert str(ROOT / "solutions") not in prefix and str(Path.home()) not in prefix
    with pytest.raises(ValueError, match="memory_bytes"):
        sandbox.bwrap_prefix([tmp_path], tmp_path, memory_bytes=0)
    with pytest.raises(ValueError, match="timeout"):
        grader.grade(tmp_path, timeout=0)
    with pytest.raises(ValueError, match="SUBMISSIONS must be a folder"):
        grader.discover(tmp_path / "missing", {})


def test_missing_grading_extra_is_named(monkeypatch):
    import importlib.util

    import gradbook.grading

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "nbgrader" else real(name)
    )
    with pytest.raises(ImportError, match=r"nbgrader: install the grading extra"):
        gradbook.grading.require_grading_extra()


def test_the_notebook_deadline_shortens_the_cell_timeout():
    """Each cell may take TIMEOUT seconds, but never past the notebook's WALL deadline."""
    executor = grader._execute_class()(timeout=40)
    cell = nbformat.v4.new_code_cell("1")
    assert executor._get_timeout(cell) == 40
    executor.deadline = time.monotonic() + 5.5
    assert 4 <= executor._get_timeout(cell) <= 5
    executor.deadline = time.monotonic() - 100  # past it: the next cell gets one second
    assert executor._get_timeout(cell) == 1


def test_output_past_the_limit_is_dropped_with_one_note():
    executor = grader._execute_class()(output_limit=1000)
    executor._sizes = {}
    outs = []

    def stream(text):
        return {
            "msg_type": "stream",
            "header": {"msg_type": "stream"},
            "parent_header": {"msg_id": "m"},
            "content": {"name": "stdout", "text": text},
        }

    executor.output_hook_stack = {"m": []}
    executor.clear_before_next_output = False
    for _ in range(5):
        executor.output(outs, stream("x" * 400), None, 0)
    texts = [o.text for o in outs]
    assert texts == ["x" * 400, "x" * 400, "x" * 200, grader.OUTPUT_CUT.format(limit=1000)]
    # one message larger than the limit keeps its head too
    outs, executor._sizes = [], {}
    executor.output(outs, stream("head\n" + "y" * 5000), None, 1)
    assert [o.text for o in outs] == [
        "head\n" + "y" * 995,
        grader.OUTPUT_CUT.format(limit=1000),
    ]
