"""PDF articles (press releases, reports, papers saved as PDF) through pypdf: the text of every page, its
paragraphs, and the title, author and date the file's metadata gives.

A PDF has no paragraphs, only lines placed on a page; text extraction gives one line per visual line. Left
so, every wrapped line would end a "sentence" for the chunker, cutting sentences (and the quotes cited from
them) in half. So lines are joined back into paragraphs: a line that was wrapped (the next line's first
word would not have fitted on it) continues with a space, a larger vertical gap than the document's line
spacing starts a new paragraph, and a page that stops mid-sentence continues on the next. Lines repeated at
the top or bottom of every page (running heads, "Page 2 of 5") are dropped: they are layout, not text.

The date is the creation date (`/CreationDate`), falling back to the modification date (`/ModDate`): the
creation date is when the release was made, while the modification date moves whenever anyone re-saves,
signs or stamps the file, which would date an old release as new. Neither is ever invented: a PDF without
them is undated.

A PDF whose pages hold no text is a scan (images of pages): it is reported, never indexed empty, since an
empty article can never be found and would hide that the file needs OCR.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from rag.errors import DocumentError
from rag.ingest.loaders.common import make_title, read_bytes
from rag.types import Document, Format, Source

# pypdf logs every repair it makes to a damaged file ("EOF marker not found", a 2 kB line per unknown font
# encoding); what it cannot repair is reported by `load` as a DocumentError with a hint, so the log lines
# would only bury that report.
logging.getLogger("pypdf").setLevel(logging.CRITICAL)

_GAP = 1.3
"""A vertical advance this many times the document's line spacing starts a paragraph: word processors
space paragraphs by at least half a line more than lines."""
_SAME_LINE = 3.0
"""Points of vertical offset within which two pieces of text are on one line."""
_FULL_LINE = 0.8
"""A line this close to a full line (`_text_width`, in characters) once the next word is added was
wrapped: characters differ in width, so a wrapped line can fall well short of the longest."""
_SENTENCE_END = re.compile(r"[.!?:…\"'”’)\]]$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_UNSTORABLE = re.compile(r"[\ud800-\udfff]")
_JUNK_TITLE = re.compile(r"^(untitled|microsoft \w+ - .*|.*\.(docx?|pdf|rtf|odt|pages|indd|txt|html?))$", re.IGNORECASE)
"""What PDF writers put in `/Title` when the author set none: the file name or the application's."""


@dataclass
class _Line:
    text: str
    y: float | None
    """Baseline height on the page (PDF points, growing upwards); None when it could not be placed."""


def _lines(page: Any) -> list[_Line]:
    """The page's text lines with their heights, read through pypdf's visitor so the text is exactly
    what `extract_text` gives; if the pieces do not add up to it, its lines without heights."""
    lines: list[_Line] = []
    pieces: list[str] = []
    current: list[str] = []
    height: list[float | None] = [None]

    def end_line() -> None:
        lines.append(_Line("".join(current), height[0]))
        current.clear()
        height[0] = None

    def visit(text: str, cm: Any, tm: Any, font: Any, size: Any) -> None:
        pieces.append(text)
        for part in re.split(r"(\n)", text):
            if part == "\n":
                end_line()
            elif part:
                if height[0] is None and part.strip():
                    height[0] = float(cm[1]) * float(tm[4]) + float(cm[3]) * float(tm[5]) + float(cm[5])
                current.append(part)

    text = page.extract_text(visitor_text=visit) or ""
    end_line()
    if "".join(pieces) != text:
        lines = [_Line(line, None) for line in text.split("\n")]
    return [_Line(_clean(line.text), line.y) for line in lines if _clean(line.text)]


def _clean(text: str) -> str:
    """Whitespace collapsed, and what a broken font map can produce and an index cannot store (control
    characters, halves of surrogate pairs) replaced."""
    return " ".join(_UNSTORABLE.sub("\ufffd", _CONTROL.sub("", text)).split())


def _drop_running_lines(pages: list[list[_Line]]) -> None:
    """Remove the first or last line when every page has it (numbers aside) and it is short: running heads
    and folios. Once per end, and never a full-width line, so an article whose pages happen to start
    alike keeps its text."""
    texts = [lines for lines in pages if lines]
    if len(texts) < 2 or any(len(lines) < 2 for lines in texts):
        return
    widest = max(len(line.text) for lines in texts for line in lines)
    for end in (0, -1):
        keys = {re.sub(r"\d+", "#", lines[end].text.lower()) for lines in texts}
        if len(keys) == 1 and all(len(lines[end].text) < _FULL_LINE * widest for lines in texts):
            for lines in texts:
                lines.pop(end)


def _percentile(values: list[float], share: float) -> float | None:
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))] if ordered else None


def _text_width(pages: list[list[_Line]]) -> int:
    """How many characters a full line of the document holds: nearly the longest of its lines, but not a
    single outlier's (a long URL, a table row in small type)."""
    return int(_percentile([len(line.text) for lines in pages for line in lines], 0.9) or 0)


def _wrapped(line: str, next_line: str, width: int) -> bool:
    """Whether `line` ended only because the next word did not fit."""
    return len(line) + 1 + len(next_line.split()[0]) >= _FULL_LINE * width


def _pairs(pages: list[list[_Line]]) -> Iterator[tuple[_Line, _Line]]:
    for lines in pages:
        yield from pairwise(lines)


def _line_spacing(pages: list[list[_Line]], width: int) -> float | None:
    """The document's line spacing: the advance from a wrapped line to the next, which is in the same
    paragraph by definition. A low percentile of those, since a line merely long enough to look wrapped
    is followed by a paragraph gap, and a page of short paragraphs has more of those than line advances.
    Advances of a few points are pieces of one line set apart (a superscript), not lines."""
    advances = [a.y - b.y for a, b in _pairs(pages) if a.y is not None and b.y is not None and a.y - b.y > _SAME_LINE]
    after_wraps = [
        a.y - b.y
        for a, b in _pairs(pages)
        if a.y is not None and b.y is not None and a.y - b.y > _SAME_LINE and _wrapped(a.text, b.text, width)
    ]
    return _percentile(after_wraps or advances, 0.25)


@dataclass
class _Page:
    text: str
    continues: bool
    """The last line is full and stops mid-sentence: its paragraph goes on on the next page. (One that
    stops at a sentence's end may too, but a page break there is taken as a paragraph's end: either way no
    sentence is cut.)"""


def _paragraphs(lines: list[_Line], width: int, spacing: float | None) -> _Page:
    """One page's lines joined into paragraphs (see the module doc); `width` and `spacing` are the
    document's (`_text_width`, `_line_spacing`)."""
    if not lines:
        return _Page("", False)
    out = [lines[0].text]
    for previous, line in pairwise(lines):
        gap = None if previous.y is None or line.y is None else previous.y - line.y
        if spacing is not None and gap is not None and (gap > _GAP * spacing or gap < -_SAME_LINE):
            out.append("\n\n")
        elif _wrapped(previous.text, line.text, width):
            out.append("" if previous.text.endswith("-") else " ")
        else:
            out.append("\n")
        out.append(line.text)
    last = lines[-1].text
    return _Page("".join(out), len(last) >= _FULL_LINE * width and not _SENTENCE_END.search(last))


def _join_pages(pages: list[_Page]) -> str:
    text, continues = "", False
    for page in pages:
        if not page.text:
            continue
        if not text:
            text = page.text
        elif continues:  # the paragraph goes on over the page break
            text += ("" if text.endswith("-") else " ") + page.text
        else:
            text += "\n\n" + page.text
        continues = page.continues
    return text


def _info(reader: Any) -> tuple[str, str | None, dt.date | None]:
    """Title, author and date from the document information; a damaged entry counts as absent."""
    try:
        info = reader.metadata
    except Exception:  # a broken /Info is common and costs only the metadata
        return "", None, None
    if info is None:
        return "", None, None

    def text(field: str) -> str:
        try:
            value = getattr(info, field)
        except Exception:
            return ""
        return _clean(str(value)) if value else ""

    def date(field: str) -> dt.date | None:
        try:
            value = getattr(info, field)
        except Exception:  # malformed D:YYYYMMDD... strings raise
            return None
        return value.date() if isinstance(value, dt.datetime) else None

    title = text("title")
    return (
        "" if _JUNK_TITLE.match(title) else title,
        text("author") or None,
        date("creation_date") or date("modification_date"),
    )


def _open(data: bytes, path: Path) -> Any:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    if b"%PDF-" not in data[:1024]:
        raise DocumentError(path, "is not a PDF (no %PDF header)", hint="check the file; it may be a web page or image")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(
                path,
                "is encrypted with a password",
                hint="save a copy without the password, e.g. `qpdf --decrypt --password=... in.pdf out.pdf`",
            )
    except DependencyError as exc:
        raise DocumentError(
            path,
            f"is encrypted in a way pypdf needs an extra package for ({exc})",
            hint="install `cryptography`, or save an unencrypted copy with `qpdf --decrypt`",
        ) from exc
    return reader


def load(source: Source) -> Iterator[Document]:
    import pypdf

    path = source.path
    data = read_bytes(source)
    try:
        reader = _open(data, path)
        pages: list[list[_Line]] = []
        unreadable: list[int] = []
        for number, page in enumerate(reader.pages, start=1):
            try:
                pages.append(_lines(page))
            except Exception:  # one broken page (a bad font, a corrupt stream) must not cost the others
                pages.append([])
                unreadable.append(number)
    except DocumentError:
        raise
    except Exception as exc:  # a damaged file can fail anywhere inside pypdf, with any exception
        raise DocumentError(
            path, f"is not a readable PDF ({type(exc).__name__}: {exc})"[:300], hint="download or export it again"
        ) from exc
    _drop_running_lines(pages)
    width = _text_width(pages)
    spacing = _line_spacing(pages, width)
    text = _join_pages([_paragraphs(lines, width, spacing) for lines in pages])
    if not text.strip():
        if unreadable and len(unreadable) == len(pages):
            raise DocumentError(
                path, "is not a readable PDF (no page could be read)", hint="download or export it again"
            )
        raise DocumentError(path, "has no text layer (a scanned PDF?)", hint="run OCR on it first, e.g. ocrmypdf")
    title, author, published = _info(reader)
    metadata: dict[str, Any] = {"pages": len(pages), "extraction": f"pypdf {pypdf.__version__}"}
    if author:
        metadata["author"] = author
    if unreadable:
        metadata["unreadable_pages"] = unreadable
    yield Document(
        id=source.doc_id,
        text=text,
        title=title or make_title(text),
        published=published,
        source=path.name,
        metadata=metadata,
    )


FORMAT = Format(
    (".pdf",),
    "the text of every page (pypdf), wrapped lines joined into paragraphs, running heads and page numbers "
    "dropped; title, author and date (creation, else modification) from the PDF metadata; a scanned PDF "
    "without a text layer is reported",
    load,
    isolated=True,
    media_types=("application/pdf",),
)
