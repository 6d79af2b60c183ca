"""Keeping the archive current: `sync` reads every followed feed (RSS or Atom, via feedparser), fetches the
page of each new or edited entry, extracts its article and indexes it; `index_pages` does the same for
pages given by URL; `run_every` repeats `sync` on a schedule (APScheduler) until stopped.

A failure is reported with its URL and reason and never stops the rest: a feed that cannot be read skips
to the next feed, a page that cannot be read to the next entry (and is tried again next time). The index
only ever grows by whole articles: a stop request (SIGINT, SIGTERM) is honoured between entries, after
which the articles already fetched are indexed and recorded before the process exits."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.ingest.feeds import Entry, Feed, FeedStore
from rag.ingest.web import Fetcher, FetchError
from rag.pipeline import RAG, IndexReport
from rag.store.index import AddReport
from rag.stories.follow import Change
from rag.types import Document

log = logging.getLogger(__name__)


@dataclass
class FeedResult:
    feed: str
    url: str
    status: str
    """"ok", "not modified" (the server said so: nothing fetched) or "failed" (the feed itself)."""
    error: str | None = None
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    failed: list[FetchError] = field(default_factory=list)
    """Entries whose page could not be fetched or read."""
    seconds: float = 0.0


def _entry_date(entry: Any) -> dt.date | None:
    """The entry's own date, the fallback for a page that carries none."""
    for key in ("published_parsed", "updated_parsed"):
        parsed = entry.get(key)
        if parsed:
            return dt.date(parsed.tm_year, parsed.tm_mon, parsed.tm_mday)
    return None


def _read_feed(fetcher: Fetcher, feed: Feed) -> tuple[Any, tuple[str | None, str | None]] | None:
    """The parsed feed and its validators; None when the server says it has not changed."""
    import feedparser

    fetched = fetcher.get(feed.url, etag=feed.etag, last_modified=feed.last_modified)
    if fetched.status == 304:
        return None
    parsed = feedparser.parse(fetched.content, response_headers={"content-location": fetched.url})
    # feedparser reads what it can of a broken feed; one with no entry to follow is reported as broken.
    if not any(entry.get("link") for entry in parsed.entries) and (parsed.bozo or not parsed.version):
        reason = parsed.get("bozo_exception") or "no RSS or Atom elements"
        raise FetchError(feed.url, f"is not a readable RSS or Atom feed ({reason})")
    return parsed, (fetched.etag, fetched.last_modified)


def sync_feed(
    pipeline: RAG, store: FeedStore, fetcher: Fetcher, feed: Feed, stop: threading.Event | None = None
) -> FeedResult:
    started = time.perf_counter()
    result = FeedResult(feed.name, feed.url, "ok")
    try:
        read = _read_feed(fetcher, feed)
    except FetchError as exc:
        result.status, result.error = "failed", exc.reason
        store.finish(feed.name, "failed", error=exc.reason)
        return result
    if read is None:
        result.status = "not modified"
        store.finish(feed.name, "not modified")
        return result
    parsed, validators = read
    known = store.entries(feed.name)
    documents: list[Document] = []
    fetched: list[Entry] = []
    complete = True
    for item in parsed.entries:
        if stop is not None and stop.is_set():
            complete = False
            break
        link = item.get("link")
        if not link:
            result.failed.append(FetchError(feed.url, f"entry {item.get('title', '')!r} has no link"))
            continue
        entry_id = item.get("id") or link
        # `dict.get`: feedparser's own `get("updated")` falls back to the published date with a warning.
        stamp = dict.get(item, "updated") or dict.get(item, "published") or ""
        if entry_id in known and known[entry_id].stamp == stamp:
            result.unchanged += 1
            continue
        try:
            document = fetcher.article(link, feed=feed.name, fallback_date=_entry_date(item))
        except FetchError as exc:
            result.failed.append(exc)
            continue
        documents.append(document)
        fetched.append(Entry(entry_id, document.id, link, stamp))
    report = pipeline.add_documents(documents) if documents else AddReport()
    store.record(feed.name, fetched)
    result.added, result.updated = report.added, report.updated
    result.unchanged += len(report.unchanged)
    store.finish(
        feed.name, "ok", added=len(report.added), updated=len(report.updated), failed=len(result.failed),
        validators=validators if complete and not result.failed else None,
    )  # fmt: skip
    result.seconds = time.perf_counter() - started
    return result


class Synced(list[FeedResult]):
    """Each feed's result, in order, and what the sync changed in the answers to followed questions."""

    changes: list[Change]


def sync(pipeline: RAG, names: Sequence[str] = (), *, stop: threading.Event | None = None) -> Synced:
    """Sync the named feeds (names or URLs), or all of them; then ask the followed questions again
    (`RAG.follow_up`), unless stopped."""
    store = FeedStore.for_settings(pipeline.settings)
    feeds = [store.get(name) for name in names] if names else store.list()
    results = Synced()
    with Fetcher(pipeline.settings) as fetcher:
        for feed in feeds:
            if stop is not None and stop.is_set():
                break
            results.append(sync_feed(pipeline, store, fetcher, feed, stop))
    results.changes = [] if stop is not None and stop.is_set() else pipeline.follow_up()
    return results


def index_pages(pipeline: RAG, urls: Sequence[str]) -> IndexReport:
    """Fetch web pages (articles or PDFs) and index their articles, each under its URL."""
    started = time.perf_counter()
    documents: list[Document] = []
    errors: list[FetchError] = []
    with Fetcher(pipeline.settings) as fetcher:
        for url in urls:
            try:
                documents.append(fetcher.article(url))
            except FetchError as exc:
                errors.append(exc)
    report = pipeline.add_documents(documents) if documents else AddReport()
    return IndexReport(report, errors=list(errors), seconds=time.perf_counter() - started)


def run_every(pipeline: RAG, seconds: float, names: Sequence[str], report: Callable[[Synced], None]) -> None:
    """Sync now and then every `seconds` until SIGINT or SIGTERM. A sync in progress when the signal comes
    stops after the entry it is on, indexes what it fetched, and only then does the process exit."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    stop = threading.Event()
    running = threading.Lock()
    scheduler = BlockingScheduler()

    def job() -> None:
        with running:
            if not stop.is_set():
                report(sync(pipeline, names, stop=stop))

    def shut_down(signum: int, _: object) -> None:
        log.warning("stopping (%s): finishing the article in hand", signal.Signals(signum).name)
        stop.set()
        scheduler.shutdown(wait=False)

    scheduler.add_job(job, "interval", seconds=seconds, next_run_time=dt.datetime.now(), max_instances=1, coalesce=True)
    previous = {sig: signal.signal(sig, shut_down) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        scheduler.start()
        with running:  # a sync still running finishes its last article first
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
