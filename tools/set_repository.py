"""Point the book at another repository: rewrite the URL everywhere it is derived.

    python tools/set_repository.py https://github.com/OWNER/REPO

The URL lives in ``_config.yml`` (``repository.url``); the Colab install cell of
every notebook in book/, solutions/ and notebooks/ installs gradbook from it, and
``book/introduction.md`` shows the command that clones it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from nbbuild import clone_commands, colab_install_source, repository_url  # noqa: E402


def notebooks() -> list[Path]:
    return sorted(p for d in ("book", "solutions", "notebooks") for p in (ROOT / d).glob("*.ipynb"))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not re.match(r"^https://\S+$", argv[0]):
        print(__doc__)
        return 2
    new = argv[0].rstrip("/")
    config = ROOT / "_config.yml"
    old = repository_url()
    config.write_text(config.read_text().replace(f"url: {old}", f"url: {new}"))
    introduction = ROOT / "book" / "introduction.md"
    if introduction.exists():
        text = introduction.read_text()
        introduction.write_text(text.replace(clone_commands(old), clone_commands(new)))
        print(f"updated {introduction.relative_to(ROOT)}")
    for path in notebooks():
        notebook = nbformat.read(path, as_version=4)
        cells = notebook.cells
        if cells and cells[0].cell_type == "code" and "google.colab" in cells[0].source:
            cells[0].source = colab_install_source(new)
            nbformat.write(notebook, path)
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
