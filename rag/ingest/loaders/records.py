"""JSON and JSON Lines exports of feeds and archives: one article per record."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.errors import DocumentError
from rag.ingest.loaders.common import make_title, parse_date, read_text, refuse_binary
from rag.types import Document, Format, Source

_RECORD_KEYS = {"id", "doc_id", "title", "text", "body", "content", "url", "source", "published", "date"}


def record_text(record: dict[str, Any]) -> object:
    """A record's article text, under whichever of the names feeds use for it."""
    return record.get("text") or record.get("body") or record.get("content")


def record_to_document(record: object, path: Path, line: int | None, fallback_id: str) -> Document:
    """One JSON record; unknown keys survive as metadata so nothing the feed provided is lost."""
    if not isinstance(record, dict):
        raise DocumentError(path, "record is not a JSON object", line=line, hint="one {...} per line")
    text = record_text(record)
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


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A JSON escape of a surrogate code point; paired ones decode to one character, a lone one cannot be stored."""


def _parse(text: str, path: Path, line: int | None) -> object:
    """JSON as `json` reads it, with what it lets through as other exceptions turned into a per-line error:
    nesting too deep to parse, integers too long to convert, and escapes of lone surrogates, which no
    file can store (the index is UTF-8)."""
    fix = "fix or delete the line" if line else "fix the JSON syntax"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(path, f"malformed JSON: {exc.msg}", line=line or exc.lineno, hint=fix) from exc
    except RecursionError as exc:
        raise DocumentError(path, "JSON nested too deeply", line=line, hint=fix) from exc
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise DocumentError(path, f"unreadable JSON value: {exc}"[:200], line=line, hint=fix) from exc
    if _SURROGATE_ESCAPE.search(text) is None:  # the file was valid UTF-8: only an escape can add one
        return data
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DocumentError(path, "JSON holds an invalid \\u escape (a lone surrogate)", line=line, hint=fix) from exc
    except RecursionError as exc:
        raise DocumentError(path, "JSON nested too deeply", line=line, hint=fix) from exc
    return data


_BOM = b"\xef\xbb\xbf"
_SKIP = 1 << 20
"""Bytes read at a time while skipping the rest of an over-long line."""
_ESCAPED = 6
"""Most bytes of JSON one character of text can take (`\\u0436`): a line longer than this many times the
article limit cannot hold an article within it, so it is skipped unread."""


def _lines(source: Source) -> Iterator[tuple[int, str | DocumentError]]:
    """The file's lines, numbered from 1, read one at a time so RSS does not grow with the file; a line over
    the article limit is reported and skipped without ever being held whole."""
    limit = None if source.max_bytes is None else _ESCAPED * source.max_bytes
    for number in itertools.count(1):
        raw = source.file.readline(-1 if limit is None else limit + 1)
        if not raw:
            return
        if limit is not None and len(raw) > limit and not raw.endswith(b"\n"):
            size = len(raw)
            while (rest := source.file.readline(_SKIP)) and (size := size + len(rest)) and not rest.endswith(b"\n"):
                pass
            most = limit / _ESCAPED / 1e6
            problem = f"the record is {size / 1e6:.1f} MB of JSON, too long for an article of at most {most:g} MB"
            yield number, DocumentError(source.path, problem, line=number, hint="split it, or raise RAG_MAX_ARTICLE_MB")
            continue
        if number == 1:
            refuse_binary(raw, source.path)
            raw = raw.removeprefix(_BOM)
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            hint = "re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
            yield (
                number,
                DocumentError(source.path, f"not valid UTF-8 (byte {exc.start} of the line)", line=number, hint=hint),
            )


def _json_lines(source: Source) -> Iterator[Document | DocumentError]:
    found = False
    for number, line in _lines(source):
        if isinstance(line, str) and not line.strip():
            continue
        found = True
        try:
            if isinstance(line, DocumentError):
                raise line
            record = _parse(line, source.path, number)
            yield record_to_document(record, source.path, number, f"{source.doc_id}#{number}")
        except DocumentError as exc:
            yield exc
    if not found:
        raise DocumentError(source.path, "file is empty", hint="one JSON object per line")


def load(source: Source) -> Iterator[Document | DocumentError]:
    """JSON Lines stream record by record; a JSON document is read whole (it cannot be parsed in parts)."""
    if source.path.suffix.lower() == ".jsonl":
        yield from _json_lines(source)
        return
    path, doc_id = source.path, source.doc_id
    data = _parse(read_text(source), path, None)
    records = data if isinstance(data, list) else [data]
    if not records:
        raise DocumentError(path, "no records", hint="a JSON object, or a list of objects with `text`")
    for number, record in enumerate(records, start=1):
        try:
            fallback = doc_id if len(records) == 1 else f"{doc_id}#{number}"
            yield record_to_document(record, path, None, fallback)
        except DocumentError as exc:
            if len(records) > 1:
                # A JSON array has no useful line numbers; the record's position is how to find it.
                exc = DocumentError(path, f"record {number}: {exc.problem}", hint=exc.hint)
            yield exc


FORMAT = Format(
    (".jsonl", ".json"),
    "one article per record: `text` (required), `id`, `title`, `url`, `source`, `published` or `date`; other "
    "fields kept as metadata",
    load,
    many=True,
)
