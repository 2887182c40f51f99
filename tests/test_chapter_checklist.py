"""The chapter checklist of CONTRIBUTING.md, enforced.

The chapters are the notebooks ``solutions/NN-slug.ipynb`` (and the appendix,
``solutions/A-slug.ipynb``, when it has exercises). For each one: the lesson
``book/<stem>.ipynb`` opens with its label, the checks ``gradbook.exercises.chNN``
and their tests ``tests/test_exercises_chNN.py`` exist, ``_toc.yml`` lists the
lesson with its exercises as a section, ``book/index.md`` has a card and
``book/introduction.md`` a row that link the label, and ``gradbook``'s module
list names the chapter. Chapter 3a (``book/03a-theano-scan.ipynb``) is a
companion page without exercises, so it is not a chapter here.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import gradbook

ROOT = Path(__file__).resolve().parent.parent
CHAPTER_FILE = re.compile(r"^(?P<key>[0-9]{2}|A)-(?P<slug>[a-z0-9-]+)\.ipynb$")


@dataclass(frozen=True)
class Chapter:
    key: str  # "01" ... or "A"
    stem: str  # "01-orthogonal-gradients"

    @property
    def appendix(self) -> bool:
        return self.key == "A"

    @property
    def label(self) -> str:
        """``ch01`` for a chapter; the appendix is labelled ``appendix-<first word of slug>``."""
        if self.appendix:
            return "appendix-" + self.stem.split("-")[1]
        return f"ch{self.key}"

    @property
    def number(self) -> str:
        """How the prose names it: ``1`` ... or ``appendix``."""
        return "appendix" if self.appendix else str(int(self.key))

    def __str__(self) -> str:
        return self.stem


def chapters(root: Path = ROOT) -> list[Chapter]:
    """The chapters, from the names of the notebooks in ``solutions/``."""
    found = []
    for path in sorted((root / "solutions").glob("*.ipynb")):
        match = CHAPTER_FILE.match(path.name)
        if match:
            found.append(Chapter(match["key"], path.stem))
    return found


CHAPTERS = chapters()


def first_cell(path: Path) -> str:
    notebook = json.loads(path.read_text())
    return "".join(notebook["cells"][1]["source"])  # cell 0 is the hidden install cell


def test_chapters_are_found():
    assert [c.key for c in CHAPTERS if not c.appendix][:1] == ["01"]
    keys = [c.key for c in CHAPTERS if not c.appendix]
    assert keys == [f"{n:02d}" for n in range(1, len(keys) + 1)], (
        "chapters are numbered 01, 02, ..."
    )


def test_every_solutions_notebook_is_a_chapter():
    names = sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))
    assert names == sorted(f"{c.stem}.ipynb" for c in CHAPTERS), (
        "solutions/ holds only NN-slug.ipynb (or A-slug.ipynb) notebooks"
    )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=str)
def test_lesson_with_its_label(chapter):
    lesson = ROOT / "book" / f"{chapter.stem}.ipynb"
    assert lesson.is_file(), f"{chapter}: no lesson book/{chapter.stem}.ipynb"
    assert first_cell(lesson).startswith(f"({chapter.label})=\n"), (
        f"{chapter}: the lesson's first cell must start with the label ({chapter.label})="
    )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=str)
def test_exercise_checks_and_their_tests(chapter):
    module = importlib.import_module(f"gradbook.exercises.ch{chapter.key}")
    checks = [
        name
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("check_") and function.__module__ == module.__name__
    ]
    assert checks, f"{chapter}: gradbook.exercises.ch{chapter.key} defines no check_ function"
    tests = ROOT / "tests" / f"test_exercises_ch{chapter.key}.py"
    assert tests.is_file(), f"{chapter}: no {tests.relative_to(ROOT)}"
    solutions = (ROOT / "solutions" / f"{chapter.stem}.ipynb").read_text()
    assert f"gradbook.exercises.ch{chapter.key}" in solutions, (
        f"{chapter}: the solutions notebook does not import its checks"
    )


def toc_entries(root: Path = ROOT) -> list[tuple[str, list[str]]]:
    """``(file, [section files])`` for every ``- file:`` line of ``_toc.yml``, in order."""
    entries: list[tuple[str, list[str]]] = []
    entry_indent = 0
    for line in (root / "_toc.yml").read_text().splitlines():
        match = re.match(r"^(?P<indent> *)- file: (?P<file>\S+)\s*$", line)
        if not match:
            continue
        if entries and len(match["indent"]) > entry_indent:
            entries[-1][1].append(match["file"])
        else:
            entry_indent = len(match["indent"])
            entries.append((match["file"], []))
    return entries


@pytest.mark.parametrize("chapter", CHAPTERS, ids=str)
def test_toc_lists_the_lesson_with_its_exercises(chapter):
    entries = dict(toc_entries())
    lesson = f"book/{chapter.stem}"
    assert lesson in entries, f"{chapter}: _toc.yml does not list {lesson}"
    assert entries[lesson] == [f"solutions/{chapter.stem}"], (
        f"{chapter}: _toc.yml lists {lesson} without solutions/{chapter.stem} as its section"
    )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=str)
def test_index_card(chapter):
    index = (ROOT / "book" / "index.md").read_text()
    cards = re.findall(r":::\{grid-item-card\} (.+)\n:link: (\S+)\n:link-type: ref\n", index)
    titles = [title for title, target in cards if target == chapter.label]
    assert titles, f"{chapter}: book/index.md has no card linking {chapter.label}"
    if not chapter.appendix:
        assert titles[0].startswith(f"{chapter.number}. "), (
            f"{chapter}: the card's title starts with its number, got {titles[0]!r}"
        )


@pytest.mark.parametrize("chapter", [c for c in CHAPTERS if not c.appendix], ids=str)
def test_introduction_row(chapter):
    introduction = (ROOT / "book" / "introduction.md").read_text()
    row = re.compile(rf"^\| {chapter.number} \| \{{ref\}}`[^`<]+<{chapter.label}>` \| .+ \|$", re.M)
    assert row.search(introduction), (
        f"{chapter}: book/introduction.md has no table row "
        f"'| {chapter.number} | {{ref}}`Title <{chapter.label}>` | the question |'"
    )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=str)
def test_module_listing(chapter):
    listing = gradbook.__doc__
    where = "(appendix)" if chapter.appendix else f"(chapter {chapter.number})"
    lines = [line for line in listing.splitlines() if where in line]
    assert lines, f"{chapter}: gradbook/__init__.py's module list names no module {where}"
    for line in lines:
        name = re.search(r":mod:`(gradbook\.[a-z0-9_.]+)`", line)
        assert name, f"{chapter}: {line!r} does not name a module as :mod:`gradbook.x`"
        importlib.import_module(name[1])


def test_every_listed_module_exists_and_every_module_is_listed():
    listed = set(re.findall(r":mod:`(gradbook\.[a-z0-9_]+)`", gradbook.__doc__))
    package = Path(gradbook.__file__).parent
    modules = {
        f"gradbook.{path.stem if path.is_file() else path.name}"
        for path in package.iterdir()
        if not path.name.startswith("_")
        and (path.suffix == ".py" or (path / "__init__.py").is_file())
    }
    assert listed == modules, (
        f"gradbook/__init__.py lists {sorted(listed - modules)} that do not exist and "
        f"leaves out {sorted(modules - listed)}"
    )


def test_the_checklist_finds_a_new_chapter(tmp_path):
    (tmp_path / "solutions").mkdir()
    for name in ("01-a.ipynb", "02-b-c.ipynb", "A-related-questions.ipynb", "notes.ipynb"):
        (tmp_path / "solutions" / name).write_text("{}")
    found = chapters(tmp_path)
    assert [(c.key, c.label, c.number) for c in found] == [
        ("01", "ch01", "1"),
        ("02", "ch02", "2"),
        ("A", "appendix-related", "appendix"),
    ]
