"""Build a class of chapter-1 submissions that try to fool or harm the grader.

    python tests/adversarial_class.py TARGET_FOLDER

Every submission starts from the student release ``notebooks/01-orthogonal-gradients.ipynb``
(its nbgrader metadata included, as a student's saved file has it); answers are
filled in from ``solutions/``. :func:`build` returns what each student deserves
(the points their real answers earn, out of :data:`MAX_SCORE`) and the host paths
a malicious submission tries to write, so a test can check the grader against both.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NAME = "01-orthogonal-gradients"
RELEASE = ROOT / "notebooks" / f"{NAME}.ipynb"
SOURCE = ROOT / "solutions" / f"{NAME}.ipynb"
#: A word in the command line of the detached process, to look for it afterwards.
MARKER = "gradbook-adversarial-detached"


def _grade_id(cell) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")


def _solution_body(exercise: int) -> str:
    """The source of the solutions' answer cell of ``exercise`` without the markers."""
    source = nbformat.read(SOURCE, as_version=4)
    cell = next(c for c in source.cells if _grade_id(c) == f"ch01-ex{exercise}-answer")
    return "\n".join(line for line in cell.source.splitlines() if "### " not in line)


def _answer(notebook, exercise: int):
    return next(c for c in notebook.cells if _grade_id(c) == f"ch01-ex{exercise}-answer")


def _check(notebook, exercise: int):
    return next(c for c in notebook.cells if _grade_id(c) == f"ch01-ex{exercise}")


def release():
    return nbformat.read(RELEASE, as_version=4)


#: One point per check cell of the release.
MAX_SCORE = sum(
    1
    for cell in release().cells
    if _grade_id(cell).endswith(tuple("0123456789")) and "-ex" in _grade_id(cell)
)
EVERY = tuple(range(1, MAX_SCORE + 1))


def solved(*exercises: int):
    """The release with the real answers of ``exercises`` filled in."""
    notebook = release()
    for exercise in exercises:
        _answer(notebook, exercise).source = _solution_body(exercise)
    return notebook


def build(target: Path, outside: Path, port: int | None = None) -> dict:
    """Write the class into ``target``; ``outside`` is a host folder nothing may write into.

    ``port``: a port on which the host listens on 127.0.0.1; the malicious submission
    tries to connect to it (its sandbox has a loopback of its own, so it must fail).

    Returns ``{"expected": {student: score}, "not_graded": [file names],
    "outside": [paths that must not exist afterwards]}``.
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    expected: dict[str, float] = {}

    def save(notebook, relative: str, student: str, score: float) -> None:
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, path)
        expected[student] = score

    save(solved(*EVERY), "correct.ipynb", "correct", MAX_SCORE)

    wrong = solved(*EVERY[1:])  # Exercise 1.1 answered with the elementwise product
    _answer(wrong, 1).source = "def dot(a, b):\n    return a * b"
    save(wrong, "wrong.ipynb", "wrong", MAX_SCORE - 1)

    save(release(), "untouched.ipynb", "untouched", 0)

    loop = solved(*EVERY)
    _answer(loop, 3).source = "while True:\n    pass"
    save(loop, "loop.ipynb", "loop", 2)

    printed = solved(1)  # every check cell replaced by a printed PASSED
    for exercise in EVERY:
        _check(printed, exercise).source = f'print("PASSED Exercise 1.{exercise}")'
    save(printed, "forged-print.ipynb", "forged-print", 1)

    redefined = solved(1)  # the checks redefined in the import cell and in an answer
    imports = next(c for c in redefined.cells if "from gradbook.exercises" in c.source)
    imports.source = (
        "import torch\n"
        + "".join(
            f"def {name}(answer):\n    print('PASSED')\n\n\n"
            for name in ("check_dot", "check_orthogonal_part", "check_is_orthogonal")
        )
        + "check_project_batch = check_dot"
    )
    _answer(redefined, 2).source += "\n\n\ndef check_orthogonal_part(answer):\n    print('PASSED')"
    save(redefined, "forged-redefine.ipynb", "forged-redefine", 1)

    handler = solved(1)  # a custom exception handler that prints PASSED
    _answer(handler, 2).source += (
        "\n\n\ndef _forged(shell, etype, value, tb, tb_offset=None):\n"
        "    print('PASSED')\n\n\n"
        "get_ipython().set_custom_exc((Exception,), _forged)"
    )
    save(handler, "forged-handler.ipynb", "forged-handler", 1)

    deleted = solved(*(k for k in EVERY if k != 2))  # a wrong answer, its check cell deleted
    _answer(deleted, 2).source = "def orthogonal_part(grad, image):\n    return grad"
    deleted.cells.remove(_check(deleted, 2))
    # 1.2 is wrong, and the stretch exercise 1.5 builds on 1.2: two checks lost
    save(deleted, "forged-deleted.ipynb", "forged-deleted", MAX_SCORE - 2)

    patched = solved(1)  # the checks' failure helper turned into a no-op
    _answer(patched, 2).source = (
        "def orthogonal_part(grad, image):\n    return grad\n\n\n"
        "import gradbook.exercises._core as _core\n"
        "import gradbook.exercises.ch01 as _ch01\n\n"
        "_core.fail = _ch01.fail = lambda *args, **kwargs: None\n"
        "_core.ExerciseFailed = _ch01.ExerciseFailed = type('Quiet', (Exception,), {})"
    )
    _answer(patched, 3).source = "def is_orth(u, v, tol=1e-5):\n    return True"
    _answer(patched, 4).source = "def project_batch(grads, images):\n    return grads"
    save(patched, "forged-monkeypatch.ipynb", "forged-monkeypatch", 1)

    outside = Path(outside).resolve()
    writes = [outside / "written-outside.txt", outside / "written-late.txt"]
    malicious = solved(1)
    late = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(4)\n"
        f"        open({str(writes[1])!r}, 'w').write('late')\n"
        "    os._exit(0)\n"
    )
    code = f"""import os, subprocess, sys

for path in [{str(writes[0])!r}, {str(target / "correct.ipynb")!r}, {str(ROOT / "README.md")!r}]:
    try:
        with open(path, "a") as handle:
            handle.write("written by a submission")
        print("WROTE", path)
    except OSError as error:
        print("could not write", path, type(error).__name__)
for name in os.listdir("."):
    if name.endswith(".ipynb"):
        with open(name, "w") as handle:
            handle.write("{{}}")
        print("EDITED", name)
try:
    open({str(SOURCE)!r}).read()
    print("READ THE SOLUTIONS")
except OSError as error:
    print("cannot read the solutions", type(error).__name__)
try:
    hog = bytearray(6 * 2**30)
    print("ALLOCATED 6 GiB")
except MemoryError:
    print("memory capped")
try:
    import socket
    socket.create_connection(("127.0.0.1", {port or 9}), timeout=3)
    print("REACHED THE NETWORK")
except OSError as error:
    print("no network", type(error).__name__)
subprocess.Popen(
    [sys.executable, "-c", {late!r}, {MARKER!r}], start_new_session=True,
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
print("x" * 50_000_000)
"""
    _answer(malicious, 2).source = code + "\n\ndef orthogonal_part(grad, image):\n    return grad"
    save(malicious, "malicious.ipynb", "malicious", 1)

    (target / "corrupt.ipynb").write_text('{"cells": [ {"cell_type": "code", ')
    (target / "notes.txt").write_text("not a notebook\n")

    save(solved(*EVERY), f"carol/week1/{NAME}.ipynb", "carol", MAX_SCORE)
    flat = copy.deepcopy(wrong)  # a flat file whose name names no assignment
    save(flat, "dave.ipynb", "dave", MAX_SCORE - 1)
    return {
        "expected": expected,
        "not_graded": ["corrupt.ipynb", "notes.txt"],
        "outside": [str(p) for p in writes],
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = Path(sys.argv[1])
    print(json.dumps(build(folder / "submissions", folder / "outside"), indent=1))
