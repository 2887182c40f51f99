"""A bibliography whose labels read like the citations: "[Absil et al., 2008]".

The text cites author-year (``bibtex_reference_style: author_year``), but the
default bibliography style labels entries alphabetically ("[AMS08]"). This
registers the pybtex style ``authoryear`` (``bibtex_default_style: authoryear``):

- label: the author last names as the citations print them (one, "A and B",
  or "A et al."), a comma and the year; "a", "b", ... tell equal labels apart;
- sort: by those names, then year and title, with braces, TeX, accents and
  case ignored (Böttcher under Bo), so a corporate author such as ``{{OpenCV team}}`` sorts under O
  (not after Z, where its brace would put it); a leading "The" is skipped.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from pybtex.plugin import find_plugin, register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting import BaseSortingStyle
from sphinx.application import Sphinx

LAST_NAMES = find_plugin("pybtex.style.names", "last")()


def plain(latex: str) -> str:
    """TeX source as plain text: ``{OpenCV} team`` -> ``OpenCV team``."""
    return Text.from_latex(latex).render_as("text")


def person_text(person) -> str:
    """A person as the citations print them: prelast and last names."""
    return LAST_NAMES.format(person, False).format().render_as("text")


def authors_text(entry) -> str:
    """``A``, ``A and B`` or ``A et al.``, from the authors (else the editors)."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [person_text(p) for p in persons]
    if not names:
        return plain(entry.fields.get("title", entry.key))
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]} et al."


def sort_text(text: str) -> str:
    """Sort text that ignores case, braces, accents and a leading "The"."""
    text = unicodedata.normalize("NFKD", re.sub(r"[{}\\]", "", text))
    text = (
        "".join(c for c in text if not unicodedata.combining(c))
        .strip()
        .lower()
    )
    return text.removeprefix("the ")


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "Authors, year", suffixed a, b, ... where two would be equal."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [
            f"{authors_text(e)}, {e.fields.get('year', 'n.d.')}"
            for e in entries
        ]
        total = Counter(labels)
        seen: Counter[str] = Counter()
        for label in labels:
            if total[label] > 1:
                seen[label] += 1
                yield f"{label}{chr(ord('a') + seen[label] - 1)}"
            else:
                yield label


class AuthorYearSortingStyle(BaseSortingStyle):
    """Sort by the label's names, year, then title, as a reader looks them up."""

    def sorting_key(self, entry):
        return (
            sort_text(authors_text(entry)),
            entry.fields.get("year", ""),
            sort_text(plain(entry.fields.get("title", ""))),
        )


class AuthorYearStyle(UnsrtStyle):
    """pybtex's ``unsrt`` formatting with author-year labels and sorting."""

    default_label_style = AuthorYearLabelStyle
    default_sorting_style = AuthorYearSortingStyle


def setup(app: Sphinx) -> dict:
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    return {
        "parallel_read_safe": True,
        "parallel_write_safe": True,
        "version": "1",
    }
