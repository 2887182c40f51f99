"""Exercise tooling: stub generation, notebooks/ in sync with solutions/, student notebooks."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from gradbook.assignments import (
    CHECK_TAG,
    STUB_MESSAGE,
    CheckResult,
    _status,
    execute_notebook,
    generate,
    main,
    out_of_sync,
    readable_target,
    strip_code,
    strip_solutions,
    write_report,
)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
STUDENT_NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _check_cells(path: Path) -> int:
    notebook = nbformat.read(path, as_version=4)
    return sum(CHECK_TAG in cell.metadata.get("tags", []) for cell in notebook.cells)


def _summary_row(report: Path, notebook: str) -> str:
    """The report's summary row for ``notebook`` (the first row that names it)."""
    return next(
        line for line in report.read_text().splitlines() if line.startswith(f"| {notebook} |")
    )


def _detail_rows(report: Path, notebook: str) -> list[str]:
    rows = [line for line in report.read_text().splitlines() if line.startswith(f"| {notebook} |")]
    return rows[1:]


def _tiny_notebook(*cells, kernel: str = "python3"):
    """A notebook of code cells; ``("check", source)`` makes a check cell."""
    notebook = new_notebook(
        metadata={"kernelspec": {"name": kernel, "display_name": kernel, "language": "python"}}
    )
    for cell in cells:
        tagged = isinstance(cell, tuple)
        source = cell[1] if tagged else cell
        notebook.cells.append(
            new_code_cell(source, metadata={"tags": [CHECK_TAG]} if tagged else {})
        )
    return notebook


def test_strip_code_keeps_indentation_and_surroundings():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\nprint(f)"
    stripped = strip_code(source, "Ex 1")
    assert stripped == (
        "def f(x):\n"
        '    raise NotImplementedError("Ex 1: replace this line with your solution")\n'
        "\nprint(f)"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n### END SOLUTION", "never opened"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ],
)
def test_strip_code_rejects_malformed_regions(source, message):
    with pytest.raises(ValueError, match=message):
        strip_code(source)


def test_strip_solutions_on_a_small_notebook():
    notebook = new_notebook(
        cells=[
            new_markdown_cell(":::{exercise} Double it\n:label: ex-0-double\n\nWrite f.\n:::"),
            new_markdown_cell(":::{solution-start} ex-0-double\n:class: dropdown\n:::"),
            new_code_cell(
                "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"
            ),
            new_markdown_cell(":::{solution-end}\n:::"),
            new_markdown_cell("Because doubling is linear.", metadata={"tags": ["solution"]}),
            new_code_cell("check(f)", metadata={"tags": [CHECK_TAG]}),
        ]
    )
    notebook.cells[2].outputs = [nbformat.v4.new_output("stream", text="hi")]
    notebook.cells[2].execution_count = 3
    student = strip_solutions(notebook)
    sources = [cell.source for cell in student.cells]
    assert sources[0] == "**Exercise: Double it**\n\nWrite f."
    assert "return 2 * x" not in sources[1] and "NotImplementedError" in sources[1]
    assert sources[2] == "check(f)"
    assert len(student.cells) == 3
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    # the solutions notebook itself is untouched
    assert "return 2 * x" in notebook.cells[2].source


def test_student_markdown_drops_myst_targets_and_cross_references():
    source = (
        "(ex03)=\n"
        "# Exercises 3\n"
        "\n"
        "These go with {ref}`ch03` and {ref}`ch03a`; see {ref}`the appendix\n"
        "<appendix-related>`, {doc}`the introduction <../book/introduction>` and\n"
        "{doc}`../book/04-convolution-pseudo-inverse`.\n"
        "\n"
        "```text\n"
        "(kept)=\n"
        "{ref}`kept in a code block`\n"
        "```\n"
        "  (ex03-end)=  "
    )
    student = strip_solutions(new_notebook(cells=[new_markdown_cell(source)]))
    assert student.cells[0].source == (
        "# Exercises 3\n"
        "\n"
        "These go with chapter 3 and chapter 3a; see the appendix, the introduction and\n"
        "chapter 4.\n"
        "\n"
        "```text\n"
        "(kept)=\n"
        "{ref}`kept in a code block`\n"
        "```"
    )
    assert readable_target("ch01") == "chapter 1"
    assert readable_target("ch10") == "chapter 10"
    assert readable_target("some-label") == "some label"


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=[p.stem for p in STUDENT_NOTEBOOKS])
def test_student_notebooks_show_no_book_only_markup(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            assert not re.match(r"^\s*\([^()\s]+\)=\s*$", line), f"{path.name}: {line!r}"
            assert not re.search(r"\{(ref|doc)\}`", line), f"{path.name}: {line!r}"


def test_notebooks_are_in_sync_with_solutions():
    problems = out_of_sync(ROOT / "solutions", ROOT / "notebooks")
    assert not problems, "\n".join(problems) + "\nrun `make assignments`"


def test_sync_check_notices_drift(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    assert any("missing" in p for p in out_of_sync(ROOT / "solutions", notebooks))
    (notebooks / "99-stray.ipynb").write_text("{}")
    assert any("no source" in p for p in out_of_sync(ROOT / "solutions", notebooks))


def test_generate_round_trip_removes_only_orphans(tmp_path):
    """Generating into an empty folder gives notebooks that ``check`` finds in sync."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "99-renamed.ipynb").write_text("{}")
    (notebooks / "notes.md").write_text("not a notebook")
    (notebooks / "nested").mkdir()
    (notebooks / "nested" / "01-orthogonal-gradients.ipynb").write_text("{}")
    assert any("no source" in p for p in out_of_sync(ROOT / "solutions", notebooks))

    done = generate(ROOT / "solutions", notebooks)
    assert done.removed == [notebooks / "99-renamed.ipynb"]
    assert [p.name for p in done.written] == [p.name for p in SOLUTIONS]
    assert sorted(p.name for p in notebooks.glob("*.ipynb")) == [p.name for p in SOLUTIONS]
    # nothing but orphan notebooks is deleted
    assert (notebooks / "notes.md").read_text() == "not a notebook"
    assert (notebooks / "nested" / "01-orthogonal-gradients.ipynb").read_text() == "{}"
    assert out_of_sync(ROOT / "solutions", notebooks) == []
    assert main(["check", str(ROOT / "solutions"), str(notebooks)]) == 0
    # and a second run changes nothing
    assert generate(ROOT / "solutions", notebooks).removed == []
    assert out_of_sync(ROOT / "solutions", notebooks) == []


def test_every_solution_region_is_followed_by_a_check():
    for path in SOLUTIONS:
        notebook = nbformat.read(path, as_version=4)
        pending = False
        for cell in notebook.cells:
            if cell.cell_type != "code":
                continue
            if "### BEGIN SOLUTION" in cell.source:
                pending = True
            if CHECK_TAG in cell.metadata.get("tags", []):
                pending = False
        assert not pending, f"{path.name}: a solution has no check cell after it"


def test_status_reading():
    ok = new_code_cell("check(f)")
    ok.outputs = [nbformat.v4.new_output("stream", text="PASSED Exercise 1.1: fine\n")]
    assert _status(ok) == ("passed", "PASSED Exercise 1.1: fine")
    bad = new_code_cell("check(f)")
    bad.outputs = [
        nbformat.v4.new_output("error", ename="ExerciseFailed", evalue="no", traceback=[])
    ]
    assert _status(bad)[0] == "failed"
    silent = new_code_cell("check(f)")
    assert _status(silent)[0] == "error"


def test_report_is_written(tmp_path):
    results = [
        CheckResult("a.ipynb", 3, "check_x(x)", "passed", "PASSED x"),
        CheckResult("a.ipynb", 5, "check_y(y)", "not attempted", "ExerciseNotAttempted: ..."),
        CheckResult("b.ipynb", 2, "check_x(x)", "error", "not run (the run stopped at cell 1)"),
        CheckResult("b.ipynb", None, "(notebook)", "error", "the run stopped at cell 1: a|b"),
    ]
    report = tmp_path / "nested" / "report.md"  # the folder is created
    write_report(results, report)
    text = report.read_text()
    assert "| a.ipynb | 1 | 2 |" in text and "not attempted" in text
    assert _summary_row(report, "a.ipynb") == "| a.ipynb | 1 | 2 |  |"
    # the whole-notebook row is not counted as a check, but the summary mentions it
    assert _summary_row(report, "b.ipynb") == (
        "| b.ipynb | 0 | 1 | did not run to the end: the run stopped at cell 1: a\\|b |"
    )
    assert "| b.ipynb | - | `(notebook)` | error | the run stopped at cell 1: a\\|b |" in text


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_student_notebook_runs_and_checks_fail_on_stubs(solution, tmp_path):
    """Everything before the first exercise runs; every check says 'not attempted'."""
    kernel = nbformat.read(solution, as_version=4).metadata["kernelspec"]["name"]
    if kernel != "python3":
        pytest.skip(f"{solution.name} runs under the {kernel} kernel")
    student = ROOT / "notebooks" / solution.name
    before = student.read_bytes()
    executed = execute_notebook(student, allow_errors=True, timeout=600)
    assert student.read_bytes() == before, "executing a path must not write the file"
    assert not any("execution" in cell.metadata for cell in executed.cells), "no timestamps"
    code_cells = [cell for cell in executed.cells if cell.cell_type == "code"]
    first_stub = next(i for i, c in enumerate(code_cells) if "NotImplementedError" in c.source)
    for cell in code_cells[:first_stub]:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{student.name}: a cell before the first exercise fails: {errors}"
    checks = [c for c in code_cells if CHECK_TAG in c.metadata.get("tags", [])]
    assert checks, f"{student.name} has no check cells"
    for cell in checks:
        status, message = _status(cell)
        assert status == "not attempted", (cell.source, message)
        assert "not attempted yet" in message


def test_grade_command_end_to_end(tmp_path):
    """Grading a folder: a solved notebook passes every check, a stub notebook none."""
    first = SOLUTIONS[0]
    checks = _check_cells(first)
    assert checks > 0 and _check_cells(ROOT / "notebooks" / first.name) == checks
    (tmp_path / "solved.ipynb").write_bytes(first.read_bytes())
    (tmp_path / "blank.ipynb").write_bytes((ROOT / "notebooks" / first.name).read_bytes())
    report = tmp_path / "report.md"
    assert main(["grade", str(tmp_path), "--report", str(report)]) == 0
    text = report.read_text()
    solved_rows = [line for line in text.splitlines() if line.startswith("| solved.ipynb |")]
    blank_rows = [line for line in text.splitlines() if line.startswith("| blank.ipynb |")]
    assert "passed" in " ".join(solved_rows) and "not attempted" not in " ".join(solved_rows)
    assert all("passed" not in row for row in blank_rows[1:])
    # exactly: n of n checks passed in the solved notebook, 0 of n in the blank one
    assert _summary_row(report, "solved.ipynb") == f"| solved.ipynb | {checks} | {checks} |  |"
    assert _summary_row(report, "blank.ipynb") == f"| blank.ipynb | 0 | {checks} |  |"
    assert len(solved_rows) == len(blank_rows) == checks + 1
    assert all("| passed | PASSED " in row for row in solved_rows[1:])
    assert all("| not attempted | ExerciseNotAttempted: " in row for row in blank_rows[1:])


def test_grade_runs_every_submission_under_one_kernel(tmp_path, capsys):
    """A bogus kernelspec in a submission does not matter; a missing --kernel is an error row."""
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    check = ("check", 'print("PASSED tiny check")')
    nbformat.write(_tiny_notebook(check, kernel="no-such-kernel"), submissions / "a-bogus.ipynb")
    nbformat.write(_tiny_notebook(check), submissions / "b-fine.ipynb")
    report = tmp_path / "report.md"

    assert main(["grade", str(submissions), "--report", str(report)]) == 0
    assert _summary_row(report, "a-bogus.ipynb") == "| a-bogus.ipynb | 1 | 1 |  |"
    assert _summary_row(report, "b-fine.ipynb") == "| b-fine.ipynb | 1 | 1 |  |"

    report.unlink()
    args = ["grade", str(submissions), "--report", str(report), "--kernel", "no-such-kernel"]
    assert main(args) == 0, "a notebook that cannot run is reported, not fatal"
    for name in ("a-bogus.ipynb", "b-fine.ipynb"):
        row = _summary_row(report, name)
        assert (
            row.startswith(f"| {name} | 0 | 1 | did not run to the end: ") and "NoSuchKernel" in row
        )
        assert [r.split(" | ")[3] for r in _detail_rows(report, name)] == ["error", "error"]
    assert "2 notebook(s) did not run to the end" in capsys.readouterr().out


def test_grade_goes_on_after_a_cell_times_out(tmp_path):
    """A cell past --timeout stops that notebook only; stored outputs never count."""
    slow = _tiny_notebook(
        ("check", 'print("PASSED first")'),
        "import time\ntime.sleep(120)",
        ("check", 'print("PASSED second")'),
    )
    # a stored output from the student's own run must not count as a pass
    slow.cells[2].outputs = [nbformat.v4.new_output("stream", text="PASSED second\n")]
    nbformat.write(slow, tmp_path / "a-slow.ipynb")
    nbformat.write(_tiny_notebook(("check", 'print("PASSED fine")')), tmp_path / "b-fine.ipynb")
    report = tmp_path / "report.md"
    assert main(["grade", str(tmp_path), "--report", str(report), "--timeout", "3"]) == 0
    row = _summary_row(report, "a-slow.ipynb")
    assert row.startswith(
        "| a-slow.ipynb | 1 | 2 | did not run to the end: the run stopped at cell 1: "
    )
    assert "CellTimeoutError" in row
    details = _detail_rows(report, "a-slow.ipynb")
    assert details[0].startswith('| a-slow.ipynb | 0 | `print("PASSED first")` | passed |')
    assert details[1].startswith('| a-slow.ipynb | 2 | `print("PASSED second")` | error | not run')
    assert details[2].startswith("| a-slow.ipynb | - | `(notebook)` | error | the run stopped")
    assert _summary_row(report, "b-fine.ipynb") == "| b-fine.ipynb | 1 | 1 |  |"


def test_attempt_tells_stubs_from_library_errors():
    from gradbook.exercises import ExerciseFailed, ExerciseNotAttempted, attempt

    def stub():
        raise NotImplementedError(f"Exercise 9: {STUB_MESSAGE}")

    def bare():
        raise NotImplementedError

    def library():
        raise NotImplementedError("forward-mode AD is not implemented for this Function")

    for answer in (stub, bare):
        with pytest.raises(ExerciseNotAttempted, match="not attempted yet"):
            attempt("Exercise 9", answer)
    with pytest.raises(ExerciseFailed, match="forward-mode AD") as caught:
        attempt("Exercise 9", library)
    assert not isinstance(caught.value, ExerciseNotAttempted)
