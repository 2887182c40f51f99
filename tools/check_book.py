"""Check the rendered book in a real browser: ``make check-book``.

Serves a built HTML book (``_build/html`` or the student edition) on 127.0.0.1,
opens every page in headless Chromium through Playwright, with MathJax served
from a local pinned copy (the CDN address in the pages is answered from
``--mathjax``), waits for typesetting and finds, per page:

=================  =================================================================
kind               what fails
=================  =================================================================
mathjax-error      MathJax reported an error (``mjx-merror``, red in the page)
untypeset-tex      TeX left as text: a ``.math`` element MathJax did not typeset, or
                   a backslash command (``\\frac``, ``\\_``) in prose outside code
wide-code          a code cell wider than its container (``scrollWidth >
                   clientWidth``), the reader sees it cut or has to scroll sideways
wide-output        the same for a cell's output (text, table, HTML)
wide-equation      a display equation wider than the text column
broken-image       an image that did not load
shrunk-figure      a notebook figure shown at under 90% of the width it was drawn for
                   (its text shrinks with it): make it at most
                   ``gradbook.lesson.FIGURE_WIDTH`` inches wide
blurry-figure      a notebook figure with fewer than 1.5 image pixels per CSS pixel
                   (not retina: ``gradbook.lesson.use_figure_style`` stores them so)
broken-link        an internal link to a missing page or a missing anchor
console-error      a JavaScript error or a console error (a failed resource included)
exercise-number    an exercise heading that is not "Exercise N.k" with N the chapter
                   of its page (``solutions/01-...`` -> 1, ``solutions/A-...`` -> A)
                   and k its place on the page
launch-button      an exercise page that launches or downloads the solutions, or a
                   page whose kernel Binder/Colab lack that offers them
card-title         a card (the landing page's) whose title is not its page's title
solution-shown     a ``### BEGIN/END SOLUTION`` line in a code block; in the student
                   edition, any solution at all
=================  =================================================================

An element is deliberately scrollable, and so not "wide", when its cell carries
the tag ``scroll-input``/``scroll-output``/``output_scroll`` or it sits in an
element with the class ``deliberately-scrollable``.

Known failures are listed in the allow-list (``tools/check_book_allow.yml``): per
page and per kind, the number of findings tolerated. The run fails on anything
beyond it, reports entries that can shrink, and ``--strict`` fails on those too.
A screenshot of every page's first screen goes to ``--screenshots``.

Usage::

    python tools/check_book.py _build/html --mathjax _build/mathjax/node_modules/mathjax \\
        --screenshots _build/screenshots
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import functools
import http.server
import json
import re
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import yaml

KINDS = (
    "mathjax-error",
    "untypeset-tex",
    "wide-code",
    "wide-output",
    "wide-equation",
    "broken-image",
    "shrunk-figure",
    "blurry-figure",
    "broken-link",
    "console-error",
    "exercise-number",
    "launch-button",
    "card-title",
    "solution-shown",
)
# Folders of a Sphinx build that hold assets, not pages.
ASSET_DIRS = ("_static", "_sources", "_images", "_downloads", "_sphinx_design_static")
MATHJAX_CDN = re.compile(r"^https?://[^/]+/npm/mathjax@[^/]+/(?P<path>.+)$")
LAUNCH_HOSTS = ("mybinder.org", "colab.research.google.com")
VIEWPORT = {"width": 1280, "height": 900}


@dataclass(frozen=True)
class Finding:
    """One problem on one page: ``page`` is the path below the HTML root, no suffix."""

    page: str
    kind: str
    detail: str
    edition: str = "full"

    def __post_init__(self):
        # Text cut in the browser may end in half a surrogate pair: keep it printable.
        clean = self.detail.encode("utf-8", "replace").decode("utf-8")
        object.__setattr__(self, "detail", clean)


@dataclass
class Report:
    """What a run found, compared with the allow-list."""

    failures: list[Finding] = field(default_factory=list)
    allowed: list[Finding] = field(default_factory=list)
    shrinkable: list[tuple[str, str, int, int]] = field(default_factory=list)


# --- pure logic (tested in tests/test_check_book.py) --------------------------------


def page_name(path: Path, root: Path) -> str:
    """``root/solutions/01-x.html`` -> ``solutions/01-x``: how pages are named here."""
    return path.relative_to(root).with_suffix("").as_posix()


def discover_pages(root: Path) -> list[Path]:
    """Every HTML page of a built book, assets and Sphinx's own reports left out."""
    pages = []
    for path in sorted(root.rglob("*.html")):
        first = path.relative_to(root).parts[0]
        if first in ASSET_DIRS or first == "reports":
            continue
        pages.append(path)
    return pages


REFRESH = re.compile(r'<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', re.I)


def redirect_target(html: str) -> str | None:
    """The target of a page that only redirects (``<meta http-equiv="refresh">``)."""
    match = REFRESH.search(html)
    return match.group(1) if match else None


def chapter_of(page: str) -> str | None:
    """The chapter an exercise page belongs to: ``solutions/01-x`` -> ``"1"``.

    The chapter is the document name's part before the first ``-``, leading zeros
    dropped: ``solutions/A-related`` -> ``"A"``, ``notebooks/3a-x`` -> ``"3a"``.
    ``None`` when the name does not start that way.
    """
    match = re.match(r"^(?:0*)(\d+[a-z]?|[A-Z])-", page.rsplit("/", 1)[-1])
    return match.group(1) if match else None


def exercise_heading_problems(page: str, titles: list[str]) -> list[str]:
    """What is wrong with a page's exercise headings, in reading order.

    Each must start with ``Exercise N.k`` where N is :func:`chapter_of` the page
    and k counts the exercises on the page from 1.
    """
    chapter = chapter_of(page)
    problems = []
    for k, title in enumerate(titles, start=1):
        expected = f"Exercise {chapter}.{k}" if chapter else None
        match = re.match(r"^Exercise\s+(\S+?)(?=[\s(:]|$)", title.strip())
        found = match.group(1) if match else None
        if expected is None:
            problems.append(f"exercise {title!r} on a page with no chapter number in its name")
        elif found != f"{chapter}.{k}":
            problems.append(f"heading {title.strip()!r}: expected it to start with {expected!r}")
    return problems


def launch_problems(page: str, urls: list[str], kernel_runs_online: bool) -> list[str]:
    """Launch and download links that send a reader to the wrong notebook.

    Exercise pages (``solutions/...``) must launch and download the student
    notebook; a page whose kernel Binder and Colab lack offers neither.
    """
    problems = []
    for url in urls:
        online = any(host in url for host in LAUNCH_HOSTS)
        if online and not kernel_runs_online:
            problems.append(f"offers {url} although its kernel does not run there")
        elif page.startswith("solutions/") and "solutions/" in url:
            problems.append(f"launches or downloads the solutions: {url}")
    return problems


def resolve_link(href: str, page_url: str, base_url: str) -> tuple[str, str] | None:
    """An internal link as (path below the root, fragment); ``None`` for external ones."""
    absolute = urljoin(page_url, href)
    if not absolute.startswith(base_url):
        return None
    parts = urlsplit(absolute)
    path = unquote(parts.path)[len(urlsplit(base_url).path) :]
    if path == "" or path.endswith("/"):
        path += "index.html"
    return path, unquote(parts.fragment)


def link_problems(
    links: dict[str, list[str]], ids: dict[str, set[str]], root: Path, base_url: str
) -> list[Finding]:
    """Internal links to a missing file, or to an anchor missing from its page.

    ``links`` maps each visited page to the hrefs in it, ``ids`` maps a path below
    the root (``solutions/01-x.html``) to the ids in that page's DOM.
    """
    findings = []
    for page, hrefs in links.items():
        page_url = urljoin(base_url, page + ".html")
        for href in sorted(set(hrefs)):
            target = resolve_link(href, page_url, base_url)
            if target is None:
                continue
            path, fragment = target
            if not (root / path).is_file():
                findings.append(Finding(page, "broken-link", f"{href}: no file {path}"))
            elif fragment and path in ids and fragment not in ids[path]:
                findings.append(Finding(page, "broken-link", f"{href}: no anchor #{fragment}"))
    return findings


def card_problems(
    cards: dict[str, list[dict[str, str]]], titles: dict[str, str], base_url: str
) -> list[Finding]:
    """Cards whose title is not the title of the page they link to.

    ``cards`` maps a page to its cards (``title``, ``href``); ``titles`` maps a path
    below the root (``book/01-x.html``) to that page's first heading.
    """
    findings = []
    for page, items in cards.items():
        page_url = urljoin(base_url, page + ".html")
        for card in items:
            target = resolve_link(card["href"], page_url, base_url)
            if target is None or target[0] not in titles:
                continue
            want = " ".join(titles[target[0]].split())
            if " ".join(card["title"].split()) != want:
                detail = f"card {card['title']!r} links to {target[0]}, titled {want!r}"
                findings.append(Finding(page, "card-title", detail))
    return findings


def load_allow_list(path: Path) -> dict[str, dict[str, int]]:
    """The allow-list: ``{page: {kind: count}}``; kinds and counts validated."""
    data = yaml.safe_load(path.read_text()) if path.exists() else None
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of page -> {{kind: count}}, got {data!r}")
    for page, kinds in data.items():
        if not isinstance(kinds, dict):
            raise ValueError(f"{path}: {page}: expected a mapping kind -> count, got {kinds!r}")
        for kind, count in kinds.items():
            if kind not in KINDS:
                raise ValueError(f"{path}: {page}: unknown kind {kind!r}; known: {KINDS}")
            if not isinstance(count, int) or count < 1:
                raise ValueError(f"{path}: {page}: {kind}: expected a count >= 1, got {count!r}")
    return data


ALLOW_HEADER = """\
# Known failures of `make check-book` (tools/check_book.py), per page and per kind:
# the number of findings of that kind the page may still have. The check fails on
# any finding beyond these counts and lists the entries that allow more than it
# found. This list must only shrink, to empty: fix the page (see the kinds in
# tools/check_book.py and the details with `--only PAGE --details`), then lower or
# delete its entry (`--write-allow` rewrites the counts from a run; its diff must
# only lower them). Never add an entry to let a new problem through.
"""


def compare(findings: list[Finding], allow: dict[str, dict[str, int]], pages: set[str]) -> Report:
    """Split findings into failures and allowed ones; list allow-list entries that can shrink.

    Findings are judged per edition (``Finding.edition``): on each page the first
    ``allow[page][kind]`` findings of a kind are allowed and the rest fail. An entry
    can shrink when no edition found as many on a page of ``pages`` (the student
    edition's exercise pages show other code than the full edition's).
    """
    report = Report()
    counts: Counter[tuple[str, str, str]] = Counter()
    for finding in findings:
        key = (finding.edition, finding.page, finding.kind)
        counts[key] += 1
        if counts[key] <= allow.get(finding.page, {}).get(finding.kind, 0):
            report.allowed.append(finding)
        else:
            report.failures.append(finding)
    most: Counter[tuple[str, str]] = Counter()
    for (_, page, kind), n in counts.items():
        most[(page, kind)] = max(most[(page, kind)], n)
    for page, kinds in sorted(allow.items()):
        if page not in pages:
            continue
        for kind, allowed in sorted(kinds.items()):
            if most[(page, kind)] < allowed:
                report.shrinkable.append((page, kind, allowed, most[(page, kind)]))
    return report


def render_allow_list(findings: list[Finding]) -> str:
    """The allow-list text that tolerates exactly ``findings`` (per page, the most
    that any one edition found)."""
    counts: Counter[tuple[str, str, str]] = Counter((f.edition, f.page, f.kind) for f in findings)
    most: dict[str, dict[str, int]] = {}
    for (_, page, kind), n in counts.items():
        kinds = most.setdefault(page, {})
        kinds[kind] = max(kinds.get(kind, 0), n)
    body = {page: dict(sorted(kinds.items())) for page, kinds in sorted(most.items())}
    return ALLOW_HEADER + (yaml.safe_dump(body, sort_keys=False) if body else "{}\n")


# --- the browser ----------------------------------------------------------------------

# Runs in the page after typesetting: everything the checks need, measured in the DOM.
PAGE_PROBE = r"""
async () => {
  const out = {mathErrors: [], untypeset: [], wide: [], images: [], links: [], ids: [],
               exercises: [], launch: [], cards: [], title: '',
               markers: [], solutions: 0};
  const article = document.querySelector('article') || document.body;
  const text = el => (el.innerText || el.textContent || '').trim().replace(/\s+/g, ' ');
  const short = s => { s = (s || '').trim().replace(/\s+/g, ' ');
                        return s.length > 90 ? s.slice(0, 87) + '...' : s; };

  const source = new Map();
  const doc = window.MathJax && MathJax.startup && MathJax.startup.document;
  for (const item of (doc && doc.math) || []) source.set(item.typesetRoot, item.math);
  const tex = el => short(source.get(el.closest('mjx-container')) || text(el));
  const errorSelector = 'mjx-merror, [data-mjx-error]';
  for (const el of document.querySelectorAll(errorSelector)) {
    // one per error: not the nested ones, nor the copy in the assistive MathML
    if (el.parentElement && el.parentElement.closest(errorSelector)) continue;
    if (el.closest('mjx-assistive-mml')) continue;
    out.mathErrors.push(short((el.getAttribute('data-mjx-error') || text(el)) + ' in ' + tex(el)));
  }
  for (const el of article.querySelectorAll('.math')) {
    if (!el.querySelector('mjx-container')) out.untypeset.push(short(text(el)));
  }
  for (const el of article.querySelectorAll('mjx-assistive-mml mtext')) {
    if (/\\[A-Za-z_{}%&#$]/.test(el.textContent)) {
      out.untypeset.push('in \\text{}: ' + tex(el));
    }
  }
  const skip = new Set(['SCRIPT', 'STYLE', 'PRE', 'CODE', 'TEXTAREA', 'MJX-CONTAINER', 'KBD']);
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let p = node.parentElement; p && p !== article.parentElement; p = p.parentElement) {
        if (skip.has(p.tagName) || p.classList.contains('math')) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }});
  const rawTex = /\\[()[\]]|\$\$|\\(?:[A-Za-z]{2,}|[_{}%&#,;])/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (rawTex.test(n.textContent)) out.untypeset.push(short(n.textContent.trim()));
  }

  const deliberate = el => !!el.closest(
    '.tag_scroll-input, .tag_scroll-output, .tag_output_scroll, .deliberately-scrollable');
  // Where an element is: the code cell's number on the page (1 = first shown), else
  // the section it is in.
  const cells = [...article.querySelectorAll('.cell')];
  const cellName = el => {
    const cell = el.closest('.cell');
    if (cell) return `cell ${cells.indexOf(cell) + 1}`;
    const section = el.closest('section[id]');
    return section ? `text in #${section.id}` : 'text';
  };
  const tooWide = el => el.scrollWidth > el.clientWidth + 1;
  const seen = new Set();
  const wide = (kind, el, what) => {
    if (seen.has(el) || deliberate(el)) return;
    seen.add(el);
    const lines = (el.textContent || '').split('\n');
    const first = lines.reduce((a, b) => b.length > a.length ? b : a, '');
    out.wide.push({kind, detail: `${cellName(el)}: ${what} ${el.scrollWidth}px in ` +
                   `${el.clientWidth}px: ${short(first.trim())}`});
  };
  for (const el of article.querySelectorAll('.cell_input pre, div.highlight pre')) {
    if (el.closest('.cell_output')) continue;
    if (tooWide(el)) wide('wide-code', el, 'code');
  }
  const outputs = '.cell_output pre, .cell_output table, .cell_output .output';
  for (const el of article.querySelectorAll(outputs)) {
    if (tooWide(el)) wide('wide-output', el, el.tagName.toLowerCase());
  }
  for (const el of article.querySelectorAll('mjx-container[display="true"]')) {
    const math = el.querySelector('mjx-math') || el;
    const box = el.parentElement.closest('div') || el.parentElement;
    const width = math.getBoundingClientRect().width;
    if (width > box.clientWidth + 1 || tooWide(el)) {
      if (seen.has(el)) continue;
      seen.add(el);
      out.wide.push({kind: 'wide-equation', detail: `${cellName(el)}: equation ` +
        `${Math.round(width)}px in ${box.clientWidth}px: ` + tex(el)});
    }
  }

  const images = [...document.querySelectorAll('img')];
  for (const img of images) img.loading = 'eager';
  await Promise.all(images.map(img => img.complete ? null : new Promise(r => {
    img.addEventListener('load', r); img.addEventListener('error', r); setTimeout(r, 5000); })));
  for (const img of images) {
    if (!img.complete || img.naturalWidth === 0) out.images.push(img.getAttribute('src'));
  }
  // A notebook's figure: drawn for its width attribute (a retina PNG's CSS size) or
  // its pixel width; shrunk, its text shrinks with it; fewer than 1.5 image pixels
  // per CSS pixel, it is blurred on a high-density screen.
  for (const img of article.querySelectorAll('.cell_output img')) {
    if (!img.complete || img.naturalWidth === 0 || deliberate(img)) continue;
    const drawn = Number(img.getAttribute('width')) || parseFloat(img.style.width) ||
      img.naturalWidth;
    const shown = img.getBoundingClientRect().width;
    const name = `${cellName(img)}: figure`;
    if (shown < 0.9 * drawn) {
      out.wide.push({kind: 'shrunk-figure', detail: `${name} drawn ${drawn}px wide, ` +
        `shown at ${Math.round(shown)}px (${Math.round(100 * shown / drawn)}%)`});
    }
    if (img.naturalWidth < 1.5 * shown) {
      out.wide.push({kind: 'blurry-figure', detail: `${name} ${img.naturalWidth} pixels ` +
        `shown over ${Math.round(shown)}px (store figures as retina PNGs or SVG)`});
    }
  }

  for (const a of document.querySelectorAll('a[href]')) out.links.push(a.getAttribute('href'));
  for (const el of document.querySelectorAll('[id]')) out.ids.push(el.id);
  for (const el of document.querySelectorAll('a[name]')) out.ids.push(el.getAttribute('name'));
  for (const el of article.querySelectorAll('.exercise > .admonition-title')) {
    if (!el.closest('.solution')) out.exercises.push(text(el));
  }
  const buttons = '.dropdown-launch-buttons, .dropdown-download-buttons';
  for (const a of document.querySelectorAll(`${buttons.replace(/,/g, ' a,')} a`)) {
    out.launch.push(a.href);
  }
  for (const el of document.querySelectorAll(`${buttons.replace(/,/g, ' [onclick],')} [onclick]`)) {
    const m = (el.getAttribute('onclick') || '').match(/['"]([^'"]+)['"]/);
    if (m) out.launch.push(new URL(m[1], location.href).href);
  }
  for (const card of article.querySelectorAll('.sd-card')) {
    const title = card.querySelector('.sd-card-title');
    const link = card.querySelector('a.sd-stretched-link, .sd-card-title a');
    if (title && link) out.cards.push({title: text(title), href: link.getAttribute('href')});
  }
  for (const el of article.querySelectorAll('pre')) {
    if (/^\s*#+\s*(BEGIN|END) SOLUTION\s*$/m.test(el.textContent)) {
      out.markers.push(cellName(el));
    }
  }
  out.solutions = article.querySelectorAll('.solution').length;
  const h1 = article.querySelector('h1');
  if (h1) {
    const copy = h1.cloneNode(true);
    for (const a of copy.querySelectorAll('.headerlink')) a.remove();
    out.title = text(copy);
  }
  return out;
}
"""

WAIT_FOR_MATHJAX = """
async () => {
  if (!document.querySelector('script[src*="mathjax"]')) {
    await document.fonts.ready;
    return 'none';
  }
  for (let i = 0; i < 200 && !(window.MathJax && window.MathJax.startup
       && window.MathJax.startup.promise); i++) {
    await new Promise(r => setTimeout(r, 50));
  }
  if (!(window.MathJax && window.MathJax.startup)) return 'not loaded';
  await window.MathJax.startup.promise;
  await document.fonts.ready;  // widths are measured in the final fonts
  return 'typeset';
}
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection serves a page's assets

    def log_message(self, *args):  # the check reports what matters
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``root`` on a free port of 127.0.0.1; returns the server and its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def find_chromium(explicit: str | None) -> str:
    """The Chromium binary: ``--chromium``, else ``chromium`` or ``chromium-browser`` on PATH."""
    for candidate in (explicit, "chromium", "chromium-browser"):
        if candidate and (shutil.which(candidate) or Path(candidate).is_file()):
            return shutil.which(candidate) or candidate
    raise SystemExit(
        "check-book: no Chromium found. On Debian/Ubuntu: apt-get install chromium "
        "(as root), or pass --chromium /path/to/chrome (make check-book CHROMIUM=...)."
    )


def page_kernels(root: Path) -> dict[str, str]:
    """The kernel of each notebook page, read from the sources the build copied."""
    kernels = {}
    for source in (root / "_sources").rglob("*.ipynb"):
        try:
            name = json.loads(source.read_text())["metadata"]["kernelspec"]["name"]
        except (KeyError, ValueError):
            continue
        kernels[source.relative_to(root / "_sources").with_suffix("").as_posix()] = name
    return kernels


def run_browser(
    root: Path,
    mathjax: Path,
    screenshots: Path | None,
    chromium: str,
    online_kernels: set[str],
    only: str = "*",
    student: bool = False,
) -> tuple[list[Finding], set[str]]:
    """Load every page, return the findings and the names of the pages visited."""
    from playwright.sync_api import sync_playwright

    pages = [p for p in discover_pages(root) if fnmatch.fnmatch(page_name(p, root), only)]
    kernels = page_kernels(root)
    server, base = serve(root)
    findings: list[Finding] = []
    links: dict[str, list[str]] = {}
    ids: dict[str, set[str]] = {}
    cards: dict[str, list[dict[str, str]]] = {}
    titles: dict[str, str] = {}
    external: Counter[str] = Counter()
    if screenshots:
        screenshots.mkdir(parents=True, exist_ok=True)

    def route(r):  # only requests that leave the local server come here
        url = r.request.url
        match = MATHJAX_CDN.match(url.split("?")[0])
        if match:
            local = mathjax / match.group("path")
            if local.is_file():
                return r.fulfill(path=str(local))
        external[urlsplit(url).netloc] += 1
        return r.fulfill(status=204, body="")

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            context = browser.new_context(viewport=VIEWPORT)
            context.route(lambda url: not url.startswith(base), route)
            for path in pages:
                name = page_name(path, root)
                started = time.monotonic()
                target = redirect_target(path.read_text(errors="replace"))
                if target is not None:  # the root index.html sends readers to the first page
                    links[name] = [target]
                    print(f"  {name:<45} redirects to {target}")
                    continue
                errors: list[str] = []
                page = context.new_page()
                # A local resource that failed is reported with its address below;
                # external ones are answered locally and never fail.
                page.on(
                    "console",
                    lambda m, e=errors: (
                        m.type == "error"
                        and not m.text.startswith("Failed to load resource")
                        and e.append(m.text)
                    ),
                )
                page.on("pageerror", lambda exc, e=errors: e.append(str(exc)))
                page.on(
                    "response",
                    lambda resp, e=errors: (
                        resp.status >= 400
                        and resp.url.startswith(base)
                        and e.append(f"HTTP {resp.status} for {resp.url[len(base) :]}")
                    ),
                )
                page.goto(base + path.relative_to(root).as_posix(), wait_until="load")
                state = page.evaluate(WAIT_FOR_MATHJAX)
                page.wait_for_timeout(100)
                probe = page.evaluate(PAGE_PROBE)
                if screenshots:
                    page.evaluate("window.scrollTo(0, 0)")
                    shot = screenshots / (name.replace("/", "__") + ".png")
                    page.screenshot(path=str(shot))
                page.close()

                found = [Finding(name, "mathjax-error", d) for d in probe["mathErrors"]]
                found += [Finding(name, "untypeset-tex", d) for d in probe["untypeset"]]
                found += [Finding(name, w["kind"], w["detail"]) for w in probe["wide"]]
                found += [
                    Finding(name, "broken-image", f"{s} did not load") for s in probe["images"]
                ]
                found += [Finding(name, "console-error", e) for e in errors]
                if probe["exercises"] or name.startswith("solutions/"):
                    found += [
                        Finding(name, "exercise-number", d)
                        for d in exercise_heading_problems(name, probe["exercises"])
                    ]
                runs_online = kernels.get(name, "python3") in online_kernels
                found += [
                    Finding(name, "launch-button", d)
                    for d in launch_problems(name, probe["launch"], runs_online)
                ]
                found += [
                    Finding(name, "solution-shown", f"{where}: a BEGIN/END SOLUTION line")
                    for where in probe["markers"]
                ]
                if student and probe["solutions"]:
                    detail = f"{probe['solutions']} solution(s) in the student edition"
                    found.append(Finding(name, "solution-shown", detail))
                if state == "not loaded":
                    found.append(Finding(name, "console-error", "MathJax did not load"))
                findings += found
                links[name] = probe["links"]
                ids[path.relative_to(root).as_posix()] = set(probe["ids"])
                titles[path.relative_to(root).as_posix()] = probe["title"]
                cards[name] = probe["cards"]
                print(
                    f"  {name:<45} {len(found):3d} finding(s)  {time.monotonic() - started:4.1f}s",
                    flush=True,
                )
            browser.close()
    finally:
        server.shutdown()
    findings += link_problems(links, ids, root, base)
    findings += card_problems(cards, titles, base)
    if student:
        findings = [dataclasses.replace(f, edition="student") for f in findings]
    if external:
        hosts = ", ".join(f"{h} ({n})" for h, n in sorted(external.items()))
        print(f"  (external requests answered empty, this check is offline: {hosts})")
    return findings, {page_name(p, root) for p in pages}


def print_report(report: Report, allow_path: Path) -> None:
    """The failures, then the allow-list's state: what it still tolerates, what can go."""
    if report.allowed:
        by_key = Counter((f.page, f.kind) for f in report.allowed if f.edition == "full")
        print(f"\nallowed by {allow_path} (fix them, then delete their entries: the")
        print("allow-list must shrink to empty); in the full edition:")
        for (page, kind), n in sorted(by_key.items()):
            print(f"  {page}: {kind} x{n}")
    if report.shrinkable:
        print(f"\n{allow_path} allows more than was found; lower or delete these entries:")
        for page, kind, allowed, found in report.shrinkable:
            print(f"  {page}: {kind}: allowed {allowed}, found {found}")
    if report.failures:
        print(f"\nFAILED: {len(report.failures)} finding(s) not in {allow_path}:")
        for f in report.failures:
            edition = "" if f.edition == "full" else f"[{f.edition} edition] "
            print(f"  {edition}{f.page}: {f.kind}: {f.detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", type=Path, help="the built book, e.g. _build/html")
    parser.add_argument(
        "--student", type=Path, help="the built student edition too, e.g. _build/student/html"
    )
    parser.add_argument("--mathjax", type=Path, required=True, help="the mathjax npm package")
    parser.add_argument("--allow", type=Path, default=Path("tools/check_book_allow.yml"))
    parser.add_argument(
        "--screenshots", type=Path, help="folder for first-screen screenshots (student/ inside)"
    )
    parser.add_argument("--chromium", help="the Chromium binary (default: chromium on PATH)")
    parser.add_argument(
        "--online-kernels",
        default="python3",
        help="comma-separated kernels that Binder and Colab run (default: python3)",
    )
    parser.add_argument("--only", default="*", help="check only the pages matching this glob")
    parser.add_argument(
        "--write-allow",
        action="store_true",
        help="rewrite the allow-list to this run's findings (to lower it after fixes)",
    )
    parser.add_argument("--strict", action="store_true", help="also fail on entries that can go")
    parser.add_argument("--details", action="store_true", help="print allowed findings in full")
    args = parser.parse_args(argv)

    editions = [(args.html.resolve(), False)]
    if args.student:
        editions.append((args.student.resolve(), True))
    for root, _ in editions:
        if not (root / "index.html").is_file():
            raise SystemExit(f"check-book: {root} has no index.html; build it first (make book)")
    mathjax = args.mathjax.resolve()
    if not (mathjax / "es5" / "tex-mml-chtml.js").is_file():
        raise SystemExit(f"check-book: no MathJax at {mathjax}; make check-book fetches it")
    allow = load_allow_list(args.allow)
    chromium = find_chromium(args.chromium)
    started = time.monotonic()
    findings: list[Finding] = []
    pages: set[str] = set()
    for root, student in editions:
        print(f"check-book: {root} with {chromium}")
        shots = args.screenshots / "student" if args.screenshots and student else args.screenshots
        found, visited = run_browser(
            root,
            mathjax,
            shots,
            chromium,
            set(args.online_kernels.split(",")),
            args.only,
            student=student,
        )
        findings += found
        pages |= visited
    if args.write_allow:
        args.allow.write_text(render_allow_list(findings))
        allow = load_allow_list(args.allow)
        print(f"wrote {args.allow}: review its diff")
    report = compare(findings, allow, pages)
    if args.details:
        for f in report.allowed:
            print(f"  allowed: [{f.edition}] {f.page}: {f.kind}: {f.detail}")
    print_report(report, args.allow)
    entries = "entry" if len(report.shrinkable) == 1 else "entries"
    print(
        f"\ncheck-book: {len(editions)} edition(s), {len(pages)} pages, "
        f"{time.monotonic() - started:.0f}s: {len(report.failures)} failure(s), "
        f"{len(report.allowed)} allowed, {len(report.shrinkable)} allow-list {entries} to shrink"
    )
    if report.failures or (args.strict and report.shrinkable):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
