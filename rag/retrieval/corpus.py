"""The index as arrays for retrieval, and the array helpers the stages share."""

from __future__ import annotations

import datetime as dt
import functools
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.dates import DateRange
from rag.store.index import ArticleIndex
from rag.store.records import DocumentRecord
from rag.store.sparse import BM25Index

UNDATED = np.iinfo(np.int32).min
"""Day number of an undated article: it passes every date filter and earns no recency prior."""
_EPOCH = dt.date(1970, 1, 1)
_MEMO_SIZE = 32
"""Arrays `Corpus.memo` keeps: 32 masks of 10 M chunks are 320 MB, and a server's questions share a few dates."""


def day(date: dt.date | None) -> int:
    return UNDATED if date is None else (date - _EPOCH).days


def allowed(days: np.ndarray, dates: DateRange) -> np.ndarray:
    """Which of the rows (chunks or articles, by their day numbers) fall within `dates`; undated ones always."""
    inside = np.ones(len(days), dtype=bool)
    if dates.since is not None:
        inside &= days >= day(dates.since)
    if dates.until is not None:
        inside &= days <= day(dates.until)
    inside |= days == UNDATED
    return inside


@dataclass
class Corpus:
    """The index as arrays, aligned by chunk row and article row, so a query is numpy work rather than a
    walk over Python objects. Built once per index version from the articles' ids, dates and chunk lists
    alone: a new process's first search must not wait for every chunk, text or hash of the index, and at
    millions of chunks a Python object per chunk would be most of the process's memory. Texts are read
    from the index when a stage asks for them."""

    chunk_ids: np.ndarray
    chunk_article: np.ndarray
    chunk_day: np.ndarray
    article_ids: list[str]
    article_day: np.ndarray
    article_rows: list[np.ndarray]
    vector_row: np.ndarray
    """Each chunk row's FAISS position, where `ArticleIndex.vectors_at` finds its embedding."""
    index: ArticleIndex = field(repr=False)
    saved_dir: Path | None
    """Where data derived from the saved generation this corpus reflects is kept; None for unsaved changes."""
    fingerprint: str | None = None
    """Names the texts BM25 is built from, from checksums the manifest recorded (None: hash the texts)."""
    _by_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    """Chunk rows sorted by chunk id, for `rows`."""
    _sorted_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    """`chunk_ids` in that order: a binary search over it reads memory in order, not through `_by_id`."""
    _chunk_bm25: BM25Index | None = field(default=None, repr=False)
    _article_bm25: BM25Index | None = field(default=None, repr=False)
    _memo: OrderedDict[Hashable, np.ndarray] = field(default_factory=OrderedDict, repr=False)

    @classmethod
    def of(cls, index: ArticleIndex) -> Corpus:
        summaries = list(index.documents.summaries())
        counts = [len(summary.chunk_ids) for summary in summaries]
        chunk_ids = np.concatenate([s.chunk_ids for s in summaries]) if summaries else np.zeros(0, np.int64)
        chunk_article = np.repeat(np.arange(len(summaries), dtype=np.int32), counts)
        article_day = np.asarray([day(summary.published) for summary in summaries], dtype=np.int32)
        saved_dir = index.derived_dir("bm25")
        by_id = np.argsort(chunk_ids, kind="stable")
        return cls(
            chunk_ids=chunk_ids,
            chunk_article=chunk_article,
            chunk_day=article_day[chunk_article],
            article_ids=[summary.id for summary in summaries],
            article_day=article_day,
            article_rows=np.split(np.arange(len(chunk_ids)), np.cumsum(counts)[:-1]) if summaries else [],
            vector_row=index.positions(chunk_ids),
            index=index,
            saved_dir=saved_dir,
            fingerprint=index.saved_checksum() if saved_dir else None,
            _by_id=by_id,
            _sorted_ids=chunk_ids[by_id],
        )

    def memo(self, key: Hashable, make: Callable[[], np.ndarray]) -> np.ndarray:
        """An array over every chunk or article that depends only on `key` (which dates are searched, the
        recency prior of an as-of date), made once and kept read-only: at millions of chunks each costs
        milliseconds, and most questions are asked at today's date."""
        found = self._memo.get(key)
        if found is None:
            found = make()
            found.flags.writeable = False
            self._memo[key] = found
            while len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
        self._memo.move_to_end(key)
        return found

    def allowed_chunks(self, dates: DateRange) -> np.ndarray:
        """`allowed` over the chunk rows (`memo`)."""
        return self.memo(("chunks", dates), lambda: allowed(self.chunk_day, dates))

    def allowed_articles(self, dates: DateRange) -> np.ndarray:
        """`allowed` over the article rows (`memo`)."""
        return self.memo(("articles", dates), lambda: allowed(self.article_day, dates))

    def rows(self, chunk_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The chunk rows of these chunk ids (each must be in the corpus)."""
        wanted = np.asarray(chunk_ids, dtype=np.int64)
        found: np.ndarray = self._by_id[np.searchsorted(self._sorted_ids, wanted)]
        return found

    def record(self, row: int) -> DocumentRecord:
        """An article row's record, text included, read from the index."""
        return self.index.documents[self.article_ids[row]]

    def chunk_text(self, row: int) -> str:
        """A chunk's text with its article's title, as BM25 and the reranker read it."""
        record = self.record(int(self.chunk_article[row]))
        start, end = self.index.chunks.span(int(self.chunk_ids[row]))
        return f"{record.title}\n{record.text[start:end]}" if record.title else record.text[start:end]

    def article_text(self, row: int) -> str:
        """An article's title and text, as BM25 reads it."""
        return _titled(self.record(row))

    @functools.cached_property
    def article_texts(self) -> list[str]:
        """`article_text` of every article row, kept once made (for a stage that scans every article)."""
        return self.read_article_texts()

    def read_article_texts(self) -> list[str]:
        """`article_text` of every article row, read in one pass: for building BM25, not kept."""
        return [_titled(record) for record in self.index.documents.records()]

    def read_chunk_texts(self) -> list[str]:
        """`chunk_text` of every chunk row, read in one pass over the articles and their spans: for
        building BM25, not kept."""
        spans = self.index.chunks.spans(self.chunk_ids).tolist()
        texts: list[str] = []
        for record, rows in zip(self.index.documents.records(), self.article_rows, strict=True):
            prefix = f"{record.title}\n" if record.title else ""
            texts.extend(prefix + record.text[start:end] for start, end in (spans[r] for r in rows.tolist()))
        return texts

    @property
    def chunk_bm25(self) -> BM25Index:
        if self._chunk_bm25 is None:
            self._chunk_bm25 = BM25Index.cached(
                self.read_chunk_texts, len(self.chunk_ids), self._saved("chunks"), self.fingerprint
            )
        return self._chunk_bm25

    @property
    def article_bm25(self) -> BM25Index:
        if self._article_bm25 is None:
            self._article_bm25 = BM25Index.cached(
                self.read_article_texts, len(self.article_ids), self._saved("articles"), self.fingerprint
            )
        return self._article_bm25

    def _saved(self, name: str) -> Path | None:
        return self.saved_dir and self.saved_dir / name


def _titled(record: DocumentRecord) -> str:
    return f"{record.title}\n{record.text}" if record.title else record.text


def rrf(ranks: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Weighted reciprocal rank fusion term, scaled so that first place is worth `weight`; rank 0 means
    "not in this list" and is worth nothing."""
    out = np.zeros(len(ranks), dtype=np.float64)
    listed = ranks > 0
    out[listed] = weight * (k + 1) / (k + ranks[listed])
    return out


def top(scores: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """Rows of the n best positive scores among the allowed rows, best first."""
    candidates = np.flatnonzero(allowed & (scores > 0))
    if len(candidates) > n:
        candidates = candidates[np.argpartition(-scores[candidates], n - 1)[:n]]
    return candidates[np.argsort(-scores[candidates], kind="stable")]


def fused(rankings: Sequence[tuple[np.ndarray, float]], size: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """RRF over rankings of rows (each best first, with its weight): the fused score of every row, and the
    rows any ranking listed, in row order. Only listed rows are touched: at a million articles, a pass over
    every row per ranking was most of a question's fusion (the zeros are the allocator's, untouched)."""
    score = np.zeros(size, dtype=np.float64)
    for order, weight in rankings:
        score[order] += rrf(np.arange(1, len(order) + 1), k, weight)
    listed = np.unique(np.concatenate([order for order, _ in rankings])) if rankings else np.zeros(0, np.int64)
    return score, listed.astype(np.int64)


def first_seen(values: np.ndarray) -> np.ndarray:
    """`values` without repeats, in order of first appearance."""
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]
