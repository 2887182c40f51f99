"""Write environment.yml and binder/requirements.txt from the pins of requirements/lock.txt.

    python tools/write_environment.py        (run by `make lock`, in the locked environment)

- ``environment.yml``: every pin of the lock file, for conda users.
- ``binder/requirements.txt``: what Binder installs, a CPU-only environment with what
  the notebooks need to run and nothing of the book-building and test tools: the lock
  file's pins of ``NOTEBOOK_NEEDS`` and of everything they require (read from the
  installed distributions' metadata, so run it where the lock file is installed),
  torch as its CPU build from the PyTorch CPU index, gradbook itself from the checkout.
  ``binder/runtime.txt`` asks for Python 3.11 and ``binder/postBuild`` adds the
  Theano-PyMC kernel of chapter 3a.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "lock.txt"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# What the notebooks need beyond gradbook's own dependencies: the Jupyter front end and
# its kernel, and the peers the chapters import (chapter 3: pytensor; chapter 5 and the
# appendix: OpenCV; the appendix: cvxpy; chapter 6: mpmath).
NOTEBOOK_NEEDS = (
    "gradbook",
    "jupyterlab",
    "ipykernel",
    "pytensor",
    "opencv-python-headless",
    "cvxpy",
    "mpmath",
)

HEADER = """\
# conda environment: the same exact pins as requirements/lock.txt (Binder reads binder/).
# Written by tools/write_environment.py (`make lock`); tests/test_book_config.py checks they agree.
# Its torch==X.Y.Z (no build tag) is the CUDA build on Linux; binder/requirements.txt is
# the CPU-only environment, and `make env` chooses the build by itself (TORCH=cpu|cuda).
name: gradients-in-practice
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
"""

BINDER_HEADER = f"""\
# Binder: a CPU-only environment with what the notebooks need to run (JupyterLab, the
# kernel, gradbook and the chapters' peers), at the exact pins of requirements/lock.txt;
# none of the book-building and test tools. Written by tools/write_environment.py
# (`make lock`); tests/test_installs.py checks it against the lock file.
# binder/runtime.txt picks Python 3.11, binder/postBuild adds the Theano-PyMC kernel.
--extra-index-url {CPU_INDEX}
"""


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Jinja2`` and ``jinja2`` are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock: Path = LOCK) -> list[str]:
    lines = (line.strip() for line in lock.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def render() -> str:
    pins = "".join(f"      - {pin}\n" for pin in lock_pins())
    return HEADER + pins + "      - -e .\n"


def requirement_closure(roots: tuple[str, ...] = NOTEBOOK_NEEDS) -> set[str]:
    """Canonical names of ``roots`` and of every distribution they require, recursively.

    Read from the metadata of the installed distributions, markers evaluated for this
    interpreter and platform, extras followed where a requirement names them.
    """
    from packaging.requirements import Requirement

    extras_of: dict[str, set[str]] = {}
    stack: list[tuple[str, frozenset[str]]] = [(root, frozenset()) for root in roots]
    while stack:
        name, extras = stack.pop()
        key = canonical(name)
        if key in extras_of and extras <= extras_of[key]:
            continue
        extras_of[key] = extras_of.get(key, set()) | set(extras)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise ValueError(
                f"{name} is not installed here: run tools/write_environment.py with the "
                "Python of the environment built from the lock file (.venv/bin/python)"
            ) from None
        for text in dist.requires or []:
            requirement = Requirement(text)
            wanted = extras_of[key] | {""}
            if requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in wanted
            ):
                stack.append((requirement.name, frozenset(requirement.extras)))
    return set(extras_of)


def render_binder(closure: set[str] | None = None) -> str:
    """binder/requirements.txt: the lock file's pins of the closure, torch as ``+cpu``."""
    closure = requirement_closure() if closure is None else closure
    lines = []
    for pin in lock_pins():
        name, _, version = pin.partition("==")
        if canonical(name) not in closure:
            continue
        if canonical(name) == "torch":
            pin = f"torch=={version.partition('+')[0]}+cpu"
        lines.append(pin)
    return BINDER_HEADER + "".join(f"{line}\n" for line in lines) + "-e .\n"


if __name__ == "__main__":
    (ROOT / "environment.yml").write_text(render())
    print("wrote environment.yml")
    (ROOT / "binder").mkdir(exist_ok=True)
    (ROOT / "binder" / "requirements.txt").write_text(render_binder())
    print("wrote binder/requirements.txt")
