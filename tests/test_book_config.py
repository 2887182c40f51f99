"""The book's configuration: table of contents, chapter files, repository URL, kernels."""

from __future__ import annotations

import itertools
from pathlib import Path

import nbformat
import pytest
import yaml
from nbbuild import clone_commands, colab_install_source, repository_url

ROOT = Path(__file__).resolve().parent.parent

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = sorted(
    p for d in ("book", "solutions", "notebooks") for p in (ROOT / d).glob("*.ipynb")
)


def toc_files(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        if "file" in node:
            found.append(node["file"])
        for value in node.values():
            found += toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += toc_files(item)
    return found


def test_toc_files_exist():
    files = [TOC["root"], *toc_files(TOC["parts"])]
    for name in files:
        candidates = [ROOT / f"{name}{ext}" for ext in (".md", ".ipynb")]
        assert any(c.exists() for c in candidates), f"_toc.yml names {name}, which does not exist"


def test_every_lesson_and_solution_is_in_the_toc():
    listed = set(toc_files(TOC["parts"]))
    for path in sorted((ROOT / "book").glob("*.ipynb")) + sorted(
        (ROOT / "solutions").glob("*.ipynb")
    ):
        name = str(path.relative_to(ROOT).with_suffix(""))
        assert name in listed, f"{name} is not in _toc.yml"


def test_every_solution_has_a_lesson_and_a_student_notebook():
    lessons = {p.name for p in (ROOT / "book").glob("*.ipynb")}
    for path in (ROOT / "solutions").glob("*.ipynb"):
        assert path.name in lessons, f"solutions/{path.name} has no lesson book/{path.name}"
        assert (ROOT / "notebooks" / path.name).exists()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_colab_cell_uses_the_configured_repository(path):
    notebook = nbformat.read(path, as_version=4)
    kernel = notebook.metadata["kernelspec"]["name"]
    if kernel != "python3":
        assert not any("gradbook" in c.source for c in notebook.cells if c.cell_type == "code")
        return
    first = notebook.cells[0]
    assert first.source == colab_install_source(repository_url()), (
        f"{path.name}: the first cell must be the Colab install cell for {repository_url()} "
        "(run tools/set_repository.py after changing _config.yml)"
    )
    assert "remove-cell" in first.metadata.get("tags", [])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_notebooks_are_executed_in_order(path):
    """nbval needs stored outputs with execution counts; notebooks/ carries none."""
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    if path.parent.name == "notebooks":
        assert all(c.outputs == [] and c.execution_count is None for c in code)
        return
    counts = [c.execution_count for c in code]
    assert None not in counts, f"{path.name} has unexecuted cells: run `make execute`"
    assert counts == sorted(counts), f"{path.name} was executed out of order"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} stores an error output"


def test_introduction_clones_the_configured_repository():
    introduction = (ROOT / "book" / "introduction.md").read_text()
    assert clone_commands(repository_url()) in introduction, (
        "book/introduction.md must show the clone command for the repository in _config.yml "
        "(run tools/set_repository.py after changing _config.yml)"
    )
    assert "<the repository>" not in introduction
    assert clone_commands("https://github.com/someone/fork.git/") == (
        "git clone https://github.com/someone/fork.git\ncd fork"
    )


def test_config_essentials():
    assert CONFIG["execute"]["execute_notebooks"] == "off"
    assert CONFIG["bibtex_bibfiles"] == ["book/references.bib"]
    assert "sphinx_exercise" in CONFIG["sphinx"]["extra_extensions"]
    assert CONFIG["sphinx"]["config"]["nb_execution_raise_on_error"] is True
    assert TOC["format"] == "jb-book"
    assert CONFIG["launch_buttons"]["colab_url"] and CONFIG["launch_buttons"]["binderhub_url"]


def test_environment_yml_has_the_lock_files_pins():
    from write_environment import lock_pins, render

    assert (ROOT / "environment.yml").read_text() == render(), "run tools/write_environment.py"
    pins = dict(pin.split("==") for pin in lock_pins())
    assert pins["torch"] == "2.13.0"
    assert pins["jupyter-book"].startswith("1.")
    for name in (
        "nbval",
        "sphinx-exercise",
        "sphinxcontrib-bibtex",
        "pytest",
        "hypothesis",
        "ruff",
    ):
        assert name in pins, f"{name} is missing from the lock file"


def test_set_repository_rewrites_config_and_install_cells(tmp_path, monkeypatch):
    import shutil

    import nbbuild
    import set_repository

    (tmp_path / "book").mkdir()
    (tmp_path / "requirements").mkdir()
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(
        ROOT / "requirements" / "colab-revision.txt",
        tmp_path / "requirements" / "colab-revision.txt",
    )
    shutil.copy(ROOT / "book" / "introduction.md", tmp_path / "book" / "introduction.md")
    lesson = sorted((ROOT / "book").glob("01-*.ipynb"))[0]
    shutil.copy(lesson, tmp_path / "book" / lesson.name)
    monkeypatch.setattr(nbbuild, "ROOT", tmp_path)
    monkeypatch.setattr(set_repository, "ROOT", tmp_path)

    assert set_repository.main(["not a url"]) == 2
    assert set_repository.main(["https://github.com/someone/fork"]) == 0
    assert nbbuild.repository_url() == "https://github.com/someone/fork"
    first = nbformat.read(tmp_path / "book" / lesson.name, as_version=4).cells[0]
    assert first.source == colab_install_source("https://github.com/someone/fork")
    introduction = (tmp_path / "book" / "introduction.md").read_text()
    assert "git clone https://github.com/someone/fork\ncd fork\n" in introduction
    # the real project is untouched
    assert "someone/fork" not in (ROOT / "_config.yml").read_text()
    assert "someone/fork" not in (ROOT / "book" / "introduction.md").read_text()


def test_merge_streams_joins_consecutive_writes_to_one_stream():
    from execute_notebooks import merge_streams

    out = nbformat.v4.new_output
    cell = nbformat.v4.new_code_cell("print('a', 'b')")
    cell.outputs = [
        out("stream", name="stdout", text="a"),
        out("stream", name="stdout", text=" b\n"),
        out("stream", name="stderr", text="warning\n"),
        out("stream", name="stdout", text="c\n"),
        out("stream", name="stdout", text="d\n"),
    ]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    assert merge_streams(notebook) == 2
    assert [(o.name, o.text) for o in cell.outputs] == [
        ("stdout", "a b\n"),
        ("stderr", "warning\n"),
        ("stdout", "c\nd\n"),
    ]


@pytest.mark.parametrize(
    "path",
    sorted(ROOT.glob("book/*.ipynb")) + sorted(ROOT.glob("solutions/*.ipynb")),
    ids=lambda p: f"{p.parent.name}/{p.stem}",
)
def test_each_print_is_stored_as_one_output(path):
    """The book shows each stored output as a box: one stream, one box."""
    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        outputs = cell.get("outputs", [])
        for a, b in itertools.pairwise(outputs):
            assert not (a.output_type == b.output_type == "stream" and a.name == b.name), (
                f"{path.name} cell {index}: one {a.name} stream stored in two "
                f"outputs; run tools/execute_notebooks.py --merge-streams-only {path}"
            )
