"""The logic of the rendered-book checks and the book's small Sphinx extensions.

The browser run itself is ``make check-book`` (it needs the built book and
Chromium); these tests cover what decides pass or fail, without either.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import bib_style
import chapter_numbers
import check_book
import launch_links
import nbformat
import pytest
import solution_markers
import student_edition
from check_book import Finding

ROOT = Path(__file__).resolve().parent.parent

# --- check_book ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("page", "chapter"),
    [
        ("solutions/01-orthogonal-gradients", "1"),
        ("solutions/07-black-box-gradients", "7"),
        ("solutions/10-more", "10"),
        ("solutions/A-related-questions", "A"),
        ("book/03a-theano-scan", "3a"),
        ("book/index", None),
        ("solutions/intro-01", None),
    ],
)
def test_chapter_of_reads_the_document_name(page, chapter):
    assert check_book.chapter_of(page) == chapter
    assert chapter_numbers.chapter_of(page) == chapter


def test_exercise_headings_numbered_per_chapter_pass():
    titles = ["Exercise 2.1 (The inner product)", "Exercise 2.2 (Grad outputs)", "Exercise 2.3"]
    assert check_book.exercise_heading_problems("solutions/02-vjp", titles) == []
    assert check_book.exercise_heading_problems("solutions/A-related", ["Exercise A.1 (x)"]) == []


@pytest.mark.parametrize(
    "titles",
    [
        ["Exercise 5 (global numbering)"],  # numbered across the book
        ["Exercise 1.1 (x)", "Exercise 1.3 (y)"],  # a gap
        ["Exercise 3.1 (x)"],  # another chapter's number
        ["Exercise 1.10"],  # 1.10 is not 1.1
        ["Exercise (no number)"],
    ],
)
def test_exercise_headings_with_wrong_numbers_fail(titles):
    assert check_book.exercise_heading_problems("solutions/01-orthogonal", titles)


def test_exercise_on_a_page_without_a_chapter_fails():
    assert check_book.exercise_heading_problems("book/intro", ["Exercise 1.1"])


def test_launch_links_of_an_exercise_page_must_name_the_student_notebook():
    good = [
        "https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/notebooks/01-x.ipynb",
        "https://colab.research.google.com/github/o/r/blob/main/notebooks/01-x.ipynb",
        "http://127.0.0.1:8000/_sources/notebooks/01-x.ipynb",
    ]
    assert check_book.launch_problems("solutions/01-x", good, kernel_runs_online=True) == []
    bad = [url.replace("notebooks/", "solutions/") for url in good]
    assert len(check_book.launch_problems("solutions/01-x", bad, kernel_runs_online=True)) == 3


def test_a_page_whose_kernel_is_not_online_offers_no_binder_or_colab():
    urls = [
        "https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/book/03a-theano-scan.ipynb",
        "http://127.0.0.1:8000/_sources/book/03a-theano-scan.ipynb",
    ]
    problems = check_book.launch_problems("book/03a-theano-scan", urls, kernel_runs_online=False)
    assert len(problems) == 1 and "mybinder" in problems[0]
    assert check_book.launch_problems("book/03a-theano-scan", urls[1:], False) == []


def test_resolve_link_keeps_internal_links_only():
    base = "http://127.0.0.1:9/"
    page = base + "book/01-x.html"
    assert check_book.resolve_link("../solutions/01-x.html#ex-01-dot", page, base) == (
        "solutions/01-x.html",
        "ex-01-dot",
    )
    assert check_book.resolve_link("#top", page, base) == ("book/01-x.html", "top")
    assert check_book.resolve_link("../", page, base) == ("index.html", "")
    assert check_book.resolve_link("https://pytorch.org/docs", page, base) is None


def test_link_problems_find_missing_files_and_anchors(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "a.html").write_text("")
    (tmp_path / "book" / "b.html").write_text("")
    base = "http://127.0.0.1:9/"
    links = {"book/a": ["b.html#there", "b.html#gone", "c.html", "https://x.org/#y", "#here"]}
    ids = {"book/a.html": {"here"}, "book/b.html": {"there"}}
    found = check_book.link_problems(links, ids, tmp_path, base)
    assert sorted(f.detail.split(":")[0] for f in found) == ["b.html#gone", "c.html"]
    assert {f.kind for f in found} == {"broken-link"}


def test_discover_pages_skips_assets(tmp_path):
    for name in ["index.html", "book/a.html", "_static/x.html", "_sources/y.html", "search.html"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    names = [check_book.page_name(p, tmp_path) for p in check_book.discover_pages(tmp_path)]
    assert names == ["book/a", "index", "search"]


def test_compare_allows_up_to_the_count_and_reports_what_can_shrink():
    findings = [Finding("book/a", "wide-code", str(i)) for i in range(3)]
    findings.append(Finding("book/b", "console-error", "boom"))
    allow = {"book/a": {"wide-code": 2, "wide-equation": 1}, "other/page": {"wide-code": 4}}
    report = check_book.compare(findings, allow, pages={"book/a", "book/b"})
    assert [f.detail for f in report.allowed] == ["0", "1"]
    assert [(f.page, f.detail) for f in report.failures] == [("book/a", "2"), ("book/b", "boom")]
    # wide-equation allowed but not found; a page that was not checked is not judged
    assert report.shrinkable == [("book/a", "wide-equation", 1, 0)]


def test_each_edition_is_judged_alone_and_an_entry_shrinks_only_below_both():
    full = [Finding("solutions/01-x", "wide-code", "a")]
    student = [Finding("solutions/01-x", "wide-code", str(i), "student") for i in range(3)]
    allow = {"solutions/01-x": {"wide-code": 3}}
    report = check_book.compare(full + student, allow, {"solutions/01-x"})
    assert report.failures == [] and report.shrinkable == []
    report = check_book.compare(full * 4 + student, allow, {"solutions/01-x"})
    assert [f.edition for f in report.failures] == ["full"]
    report = check_book.compare(full + student[:2], allow, {"solutions/01-x"})
    assert report.shrinkable == [("solutions/01-x", "wide-code", 3, 2)]


def test_allow_list_is_validated(tmp_path):
    path = tmp_path / "allow.yml"
    path.write_text("book/a:\n  wide-cod: 2\n")
    with pytest.raises(ValueError, match="unknown kind 'wide-cod'"):
        check_book.load_allow_list(path)
    path.write_text("book/a:\n  wide-code: 0\n")
    with pytest.raises(ValueError, match="count >= 1"):
        check_book.load_allow_list(path)
    path.write_text("")
    assert check_book.load_allow_list(path) == {}


def test_the_committed_allow_list_names_real_pages_and_kinds():
    allow = check_book.load_allow_list(ROOT / "tools" / "check_book_allow.yml")
    sources = {"index", "search", "genindex"}
    for folder in ("book", "solutions"):
        sources |= {f"{folder}/{p.stem}" for p in (ROOT / folder).iterdir() if p.is_file()}
    for page in allow:
        assert page in sources, f"the allow-list names {page}, which is no page of the book"


# --- the Sphinx extensions -------------------------------------------------------------


def test_renumber_numbers_exercises_per_chapter_in_document_order():
    fignumbers = {
        "solutions/02-vjp": {"exercise": {"ex-b": (4,), "ex-a": (5,)}, "figure": {"f": (1,)}},
        "solutions/A-related": {"exercise": {"ex-z": (30,)}},
        "book/index": {"exercise": {"ex-i": (31,)}},
    }
    changed = chapter_numbers.renumber(fignumbers)
    assert fignumbers["solutions/02-vjp"]["exercise"] == {"ex-b": (2, 1), "ex-a": (2, 2)}
    assert fignumbers["solutions/02-vjp"]["figure"] == {"f": (1,)}
    assert fignumbers["solutions/A-related"]["exercise"] == {"ex-z": ("A", 1)}
    assert fignumbers["book/index"]["exercise"] == {"ex-i": (31,)}  # no chapter: untouched
    assert sorted(changed) == ["solutions/02-vjp", "solutions/A-related"]
    assert chapter_numbers.renumber(fignumbers) == []  # a second pass changes nothing


def test_strip_markers_removes_only_the_marker_lines():
    source = (
        "def dot(a, b):\n"
        '    """Doc."""\n'
        "    ### BEGIN SOLUTION\n"
        "    return (a * b).sum()  # BEGIN SOLUTION stays in a comment\n"
        "    ### END SOLUTION\n"
    )
    assert solution_markers.strip_markers(source) == (
        "def dot(a, b):\n"
        '    """Doc."""\n'
        "    return (a * b).sum()  # BEGIN SOLUTION stays in a comment\n"
    )


def test_launch_buttons_of_a_solution_page_name_the_student_notebook():
    buttons = [
        {"type": "link", "url": "https://github.com/o/r", "label": "repository-button"},
        {
            "type": "group",
            "label": "download-buttons",
            "buttons": [{"type": "link", "url": "../_sources/solutions/01-x.ipynb"}],
        },
        {
            "type": "group",
            "label": "launch-buttons",
            "buttons": [
                {
                    "url": "https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/solutions/01-x.ipynb"
                },
                {
                    "url": "https://colab.research.google.com/github/o/r/blob/main/solutions/01-x.ipynb"
                },
            ],
        },
    ]
    new = launch_links.rewrite_buttons(buttons, student=("solutions", "notebooks"), online=True)
    urls = [b["url"] for g in new[1:] for b in g["buttons"]]
    assert all("/notebooks/01-x.ipynb" in u for u in urls) and len(urls) == 3
    assert new[0] == buttons[0]
    assert "solutions/" in buttons[1]["buttons"][0]["url"]  # the input is not changed


def test_a_page_whose_kernel_is_not_online_loses_its_launch_group():
    buttons = [
        {"type": "group", "label": "download-buttons", "buttons": [{"url": "../_sources/b.ipynb"}]},
        {
            "type": "group",
            "label": "launch-buttons",
            "buttons": [{"url": "https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/b.ipynb"}],
        },
    ]
    new = launch_links.rewrite_buttons(buttons, student=None, online=False)
    assert [g["label"] for g in new] == ["download-buttons"]


def _entry(key, authors, year, title="T"):
    from pybtex.database import Entry, Person

    entry = Entry("article", fields={"year": year, "title": title})
    entry.key = key
    entry.persons["author"] = [Person(a) for a in authors]
    return entry


def test_bibliography_labels_read_like_author_year_citations():
    entries = [
        _entry("a", ["Absil, P.-A.", "Mahony, R.", "Sepulchre, R."], "2008"),
        _entry("b", ["Diamond, Steven", "Boyd, Stephen"], "2016"),
        _entry("c", ["{CVXPY issue tracker}"], "2019"),
        _entry("d", ["Higham, Nicholas J."], "2002"),
        _entry("e", ["Higham, Nicholas J."], "2002", "Other"),
    ]
    labels = list(bib_style.AuthorYearLabelStyle().format_labels(entries))
    assert labels == [
        "Absil et al., 2008",
        "Diamond and Boyd, 2016",
        "CVXPY issue tracker, 2019",
        "Higham, 2002a",
        "Higham, 2002b",
    ]


def test_corporate_authors_sort_by_their_name_not_after_z():
    entries = [
        _entry("z", ["Zisserman, Andrew"], "2015"),
        _entry("o", ["{OpenCV team}"], "2024"),
        _entry("j", ["{The JAX authors}"], "2024"),
        _entry("a", ["Absil, P.-A."], "2008"),
        _entry("br", ["Broyden, C. G."], "1965"),
        _entry("bg", [r"Br{\'e}gier, Romain"], "2021"),
        _entry("bo", [r"B{\"o}ttcher, Albrecht"], "2005"),
    ]
    ordered = bib_style.AuthorYearSortingStyle().sort(entries)
    assert [e.key for e in ordered] == ["a", "bo", "bg", "br", "j", "o", "z"]


# --- the student edition -----------------------------------------------------------------


def _md(text, tags=()):
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": list(tags)} if tags else {})


def _code(text, tags=(), output="PASSED"):
    cell = nbformat.v4.new_code_cell(text, metadata={"tags": list(tags)} if tags else {})
    cell.outputs = [nbformat.v4.new_output("stream", text=output)]
    cell.execution_count = 1
    return cell


def test_student_page_keeps_statements_and_checks_and_drops_solutions():
    notebook = nbformat.v4.new_notebook(
        cells=[
            _md("(ex01)=\n# Exercises 1"),
            _code("import torch"),
            _md(":::{exercise} Dot\n:label: ex-01-dot\nWrite dot.\n:::"),
            _md(":::{solution-start} ex-01-dot\n:class: dropdown\n:::"),
            _code("def dot(a, b):\n    ### BEGIN SOLUTION\n    return a @ b\n    ### END SOLUTION"),
            _md(":::{solution-end}\n:::"),
            _code("check_dot(dot)", tags=["check"]),
            _md("`(a * b).sum()` is an equally good answer."),
            _code("dot(x, x)  # a demo that needs the answer"),
            _md(":::{exercise} Next\n:label: ex-01-next\n:::"),
            _md(":::{solution} ex-01-next\nthe answer\n:::"),
            _code("secret = 1", tags=["solution"]),
        ]
    )
    page = student_edition.student_page(notebook, "01-x")
    sources = [c.source for c in page.cells]
    text = "\n".join(sources)
    assert sources[0].startswith("(ex01)=") and ":label: ex-01-dot" in text
    assert ":label: ex-01-next" in text and "check_dot(dot)" in text
    assert "a @ b" not in text and "BEGIN SOLUTION" not in text and "NotImplementedError" in text
    assert "equally good" not in text and "demo" not in text
    assert "the answer" not in text and "secret" not in text and "{solution" not in text
    assert all(not c.outputs for c in page.cells if c.cell_type == "code")
    assert "a @ b" in notebook.cells[4].source  # the input is not changed


def test_student_config_marks_the_title():
    config = student_edition.student_config({"title": "Book", "html": {"x": 1}})
    assert config == {"title": "Book (student edition)", "html": {"x": 1}}


def test_a_written_allow_list_allows_exactly_what_was_found(tmp_path):
    findings = [
        Finding("book/a", "wide-code", "1"),
        Finding("book/a", "wide-code", "2"),
        Finding("search", "console-error", "x"),
    ]
    path = tmp_path / "allow.yml"
    path.write_text(check_book.render_allow_list(findings))
    allow = check_book.load_allow_list(path)
    assert allow == {"book/a": {"wide-code": 2}, "search": {"console-error": 1}}
    report = check_book.compare(findings, allow, {"book/a", "search"})
    assert report.failures == [] and report.shrinkable == []
    # per page, the most one edition found
    student = [Finding("book/a", "wide-code", str(i), "student") for i in range(3)]
    path.write_text(check_book.render_allow_list(findings + student))
    assert check_book.load_allow_list(path)["book/a"] == {"wide-code": 3}
    path.write_text(check_book.render_allow_list([]))
    assert check_book.load_allow_list(path) == {}


def test_each_script_is_written_once():
    import page_assets
    from sphinx.builders.html._assets import _JavaScript

    scripts = [
        _JavaScript(None, body="const THEBE_JS_URL = 1"),
        _JavaScript("a.js"),
        _JavaScript("", body="const THEBE_JS_URL = 1"),
        _JavaScript("a.js", **{"async": "async"}),
        _JavaScript("a.js"),
    ]
    unique = page_assets.unique_scripts(scripts)
    assert unique == [scripts[0], scripts[1], scripts[3]]


def test_cards_must_carry_the_title_of_the_page_they_link_to():
    base = "http://127.0.0.1:9/"
    cards = {
        "book/index": [
            {"title": "1. Orthogonal gradients", "href": "01-x.html#ch01"},
            {"title": "3. Jacobians with scan", "href": "03-x.html#ch03"},
            {"title": "Elsewhere", "href": "https://example.org/"},
        ]
    }
    titles = {
        "book/01-x.html": "1. Orthogonal  gradients",
        "book/03-x.html": "3. Jacobians: from scan",
    }
    found = check_book.card_problems(cards, titles, base)
    assert [f.kind for f in found] == ["card-title"]
    assert "3. Jacobians: from scan" in found[0].detail


# --- the browser run, on a small site with one problem of each kind ------------------

SITE = ROOT / "tests" / "data" / "check_book_site"
MATHJAX = ROOT / "_build" / "mathjax" / "node_modules" / "mathjax"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None or not (MATHJAX / "es5").is_dir(),
    reason="needs Chromium and the MathJax copy that make check-book fetches",
)
def test_the_browser_run_finds_each_kind_of_problem(tmp_path):
    pytest.importorskip("playwright")
    findings, pages = check_book.run_browser(
        SITE, MATHJAX, tmp_path / "shots", CHROMIUM, {"python3"}
    )
    assert pages == {"index", "book/index", "solutions/01-bad"}
    found = Counter((f.page, f.kind) for f in findings)
    details = "\n".join(f"{f.page}: {f.kind}: {f.detail}" for f in findings)
    # the good page: typeset maths, a tagged scrollable output, links that resolve;
    # only its card, whose title is not the linked page's
    assert {k for (page, k) in found if page == "book/index"} == {"card-title"}, details
    bad = {k for (page, k) in found if page == "solutions/01-bad"}
    assert bad == set(check_book.KINDS) - {"card-title"}, details
    assert found[("solutions/01-bad", "broken-link")] == 2, details
    assert found[("solutions/01-bad", "untypeset-tex")] == 2, details  # prose and \\text
    assert found[("solutions/01-bad", "mathjax-error")] == 1, details
    # console.error, the exception, and the missing image's 404 (with its address)
    assert found[("solutions/01-bad", "console-error")] == 3, details
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == [
        "book__index.png",
        "solutions__01-bad.png",
    ]


def test_exercise_numbers_per_chapter_in_a_small_sphinx_build(tmp_path):
    """Headings, solution titles and references all read "Exercise N.k"."""
    pytest.importorskip("sphinx_exercise")
    from sphinx.application import Sphinx

    src = tmp_path / "src"
    (src / "solutions").mkdir(parents=True)
    (src / "conf.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'book' / '_ext')!r})\n"
        "extensions = ['myst_parser', 'sphinx_exercise', 'chapter_numbers']\n"
        "myst_enable_extensions = ['colon_fence']\n"
    )
    (src / "index.md").write_text(
        "# Book\n\nSee {numref}`ex-a-first`, {ref}`ex-01-second` and {ref}`ex-01-first`.\n\n"
        "```{toctree}\nsolutions/01-one\nsolutions/A-appendix\n```\n"
    )
    exercise = ":::{{exercise}} {title}\n:label: {label}\n\nDo it.\n:::\n\n"
    (src / "solutions" / "01-one.md").write_text(
        "# One\n\n"
        + exercise.format(title="First", label="ex-01-first")
        + ":::{solution} ex-01-first\nDone.\n:::\n\n"
        + exercise.format(title="Second", label="ex-01-second")
    )
    (src / "solutions" / "A-appendix.md").write_text(
        "# Appendix\n\n" + exercise.format(title="First", label="ex-a-first")
    )
    out = tmp_path / "html"
    app = Sphinx(src, src, out, tmp_path / "doctrees", "html", status=None, warningiserror=True)
    app.build()
    one = (out / "solutions" / "01-one.html").read_text()
    appendix = (out / "solutions" / "A-appendix.html").read_text()
    index = (out / "index.html").read_text()
    assert "Exercise 1.1" in one and "Exercise 1.2" in one and "Exercise 3" not in one
    assert '<a class="reference internal" href="#ex-01-first"> Exercise 1.1 (First)</a>' in one
    assert "Exercise A.1" in appendix
    assert "Exercise A.1" in index and "Exercise 1.2" in index and "Exercise 1.1" in index
