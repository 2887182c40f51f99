"""Point the launch and download buttons of each page at the right notebook.

- An exercise page (``solutions/NN-slug``) shows the solved notebook, but a
  reader who launches it on Binder or Colab, or downloads it, should get the
  student notebook ``notebooks/NN-slug.ipynb``: the buttons are rewritten, and the
  student notebook is copied next to the page sources for the download button.
- A notebook whose kernel Binder and Colab do not have (chapter 3a runs on the
  ``theano-pymc`` kernel) offers neither; its download button stays.

Config: ``launch_online_kernels`` (default ``["python3"]``), the kernels that run
on Binder and Colab; ``launch_student_folders`` (default
``{"solutions": "notebooks"}``), the folder of a solved page -> its student folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

ONLINE = ("mybinder.org", "colab.research.google.com", "binder", "colab")


def kernel_of(path: Path) -> str | None:
    """The kernelspec name of a notebook, ``None`` for other files."""
    if path.suffix != ".ipynb" or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["metadata"]["kernelspec"]["name"]
    except (KeyError, ValueError):
        return None


def student_url(url: str, solved: str, student: str) -> str:
    """``.../solutions/01-x.ipynb`` -> ``.../notebooks/01-x.ipynb`` (once, the last one)."""
    head, sep, tail = url.rpartition(f"{solved}/")
    return f"{head}{student}/{tail}" if sep else url


def rewrite_buttons(
    buttons: list[dict[str, Any]],
    *,
    student: tuple[str, str] | None,
    online: bool,
) -> list[dict[str, Any]]:
    """The header buttons with launch/download links rewritten; empty groups dropped."""
    result = []
    for button in buttons:
        button = dict(button)
        if button.get("type") == "group":
            inner = rewrite_buttons(
                button.get("buttons", []), student=student, online=online
            )
            if not inner and button.get("label") == "launch-buttons":
                continue
            button["buttons"] = inner
        url = button.get("url", "")
        if url and not online and any(host in url for host in ONLINE):
            continue
        if url and student and (".ipynb" in url or "urlpath=" in url):
            button["url"] = student_url(url, *student)
        result.append(button)
    return result


def on_page_context(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree
):
    if "header_buttons" not in context or pagename not in app.env.all_docs:
        return
    source = Path(app.env.doc2path(pagename))
    online = (
        kernel_of(source) in set(app.config.launch_online_kernels)
        or source.suffix != ".ipynb"
    )
    folder, _, name = pagename.rpartition("/")
    student = None
    student_folder = app.config.launch_student_folders.get(folder)
    if student_folder:
        notebook = Path(app.srcdir) / student_folder / f"{name}.ipynb"
        if notebook.is_file():
            student = (folder, student_folder)
            target = (
                Path(app.outdir) / "_sources" / student_folder / notebook.name
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notebook, target)
    context["header_buttons"] = rewrite_buttons(
        context["header_buttons"], student=student, online=online
    )


def setup(app: Sphinx) -> dict:
    app.add_config_value("launch_online_kernels", ["python3"], "html")
    app.add_config_value(
        "launch_student_folders", {"solutions": "notebooks"}, "html"
    )
    # After sphinx-book-theme has added its buttons (priority 501).
    app.connect("html-page-context", on_page_context, priority=900)
    return {
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "version": "1",
    }
