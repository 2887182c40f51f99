"""gradbook.lesson: source display, benchmark results and figure style for the lessons."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import matplotlib as mpl
import pytest

from gradbook.lesson import (
    FIGURE_STYLE,
    benchmark_path,
    load_benchmark,
    show_source,
    source_text,
    use_figure_style,
)

MODULE = '''\
def _unit(x):
    """Scale x to length one."""
    return x / _norm(x)


def _norm(x):
    return abs(x)


def _unused(x):
    return x


def _check(x):
    if x is None:
        raise TypeError("x")
    return x


def public(x, y):
    """Public.

    Several lines of docstring.
    """
    u = _unit(_check(y))
    if u:
        return x - u
    return _norm(x) + _unit(x)


class Box:
    """A box."""

    def size(self):
        """Its size."""
        return 1
'''


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("lesson") / "lesson_sample.py"
    path.write_text(MODULE)
    spec = importlib.util.spec_from_file_location("lesson_sample", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["lesson_sample"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["lesson_sample"]


def test_source_without_docstrings(sample):
    assert source_text(sample.public) == textwrap.dedent("""\
        def public(x, y):  # docstring omitted
            u = _unit(_check(y))
            if u:
                return x - u
            return _norm(x) + _unit(x)
        """)


def test_source_with_docstrings_is_the_file_text(sample):
    assert source_text(sample.public, docstring=True) in MODULE


def test_a_class_loses_its_docstring_and_its_methods_docstrings(sample):
    assert source_text(sample.Box) == textwrap.dedent("""\
        class Box:  # docstring omitted

            def size(self):  # docstring omitted
                return 1
        """)


def test_helpers_are_followed_once_in_the_order_of_first_use(sample):
    text = source_text(sample.public, helpers=True)
    names = [line.split("(")[0] for line in text.splitlines() if line.startswith("def ")]
    # _unused is not called, _check validates
    assert names == ["def public", "def _unit", "def _norm"]
    assert "Scale x to length one" not in text


def test_start_shows_the_body_from_one_statement(sample):
    assert source_text(sample.public, start="if u:") == textwrap.dedent("""\
        if u:
            return x - u
        return _norm(x) + _unit(x)
        """)
    with pytest.raises(ValueError, match=r"start: expected text found in the source of public"):
        source_text(sample.public, start="while")


def test_show_source_prints_source_text(sample, capsys):
    show_source(sample.public, helpers=True)
    assert capsys.readouterr().out == source_text(sample.public, helpers=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"obj": 3}, r"obj: expected a function or a class, got int"),
        ({"docstring": 1}, r"docstring: expected True or False, got int"),
        ({"start": 3}, r"start: expected a string or None, got int"),
    ],
)
def test_source_bad_input(sample, kwargs, message):
    obj = kwargs.pop("obj", sample.public)
    with pytest.raises(TypeError, match=message):
        source_text(obj, **kwargs)


def test_library_functions_show_without_docstrings():
    from gradbook.projection import orthogonal_component

    text = source_text(orthogonal_component, helpers=True)
    assert text.startswith("def orthogonal_component(")
    assert '"""' not in text and "def _split(" in text and "def _unit(" in text
    assert "def _prepare(" not in text  # it validates


def test_benchmark_results_are_found_by_name(tmp_path):
    data = tmp_path / "book" / "data"
    data.mkdir(parents=True)
    results = {"machine": {"cpu_count": 2}, "rows": [{"best": 0.5}]}
    (data / "bench_toy.json").write_text(json.dumps(results))
    for name in ("toy", "bench_toy", "bench_toy.json"):
        assert benchmark_path(name, tmp_path) == data / "bench_toy.json"
        assert load_benchmark(name, tmp_path) == results


def test_benchmark_lookup_from_the_book_folder_and_the_root(tmp_path, monkeypatch):
    data = tmp_path / "book" / "data"
    data.mkdir(parents=True)
    (data / "bench_toy.json").write_text("{}")
    monkeypatch.chdir(tmp_path / "book")
    assert load_benchmark("toy") == {}
    monkeypatch.chdir(tmp_path)
    assert load_benchmark("toy") == {}


def test_every_stored_benchmark_loads():
    root = Path(__file__).resolve().parent.parent
    names = sorted(p.stem for p in (root / "book" / "data").glob("bench_*.json"))
    assert names, "no benchmark results in book/data"
    for name in names:
        assert {"machine", "rows"} <= set(load_benchmark(name, root))


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        (3, TypeError, r"name: expected a string such as 'so3', got int"),
        ("", ValueError, r"name: expected a benchmark name such as 'so3', got ''"),
        ("../so3", ValueError, r"name: expected a benchmark name"),
        ("nothing", FileNotFoundError, r"name: no results for 'nothing' .*make bench"),
    ],
)
def test_benchmark_bad_names(tmp_path, name, error, message):
    with pytest.raises(error, match=message):
        benchmark_path(name, tmp_path)


def test_figure_style_sets_matplotlib_defaults():
    with mpl.rc_context():
        mpl.rcParams["figure.dpi"] = 33
        use_figure_style()
        for key, value in FIGURE_STYLE.items():
            assert mpl.rcParams[key] == value


RETINA_PROBE = """
import struct, sys
from IPython.core.interactiveshell import InteractiveShell
import matplotlib
matplotlib.use("module://matplotlib_inline.backend_inline")
import matplotlib.pyplot as plt
from gradbook.lesson import FIGURE_WIDTH, use_figure_style

shell = InteractiveShell.instance()
use_figure_style()
fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, 2))
ax.plot([0, 1])
data, metadata = shell.display_formatter.format(fig, include=["image/png"])
png = data["image/png"]
png = png if isinstance(png, bytes) else __import__("base64").b64decode(png)
width = struct.unpack(">I", png[16:20])[0]  # the IHDR chunk of the PNG file
print(width, metadata["image/png"]["width"])
"""


def test_figure_style_stores_retina_pngs_in_a_notebook_shell():
    """Twice the pixels of the width the page shows it at: figure.dpi per inch."""
    import subprocess

    pytest.importorskip("matplotlib_inline")
    pytest.importorskip("IPython")
    result = subprocess.run(
        [sys.executable, "-c", RETINA_PROBE], capture_output=True, text=True, check=True
    )
    pixels, shown = (int(v) for v in result.stdout.split())
    # the inline backend crops the white margin (bbox_inches="tight"): never wider
    assert 0.5 * 7.4 * FIGURE_STYLE["figure.dpi"] < shown <= 7.4 * FIGURE_STYLE["figure.dpi"]
    assert pixels in (2 * shown, 2 * shown + 1)  # the page's width is the pixels' half


def test_glue_hands_the_value_to_myst_nb_and_is_silent_without_it(monkeypatch):
    import sys
    import types

    from gradbook.lesson import glue

    seen = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: seen.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    glue("ratio", 2.5)
    assert seen == [("ratio", 2.5, False)]
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # not installed (Binder, Colab)
    assert glue("ratio", 2.5) is None and len(seen) == 1
