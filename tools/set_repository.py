"""Write the Colab install cell of every notebook, and point the book at a repository.

    python tools/set_repository.py                       rewrite the cells from the settings
    python tools/set_repository.py --revision v0.2.0     Colab installs the tag v0.2.0
    python tools/set_repository.py --revision HEAD       ... or a commit (written in full)
    python tools/set_repository.py https://github.com/OWNER/REPO   after a fork

This tool is the only writer of the first cell of every notebook in book/, solutions/
and notebooks/ (``colab_install_source()`` in ``tools/nbbuild.py``); run it after adding
or merging notebooks. It reads, and with arguments first changes:

- the repository URL, in ``_config.yml`` (``repository.url``), which also gives the
  clone command shown in ``book/introduction.md``;
- the revision that Colab installs, in ``requirements/colab-revision.txt``: a tag or a
  commit, never a branch, so that a notebook installs the library it was written
  against. At a release: set ``v<version>`` (the version in ``pyproject.toml``), commit,
  then create that tag on the commit;
- gradbook's torch requirement, from ``pyproject.toml``.

It changes nothing else in a notebook (no outputs, no execution counts), and running it
twice changes nothing the second time.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import nbbuild
import nbformat
from nbbuild import clone_commands, colab_install_source, repository_url

ROOT = Path(__file__).resolve().parent.parent

REVISION_HEADER = """\
# The gradbook revision that the Colab install cell of every notebook installs: a tag
# (v<version> at a release, matching pyproject.toml) or a commit of the repository.
# Change it with `python tools/set_repository.py --revision REF`, which rewrites the cells.
"""


def notebooks() -> list[Path]:
    return sorted(p for d in ("book", "solutions", "notebooks") for p in (ROOT / d).glob("*.ipynb"))


def is_install_cell(cell) -> bool:
    return cell.cell_type == "code" and "google.colab" in cell.source


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def resolve_revision(ref: str) -> str:
    """The tag or full commit hash that ``ref`` names; ValueError for a branch or garbage.

    Accepted: a tag of this repository; a tag name ``v<digits>...`` that does not exist
    yet (a release tags the commit that carries it); a commit (``HEAD``, a short or full
    hash), written as its full hash.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", ref) or ".." in ref:
        raise ValueError(f"revision: expected a tag or a commit, got {ref!r}")
    if _git("rev-parse", "--verify", "--quiet", f"refs/tags/{ref}") is not None:
        return ref
    for prefix in ("refs/heads/", "refs/remotes/"):
        if ref != "HEAD" and _git("rev-parse", "--verify", "--quiet", prefix + ref):
            raise ValueError(
                f"revision: {ref!r} is a branch, which moves; expected a tag or a commit"
            )
    if re.fullmatch(r"v\d+(\.\d+)*([.+-]?[A-Za-z0-9.]+)?", ref):
        return ref
    commit = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if commit:
        return commit
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return ref
    raise ValueError(
        f"revision: expected a tag (such as v1.0.0) or a commit of this repository, got {ref!r}"
    )


def write_revision(revision: str) -> Path:
    path = ROOT / "requirements" / "colab-revision.txt"
    path.write_text(REVISION_HEADER + revision + "\n")
    return path


def set_url(new: str) -> None:
    config = ROOT / "_config.yml"
    old = repository_url()
    config.write_text(config.read_text().replace(f"url: {old}", f"url: {new}"))
    introduction = ROOT / "book" / "introduction.md"
    if introduction.exists():
        text = introduction.read_text()
        updated = text.replace(clone_commands(old), clone_commands(new))
        if updated != text:
            introduction.write_text(updated)
            print(f"updated {introduction.relative_to(ROOT)}")


def write_cells() -> list[Path]:
    """Give every notebook whose first cell is the install cell the current one."""
    source = colab_install_source()
    changed = []
    for path in notebooks():
        notebook = nbformat.read(path, as_version=4)
        cells = notebook.cells
        if cells and is_install_cell(cells[0]) and cells[0].source != source:
            cells[0].source = source
            nbformat.write(notebook, path)
            changed.append(path)
            print(f"updated {path.relative_to(ROOT)}")
    return changed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], usage=__doc__.split("\n\n")[1]
    )
    parser.add_argument("url", nargs="?", help="the repository, https://...")
    parser.add_argument("--revision", help="the tag or commit that Colab installs")
    try:
        options = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    if options.url is not None and not re.fullmatch(r"https://\S+", options.url):
        print(f"url: expected https://..., got {options.url!r}\n\n{__doc__}")
        return 2
    if options.revision is not None:
        try:
            revision = resolve_revision(options.revision)
        except ValueError as error:
            print(error)
            return 2
        print(f"Colab installs {revision}: {write_revision(revision).relative_to(ROOT)}")
    if options.url is not None:
        set_url(options.url.rstrip("/"))
    changed = write_cells()
    print(
        f"{len(changed)} notebook(s) updated; Colab installs {nbbuild.colab_revision()} "
        f"of {repository_url()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
