"""Number exercises per chapter: "Exercise 1.2", "Exercise A.3".

sphinx-exercise numbers ``{exercise}`` directives through Sphinx's numfig, which,
in a book whose table of contents is not numbered, counts them across the whole
book (1, 2, ... 31). After Sphinx has assigned figure numbers, this extension
renumbers the exercises of each document as (chapter, k): the chapter is the
document name's prefix (``solutions/01-orthogonal-gradients`` -> 1,
``solutions/A-related-questions`` -> A) and k the place of the exercise in that
document. Headings, solution titles and ``{ref}``/``{numref}`` references all
read these numbers (``env.toc_fignumbers``), so they stay consistent.
"""

from __future__ import annotations

import re

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

FIGTYPE = "exercise"


def chapter_of(docname: str) -> str | None:
    """``solutions/01-x`` -> ``"1"``, ``solutions/A-x`` -> ``"A"``; ``None`` otherwise."""
    match = re.match(r"^(?:0*)(\d+[a-z]?|[A-Z])-", docname.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def renumber(fignumbers: dict[str, dict[str, dict[str, tuple]]]) -> list[str]:
    """Renumber the exercises of every document in place; return the documents changed.

    ``fignumbers`` is ``env.toc_fignumbers``: docname -> figtype -> id -> number.
    The ids of a document keep their order (the order Sphinx met them in).
    """
    changed = []
    for docname, by_type in fignumbers.items():
        numbers = by_type.get(FIGTYPE)
        chapter = chapter_of(docname)
        if not numbers or chapter is None:
            continue
        key = int(chapter) if chapter.isdigit() else chapter
        new = {ident: (key, k) for k, ident in enumerate(numbers, start=1)}
        if new != numbers:
            by_type[FIGTYPE] = new
            changed.append(docname)
    return changed


def on_env_get_updated(app: Sphinx, env: BuildEnvironment) -> list[str]:
    # Runs after the toctree collector (priority 500) has assigned the numbers.
    return renumber(env.toc_fignumbers)


def setup(app: Sphinx) -> dict:
    app.connect("env-get-updated", on_env_get_updated, priority=900)
    return {
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "version": "1",
    }
