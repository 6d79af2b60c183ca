"""An index's articles and chunks: saved in one SQLite file per generation, read by key when asked for.

Holding every text and record in RAM capped one machine at a few million chunks (a 10 M-chunk corpus is
about 5 GB of article text and as much again in Python objects). A search reads a handful of articles,
so the saved generation stays on disk (`records.<gen>.sqlite3`, opened read-only and immutable) and is
looked up by primary key; what a writer adds or removes is held in memory on top of it until the next
save, which writes the next generation's file with SQLite copying the unchanged rows itself.

`Documents` and `ChunkTable` are the two mappings the rest of `rag` sees: they read through the changes
to the saved file, so callers never know which of the two holds a record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import sys
import threading
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexDirError
from rag.types import Chunk, Document

ChunkRow = tuple[str, int, int, int, int, str | None]
"""A stored chunk: (doc id, ordinal, start, end, tokens, its own text, None when it is its span's)."""

_SCHEMA = """
CREATE TABLE documents (
    row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, title TEXT NOT NULL, published TEXT, url TEXT,
    source TEXT, content_hash TEXT NOT NULL, text TEXT NOT NULL, chunk_ids BLOB NOT NULL, metadata TEXT NOT NULL
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, ordinal INTEGER NOT NULL, start INTEGER NOT NULL,
    "end" INTEGER NOT NULL, n_tokens INTEGER NOT NULL, text TEXT
);
CREATE TABLE deleted (segment INTEGER NOT NULL, id TEXT NOT NULL);
"""
"""`deleted` lists the tombstones the save that wrote this file laid on older segments (an article removed
or replaced there): the manifest holds every live tombstone, and this copy lets `rag doctor --repair`
replay them should the manifest be lost."""
_DOCUMENT_COLUMNS = "id, title, published, url, source, content_hash, text, chunk_ids, metadata"
_CHUNK_COLUMNS = 'id, doc_id, ordinal, start, "end", n_tokens, text'
_BATCH = 10_000


def added_through_api(metadata: dict[str, Any]) -> str:
    """Who added an article through the API and when, from its metadata (`rag serve` records both)."""
    by, at = metadata.get("added_by"), metadata.get("added_at")
    return f"{by} on {str(at)[:10]}" if isinstance(by, str) and by else ""


@dataclass
class DocumentRecord:
    """What the index remembers of a document: enough to cite it and to detect changed content."""

    id: str
    title: str
    published: dt.date | None
    url: str | None
    source: str | None
    content_hash: str
    text: str
    chunk_ids: list[int]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["published"] = self.published.isoformat() if self.published else None
        return data

    def document(self) -> Document:
        """The article as it was added, to add it again (re-embedded, or into another index)."""
        return Document(self.id, self.text, self.title, self.published, self.url, self.source, self.metadata)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DocumentRecord:
        published = dt.date.fromisoformat(data["published"]) if data.get("published") else None
        return cls(**{**data, "published": published})

    def _row(self) -> tuple[Any, ...]:
        published = self.published.isoformat() if self.published else None
        ids = np.asarray(self.chunk_ids, dtype=np.int64).tobytes()
        metadata = json.dumps(self.metadata, ensure_ascii=False)
        return (self.id, self.title, published, self.url, self.source, self.content_hash, self.text, ids, metadata)

    @classmethod
    def _of_row(cls, row: tuple[Any, ...]) -> DocumentRecord:
        doc_id, title, published, url, source, content_hash, text, ids, metadata = row
        try:
            kept = json.loads(metadata)
        except (TypeError, ValueError):
            raise _damaged(doc_id, "its metadata is not JSON") from None
        return cls(
            doc_id,
            title,
            _stored_date(published, doc_id),
            url,
            source,
            content_hash,
            text,
            _stored_ids(ids, doc_id).tolist(),
            kept,
        )


def article_text(record: DocumentRecord) -> str:
    """An article's title and text, as BM25 reads it."""
    return f"{record.title}\n{record.text}" if record.title else record.text


def chunk_text(record: DocumentRecord, start: int, end: int) -> str:
    """A chunk's text with its article's title, as BM25 and the reranker read it."""
    return f"{record.title}\n{record.text[start:end]}" if record.title else record.text[start:end]


def chunk_texts(record: DocumentRecord, spans: np.ndarray) -> list[str]:
    """`chunk_text` of each of the article's chunks; `spans` is `chunk_columns("start", "end")` of a file
    holding them (sorted by id)."""
    ids = np.asarray(record.chunk_ids, dtype=np.int64)
    rows = spans[np.searchsorted(spans[:, 0], ids)] if len(ids) else spans[:0]
    return [chunk_text(record, start, end) for _, start, end in rows.tolist()]


def _stored_date(value: Any, doc_id: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        raise _damaged(doc_id, f"its publication date {value!r} is not a date") from None


def _stored_ids(blob: Any, doc_id: str) -> np.ndarray:
    if not isinstance(blob, bytes) or len(blob) % 8:
        size = len(blob) if isinstance(blob, (bytes, str)) else 0
        raise _damaged(doc_id, f"its chunk ids are {size} bytes, not a whole number of 8-byte ids")
    return np.frombuffer(blob, dtype=np.int64)


def _damaged(doc_id: str, what: str) -> IndexDirError:
    """A row edited or damaged outside rag: the article named, not a traceback from deep inside a read."""
    return IndexDirError(
        f"the records file's row for article {doc_id!r} is damaged: {what}",
        hint="restore the index from a backup, or delete it and rebuild it with `rag index PATH...` (`rag doctor` "
        "checks an index)",
    )


UNDATED = np.iinfo(np.int32).min
"""Day number of an undated article: it passes every date filter and earns no recency prior."""
_EPOCH = dt.date(1970, 1, 1)


def day(date: dt.date | None) -> int:
    """A date as the day numbers the retrieval arrays hold (days since 1970-01-01), `UNDATED` for none."""
    return UNDATED if date is None else (date - _EPOCH).days


def _date(number: int) -> dt.date:
    """The date of a day number (`day`'s inverse for a dated one)."""
    return _EPOCH + dt.timedelta(days=number)


@dataclass(frozen=True)
class Summaries:
    """Articles without their texts, as arrays: what the retrieval arrays are built from. Arrays rather
    than an object per article: a segment's are read once and kept (its file never changes), so the
    arrays after a save are those of the segments already read, concatenated, plus the new one's."""

    ids: list[str]
    days: np.ndarray
    """Each article's publication date as a day number (`day`)."""
    chunk_ids: np.ndarray
    """Every article's chunk ids, article after article."""
    counts: np.ndarray
    """Each article's number of chunks."""
    segment: np.ndarray
    """The saved segment holding each, by its place in the index's list; -1 for an unsaved article."""
    position: np.ndarray
    """Each one's row in that segment (or among the unsaved articles), dead rows counted: where the
    segment's keyword counts have it."""
    first_chunk: np.ndarray
    """Each one's first chunk's row in that segment's chunk order (articles in order, each one's chunks in
    order)."""

    @classmethod
    def of(cls, ids: list[str], dates: list[dt.date | None], chunk_ids: list[np.ndarray], segment: int) -> Summaries:
        counts = np.asarray([len(one) for one in chunk_ids], dtype=np.int64)
        return cls(
            ids,
            np.asarray([day(date) for date in dates], dtype=np.int32),
            np.concatenate([np.zeros(0, np.int64), *chunk_ids]),
            counts,
            np.full(len(ids), segment, dtype=np.int32),
            np.arange(len(ids), dtype=np.int64),
            np.cumsum(counts) - counts,
        )

    def kept(self, dead: Iterable[str]) -> Summaries:
        """Without the `dead` articles."""
        gone = set(dead)
        if not gone:
            return self
        keep = np.asarray([doc_id not in gone for doc_id in self.ids], dtype=bool)
        arrays = {name: getattr(self, name)[keep] for name in _SUMMARY_ARRAYS if name != "chunk_ids"}
        return Summaries(
            [doc_id for doc_id in self.ids if doc_id not in gone],
            chunk_ids=self.chunk_ids[np.repeat(keep, self.counts)],
            **arrays,
        )

    @property
    def undated(self) -> int:
        """How many articles have no publication date."""
        return int((self.days == UNDATED).sum())

    def dated(self) -> tuple[dt.date, dt.date] | None:
        """The earliest and latest publication dates; None when no article has one."""
        days = self.days[self.days != UNDATED]
        if not len(days):
            return None
        return _date(int(days.min())), _date(int(days.max()))

    def at(self, segment: int) -> Summaries:
        """The same articles, as the segment at `segment` in the index's list."""
        return replace(self, segment=np.full(len(self.ids), segment, dtype=np.int32))

    @classmethod
    def joined(cls, parts: list[Summaries]) -> Summaries:
        if not parts:
            return cls.of([], [], [], -1)
        return cls(
            [doc_id for part in parts for doc_id in part.ids],
            *(np.concatenate([getattr(part, name) for part in parts]) for name in _SUMMARY_ARRAYS),
        )


_SUMMARY_ARRAYS = ("days", "chunk_ids", "counts", "segment", "position", "first_chunk")


def _uri(path: Path) -> str:
    """A read-only, immutable SQLite URI: a saved generation never changes, so SQLite needs no lock or
    journal check to read it, and reads work on a read-only medium."""
    return f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro&immutable=1"


class RecordStore:
    """A saved generation's file. One connection per process (SQLite connections must not cross a fork),
    shared by threads under a lock (the chat page and `rag serve` search from several)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._summaries: Summaries | None = None
        with self._query() as conn:
            self.n_documents = int(conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
            self.n_chunks = int(conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    @contextlib.contextmanager
    def _query(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                if self._conn is None or self._pid != os.getpid():
                    self._conn = sqlite3.connect(_uri(self.path), uri=True, check_same_thread=False)
                    self._pid = os.getpid()
                yield self._conn
            except sqlite3.Error as exc:
                raise IndexDirError(
                    f"index at {self.path.parent} is damaged: {self.path.name}: {exc}",
                    hint=f"run `rag doctor`; restore {self.path.parent} from a backup, or delete it and rebuild "
                    "it with `rag index PATH...`",
                ) from exc

    def document(self, doc_id: str) -> DocumentRecord | None:
        with self._query() as conn:
            row = conn.execute(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return None if row is None else DocumentRecord._of_row(row)

    def has(self, doc_id: str) -> bool:
        with self._query() as conn:
            return conn.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone() is not None

    def _batches(self, sql: str, size: int = _BATCH) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of `sql` (keyed on its first column: `WHERE key > ? ORDER BY key LIMIT ?`) a batch at a
        time: the lock is held per batch, never while the caller works on one."""
        last = -(1 << 63)  # below every id and row
        while True:
            with self._query() as conn:
                rows = conn.execute(sql, (last, size)).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def _stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        for rows in self._batches(sql):
            yield from rows

    def records(self) -> Iterator[DocumentRecord]:
        for row in self._stream(f"SELECT row, {_DOCUMENT_COLUMNS} FROM documents WHERE row > ? ORDER BY row LIMIT ?"):
            yield DocumentRecord._of_row(row[1:])

    def ids(self) -> Iterator[str]:
        for row in self._stream("SELECT row, id FROM documents WHERE row > ? ORDER BY row LIMIT ?"):
            yield str(row[1])

    def hashes(self) -> Iterator[tuple[str, str]]:
        """(id, content hash) of every article, without reading texts."""
        for _, doc_id, content_hash in self._stream(
            "SELECT row, id, content_hash FROM documents WHERE row > ? ORDER BY row LIMIT ?"
        ):
            yield doc_id, content_hash

    def hash_of(self, doc_id: str) -> str | None:
        with self._query() as conn:
            row = conn.execute("SELECT content_hash FROM documents WHERE id = ?", (doc_id,)).fetchone()
        return None if row is None else str(row[0])

    def summaries(self) -> Summaries:
        """Every article in row order without its text (`Summaries`), read once: the file never changes."""
        if self._summaries is None:
            sql = "SELECT row, id, published, chunk_ids FROM documents WHERE row > ? ORDER BY row LIMIT ?"
            ids, dates, chunk_ids = [], [], []
            for _, doc_id, published, blob in self._stream(sql):
                ids.append(str(doc_id))
                dates.append(_stored_date(published, doc_id))
                chunk_ids.append(_stored_ids(blob, doc_id))
            self._summaries = Summaries.of(ids, dates, chunk_ids, 0)
        return self._summaries

    def holders(self, content_hash: str) -> list[str]:
        """Every article of this file with this content (a dead row may be among them). Interned: a run of
        copies names the same holder for each (a report line apiece), one string for all."""
        with self._query() as conn:
            rows = conn.execute("SELECT id FROM documents WHERE content_hash = ?", (content_hash,)).fetchall()
        return [sys.intern(str(row[0])) for row in rows]

    def deleted(self) -> list[tuple[int, str]]:
        """The tombstones the save that wrote this file laid (`_SCHEMA`); none in files older than segments."""
        with self._query() as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'deleted'").fetchone() is None:
                return []
            return [(int(segment), str(doc_id)) for segment, doc_id in conn.execute("SELECT segment, id FROM deleted")]

    def chunk(self, chunk_id: int) -> ChunkRow | None:
        with self._query() as conn:
            row = conn.execute(f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id = ?", (chunk_id,)).fetchone()
        return None if row is None else (row[1], row[2], row[3], row[4], row[5], row[6])

    def chunk_columns(self, *columns: str) -> np.ndarray:
        """The chunks' `columns` (id first, then these) by id, as an n × k array: spans or ids in bulk,
        without a query or a Python tuple per chunk held at once (10 M tuples would be a gigabyte)."""
        names = ", ".join(["id", *(f'"{c}"' for c in columns)])
        sql = f"SELECT {names} FROM chunks WHERE id > ? ORDER BY id LIMIT ?"
        blocks = [np.asarray(rows, dtype=np.int64) for rows in self._batches(sql, _BATCH * 10)]
        return np.concatenate([np.zeros((0, 1 + len(columns)), dtype=np.int64), *blocks])

    @staticmethod
    def write(
        path: Path,
        sources: Iterable[tuple[RecordStore, Iterable[str]]],
        documents: Iterable[DocumentRecord],
        chunks: Iterable[tuple[int, ChunkRow]],
        deleted: Iterable[tuple[int, str]] = (),
    ) -> None:
        """A segment's file: each source file's rows but its dead articles' (and their chunks), copied by
        SQLite itself in order (a merge), then the new rows, then the tombstones this save lays.
        Fsynced and renamed into place by the caller."""
        path.unlink(missing_ok=True)
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode = OFF")  # a torn file is never named by a manifest
            conn.execute("PRAGMA synchronous = OFF")  # the caller fsyncs the finished file
            conn.execute("BEGIN")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("CREATE TEMP TABLE dead (id TEXT PRIMARY KEY)")
            for source, dead in sources:
                conn.execute("COMMIT")  # ATTACH is refused inside a transaction
                conn.execute("ATTACH DATABASE ? AS old", (_uri(source.path),))
                conn.execute("BEGIN")
                conn.execute("DELETE FROM dead")
                conn.executemany("INSERT OR IGNORE INTO dead VALUES (?)", ((i,) for i in dead))
                conn.execute(
                    f"INSERT INTO documents ({_DOCUMENT_COLUMNS}) SELECT {_DOCUMENT_COLUMNS} FROM old.documents "
                    "WHERE id NOT IN (SELECT id FROM dead) ORDER BY row"
                )
                conn.execute(
                    f"INSERT INTO chunks SELECT {_CHUNK_COLUMNS} FROM old.chunks "
                    "WHERE doc_id NOT IN (SELECT id FROM dead) ORDER BY id"
                )
                conn.execute("COMMIT")
                conn.execute("DETACH DATABASE old")
                conn.execute("BEGIN")
            conn.executemany(
                f"INSERT INTO documents ({_DOCUMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record._row() for record in documents),
            )
            conn.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", ((chunk_id, *row) for chunk_id, row in chunks)
            )
            conn.executemany("INSERT INTO deleted VALUES (?, ?)", deleted)
            conn.execute("CREATE INDEX documents_by_content ON documents (content_hash)")
            conn.execute("COMMIT")


@dataclass
class SegmentFile:
    """One saved segment's records file and its tombstones: the articles whose row here no longer counts
    (removed, or replaced by a row in a newer segment), and their chunks."""

    store: RecordStore
    dead: frozenset[str] = frozenset()
    dead_chunks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Sorted."""
    low: int = 0
    high: int = -1
    """The lowest and highest chunk id it holds: a chunk is looked up only where it can be."""

    def alive(self, chunk_id: int) -> bool:
        if not self.low <= chunk_id <= self.high:
            return False
        at = int(np.searchsorted(self.dead_chunks, chunk_id))
        return at == len(self.dead_chunks) or int(self.dead_chunks[at]) != chunk_id


class SegmentRecords:
    """The saved articles and chunks of every segment, read as one file would be: an article id names at
    most one live row (a replacement tombstones the row it replaces), and chunk ids are never reused, so a
    lookup takes the first live row it meets, newest segment first."""

    def __init__(self, files: list[SegmentFile]) -> None:
        self.files = files
        self.n_documents = sum(f.store.n_documents - len(f.dead) for f in files)
        self.n_chunks = sum(f.store.n_chunks - len(f.dead_chunks) for f in files)

    def _newest_first(self, segment: int | None) -> list[SegmentFile]:
        return [self.files[segment]] if segment is not None else self.files[::-1]

    def document(self, doc_id: str, segment: int | None = None) -> DocumentRecord | None:
        """The article's live row; `segment` (its place in the list, from its `Summary`) saves the search."""
        for file in self._newest_first(segment):
            if doc_id not in file.dead and (record := file.store.document(doc_id)) is not None:
                return record
        return None

    def has(self, doc_id: str) -> bool:
        return any(doc_id not in f.dead and f.store.has(doc_id) for f in self.files[::-1])

    def hash_of(self, doc_id: str) -> str | None:
        for file in self.files[::-1]:
            if doc_id not in file.dead and (digest := file.store.hash_of(doc_id)) is not None:
                return digest
        return None

    def holder(self, content_hash: str) -> str | None:
        for file in self.files[::-1]:
            for doc_id in file.store.holders(content_hash):
                if doc_id not in file.dead:
                    return doc_id
        return None

    def ids(self) -> Iterator[str]:
        for file in self.files:
            yield from (i for i in file.store.ids() if i not in file.dead)

    def records(self) -> Iterator[DocumentRecord]:
        for file in self.files:
            yield from (r for r in file.store.records() if r.id not in file.dead)

    def hashes(self) -> Iterator[tuple[str, str]]:
        for file in self.files:
            yield from ((i, h) for i, h in file.store.hashes() if i not in file.dead)

    def summaries(self) -> Summaries:
        return Summaries.joined([file.store.summaries().at(n).kept(file.dead) for n, file in enumerate(self.files)])

    def chunk(self, chunk_id: int) -> ChunkRow | None:
        for file in self.files[::-1]:
            if file.alive(chunk_id) and (row := file.store.chunk(chunk_id)) is not None:
                return row
        return None

    def chunk_columns(self, *columns: str) -> np.ndarray:
        """`RecordStore.chunk_columns` over every live chunk, by id."""
        blocks = []
        for file in self.files:
            table = file.store.chunk_columns(*columns)
            if len(file.dead_chunks):
                table = table[~np.isin(table[:, 0], file.dead_chunks)]
            blocks.append(table)
        if len(blocks) == 1:
            return blocks[0]
        joined = np.concatenate([np.zeros((0, 1 + len(columns)), dtype=np.int64), *blocks])
        return joined[np.argsort(joined[:, 0], kind="stable")]


class Documents(MutableMapping[str, DocumentRecord]):
    """Articles by id: the saved segments, with this process's unsaved changes over them."""

    def __init__(self, base: SegmentRecords | None = None) -> None:
        self.base = base
        self._changed: dict[str, DocumentRecord] = {}
        """Articles added or replaced since the last save, in the order they came."""
        self._gone: set[str] = set()
        """Saved articles removed or replaced since: the file's rows for them no longer count."""
        self._by_hash: dict[str, str] = {}
        """Content hash -> id of the changed articles."""

    def rebase(self, base: SegmentRecords | None) -> None:
        """After a save: the segments hold everything, memory nothing."""
        self.base, self._changed, self._gone, self._by_hash = base, {}, set(), {}

    @property
    def changes(self) -> tuple[set[str], list[DocumentRecord]]:
        """(saved ids no longer as saved, the records to write after the saved ones)."""
        return self._gone, list(self._changed.values())

    def _saved(self, doc_id: str) -> bool:
        return self.base is not None and doc_id not in self._gone and self.base.has(doc_id)

    def __getitem__(self, doc_id: str) -> DocumentRecord:
        record = self._changed.get(doc_id)
        if record is None and self.base is not None and doc_id not in self._gone:
            record = self.base.document(doc_id)
        if record is None:
            raise KeyError(doc_id)
        return record

    def get_in(self, doc_id: str, segment: int) -> DocumentRecord:
        """The article, known to be in this segment (its place in the list; -1: unsaved): one lookup."""
        record = self._changed.get(doc_id)
        if record is None and self.base is not None and segment >= 0 and doc_id not in self._gone:
            record = self.base.document(doc_id, segment)
        if record is None:
            raise KeyError(doc_id)
        return record

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and (doc_id in self._changed or self._saved(doc_id))

    def __setitem__(self, doc_id: str, record: DocumentRecord) -> None:
        if self._saved(doc_id):
            self._gone.add(doc_id)
        self._changed.pop(doc_id, None)  # a replaced article moves to the end, as in a dict
        self._changed[doc_id] = record
        self._by_hash[record.content_hash] = doc_id

    def __delitem__(self, doc_id: str) -> None:
        record = self._changed.pop(doc_id, None)
        if record is not None:
            if self._by_hash.get(record.content_hash) == doc_id:
                del self._by_hash[record.content_hash]
        elif self._saved(doc_id):
            self._gone.add(doc_id)
        else:
            raise KeyError(doc_id)

    def __iter__(self) -> Iterator[str]:
        if self.base is not None:
            yield from (i for i in self.base.ids() if i not in self._gone)
        yield from list(self._changed)

    def __len__(self) -> int:
        saved = self.base.n_documents - len(self._gone) if self.base is not None else 0
        return saved + len(self._changed)

    def records(self) -> Iterator[DocumentRecord]:
        """Every article in order, read in batches rather than one query each."""
        if self.base is not None:
            yield from (r for r in self.base.records() if r.id not in self._gone)
        yield from list(self._changed.values())

    def summaries(self) -> Summaries:
        """Every article in order without its text."""
        changed = list(self._changed.values())
        unsaved = Summaries.of(
            [r.id for r in changed],
            [r.published for r in changed],
            [np.asarray(r.chunk_ids, np.int64) for r in changed],
            -1,
        )
        if self.base is None:
            return unsaved
        return Summaries.joined([self.base.summaries().kept(self._gone), unsaved])

    def hashes(self) -> Iterator[tuple[str, str]]:
        """(id, content hash) of every article in order, without reading texts: what planning an add needs."""
        if self.base is not None:
            yield from ((i, h) for i, h in self.base.hashes() if i not in self._gone)
        yield from [(record.id, record.content_hash) for record in self._changed.values()]

    def hash_of(self, doc_id: str) -> str | None:
        """The content hash of the article stored under `doc_id`, if any, without reading its text."""
        record = self._changed.get(doc_id)
        if record is not None:
            return record.content_hash
        return None if self.base is None or doc_id in self._gone else self.base.hash_of(doc_id)

    def holder(self, content_hash: str) -> str | None:
        """The article holding this content, if any."""
        doc_id = self._by_hash.get(content_hash)
        if doc_id is not None and (record := self._changed.get(doc_id)) and record.content_hash == content_hash:
            return doc_id
        saved = self.base.holder(content_hash) if self.base is not None else None
        return saved if saved is not None and saved not in self._gone else None


class Holders(Mapping[str, str]):
    """Content hash -> an article holding it, in one index's articles or any of an archive's partitions', as
    `plan_additions` asks: looked up, never listed, so a writer holds no map of every article."""

    def __init__(self, *documents: Documents) -> None:
        self._documents = documents

    def __getitem__(self, content_hash: str) -> str:
        for documents in self._documents:
            doc_id = documents.holder(content_hash)
            if doc_id is not None:
                return doc_id
        raise KeyError(content_hash)

    def __iter__(self) -> Iterator[str]:
        raise TypeError("the articles' hashes are looked up one by one, not listed")

    def __len__(self) -> int:
        return sum(len(documents) for documents in self._documents)


class ChunkTable(MutableMapping[int, Chunk]):
    """Chunks by id, kept as compact rows and made into `Chunk`s when asked for. A search reads a handful of
    an index's chunks, and building every `Chunk` at load was most of a new process's first search (0.9 s
    of 1.4 s for RealTime QA's 50,083). A chunk's text is its document's text from `start` to `end`, so
    it is stored only when it is not. Saved rows are read from the generation's file."""

    def __init__(self, documents: Documents) -> None:
        self._documents = documents
        self._rows: dict[int, ChunkRow] = {}
        self._gone: set[int] = set()

    @property
    def base(self) -> SegmentRecords | None:
        return self._documents.base

    def rebase(self) -> None:
        """After a save (`Documents.rebase` first)."""
        self._rows, self._gone = {}, set()

    @property
    def changes(self) -> tuple[set[int], list[tuple[int, ChunkRow]]]:
        return self._gone, list(self._rows.items())

    def _saved(self, chunk_id: int) -> ChunkRow | None:
        if self.base is None or chunk_id in self._gone:
            return None
        return self.base.chunk(chunk_id)

    def put(self, chunk_id: int, doc_id: str, ordinal: int, text: str, start: int, end: int, n_tokens: int) -> None:
        """Store a chunk of a document this index holds (a `KeyError` otherwise)."""
        own = None if self._documents[doc_id].text[start:end] == text else text
        self.restore(chunk_id, (doc_id, ordinal, start, end, n_tokens, own))

    def row(self, chunk_id: int) -> ChunkRow:
        """The chunk as stored: (doc id, ordinal, start, end, tokens, its text when not its span's)."""
        row = self._rows.get(chunk_id) or self._saved(chunk_id)
        if row is None:
            raise KeyError(chunk_id)
        return row

    def restore(self, chunk_id: int, row: ChunkRow) -> None:
        """Store a chunk as `row` gave it, for a document this table's index holds."""
        if chunk_id not in self._rows and self._saved(chunk_id) is not None:
            self._gone.add(chunk_id)
        self._rows[chunk_id] = row

    def __setitem__(self, chunk_id: int, chunk: Chunk) -> None:
        self.put(chunk_id, chunk.doc_id, chunk.ordinal, chunk.text, chunk.start, chunk.end, chunk.n_tokens)

    def __getitem__(self, chunk_id: int) -> Chunk:
        doc_id, ordinal, start, end, n_tokens, own = self.row(chunk_id)
        doc = self._documents[doc_id]
        text = doc.text[start:end] if own is None else own
        return Chunk(
            doc_id, ordinal, text, start, end, n_tokens, doc.title, doc.published, doc.source, doc.url, chunk_id,
            added_through_api(doc.metadata),
        )  # fmt: skip

    def __delitem__(self, chunk_id: int) -> None:
        if self._rows.pop(chunk_id, None) is None:  # a replaced saved row is already gone
            if self._saved(chunk_id) is None:
                raise KeyError(chunk_id)
            self._gone.add(chunk_id)

    def discard(self, chunk_id: int) -> None:
        """Forget a chunk whose document may already be gone (`pop` would have to build it first)."""
        with contextlib.suppress(KeyError):
            del self[chunk_id]

    def ids(self) -> np.ndarray:
        """Every chunk id, sorted: for whole-index checks, without a Python object per chunk."""
        saved = self.base.chunk_columns()[:, 0] if self.base is not None else np.zeros(0, np.int64)
        if self._gone:
            saved = saved[~np.isin(saved, np.fromiter(self._gone, np.int64, len(self._gone)))]
        new = np.fromiter(self._rows, np.int64, len(self._rows))
        return np.sort(np.concatenate([saved, new]))

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids().tolist())

    def __len__(self) -> int:
        saved = self.base.n_chunks if self.base is not None else 0
        return saved - len(self._gone) + len(self._rows)

    def __contains__(self, chunk_id: object) -> bool:
        if not isinstance(chunk_id, int | np.integer):
            return False
        return int(chunk_id) in self._rows or self._saved(int(chunk_id)) is not None

    def span(self, chunk_id: int) -> tuple[int, int]:
        """(start, end) in its document's text, without making the `Chunk`."""
        _, _, start, end, _, _ = self.row(chunk_id)
        return start, end

    def spans(self, chunk_ids: np.ndarray) -> np.ndarray:
        """(start, end) of each of these chunks, as an n × 2 array: one pass over the file for all."""
        out = np.zeros((len(chunk_ids), 2), dtype=np.int64)
        if self.base is not None and self.base.n_chunks:
            table = self.base.chunk_columns("start", "end")
            at = np.clip(np.searchsorted(table[:, 0], chunk_ids), 0, len(table) - 1)
            out[:] = table[at, 1:]
        for position, chunk_id in enumerate(chunk_ids.tolist()):
            row = self._rows.get(chunk_id)
            if row is not None:
                out[position] = row[2], row[3]
        return out
