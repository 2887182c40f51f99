"""Grading benchmark: what the sandboxed nbgrader autograder costs per submission.

A class of ``N`` (20) copies of the solved chapter-1 notebook
(``solutions/01-orthogonal-gradients.ipynb``, which scores full marks) is graded
with :func:`gradbook.grading.grader.grade` (course set-up, sanitizing, execution
with the kernel in bubblewrap, gradebook, feedback HTML, CSV and report: all of
``make grade``) with ``JOBS=1`` and with ``JOBS=2``. Side by side in the same run,
plain nbclient executes the same solved notebook (a fresh kernel each time,
:func:`gradbook.assignments.execute_notebook`), before and after the grading runs.

Reported (``book/data/bench_grading.json``, shown on the instructors' page):

- ``overhead_ratio``: seconds per submission of ``JOBS=1`` grading (whole run / N)
  over the median seconds of one nbclient execution; target at most 1.5;
- ``sandboxed_execution_ratio``: the median time a submission spent executing in
  the sandbox (restoring cells, preamble, kernel start included) over the same
  nbclient median;
- ``speedup_jobs2``: ``JOBS=1`` seconds over ``JOBS=2`` seconds; target at least
  1.6 on 2 cores.

Every graded run is checked: N rows in ``grades.csv``, each with full marks.
Run with ``--quick`` for a smoke test (a class of 4, one baseline run before and
one after; nothing is written).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import write_results

from gradbook.assignments import execute_notebook
from gradbook.grading import grader

ROOT = Path(__file__).resolve().parent.parent
SOLVED = ROOT / "solutions" / "01-orthogonal-gradients.ipynb"


def nbclient_seconds() -> float:
    start = time.perf_counter()
    executed = execute_notebook(SOLVED, allow_errors=False, timeout=600)
    seconds = time.perf_counter() - start
    assert not any(
        o.output_type == "error" for c in executed.cells if c.cell_type == "code" for o in c.outputs
    )
    return seconds


def grade_class(size: int, jobs: int, scratch: Path) -> dict:
    submissions = scratch / f"class-{jobs}"
    shutil.rmtree(submissions, ignore_errors=True)
    submissions.mkdir(parents=True)
    for number in range(1, size + 1):
        shutil.copyfile(SOLVED, submissions / f"student{number:02d}.ipynb")
    build = scratch / f"build-{jobs}"
    shutil.rmtree(build, ignore_errors=True)
    start = time.perf_counter()
    outcomes, ungraded = grader.grade(
        submissions, solutions=ROOT / "solutions", build=build, jobs=jobs, log=lambda *_: None
    )
    seconds = time.perf_counter() - start
    with (build / "grades.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert not ungraded and len(rows) == size, (ungraded, len(rows))
    # the solved notebook earns full marks, whatever the number of checks
    assert all(row["score"] == row["max_score"] != "0" for row in rows), rows
    return {
        "jobs": jobs,
        "students": size,
        "seconds": seconds,
        "seconds_per_submission": seconds / size,
        "median_execution_seconds": statistics.median(o.seconds for o in outcomes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a class of 4, one baseline run")
    args = parser.parse_args()
    size, repeat = (4, 1) if args.quick else (20, 2)
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as folder:
        scratch = Path(folder)
        baseline = [nbclient_seconds() for _ in range(repeat)]
        one = grade_class(size, 1, scratch)
        two = grade_class(size, 2, scratch)
        baseline += [nbclient_seconds() for _ in range(repeat)]
    nbclient = statistics.median(baseline)
    rows = [
        {"method": "nbclient", "jobs": 1, "students": 1, "seconds": nbclient},
        {"method": "make grade", **one},
        {"method": "make grade", **two},
    ]
    results = {
        "quick": args.quick,
        "nbclient_runs": baseline,
        "overhead_ratio": one["seconds_per_submission"] / nbclient,
        "sandboxed_execution_ratio": one["median_execution_seconds"] / nbclient,
        "speedup_jobs2": one["seconds"] / two["seconds"],
        "targets": "overhead_ratio <= 1.5; speedup_jobs2 >= 1.6 on 2 cores",
    }
    for key in ("overhead_ratio", "sandboxed_execution_ratio", "speedup_jobs2"):
        print(f"{key}: {results[key]:.2f}")
    if args.quick:  # a smoke test: the book keeps the numbers of the last full run
        print(rows)
    else:
        write_results("grading", rows, **results)


if __name__ == "__main__":
    main()
