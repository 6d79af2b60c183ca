"""Loaders: article files to `Document`s, one module per format, registered by suffix below.

Loading never stops at the first bad file: a corpus of thousands of articles with one broken line must
still be indexed, so loaders return the good documents together with the errors of the bad ones. The CLI,
the chat page's uploader and the README's table of formats all read `FORMATS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from rag.errors import DocumentError
from rag.loaders import html, records, text
from rag.types import Format, LoadResult

FORMATS: dict[str, Format] = {}
"""Suffix (lower case, with the dot) -> the format that reads it."""


def register(fmt: Format) -> Format:
    for suffix in fmt.suffixes:
        FORMATS[suffix] = fmt
    return fmt


register(text.FORMAT)
register(html.FORMAT)
register(records.FORMAT)


def suffixes() -> list[str]:
    return list(FORMATS)


def load_file(path: Path, doc_id: str | None = None, *, max_bytes: int | None = None) -> LoadResult:
    """Load one file; `doc_id` defaults to the file name, the part of the path that survives moves. An
    article over `max_bytes` is reported, not read: news articles are kilobytes, and a runaway file would
    otherwise take minutes and gigabytes before anything is saved."""
    doc_id = doc_id or path.name
    suffix = path.suffix.lower()
    try:
        try:
            doc_id.encode("utf-8")
        except UnicodeEncodeError:
            raise DocumentError(path, "the file name is not valid UTF-8", hint="rename the file") from None
        if suffix not in FORMATS:
            raise DocumentError(
                path, f"unsupported file type {suffix or '(none)'}", hint=f"use one of {', '.join(FORMATS)}"
            )
        fmt = FORMATS[suffix]
        if max_bytes is not None and not fmt.many and path.stat().st_size > max_bytes:
            raise _too_large(path, path.stat().st_size, max_bytes)
        result = fmt.load(path, doc_id)
        if max_bytes is not None:
            large = [d for d in result.documents if len(d.text) > max_bytes]
            result.documents = [d for d in result.documents if len(d.text) <= max_bytes]
            result.errors += [_too_large(path, len(d.text), max_bytes, d.id) for d in large]
        return result
    except DocumentError as exc:
        return LoadResult(errors=[exc])
    except OSError as exc:
        return LoadResult(errors=[DocumentError(path, f"cannot read: {exc.strerror}", hint="check permissions")])
    except Exception as exc:  # one unreadable file must never cost the others
        problem = f"could not be read ({type(exc).__name__}: {exc})"
        return LoadResult(errors=[DocumentError(path, problem[:300], hint="check the file; the others were read")])


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


def load_paths(paths: Iterable[Path | str], *, max_bytes: int | None = None) -> LoadResult:
    """Files load under their own name; files inside a directory under their path relative to it."""
    result = LoadResult()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in _walk(path):
                if file.suffix.lower() in FORMATS:
                    result.extend(load_file(file, file.relative_to(path).as_posix(), max_bytes=max_bytes))
                else:
                    result.skipped.append(str(file))
        elif path.is_file():
            result.extend(load_file(path, max_bytes=max_bytes))
        else:
            result.errors.append(DocumentError(path, "no such file or directory", hint="check the path"))
    return result
