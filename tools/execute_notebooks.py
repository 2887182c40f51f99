"""Re-execute notebooks in place so that their stored outputs come from code.

    python tools/execute_notebooks.py book/01-orthogonal-gradients.ipynb ...

Each notebook runs in its own folder under the kernel its metadata names, with a
fixed execution order; the stored outputs are what nbval later compares. The
execution itself is :func:`gradbook.assignments.execute_notebook` (shared with
grading), which records no timestamps, so re-executing an unchanged notebook
leaves its file unchanged.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat

from gradbook.assignments import execute_notebook


def execute(path: Path, timeout: int) -> float:
    """Execute ``path`` in place, stopping at the first error; return the seconds it took."""
    start = time.perf_counter()
    notebook = execute_notebook(path, allow_errors=False, timeout=timeout)
    elapsed = time.perf_counter() - start
    nbformat.write(notebook, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        print(f"executing {path} ...", end=" ", flush=True)
        print(f"{execute(path, args.timeout):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
