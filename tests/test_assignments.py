"""Exercise tooling: nbgrader metadata, the release, notebooks/ in sync, student notebooks."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from gradbook.assignments import (
    CHECK_TAG,
    STUB_MESSAGE,
    execute_notebook,
    generate,
    main,
    out_of_sync,
    readable_target,
    strip_code,
    strip_solutions,
)

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
STUDENT_NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_strip_code_keeps_indentation_and_surroundings():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\nprint(f)"
    stripped = strip_code(source, "Ex 1")
    assert stripped == (
        'def f(x):\n    raise NotImplementedError("Ex 1: write your solution here")\n\nprint(f)'
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
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert [e.ename for e in errors] == ["ExerciseNotAttempted"], (cell.source, errors)
        assert "not attempted yet" in errors[0].evalue


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


def _metadata(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def test_metadata_of_the_solutions_is_fresh():
    from gradbook.grading.metadata import stale

    assert [p.name for p in SOLUTIONS if stale(p)] == [], "run `make assignments`"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_metadata_marks_answers_checks_and_locked_cells(solution):
    """Counted from the cells themselves: answers, checks, the rest of the code."""
    notebook = nbformat.read(solution, as_version=4)
    chapter = "ch" + solution.stem.split("-")[0]
    code = [c for c in notebook.cells if c.cell_type == "code"]
    checks = [c for c in code if CHECK_TAG in c.metadata.get("tags", [])]
    answers = [c for c in code if "### BEGIN SOLUTION" in c.source]
    assert [_metadata(c)["grade_id"] for c in checks] == [
        f"{chapter}-ex{k}" for k in range(1, len(checks) + 1)
    ]
    for cell in checks:
        meta = _metadata(cell)
        assert meta["grade"] and meta["locked"] and not meta["solution"] and meta["points"] > 0
    for cell in answers:
        meta = _metadata(cell)
        assert meta["solution"] and not meta["grade"] and not meta["locked"]
        assert re.fullmatch(rf"{chapter}-ex\d+-answer\d*", meta["grade_id"])
    for cell in code:
        if cell not in checks and cell not in answers:
            assert _metadata(cell)["locked"] and not _metadata(cell)["grade"]
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            assert "nbgrader" not in cell.metadata
    ids = [_metadata(c)["grade_id"] for c in code] + [c.id for c in notebook.cells]
    assert len(ids) == len(set(ids)), "grade ids and cell ids are unique"


def test_metadata_command_is_idempotent_and_keeps_points(tmp_path):
    from gradbook.grading.metadata import stale, write_metadata

    source = nbformat.read(SOLUTIONS[0], as_version=4)
    for cell in source.cells:  # as a notebook from before the metadata existed
        cell.metadata.pop("nbgrader", None)
    checks = [c for c in source.cells if CHECK_TAG in c.metadata.get("tags", [])]
    source.cells[0].pop("id")
    path = tmp_path / SOLUTIONS[0].name
    nbformat.write(source, path)
    assert stale(path) and main(["metadata", "--check", str(tmp_path)]) == 1
    assert write_metadata(tmp_path) == [path]
    assert not stale(path) and write_metadata(tmp_path) == []
    first = path.read_text()
    notebook = nbformat.read(path, as_version=4)
    assert notebook.cells[0].id, "a missing cell id is given one"
    # a stretch exercise weighs more: the stored points stay
    stretch = next(c for c in notebook.cells if _metadata(c).get("grade_id", "").endswith("-ex2"))
    stretch.metadata.nbgrader["points"] = 3
    stretch.metadata.nbgrader["grade_id"] = "renamed"  # stale: refreshed from the position
    nbformat.write(notebook, path)
    assert write_metadata(tmp_path) == [path]
    again = nbformat.read(path, as_version=4)
    points = [_metadata(c)["points"] for c in again.cells if _metadata(c).get("grade")]
    assert points == [1.0, 3.0] + [1.0] * (len(checks) - 2)
    assert path.read_text() != first and write_metadata(tmp_path) == []
    assert main(["metadata", "--check", str(tmp_path)]) == 0


def test_chapter_ids_and_stub_names():
    from gradbook.grading.course import exercise_name, stub
    from gradbook.grading.metadata import chapter_id

    assert chapter_id("01-orthogonal-gradients") == "ch01"
    assert chapter_id("A-related-questions") == "chA"
    with pytest.raises(ValueError, match="chapter number"):
        chapter_id("orthogonal-gradients")
    assert exercise_name("ch07-ex3-answer2") == "Exercise 7.3"
    assert stub("chA-ex1-answer") == (f'raise NotImplementedError("Exercise A.1: {STUB_MESSAGE}")')


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=[p.stem for p in STUDENT_NOTEBOOKS])
def test_release_is_nbgraders_with_stubs_that_name_the_exercise(path):
    """Checksums from nbgrader, no solution left, one stub per answer, no hidden tests."""
    from nbgrader.utils import compute_checksum

    notebook = nbformat.read(path, as_version=4)
    source = nbformat.read(ROOT / "solutions" / path.name, as_version=4)
    answers = [c for c in notebook.cells if _metadata(c).get("solution")]
    assert len(answers) == sum("### BEGIN SOLUTION" in c.source for c in source.cells)
    for cell in notebook.cells:
        meta = _metadata(cell)
        if meta:
            assert meta["checksum"] == compute_checksum(cell), meta["grade_id"]
        assert "BEGIN SOLUTION" not in cell.source and "HIDDEN TESTS" not in cell.source
        assert "solution" not in cell.metadata.get("tags", [])
    for cell in answers:
        number = re.fullmatch(r"ch0*(\w+)-ex(\d+)-answer\d*", _metadata(cell)["grade_id"])
        assert f'NotImplementedError("Exercise {number[1]}.{number[2]}: {STUB_MESSAGE}")' in (
            cell.source
        )


def test_student_headings_are_numbered_as_in_the_book():
    from nbformat.v4 import new_markdown_cell, new_notebook

    from gradbook.assignments import chapter_key

    cells = [
        new_markdown_cell(":::{exercise} First\n:label: ex-a\n\nDo it.\n:::"),
        new_markdown_cell("Between."),
        new_markdown_cell(":::{exercise} Second\n:::"),
    ]
    for name, first, second in [
        ("04-convolution-pseudo-inverse", "Exercise 4.1: First", "Exercise 4.2: Second"),
        ("A-related-questions", "Exercise A.1: First", "Exercise A.2: Second"),
        ("scratch", "Exercise: First", "Exercise: Second"),
    ]:
        student = strip_solutions(new_notebook(cells=cells), name)
        headings = [cell.source.splitlines()[0] for cell in student.cells]
        assert headings == [f"**{first}**", "Between.", f"**{second}**"]
    assert [chapter_key(n) for n in ("01-a", "10-b.ipynb", "03a-c", "A-d", "x-y")] == [
        "1",
        "10",
        "3a",
        "A",
        None,
    ]
