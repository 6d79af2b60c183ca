"""What every loader shares: the result type, reading a text file safely, dates and titles."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from rag.errors import DocumentError
from rag.types import Source

_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_TITLE_CHARS = 120


def parse_date(value: object) -> dt.date | None:
    """Accept the date shapes news feeds actually use: 2020-10-08, 2022/06/12, ISO datetimes."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    match = re.match(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})", text)
    if not match:
        raise ValueError(f"unrecognised date {text!r}; use YYYY-MM-DD")
    year, month, day = (int(part) for part in match.groups())
    return dt.date(year, month, day)


def make_title(text: str) -> str:
    """A short display title from the first non-empty line (news files often lack a real title)."""
    for line in text.splitlines():
        heading = _MD_HEADING.match(line)
        if heading:
            return heading.group(1).strip()
        line = line.strip()
        if line:
            if len(line) <= _TITLE_CHARS:
                return line
            cut = line[:_TITLE_CHARS].rsplit(" ", 1)[0]
            return cut.rstrip(",;:") + "…"
    return ""


def refuse_binary(head: bytes, path: Path) -> None:
    """A NUL byte near the start means an image, archive or office file was given as an article."""
    if b"\x00" in head[:8192]:
        raise DocumentError(path, "looks like a binary file", hint="only text, markdown, HTML and JSON(L)")


def read_bytes(source: Source) -> bytes:
    """The whole file, for binary formats (PDF). Read at most one byte over `source.max_bytes`: the
    registry checks a file's size before opening it, but a fetched body arrives without one."""
    limit = source.max_bytes
    data = source.file.read() if limit is None else source.file.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise DocumentError(
            source.path,
            f"the file is over the {limit / 1e6:g} MB limit for one article",
            hint="split it into articles, or raise RAG_MAX_ARTICLE_MB",
        )
    if not data.strip():
        raise DocumentError(source.path, "file is empty", hint="remove it or add the article text")
    return data


def read_text(source: Source) -> str:
    """The whole file as text, for formats that hold one article (a page, a text file)."""
    data = source.file.read()
    refuse_binary(data, source.path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            source.path,
            f"not valid UTF-8 (byte {exc.start})",
            hint="re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`",
        ) from exc
    if not text.strip():
        # Checked after decoding: a file holding only a UTF-8 BOM is as empty as a zero-byte one.
        raise DocumentError(source.path, "file is empty", hint="remove it or add the article text")
    return text.replace("\r\n", "\n").replace("\r", "\n")
