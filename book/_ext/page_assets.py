"""Write each script of a page once.

With this Sphinx, sphinx-thebe and sphinx-togglebutton register their inline
configuration scripts twice; the second ``const THEBE_JS_URL = ...`` is a
JavaScript error on every page ("Identifier 'THEBE_JS_URL' has already been
declared"). This drops the repeats from each page's script list.
"""

from __future__ import annotations

from sphinx.application import Sphinx


def script_key(script) -> tuple:
    """What makes two script entries the same: file name and attributes (inline body).

    An inline script's file name is ``None`` or ``""`` depending on who added it.
    """
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return (
        str(filename),
        tuple(sorted((k, str(v)) for k, v in attributes.items())),
    )


def unique_scripts(scripts: list) -> list:
    """``scripts`` without repeats, in their first order."""
    seen = set()
    unique = []
    for script in scripts:
        key = script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    return unique


def on_page_context(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree
):
    if "script_files" in context:
        context["script_files"] = unique_scripts(context["script_files"])


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", on_page_context, priority=950)
    return {
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "version": "1",
    }
