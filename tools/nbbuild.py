"""What the book derives from its repository URL, kept in one place.

The URL itself lives in ``_config.yml`` (``repository.url``). From it come the
hidden Colab install cell that opens every notebook (tag ``remove-cell``) and
the clone command in ``book/introduction.md``; ``tools/set_repository.py``
rewrites both after a fork, and ``tests/test_book_config.py`` checks they agree.
"""

from __future__ import annotations

from pathlib import Path

import yaml

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


def clone_commands(url: str | None = None) -> str:
    """The shell lines that clone the repository and enter it (``book/introduction.md``)."""
    url = (url or repository_url()).rstrip("/")
    folder = url.rsplit("/", 1)[-1].removesuffix(".git")
    return f"git clone {url}\ncd {folder}"
