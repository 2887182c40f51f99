"""Build a chapter notebook from Python: the shared anatomy in one place.

    from nbbuild import md, code, lesson, save
    cells = [md("# 2. ..."), code("import torch"), ...]
    save(lesson(cells), "book/02-vjp.ipynb")

``lesson`` prepends the hidden Colab install cell and sets the kernel; run
``tools/execute_notebooks.py`` afterwards to store the outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent


def repository_url() -> str:
    """The repository URL, kept in one place: ``_config.yml``."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"]


def colab_install_source(url: str | None = None) -> str:
    """Source of the first, hidden cell: installs gradbook on Colab, nothing elsewhere."""
    url = url or repository_url()
    return (
        "# On Colab, install gradbook (and its dependencies) first; elsewhere do nothing.\n"
        "import sys\n"
        "\n"
        f'REPOSITORY = "{url}"\n'
        'if "google.colab" in sys.modules:\n'
        '    get_ipython().run_line_magic("pip", f"install -q git+{REPOSITORY}")'
    )


def md(source: str, tags: Sequence[str] = ()) -> nbformat.NotebookNode:
    cell = new_markdown_cell(source.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def code(source: str, tags: Sequence[str] = ()) -> nbformat.NotebookNode:
    cell = new_code_cell(source.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def lesson(
    cells: Sequence[nbformat.NotebookNode], kernel: str = "python3"
) -> nbformat.NotebookNode:
    """A notebook with the Colab cell first and the kernel named in its metadata."""
    display = "Python 3 (ipykernel)" if kernel == "python3" else f"Python ({kernel})"
    notebook = new_notebook(
        cells=[code(colab_install_source(), tags=["remove-cell"]), *cells],
        metadata={
            "kernelspec": {"name": kernel, "display_name": display, "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    return notebook


def save(notebook: nbformat.NotebookNode, path: str | Path) -> Path:
    path = ROOT / path
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    return path
