"""Loaders: article files to `Document`s, one module per format, registered by suffix below.

Loading never stops at the first bad file: a corpus of thousands of articles with one broken line must
still be indexed, so loaders return the good documents together with the errors of the bad ones. The CLI,
the chat page's uploader and the README's table of formats all read `FORMATS`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from rag.errors import DocumentError
from rag.ingest.loaders import budget, html, pdf, records, text
from rag.registry import Registry
from rag.types import Document, Format, LoadResult, Source

FORMATS: Registry[Format] = Registry("document format", lambda fmt: fmt.suffixes, group="rag.formats")
"""Suffix (lower case, with the dot) -> the format that reads it."""
register = FORMATS.register

register(text.FORMAT)
register(html.FORMAT)
register(records.FORMAT)
register(pdf.FORMAT)
FORMATS.load_entry_points()


def suffixes() -> list[str]:
    return list(FORMATS)


def format_served_as(media_type: str) -> Format | None:
    """The format that reads a web page served as `media_type` (`Format.media_types`)."""
    return next((fmt for fmt in FORMATS.values() if media_type in fmt.media_types), None)


def formats_table() -> str:
    """The README's table of formats, generated: a test fails when the README differs from it."""
    rows = ["| format | what is read |", "| --- | --- |"]
    for fmt in dict.fromkeys(FORMATS.values()):
        rows.append(f"| {', '.join(f'`{suffix}`' for suffix in fmt.suffixes)} | {fmt.description} |")
    return "\n".join(rows)


@dataclass
class Loaded:
    """One document, or the error of what could not be read, with the input bytes it accounts for: an
    indexer's progress bar moves by bytes, so a single large file shows progress as it is read."""

    item: Document | DocumentError
    size: int


@dataclass
class Inputs:
    """The files a run will read, found before any is opened so progress has a total."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    """(path, document id) in reading order."""
    errors: list[DocumentError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(_size(path) for path, _ in self.files)


class _Counted(io.RawIOBase):
    """A file that counts the bytes read through it, so progress is known whatever a loader reads with."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.consumed += n or 0
        return int(n or 0)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def find_files(paths: Iterable[Path | str]) -> Inputs:
    """Files load under their own name; files inside a directory under their path relative to it. A file
    named outright is read whatever its type (and refused if unknown); in a directory, unknown types are
    skipped, since folders hold images and notes beside articles."""
    found = Inputs()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in _walk(path):
                if file.suffix.lower() in FORMATS:
                    found.files.append((file, file.relative_to(path).as_posix()))
                else:
                    found.skipped.append(str(file))
        elif path.is_file():
            found.files.append((path, path.name))
        else:
            found.errors.append(DocumentError(path, "no such file or directory", hint="check the path"))
    return found


def read_file(
    path: Path, doc_id: str | None = None, *, max_bytes: int | None = None, max_seconds: float | None = None
) -> Iterator[Loaded]:
    """The documents of one file as they are read; `doc_id` defaults to the file name, the part of the path
    that survives moves. An article over `max_bytes` is reported, not read: news articles are kilobytes,
    and a runaway file would otherwise take minutes and gigabytes before anything is saved. A format that
    parses markup is read within `max_seconds` (`rag.ingest.loaders.budget`). Nothing a loader raises escapes:
    one unreadable file must never cost the others."""
    doc_id = doc_id or path.name
    fmt = FORMATS.get(path.suffix.lower())
    if max_seconds is None or fmt is None or not fmt.isolated:
        yield from read_in_process(path, doc_id, max_bytes=max_bytes)
        return
    size = _size(path)
    try:
        items = _read_isolated(path, doc_id, max_bytes, max_seconds)
    except OSError as exc:
        items = [DocumentError(path, f"cannot be read: {exc}", hint="check the machine's memory and processes")]
    for number, item in enumerate(items, start=1):
        yield Loaded(item, size if number == len(items) else 0)


def read_in_process(path: Path, doc_id: str, *, max_bytes: int | None = None) -> Iterator[Loaded]:
    """`read_file` in this process, without a time budget."""
    size = _size(path)
    done = 0
    try:
        fmt = _format(path, doc_id, size, max_bytes)
        with path.open("rb", buffering=0) as raw:
            counted = _Counted(raw)
            source = Source(io.BufferedReader(counted), path, doc_id, max_bytes)
            previous: Loaded | None = None
            for item in fmt.load(source):
                if previous is not None:
                    yield previous
                if isinstance(item, Document) and max_bytes is not None and len(item.text) > max_bytes:
                    item = _too_large(path, len(item.text), max_bytes, item.id)
                previous = Loaded(item, counted.consumed - done)
                done = counted.consumed
        if previous is None:
            raise DocumentError(path, "holds no articles", hint="check that it is an article file")
        previous.size += size - done  # what was left unread still counts as read
        yield previous
    except DocumentError as exc:
        yield Loaded(exc, size - done)
    except OSError as exc:
        yield Loaded(DocumentError(path, f"cannot read: {exc.strerror}", hint="check permissions"), size - done)
    except Exception as exc:  # one unreadable file must never cost the others
        problem = f"could not be read ({type(exc).__name__}: {exc})"
        yield Loaded(DocumentError(path, problem[:300], hint="check the file; the others were read"), size - done)


def _format(path: Path, doc_id: str, size: int, max_bytes: int | None) -> Format:
    try:
        doc_id.encode("utf-8")
    except UnicodeEncodeError:
        raise DocumentError(path, "the file name is not valid UTF-8", hint="rename the file") from None
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DocumentError(
            path, f"unsupported file type {suffix or '(none)'}", hint=f"use one of {', '.join(FORMATS)}"
        )
    fmt = FORMATS[suffix]
    if max_bytes is not None and not fmt.many and size > max_bytes:
        raise _too_large(path, size, max_bytes)
    return fmt


def _collect(loaded: Iterable[Loaded], into: LoadResult) -> LoadResult:
    for one in loaded:
        if isinstance(one.item, Document):
            into.documents.append(one.item)
        else:
            into.errors.append(one.item)
    return into


def load_file(
    path: Path, doc_id: str | None = None, *, max_bytes: int | None = None, max_seconds: float | None = None
) -> LoadResult:
    """Every document of one file at once: for tests and small inputs (the indexer streams `read_file`)."""
    return _collect(read_file(path, doc_id, max_bytes=max_bytes, max_seconds=max_seconds), LoadResult())


def load_paths(paths: Iterable[Path | str], *, max_bytes: int | None = None) -> LoadResult:
    """Every document under the paths at once (see `find_files` for the ids they get)."""
    found = find_files(paths)
    result = LoadResult(errors=found.errors, skipped=found.skipped)
    for path, doc_id in found.files:
        _collect(read_file(path, doc_id, max_bytes=max_bytes), result)
    return result


def _too_large(path: Path, size: int, limit: int, doc_id: str | None = None) -> DocumentError:
    what = f"article {doc_id!r}" if doc_id else "the file"
    return DocumentError(
        path,
        f"{what} is {size / 1e6:.1f} MB, over the {limit / 1e6:g} MB limit for one article",
        hint="split it into articles, or raise RAG_MAX_ARTICLE_MB",
    )


def _walk(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            yield path


def _read_isolated(path: Path, doc_id: str, max_bytes: int | None, seconds: float) -> list[Document | DocumentError]:
    """The documents of one file, read by the extraction worker (`rag.ingest.loaders.budget`) within `seconds`, or
    what went wrong."""
    try:
        reply = budget.run(_read_all, str(path), doc_id, max_bytes, seconds=seconds)
    except budget.OverBudget:
        return [
            DocumentError(
                path,
                f"reading it took longer than {seconds:g} s, so it was stopped (the other files are read)",
                hint="check the file; raise RAG_MAX_EXTRACT_SECONDS if it is a real article that is slow to read",
            )
        ]
    except RuntimeError as exc:
        return [DocumentError(path, f"could not be read ({exc})", hint="check the file; the others were read")]
    return [item if isinstance(item, Document) else DocumentError(*item[:2], **item[2]) for item in reply]


def _read_all(path: str, doc_id: str, max_bytes: int | None) -> list[Any]:
    """In the worker (sent there by name): the file's documents, errors as plain tuples (an exception with
    its own constructor does not always unpickle)."""
    reply: list[Any] = []
    for loaded in read_in_process(Path(path), doc_id, max_bytes=max_bytes):
        item = loaded.item
        if isinstance(item, DocumentError):
            reply.append((item.path, item.problem, {"line": item.line, "hint": item.hint}))
        else:
            reply.append(item)
    return reply
