"""Grading with nbgrader: course metadata, the student release, sandboxed autograding.

- :mod:`gradbook.grading.metadata`  nbgrader metadata of ``solutions/`` (one command writes it)
- :mod:`gradbook.grading.course`    the nbgrader course under ``_build/`` and the release
- :mod:`gradbook.grading.sandbox`   a kernel manager that runs each kernel under bubblewrap
- :mod:`gradbook.grading.grader`    ``make grade``: discover, execute, score, report

These modules need the ``grading`` extra (``pip install -e ".[grading]"``: nbgrader,
nbclient, nbformat); ``import gradbook`` does not.
"""

from __future__ import annotations

import importlib.util

_NEEDED = ("nbformat", "nbclient", "nbgrader")


def require_grading_extra() -> None:
    """Raise ImportError naming the ``grading`` extra when one of its packages is missing."""
    missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"gradbook.grading needs {', '.join(missing)}: install the grading extra "
            '(pip install -e ".[grading]") or run `make env`.'
        )


require_grading_extra()


def _put_environment_scripts_on_path() -> None:
    """nbgrader runs ``alembic`` by name when it creates a gradebook: find the venv's."""
    import os
    import sys
    from pathlib import Path

    scripts = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if scripts not in path.split(os.pathsep):
        os.environ["PATH"] = scripts + (os.pathsep + path if path else "")


_put_environment_scripts_on_path()
