"""Exercise tooling: stub generation, notebooks/ in sync with solutions/, student notebooks."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from gradbook.assignments import (
    CHECK_TAG,
    STUB_MESSAGE,
    _status,
    out_of_sync,
    strip_code,
    strip_solutions,
    write_report,
)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


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


def test_notebooks_are_in_sync_with_solutions():
    problems = out_of_sync(ROOT / "solutions", ROOT / "notebooks")
    assert not problems, "\n".join(problems) + "\nrun `make assignments`"


def test_sync_check_notices_drift(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    assert any("missing" in p for p in out_of_sync(ROOT / "solutions", notebooks))
    (notebooks / "99-stray.ipynb").write_text("{}")
    assert any("no source" in p for p in out_of_sync(ROOT / "solutions", notebooks))


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
    from gradbook.assignments import CheckResult

    results = [
        CheckResult("a.ipynb", 3, "check_x(x)", "passed", "PASSED x"),
        CheckResult("a.ipynb", 5, "check_y(y)", "not attempted", "ExerciseNotAttempted: ..."),
    ]
    write_report(results, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "| a.ipynb | 1 | 2 |" in text and "not attempted" in text


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_student_notebook_runs_and_checks_fail_on_stubs(solution, tmp_path):
    """Everything before the first exercise runs; every check says 'not attempted'."""
    from gradbook.assignments import _status, execute_allowing_errors

    kernel = nbformat.read(solution, as_version=4).metadata["kernelspec"]["name"]
    if kernel != "python3":
        pytest.skip(f"{solution.name} runs under the {kernel} kernel")
    student = ROOT / "notebooks" / solution.name
    executed = execute_allowing_errors(student)
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
    from gradbook.assignments import main

    first = SOLUTIONS[0]
    (tmp_path / "solved.ipynb").write_bytes(first.read_bytes())
    (tmp_path / "blank.ipynb").write_bytes((ROOT / "notebooks" / first.name).read_bytes())
    report = tmp_path / "report.md"
    assert main(["grade", str(tmp_path), "--report", str(report)]) == 0
    text = report.read_text()
    solved_rows = [line for line in text.splitlines() if line.startswith("| solved.ipynb |")]
    blank_rows = [line for line in text.splitlines() if line.startswith("| blank.ipynb |")]
    assert "passed" in " ".join(solved_rows) and "not attempted" not in " ".join(solved_rows)
    assert all("passed" not in row for row in blank_rows[1:])


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
