"""Re-execute notebooks in place so that their stored outputs come from code.

    python tools/execute_notebooks.py book/01-orthogonal-gradients.ipynb ...

Each notebook runs in its own folder under the kernel its metadata names, with a
fixed execution order; the stored outputs are what nbval later compares. The
execution itself is :func:`gradbook.assignments.execute_notebook` (shared with
grading), which records no timestamps, so re-executing an unchanged notebook
leaves its file unchanged.

Consecutive writes to the same stream are stored as one output
(:func:`merge_streams`): the kernel flushes stdout on a timer, so a ``print`` of
several pieces can otherwise arrive in two parts, which the book would show as
two boxes. ``--merge-streams-only`` applies that to stored notebooks without
executing them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat

from gradbook.assignments import execute_notebook


def merge_streams(notebook: nbformat.NotebookNode) -> int:
    """Join consecutive stream outputs of the same name in every code cell, in place.

    Returns the number of outputs merged away. The text is unchanged: nbval
    compares the joined streams anyway.
    """
    merged = 0
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs: list = []
        for output in cell.get("outputs", []):
            last = outputs[-1] if outputs else None
            if (
                last is not None
                and output.output_type == "stream"
                and last.output_type == "stream"
                and output.name == last.name
            ):
                last.text += output.text
                merged += 1
            else:
                outputs.append(output)
        cell.outputs = outputs
    return merged


def execute(path: Path, timeout: int) -> float:
    """Execute ``path`` in place, stopping at the first error; return the seconds it took."""
    start = time.perf_counter()
    notebook = execute_notebook(path, allow_errors=False, timeout=timeout)
    elapsed = time.perf_counter() - start
    merge_streams(notebook)
    nbformat.write(notebook, path)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument(
        "--merge-streams-only",
        action="store_true",
        help="only join split stream outputs of the stored notebooks",
    )
    args = parser.parse_args(argv)
    if args.merge_streams_only:
        for path in args.notebooks:
            notebook = nbformat.read(path, as_version=4)
            if merge_streams(notebook):
                nbformat.write(notebook, path)
                print(f"merged split streams in {path}")
        return 0
    for path in args.notebooks:
        print(f"executing {path} ...", end=" ", flush=True)
        print(f"{execute(path, args.timeout):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
