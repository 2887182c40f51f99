"""What the lessons share: a function's source, a chapter's benchmark results, the figure style.

- :func:`show_source` prints a library function (or class) as the lesson
  discusses it: without its docstring, optionally with the private helpers it
  calls, or from a given statement on.
- :func:`load_benchmark` reads ``book/data/bench_<name>.json``, which
  ``make bench`` writes, from the book's folder or the repository root.
- :func:`use_figure_style` sets the matplotlib defaults every lesson's figures share.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from gradbook._checks import check_bool

__all__ = [
    "FIGURE_STYLE",
    "FIGURE_WIDTH",
    "benchmark_path",
    "load_benchmark",
    "show_source",
    "source_text",
    "use_figure_style",
]

#: The matplotlib settings of every lesson figure (:func:`use_figure_style` applies them).
FIGURE_STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 9,
    "image.cmap": "viridis",
}

#: The width, in inches, of a full-width lesson figure: at ``figure.dpi`` 100 the
#: book's text column (688 px in a 1280-px window) shows it at 93% of its size,
#: above the 90% under which ``make check-book`` calls a figure shrunk.
FIGURE_WIDTH = 7.4

#: Where the benchmark results live, relative to the repository root.
BENCHMARK_FOLDER = Path("book") / "data"


# --------------------------------------------------------------------------- source


def _definition(obj: object) -> tuple[str, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
    """The dedented source of ``obj`` and the AST node that defines it."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)):
        raise TypeError(f"obj: expected a function or a class, got {type(obj).__name__}")
    text = textwrap.dedent(inspect.getsource(obj))
    node = ast.parse(text).body[0]
    return text, node  # type: ignore[return-value]


def _without_docstrings(text: str, node: ast.AST) -> str:
    """``text`` with the docstrings of ``node`` and of the definitions inside it removed.

    The line that ends each signature gets the comment ``# docstring omitted``.
    """
    lines = text.splitlines()
    drop: set[int] = set()
    marks: set[int] = set()
    for inner in ast.walk(node):
        if not isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        body = inner.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            first, last = body[0].lineno - 1, body[0].end_lineno - 1  # type: ignore[operator]
            drop.update(range(first, last + 1))
            marks.add(first - 1)
    kept = []
    for i, line in enumerate(lines):
        if i in drop:
            continue
        kept.append(line + "  # docstring omitted" if i in marks else line)
    return "\n".join(kept) + "\n"


def _validates(node: ast.AST) -> bool:
    """Whether a definition validates: it raises, or calls a ``check_*`` function."""
    for inner in ast.walk(node):
        if isinstance(inner, ast.Raise):
            return True
        if (
            isinstance(inner, ast.Call)
            and isinstance(inner.func, ast.Name)
            and inner.func.id.startswith("check_")
        ):
            return True
    return False


def _helpers(obj: object) -> list[object]:
    """The private module-level functions of ``obj``'s module that it calls, recursively.

    In the order of first use, each once; ``obj`` itself is not included, nor are
    helpers that validate (see :func:`_validates`): the lesson shows the computation.
    """
    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    namespace = vars(module) if module is not None else {}
    found: list[object] = []

    def visit(target: object) -> None:
        _, node = _definition(target)
        for inner in ast.walk(node):
            if not (isinstance(inner, ast.Name) and inner.id.startswith("_")):
                continue
            helper = namespace.get(inner.id)
            if (
                inspect.isfunction(helper)
                and helper.__module__ == getattr(module, "__name__", None)
                and helper is not obj
                and helper not in found
                and not _validates(_definition(helper)[1])
            ):
                found.append(helper)
                visit(helper)

    visit(obj)
    return found


def source_text(
    obj: object, *, docstring: bool = False, helpers: bool = False, start: str | None = None
) -> str:
    """The source of a function or class, as :func:`show_source` prints it.

    Args:
        obj: a function, method or class.
        docstring: keep the docstrings (default: drop them, marking each signature
            with ``# docstring omitted``).
        helpers: also give the private functions of the same module that ``obj``
            calls, and those they call, each once, in the order of first use;
            helpers that validate (they raise, or call a ``check_*`` function) are
            left out.
        start: begin at the first line that contains this text (stripped of
            indentation), to show the body of a long function from one statement on.

    Returns:
        The source, ending with a newline; helpers are separated by a blank line.

    Raises:
        TypeError: ``obj`` is not a function or a class, ``start`` not a string, or
            ``docstring``/``helpers`` not a bool.
        ValueError: no line of the source contains ``start``.
    """
    check_bool("docstring", docstring)
    check_bool("helpers", helpers)
    if start is not None and not isinstance(start, str):
        raise TypeError(f"start: expected a string or None, got {type(start).__name__}")
    parts = []
    for target in [obj, *(_helpers(obj) if helpers else [])]:
        text, node = _definition(target)
        parts.append(text if docstring else _without_docstrings(text, node))
    joined = "\n\n".join(part.rstrip("\n") for part in parts) + "\n"
    if start is None:
        return joined
    lines = joined.splitlines()
    for i, line in enumerate(lines):
        if start.strip() in line:
            return textwrap.dedent("\n".join(lines[i:])) + "\n"
    name = getattr(obj, "__qualname__", repr(obj))
    raise ValueError(f"start: expected text found in the source of {name}, got {start!r}")


def show_source(
    obj: object, *, docstring: bool = False, helpers: bool = False, start: str | None = None
) -> None:
    """Print the source of a library function or class (see :func:`source_text`)."""
    print(source_text(obj, docstring=docstring, helpers=helpers, start=start), end="")


# --------------------------------------------------------------------------- benchmarks


def benchmark_path(name: str, root: str | Path | None = None) -> Path:
    """The file ``bench_<name>.json`` that ``benchmarks/bench_<name>.py`` writes.

    Looked up in ``root/book/data`` when ``root`` is given; otherwise in ``./data``
    (a lesson runs in ``book/``), ``./book/data`` (the repository root), and the
    ``book/data`` of the checkout this package was installed from (editable installs).

    Args:
        name: the benchmark, e.g. ``"so3"`` (``"bench_so3"`` and ``"bench_so3.json"`` too).
        root: the repository root.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: ``name`` is empty or has a folder in it.
        FileNotFoundError: no such file in any of those places (the message lists them).
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a string such as 'so3', got {type(name).__name__}")
    stem = name.removesuffix(".json")
    stem = stem if stem.startswith("bench_") else f"bench_{stem}"
    if stem == "bench_" or "/" in stem or "\\" in stem:
        raise ValueError(f"name: expected a benchmark name such as 'so3', got {name!r}")
    filename = f"{stem}.json"
    if root is not None:
        places = [Path(root) / BENCHMARK_FOLDER]
    else:
        checkout = Path(__file__).resolve().parents[2]
        places = [Path("data"), BENCHMARK_FOLDER, checkout / BENCHMARK_FOLDER]
    for place in places:
        if (place / filename).is_file():
            return place / filename
    looked = ", ".join(str(place / filename) for place in places)
    raise FileNotFoundError(
        f"name: no results for {name!r} (looked for {looked}); run `make bench` to write them"
    )


def load_benchmark(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """The results of one benchmark, as ``benchmarks/bench_<name>.py`` wrote them.

    A dict with at least ``"machine"`` (processor, CPU count, torch version,
    device) and ``"rows"`` (one dict per measurement); see the benchmark script
    for the rest. ``name`` and ``root`` as in :func:`benchmark_path`.
    """
    return json.loads(benchmark_path(name, root).read_text())


# --------------------------------------------------------------------------- figures


def use_figure_style() -> None:
    """Apply :data:`FIGURE_STYLE` to matplotlib's defaults (call once, in the setup cell).

    In a notebook, figures are also stored as "retina" PNGs: twice the pixels,
    shown at ``figure.dpi`` pixels per inch, so they stay sharp on high-density
    screens. A figure at most :data:`FIGURE_WIDTH` inches wide is shown at 93%
    of its size or more in the book's text column, where its 9-10 pt text reads
    as 11.5 px or more.
    """
    import matplotlib as mpl

    mpl.rcParams.update(FIGURE_STYLE)
    shell = sys.modules.get("IPython")
    if shell is None or shell.get_ipython() is None:
        return
    try:  # ipykernel's inline backend; absent outside Jupyter
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    set_matplotlib_formats("retina")


def glue(name: str, value: Any, display: bool = False) -> None:
    """Hand ``value`` to the book's prose under ``name`` (``{glue:text}`name```).

    The lessons quote measured numbers this way, so the prose follows the cell
    that measures them. This is myst-nb's ``glue`` when myst-nb is installed (the
    book's build); where it is not (Binder, Colab), only the book would read the
    value, so nothing is done.
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=display)
