"""Plain text and markdown articles: an optional `date YYYY-MM-DD` first line or markdown front matter
(`title`, `date`/`published`, `url`, `source`), the title from the first heading or line."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

from rag.errors import DocumentError
from rag.ingest.loaders.common import make_title, parse_date, read_text
from rag.types import Document, Format, Source

_DATE_LINE = re.compile(r"^\s*date[:\s]\s*(\d{4}[-/]\d{1,2}[-/]\d{1,2})\b[ \t]*", re.IGNORECASE)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.DOTALL)


def _split_date_line(text: str, path: Path) -> tuple[dt.date | None, str]:
    """The seed format puts `date YYYY-MM-DD` first, sometimes followed by the text on the same line."""
    match = _DATE_LINE.match(text)
    if not match:
        return None, text
    try:
        published = parse_date(match.group(1))
    except ValueError as exc:
        raise DocumentError(path, f"bad date line: {exc}", line=1, hint="write `date YYYY-MM-DD`") from exc
    return published, text[match.end() :].lstrip("\n")


def _split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Markdown front matter (`---` / `key: value` lines / `---`), as static-site and newsroom exports
    write it; only flat scalar keys are read, which is all an article header needs."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    fields: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields[key.strip().lower()] = value.strip().strip("\"'")
    return fields, text[match.end() :]


def load(source: Source) -> Iterator[Document]:
    fields, text = _split_front_matter(read_text(source))
    published, body = _split_date_line(text, source.path)
    if not body.strip():
        raise DocumentError(source.path, "has a header but no article text", hint="add the article text")
    raw_date = fields.get("published") or fields.get("date")
    if raw_date:
        try:
            published = parse_date(raw_date)
        except ValueError as exc:
            raise DocumentError(
                source.path, f"bad date in front matter: {exc}", hint="write `date: YYYY-MM-DD`"
            ) from exc
    yield Document(
        id=source.doc_id,
        text=body.strip(),
        title=fields.get("title") or make_title(body),
        published=published,
        url=fields.get("url") or None,
        source=fields.get("source") or source.path.name,
    )


FORMAT = Format(
    (".txt", ".md", ".markdown"),
    "an optional first line `date YYYY-MM-DD` (the published date; the text may follow on the same line) or "
    "markdown front matter (`title`, `date`/`published`, `url`, `source`); title from the first markdown "
    "heading or non-empty line",
    load,
)
