"""Hide the ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines in the HTML book.

The notebooks in ``solutions/`` keep these markers: ``make assignments`` cuts the
student notebooks at them. A reader who opens a solution in the book needs only
the code between them, so the HTML build drops the marker lines from code cells.
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

MARKER = re.compile(r"^[ \t]*#+[ \t]*(?:BEGIN|END)[ \t]+SOLUTION[ \t]*$")


def strip_markers(source: str) -> str:
    """``source`` without its marker lines (every other line kept as it is)."""
    return "\n".join(
        line for line in source.split("\n") if not MARKER.match(line)
    )


class StripSolutionMarkers(SphinxPostTransform):
    """Drop the marker lines from every literal block of an HTML build."""

    default_priority = 400
    formats = ("html",)

    def run(self) -> None:
        for block in list(self.document.findall(nodes.literal_block)):
            text = block.astext()
            if "SOLUTION" not in text:
                continue
            stripped = strip_markers(text)
            if stripped != text:
                block.rawsource = stripped
                block.children = []
                block += nodes.Text(stripped)


def setup(app: Sphinx) -> dict:
    app.add_post_transform(StripSolutionMarkers)
    return {
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "version": "1",
    }
