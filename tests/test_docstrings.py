"""The examples in gradbook's docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import gradbook

ALL_MODULES = [info.name for info in pkgutil.walk_packages(gradbook.__path__, "gradbook.")]


def _has_examples(name: str) -> bool:
    module = importlib.import_module(name)
    return any(test.examples for test in doctest.DocTestFinder().find(module))


# Only modules with examples: a module without any would pass without testing anything.
MODULES = [name for name in ALL_MODULES if _has_examples(name)]


def test_some_module_has_examples():
    assert MODULES, "no gradbook module has a docstring example: the doctests test nothing"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"no example of {name} ran"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
