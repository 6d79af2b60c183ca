"""Fetching news from the web: one polite HTTP client for feeds and article pages, and the step from a
fetched page to a `Document` with its provenance.

Everything a remote server can do wrong ends as one `FetchError` naming the URL and the reason (no answer
in time, an HTTP error, a redirect loop, a body over the size limit, something that is not an article), so
a sync can report it and go on with the next feed. Bodies are streamed and cut at `fetch_max_mb` with an
overall deadline, so neither a 50 MB page nor a server that sends one byte a second can hold a sync up.
Requests to one host are spaced by `fetch_host_delay` seconds; feeds are asked conditionally (ETag,
Last-Modified), so an unchanged feed costs the publisher a 304."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from rag.errors import DocumentError
from rag.ingest.loaders import FORMATS, budget, format_served_as, html
from rag.types import Document, Format, Source

if TYPE_CHECKING:
    from rag.config import Settings

MAX_REDIRECTS = 5


class FetchError(DocumentError):
    """A URL that could not be fetched or read as an article: reported like a bad input file, by its URL."""

    def __init__(self, url: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(url, reason, hint=hint)

    @property
    def url(self) -> str:
        return self.path

    @property
    def reason(self) -> str:
        return self.problem


@dataclass(frozen=True)
class Fetched:
    url: str
    """Where the body came from, after redirects."""
    status: int
    """200, or 304 when a conditional request found nothing new (`content` is then empty)."""
    content: bytes
    content_type: str
    etag: str | None
    last_modified: str | None
    fetched_at: dt.datetime


def check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FetchError(url, "is not an http(s) URL", hint="give the full address, e.g. https://example.com/news/1")
    return url.strip()


class Fetcher:
    """One HTTP client for a sync: connections are reused, and the per-host delay is kept across feeds."""

    def __init__(self, settings: Settings) -> None:
        self.timeout = settings.feeds.fetch_timeout
        self.max_bytes = int(settings.feeds.fetch_max_mb * 1024 * 1024)
        self.max_article_bytes = settings.index.max_article_bytes
        self.max_extract_seconds = settings.index.max_extract_seconds
        self.delay = settings.feeds.fetch_host_delay
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self.client = httpx.Client(
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            timeout=httpx.Timeout(self.timeout),
            headers={"User-Agent": settings.feeds.user_agent},
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def _wait_turn(self, url: str) -> None:
        host = urlsplit(url).netloc.lower()
        with self._lock:
            wait = self._last.get(host, -1e9) + self.delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last[host] = time.monotonic()

    def get(self, url: str, *, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        url = check_url(url)
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        self._wait_turn(url)
        started = time.monotonic()
        try:
            with self.client.stream("GET", url, headers=headers) as response:
                if response.status_code == 304:
                    return self._fetched(response, b"")
                if response.status_code >= 400:
                    raise FetchError(url, f"HTTP {response.status_code} {response.reason_phrase}".rstrip())
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise FetchError(url, f"is {int(declared) / 1e6:.1f} MB, over the {self._limit} limit",
                                     hint="raise RAG_FETCH_MAX_MB if this really is one article")  # fmt: skip
                body = bytearray()
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > self.max_bytes:
                        raise FetchError(url, f"sent more than the {self._limit} limit",
                                         hint="raise RAG_FETCH_MAX_MB if this really is one article")  # fmt: skip
                    if time.monotonic() - started > self.timeout:
                        raise FetchError(url, f"did not finish sending within {self.timeout:g} s")
                return self._fetched(response, bytes(body))
        except httpx.TooManyRedirects:
            raise FetchError(url, f"redirects more than {MAX_REDIRECTS} times (a redirect loop?)") from None
        except httpx.TimeoutException:
            raise FetchError(url, f"no answer within {self.timeout:g} s", hint="raise RAG_FETCH_TIMEOUT") from None
        except httpx.HTTPError as exc:
            raise FetchError(url, f"cannot be fetched: {exc or type(exc).__name__}") from None

    def article(self, url: str, *, feed: str | None = None, fallback_date: dt.date | None = None) -> Document:
        """The article at `url`, indexed under that URL, with where and when it came from. Its date is the
        page's own metadata first, then the feed entry's (`fallback_date`); never the day it was fetched."""
        url = check_url(url)
        fetched = self.get(url)
        return _page_document(fetched, url, feed, fallback_date, self.max_article_bytes, self.max_extract_seconds)

    @property
    def _limit(self) -> str:
        return f"{self.max_bytes / 1024 / 1024:g} MB"

    @staticmethod
    def _fetched(response: httpx.Response, content: bytes) -> Fetched:
        return Fetched(
            str(response.url),
            response.status_code,
            content,
            response.headers.get("content-type", "").split(";")[0].strip().lower(),
            response.headers.get("etag"),
            response.headers.get("last-modified"),
            dt.datetime.now(dt.timezone.utc),
        )


def _page_document(
    fetched: Fetched,
    requested: str,
    feed: str | None,
    fallback_date: dt.date | None,
    max_bytes: int,
    max_seconds: float,
) -> Document:
    """The page's article, read by the extraction worker within `max_seconds` (`rag.ingest.loaders.budget`): a
    feed can serve any page, and one that takes minutes to parse must not hold up the sync."""
    provenance = {"source_url": requested, "fetched_at": fetched.fetched_at.isoformat(timespec="seconds")}
    if feed:
        provenance["feed"] = feed
    if fetched.url != requested:
        provenance["final_url"] = fetched.url
    # A server that names no type serves a PDF (by its signature) or, the web's default, HTML.
    kind = fetched.content_type or ("application/pdf" if fetched.content.startswith(b"%PDF") else "text/html")
    fmt = format_served_as(kind)
    if fmt is None:
        served = sorted({t for f in FORMATS.values() for t in f.media_types})
        raise FetchError(requested, f"is {kind}, not an article page ({', '.join(served)})")
    if fmt is not html.FORMAT:
        return _file_document(fmt, fetched, requested, provenance, fallback_date, max_bytes, max_seconds)
    # A page is read with its URL, which resolves its links and may carry its date: not as a file would be.
    found = _within_budget(requested, max_seconds, html.extract_article, fetched.content, fetched.url)
    if not found.text.strip():
        raise FetchError(requested, "has no article text (a section front, a login wall or an error page?)")
    metadata = {**provenance, "extraction": found.method}
    metadata.update({k: v for k, v in (("author", found.author), ("site_name", found.site_name)) if v})
    return Document(
        id=requested,
        text=found.text,
        title=found.title,
        published=found.published or fallback_date,
        url=fetched.url,
        source=found.site_name or urlsplit(fetched.url).netloc,
        metadata=metadata,
    )


def _within_budget(requested: str, seconds: float, function: Callable[..., Any], *args: Any) -> Any:
    try:
        return budget.run(function, *args, seconds=seconds)
    except budget.OverBudget:
        raise FetchError(
            requested,
            f"took longer than {seconds:g} s to read, so it was stopped",
            hint="raise RAG_MAX_EXTRACT_SECONDS if it is a real article that is slow to read",
        ) from None
    except (RuntimeError, OSError) as exc:
        raise FetchError(requested, f"could not be read ({exc})") from None


def _read_file(
    fmt: Format, content: bytes, name: str, requested: str, max_bytes: int
) -> Document | tuple[str, str | None]:
    """The first document `fmt` reads from the page, or (problem, hint): run in the extraction worker for a
    format that needs one (`Format.isolated`), so it returns what went wrong rather than raising it."""
    source = Source(io.BytesIO(content), Path(name), requested, max_bytes)
    try:
        read = [item for item in fmt.load(source)]
        failed = next((item for item in read if isinstance(item, DocumentError)), None)
        if failed is not None:
            raise failed
    except DocumentError as exc:
        return exc.problem, exc.hint
    return next(item for item in read if isinstance(item, Document))


def _file_document(
    fmt: Format,
    fetched: Fetched,
    requested: str,
    provenance: dict[str, str],
    fallback_date: dt.date | None,
    max_bytes: int,
    max_seconds: float,
) -> Document:
    name = PurePosixPath(urlsplit(fetched.url).path).name or f"document{fmt.suffixes[0]}"
    args = (fmt, fetched.content, name, requested, max_bytes)
    # As for files (`Format.isolated`): only a parser whose time the input does not bound needs the worker.
    read = _within_budget(requested, max_seconds, _read_file, *args) if fmt.isolated else _read_file(*args)
    if not isinstance(read, Document):
        raise FetchError(requested, read[0], hint=read[1])
    document: Document = read
    return dataclasses.replace(
        document,
        published=document.published or fallback_date,
        url=fetched.url,
        source=urlsplit(fetched.url).netloc,
        metadata={**document.metadata, **provenance},
    )
