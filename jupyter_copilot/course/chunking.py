"""Course files -> passages: one per section (a heading and what follows it).

A notebook's passage starts at a markdown cell with a heading and takes the cells
after it (markdown and code) up to the next heading or `MAX_PASSAGE_CHARS`; its
`cell_index` is the cell where it starts, so a citation opens the notebook there.
Markdown and HTML files are cut at their headings; a PDF gives one passage per page
(only if `pypdf` is installed: PDF text is optional).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Optional

log = logging.getLogger("jupyter_copilot")

# About 400 tokens: a section of a course notebook, enough for the model to quote.
MAX_PASSAGE_CHARS = 1600
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
SUFFIXES = (".ipynb", ".md", ".markdown", ".html", ".htm", ".pdf")


@dataclass
class Passage:
    title: str  # "Notebook title › section"
    text: str  # what the model reads and the panel shows (markdown / code)
    cell_index: Optional[int] = None  # notebooks: the first cell of the passage
    page: Optional[int] = None  # PDF: 1-based page


def passages_of(path: Path) -> list[Passage]:
    """The passages of one course file ([] for a file we cannot read)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".ipynb":
            return notebook_passages(json.loads(path.read_bytes()), path.stem)
        if suffix in (".md", ".markdown"):
            return markdown_passages(path.read_text(encoding="utf-8", errors="replace"), path.stem)
        if suffix in (".html", ".htm"):
            return html_passages(path.read_text(encoding="utf-8", errors="replace"), path.stem)
        if suffix == ".pdf":
            return pdf_passages(path)
    except (OSError, ValueError, RecursionError) as exc:
        log.warning("jupyter-copilot: course file %s skipped: %s", path, exc)
    return []


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _first_heading(markdown: str) -> Optional[str]:
    match = HEADING.search(markdown)
    return _plain(match.group(2)) if match else None


def _plain(text: str) -> str:
    """A heading without markdown links, emphasis or HTML anchors."""
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[*_`]+", "", text).strip()


class _Builder:
    """Accumulates sections, cutting one that grows past MAX_PASSAGE_CHARS."""

    def __init__(self, doc_title: str) -> None:
        self.doc_title = doc_title
        self.section = ""
        self.out: list[Passage] = []
        self.parts: list[str] = []
        self.start: Optional[int] = None

    def heading(self, title: str, index: Optional[int]) -> None:
        self.flush()
        self.section = title
        self.start = index

    def add(self, text: str, index: Optional[int] = None) -> None:
        text = text.strip()
        if not text:
            return
        if self.parts and sum(map(len, self.parts)) + len(text) > MAX_PASSAGE_CHARS:
            self.flush()
        if not self.parts:
            self.start = index if index is not None else self.start
        self.parts.append(text[: MAX_PASSAGE_CHARS * 2])

    def flush(self) -> None:
        if self.parts:
            title = self.doc_title
            if self.section and self.section != self.doc_title:
                title = f"{self.doc_title} › {self.section}"
            self.out.append(Passage(title, "\n\n".join(self.parts), self.start))
        self.parts, self.start = [], None


def notebook_passages(notebook: dict, fallback_title: str) -> list[Passage]:
    cells = notebook.get("cells", []) if isinstance(notebook, dict) else []
    cells = [c for c in cells if isinstance(c, dict)]
    title = fallback_title
    for cell in cells:
        if cell.get("cell_type") == "markdown" and (found := _first_heading(_source(cell))):
            title = found
            break
    builder = _Builder(title)
    for index, cell in enumerate(cells):
        source = _source(cell)
        if cell.get("cell_type") == "markdown":
            heading = _first_heading(source)
            if heading and source.lstrip().startswith("#"):
                builder.heading(heading, index)
            builder.add(source, index)
        elif cell.get("cell_type") == "code":
            builder.add(f"```python\n{source.strip()}\n```" if source.strip() else "", index)
    builder.flush()
    return builder.out


def markdown_passages(text: str, fallback_title: str) -> list[Passage]:
    title = _first_heading(text) or fallback_title
    builder = _Builder(title)
    position = 0
    for match in HEADING.finditer(text):
        builder.add(text[position : match.start()])
        builder.heading(_plain(match.group(2)), None)
        builder.add(match.group(0))
        position = match.end()
    builder.add(text[position:])
    builder.flush()
    return builder.out


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, with its h1-h3 headings as markdown headings."""

    SKIP = {"script", "style", "head", "nav"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in ("h1", "h2", "h3"):
            self.chunks.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in ("p", "div", "br", "li", "pre", "tr"):
            self.chunks.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skipping:
            self._skipping -= 1
        elif tag in ("h1", "h2", "h3"):
            self.chunks.append("\n\n")

    def handle_data(self, data):
        if not self._skipping:
            self.chunks.append(data)


def html_passages(html: str, fallback_title: str) -> list[Passage]:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = re.sub(r"\n{3,}", "\n\n", "".join(parser.chunks))
    return markdown_passages(text, fallback_title)


_warned_pdf = False


def pdf_passages(path: Path) -> list[Passage]:
    global _warned_pdf
    try:
        from pypdf import PdfReader
    except ImportError:
        if not _warned_pdf:
            log.info("jupyter-copilot: PDF course files are skipped (pip install pypdf to index them)")
            _warned_pdf = True
        return []
    reader = PdfReader(str(path))
    title = (reader.metadata.title if reader.metadata else None) or path.stem
    out = []
    for number, page in enumerate(reader.pages, start=1):
        text = (page.extract_text() or "").strip()
        if text:
            out.append(Passage(f"{title} › p. {number}", text[: MAX_PASSAGE_CHARS * 2], None, number))
    return out
