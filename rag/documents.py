"""Documents: turning article files into typed `Document`s with dates, titles and stable ids.

Loading never stops at the first bad file: a corpus of thousands of articles with one broken line must
still be indexed, so loaders return the good documents together with the errors of the bad ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import DocumentError

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl", ".json")
_DATE_LINE = re.compile(r"^\s*date[:\s]\s*(\d{4}[-/]\d{1,2}[-/]\d{1,2})\b[ \t]*", re.IGNORECASE)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*(?:\n|\Z)", re.DOTALL)
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_TITLE_CHARS = 120
_RECORD_KEYS = {"id", "doc_id", "title", "text", "body", "content", "url", "source", "published", "date"}


@dataclass(frozen=True)
class Document:
    """One article. `text` is what chunk spans point into; `content_hash` detects changed content."""

    id: str
    text: str
    title: str = ""
    published: dt.date | None = None
    url: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


@dataclass
class LoadResult:
    """Documents read successfully plus one error per file or line that was not."""

    documents: list[Document] = field(default_factory=list)
    errors: list[DocumentError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        self.documents.extend(other.documents)
        self.errors.extend(other.errors)
        self.skipped.extend(other.skipped)


def content_hash(text: str) -> str:
    """Whitespace-insensitive, so re-saving a file with other line endings is not a "change"."""
    normalized = " ".join(text.split())
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:32]


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


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise DocumentError(path, "looks like a binary file", hint="only text, markdown, HTML and JSON(L)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            path,
            f"not valid UTF-8 (byte {exc.start})",
            hint="re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`",
        ) from exc
    if not text.strip():
        # Checked after decoding: a file holding only a UTF-8 BOM is as empty as a zero-byte one.
        raise DocumentError(path, "file is empty", hint="remove it or add the article text")
    return text.replace("\r\n", "\n").replace("\r", "\n")


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


def _text_document(path: Path, doc_id: str) -> Document:
    fields, text = _split_front_matter(_read_text(path))
    published, body = _split_date_line(text, path)
    if not body.strip():
        raise DocumentError(path, "has a header but no article text", hint="add the article text")
    raw_date = fields.get("published") or fields.get("date")
    if raw_date:
        try:
            published = parse_date(raw_date)
        except ValueError as exc:
            raise DocumentError(path, f"bad date in front matter: {exc}", hint="write `date: YYYY-MM-DD`") from exc
    return Document(
        id=doc_id,
        text=body.strip(),
        title=fields.get("title") or make_title(body),
        published=published,
        url=fields.get("url") or None,
        source=fields.get("source") or path.name,
    )


def html_to_text(html: str) -> tuple[str, str, str | None]:
    """Main text, title and published-time meta of a page: scripts, styles and navigation are not article."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    meta = soup.find("meta", attrs={"property": "article:published_time"}) or soup.find("meta", attrs={"name": "date"})
    date_value = meta.get("content") if meta is not None else None
    for tag in soup(["script", "style", "noscript", "nav", "header", "footer", "aside", "form", "template"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with(" ")  # text is joined without separators so inline tags add no stray spaces
    root = soup.find("article") or soup.find("main") or soup.body or soup
    blocks = [
        " ".join(el.get_text().split())
        for el in root.find_all(["h1", "h2", "h3", "h4", "p", "li", "blockquote", "pre"])
        if not el.find_parent(["p", "li", "blockquote"])
    ]
    text = "\n\n".join(block for block in blocks if block)
    if not text:
        text = "\n".join(line.strip() for line in root.get_text("\n").splitlines() if line.strip())
    h1 = root.find("h1")
    return (
        text,
        (h1.get_text(" ", strip=True) if h1 else "") or title,
        str(date_value) if date_value else None,
    )


def _html_document(path: Path, doc_id: str) -> Document:
    text, title, date_value = html_to_text(_read_text(path))
    if not text.strip():
        raise DocumentError(path, "HTML page has no readable text", hint="check that it is an article page")
    try:
        published = parse_date(date_value)
    except ValueError:
        published = None
    return Document(id=doc_id, text=text, title=title or make_title(text), published=published, source=path.name)


def record_to_document(record: object, path: Path, line: int | None, fallback_id: str) -> Document:
    """One JSON record; unknown keys survive as metadata so nothing the feed provided is lost."""
    if not isinstance(record, dict):
        raise DocumentError(path, "record is not a JSON object", line=line, hint="one {...} per line")
    text = record.get("text") or record.get("body") or record.get("content")
    if not isinstance(text, str) or not text.strip():
        raise DocumentError(path, "record has no `text`", line=line, hint="add a non-empty `text` field")
    # `or`, not a `get` default: feeds often send `"published": null` next to a usable `date`.
    raw_date = record.get("published") or record.get("date")
    try:
        published = parse_date(raw_date)
    except ValueError as exc:
        raise DocumentError(path, str(exc), line=line, hint="use YYYY-MM-DD in `published`") from exc
    url = record.get("url") or None
    doc_id = record.get("id") or record.get("doc_id") or url or fallback_id
    text = text.replace("\r\n", "\n").strip()
    title = str(record.get("title") or "").strip() or make_title(text)
    metadata = {key: value for key, value in record.items() if key not in _RECORD_KEYS}
    source = record.get("source")
    return Document(
        id=str(doc_id),
        text=text,
        title=title,
        published=published,
        url=str(url) if url else None,
        source=str(source) if source else path.name,
        metadata=metadata,
    )


def _json_documents(path: Path, doc_id: str) -> LoadResult:
    result = LoadResult()
    text = _read_text(path)
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                result.errors.append(
                    DocumentError(path, f"malformed JSON: {exc.msg}", line=number, hint="fix or delete the line")
                )
                continue
            try:
                result.documents.append(record_to_document(record, path, number, f"{doc_id}#{number}"))
            except DocumentError as exc:
                result.errors.append(exc)
        if not result.documents and not result.errors:
            result.errors.append(DocumentError(path, "no records", hint="one JSON object per line"))
        return result
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(path, f"malformed JSON: {exc.msg}", line=exc.lineno, hint="fix the JSON syntax") from exc
    records = data if isinstance(data, list) else [data]
    if not records:
        raise DocumentError(path, "no records", hint="a JSON object, or a list of objects with `text`")
    for number, record in enumerate(records, start=1):
        try:
            fallback = doc_id if len(records) == 1 else f"{doc_id}#{number}"
            result.documents.append(record_to_document(record, path, None, fallback))
        except DocumentError as exc:
            if len(records) > 1:
                # A JSON array has no useful line numbers; the record's position is how to find it.
                exc = DocumentError(path, f"record {number}: {exc.problem}", hint=exc.hint)
            result.errors.append(exc)
    return result


def load_file(path: Path, doc_id: str | None = None) -> LoadResult:
    """Load one file; `doc_id` defaults to the file name, the part of the path that survives moves."""
    doc_id = doc_id or path.name
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            return _json_documents(path, doc_id)
        if suffix in (".html", ".htm"):
            return LoadResult(documents=[_html_document(path, doc_id)])
        if suffix in (".txt", ".md", ".markdown"):
            return LoadResult(documents=[_text_document(path, doc_id)])
        raise DocumentError(
            path,
            f"unsupported file type {suffix or '(none)'}",
            hint=f"use one of {', '.join(SUPPORTED_SUFFIXES)}",
        )
    except DocumentError as exc:
        return LoadResult(errors=[exc])
    except OSError as exc:
        return LoadResult(errors=[DocumentError(path, f"cannot read: {exc.strerror}", hint="check permissions")])


def _walk(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            yield path


def load_paths(paths: Iterable[Path | str]) -> LoadResult:
    """Files load under their own name; files inside a directory under their path relative to it."""
    result = LoadResult()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in _walk(path):
                if file.suffix.lower() in SUPPORTED_SUFFIXES:
                    result.extend(load_file(file, file.relative_to(path).as_posix()))
                else:
                    result.skipped.append(str(file))
        elif path.is_file():
            result.extend(load_file(path))
        else:
            result.errors.append(DocumentError(path, "no such file or directory", hint="check the path"))
    return result
