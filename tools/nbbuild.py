"""What the book derives from its repository URL, kept in one place.

The URL itself lives in ``_config.yml`` (``repository.url``), the revision that
Colab installs in ``requirements/colab-revision.txt`` and gradbook's torch
requirement in ``pyproject.toml``. From them come the hidden Colab install cell
that opens every notebook (tag ``remove-cell``) and the clone command in
``book/introduction.md``; ``tools/set_repository.py`` rewrites both (after a
fork, at a release), and ``tests/test_book_config.py`` and
``tests/test_installs.py`` check they agree.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def repository_url() -> str:
    """The repository URL, kept in one place: ``_config.yml``."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"]


def colab_revision() -> str:
    """The tag or commit that Colab installs, from ``requirements/colab-revision.txt``."""
    path = ROOT / "requirements" / "colab-revision.txt"
    lines = [line.strip() for line in path.read_text().splitlines()]
    revisions = [line for line in lines if line and not line.startswith("#")]
    if len(revisions) != 1:
        raise ValueError(f"{path}: expected one revision (a tag or a commit), found {revisions}")
    return revisions[0]


def torch_requirement() -> str:
    """gradbook's requirement on torch, as ``pyproject.toml`` writes it (e.g. ``torch>=2.4``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [d for d in project["dependencies"] if re.match(r"torch\b(?![-_.])", d)]
    if len(found) != 1:
        raise ValueError(f"pyproject.toml: expected one torch dependency, found {found}")
    return found[0]


def colab_install_source(
    url: str | None = None, revision: str | None = None, torch: str | None = None
) -> str:
    """Source of the first, hidden cell: installs gradbook on Colab, nothing elsewhere.

    On Colab it installs gradbook at ``revision`` (a tag or a commit) of the repository
    ``url``, keeps Colab's own torch when that satisfies ``torch`` (gradbook's
    requirement) and prints each distribution it installed or changed. Defaults: the
    URL in ``_config.yml``, ``colab_revision()``, ``torch_requirement()``.
    """
    url = url or repository_url()
    revision = revision or colab_revision()
    torch = torch or torch_requirement()
    return f"""\
# On Colab, install the gradbook these notebooks were written against;
# elsewhere do nothing.
import sys

REPOSITORY = "{url}"
# a tag or a commit, written by tools/set_repository.py
REVISION = "{revision}"
# gradbook's requirement: Colab's own torch stays when it satisfies it
TORCH = "{torch}"


def _install_gradbook():
    import subprocess
    from importlib.metadata import distributions

    from packaging.requirements import Requirement

    def installed():
        return {{
            (d.metadata["Name"] or "?").lower(): d.version
            for d in distributions()
        }}

    before = installed()
    spec = Requirement(TORCH).specifier
    keep = "torch" in before and spec.contains(before["torch"], True)
    pins = [f"torch=={{before['torch']}}"] if keep else []
    package = f"gradbook @ git+{{REPOSITORY}}@{{REVISION}}"
    pip = [sys.executable, "-m", "pip", "install", "-q", package, *pins]
    result = subprocess.run(pip, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(
            f"pip could not install {{package}}:\\n{{result.stderr[-3000:]}}"
        )
    after = installed()
    for name, version in sorted(after.items()):
        if before.get(name) != version:
            was = f" (was {{before[name]}})" if name in before else ""
            print(f"installed {{name}} {{version}}{{was}}")
    print(
        f"torch {{after['torch']}}:",
        "Colab's own, kept" if keep else f"installed for {{TORCH}}",
    )


if "google.colab" in sys.modules:
    _install_gradbook()"""


def clone_commands(url: str | None = None) -> str:
    """The shell lines that clone the repository and enter it (``book/introduction.md``)."""
    url = (url or repository_url()).rstrip("/")
    folder = url.rsplit("/", 1)[-1].removesuffix(".git")
    return f"git clone {url}\ncd {folder}"
