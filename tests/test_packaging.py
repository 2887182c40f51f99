"""gradbook imports with only its declared dependencies; what needs an extra says which.

A fresh ``pip install .`` is too slow for the suite, so the test blocks the
modules of every extra in a subprocess (``sys.modules[name] = None`` makes
``import name`` fail) and imports each module of the library there.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import gradbook

ROOT = Path(__file__).resolve().parent.parent

#: Modules that only an extra provides (what ``import`` calls them).
EXTRA_MODULES = [
    "cv2",
    "nbformat",
    "nbclient",
    "nbgrader",
    "nbval",
    "ipykernel",
    "jupyter_client",
    "pytest",
    "hypothesis",
    "kornia",
    "roma",
    "pytensor",
    "cvxpy",
    "mpmath",
]

#: Modules that need an extra to be imported at all, and the extra.
NEEDS_EXTRA = {
    "gradbook.assignments": "grading",
    "gradbook.grading": "grading",
    "gradbook.grading.course": "grading",
    "gradbook.grading.grader": "grading",
    "gradbook.grading.metadata": "grading",
    "gradbook.grading.sandbox": "grading",
}

#: The import name of each core dependency in pyproject.toml.
CORE_IMPORTS = {"torch", "numpy", "scipy", "matplotlib", "tqdm"}

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(gradbook.__path__, "gradbook.")
    if info.name not in NEEDS_EXTRA
)


def run_blocked(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where every module of an extra fails to import."""
    prelude = f"import sys\nfor name in {EXTRA_MODULES!r}:\n    sys.modules[name] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_blocking_itself_works():
    result = run_blocked("import cv2")
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr


def test_every_module_imports_without_the_extras():
    result = run_blocked(
        f"""
        import importlib
        for name in {MODULES!r}:
            importlib.import_module(name)
        print("imported", len({MODULES!r}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert f"imported {len(MODULES)}" in result.stdout


def test_opencv_functions_name_their_extra():
    result = run_blocked(
        """
        from gradbook.warp import synthetic_scene
        try:
            synthetic_scene()
        except ImportError as error:
            print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "synthetic_scene needs OpenCV" in result.stdout
    assert "pip install 'gradbook[opencv]'" in result.stdout


def test_the_opencv_extra_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(req.startswith("opencv-python-headless") for req in extras["opencv"])
    core = {
        req.split(">")[0].split("=")[0].split("<")[0].strip() for req in project["dependencies"]
    }
    assert core == CORE_IMPORTS


def _top_level_imports(path: Path) -> set[str]:
    """The top-level packages a module imports at module level (not inside functions)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", MODULES)
def test_module_level_imports_are_core_dependencies(name):
    path = Path(gradbook.__file__).parent.joinpath(*name.split(".")[1:])
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    third_party = _top_level_imports(path) - set(sys.stdlib_module_names) - {"gradbook"}
    assert third_party <= CORE_IMPORTS, f"{name} imports {sorted(third_party - CORE_IMPORTS)}"
