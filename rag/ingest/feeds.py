"""The feeds `rag sync` follows and what it has taken from each, in an SQLite file beside the index
(`<index>.feeds.sqlite3`): the feed's URL and name, its validators for conditional requests (ETag,
Last-Modified), the outcome of its last sync, and every entry already indexed with the stamp it had.

Entries are recorded only after their articles are saved in the index, so a sync killed halfway fetches
the unrecorded ones again next time, and the index's content hashes make that a no-op: no duplicates, and
nothing lost. The file is kept apart from the index directory, which `rag index --reembed` replaces whole.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from rag.errors import NotFoundError, RagError
from rag.ingest.web import check_url
from rag.sqlite_store import SQLiteFile

if TYPE_CHECKING:
    from rag.config import Settings

MIGRATIONS: list[str] = [
    """
    CREATE TABLE feeds (
        name TEXT PRIMARY KEY,
        url TEXT NOT NULL UNIQUE,
        added TEXT NOT NULL,
        etag TEXT,
        last_modified TEXT,
        last_sync TEXT,
        last_status TEXT NOT NULL DEFAULT 'never synced',
        last_error TEXT,
        last_added INTEGER NOT NULL DEFAULT 0,
        last_updated INTEGER NOT NULL DEFAULT 0,
        last_failed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE entries (
        feed TEXT NOT NULL REFERENCES feeds (name) ON DELETE CASCADE ON UPDATE CASCADE,
        entry_id TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        link TEXT NOT NULL,
        stamp TEXT NOT NULL,
        indexed TEXT NOT NULL,
        PRIMARY KEY (feed, entry_id)
    );
    """,
]
"""Schema scripts; the file's `user_version` is how many of them it has had. Append, never edit."""


@dataclass(frozen=True)
class Feed:
    name: str
    url: str
    added: dt.datetime
    etag: str | None
    last_modified: str | None
    last_sync: dt.datetime | None
    last_status: str
    """"ok", "not modified", "failed" or "never synced"."""
    last_error: str | None
    last_added: int
    last_updated: int
    last_failed: int
    """Entries whose page could not be fetched or read in the last sync (tried again next time)."""
    entries: int
    """Entries indexed from this feed so far."""


@dataclass(frozen=True)
class Entry:
    """An indexed entry: its id in the feed (guid, else link), the article's id, and the stamp (updated
    or published date, as the feed wrote it) it had, which tells an edited entry from a known one."""

    entry_id: str
    doc_id: str
    link: str
    stamp: str


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def feeds_path(settings: Settings) -> Path:
    index = settings.index_dir
    return index.parent / f"{index.name}.feeds.sqlite3"


class FeedStore:
    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.file = SQLiteFile(path, MIGRATIONS, what="feed list", setting="RAG_INDEX_DIR", timeout=timeout)

    @classmethod
    def for_settings(cls, settings: Settings) -> FeedStore:
        return cls(feeds_path(settings), timeout=settings.index.lock_timeout)

    def add(self, url: str, name: str | None = None) -> Feed:
        """A feed under `name`, by default its host (`www.` dropped), numbered when that is taken."""
        url = check_url(url)
        with self.file.connect(write=True) as conn:
            taken = conn.execute("SELECT name FROM feeds WHERE url = ?", (url,)).fetchone()
            if taken is not None:
                raise RagError(f"{url} is already followed as {taken['name']!r}", hint="`rag feeds list` shows them")
            names = {row["name"] for row in conn.execute("SELECT name FROM feeds")}
            if name is not None:
                name = name.strip()
                if not name or name in names:
                    raise RagError(f"the feed name {name!r} is empty or taken", hint="pick another with --name")
            else:
                base = urlsplit(url).netloc.lower().removeprefix("www.")
                name = next(n for n in (base, *(f"{base}-{i}" for i in range(2, 10_000))) if n not in names)
            conn.execute("INSERT INTO feeds (name, url, added) VALUES (?, ?, ?)", (name, url, _now()))
            return self._get(conn, name)

    def remove(self, name_or_url: str) -> Feed:
        """Stop following a feed; the articles it brought stay in the index (`rag delete` removes one)."""
        with self.file.connect(write=True) as conn:
            feed = self._get(conn, name_or_url)
            conn.execute("DELETE FROM feeds WHERE name = ?", (feed.name,))
            return feed

    def list(self) -> list[Feed]:
        with self.file.connect() as conn:
            return [self._feed(row) for row in conn.execute(f"{_FEED} ORDER BY f.name")]

    def get(self, name_or_url: str) -> Feed:
        with self.file.connect() as conn:
            return self._get(conn, name_or_url)

    def _get(self, conn: sqlite3.Connection, name_or_url: str) -> Feed:
        row = conn.execute(f"{_FEED} WHERE f.name = ? OR f.url = ?", (name_or_url, name_or_url)).fetchone()
        if row is None:
            raise NotFoundError(f"no feed {name_or_url!r}", hint="`rag feeds list` shows the feeds followed")
        return self._feed(row)

    @staticmethod
    def _feed(row: sqlite3.Row) -> Feed:
        return Feed(
            row["name"], row["url"], _time(row["added"]) or dt.datetime.min, row["etag"], row["last_modified"],
            _time(row["last_sync"]), row["last_status"], row["last_error"], row["last_added"], row["last_updated"],
            row["last_failed"], row["entries"],
        )  # fmt: skip

    def entries(self, feed: str) -> dict[str, Entry]:
        with self.file.connect() as conn:
            rows = conn.execute("SELECT entry_id, doc_id, link, stamp FROM entries WHERE feed = ?", (feed,))
            return {row["entry_id"]: Entry(*row) for row in rows}

    def record(self, feed: str, entries: Sequence[Entry]) -> None:
        """Entries whose articles are now saved in the index."""
        now = _now()
        with self.file.connect(write=True) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO entries (feed, entry_id, doc_id, link, stamp, indexed) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(feed, e.entry_id, e.doc_id, e.link, e.stamp, now) for e in entries],
            )

    def finish(
        self,
        feed: str,
        status: str,
        *,
        error: str | None = None,
        added: int = 0,
        updated: int = 0,
        failed: int = 0,
        validators: tuple[str | None, str | None] | None = None,
    ) -> None:
        """The outcome of a sync; `validators` (ETag, Last-Modified) only when the feed was read whole, so
        a sync that failed halfway asks for the whole feed again."""
        with self.file.connect(write=True) as conn:
            conn.execute(
                "UPDATE feeds SET last_sync = ?, last_status = ?, last_error = ?, last_added = ?, last_updated = ?, "
                "last_failed = ? WHERE name = ?",
                (_now(), status, error, added, updated, failed, feed),
            )
            if validators is not None:
                conn.execute("UPDATE feeds SET etag = ?, last_modified = ? WHERE name = ?", (*validators, feed))


_FEED = "SELECT f.*, (SELECT COUNT(*) FROM entries e WHERE e.feed = f.name) AS entries FROM feeds f"
