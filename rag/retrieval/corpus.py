"""The index as arrays for retrieval, and the array helpers the stages share."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.dates import DateRange
from rag.index import ArticleIndex
from rag.index_store import DocumentRecord
from rag.sparse import BM25Index

UNDATED = np.iinfo(np.int32).min
"""Day number of an undated article: it passes every date filter and earns no recency prior."""
_EPOCH = dt.date(1970, 1, 1)


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
    vectors: np.ndarray
    """Embeddings by FAISS position (a view, not a copy); `vector_row[row]` is a chunk row's position."""
    vector_row: np.ndarray
    index: ArticleIndex = field(repr=False)
    saved_dir: Path | None
    """Where data derived from the saved generation this corpus reflects is kept; None for unsaved changes."""
    fingerprint: str | None = None
    """Names the texts BM25 is built from, from checksums the manifest recorded (None: hash the texts)."""
    _by_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    """Chunk rows sorted by chunk id, for `rows`."""
    _chunk_bm25: BM25Index | None = field(default=None, repr=False)
    _article_bm25: BM25Index | None = field(default=None, repr=False)

    @classmethod
    def of(cls, index: ArticleIndex) -> Corpus:
        summaries = list(index.documents.summaries())
        counts = [len(summary.chunk_ids) for summary in summaries]
        chunk_ids = np.concatenate([s.chunk_ids for s in summaries]) if summaries else np.zeros(0, np.int64)
        chunk_article = np.repeat(np.arange(len(summaries), dtype=np.int32), counts)
        article_day = np.asarray([day(summary.published) for summary in summaries], dtype=np.int32)
        faiss_ids, vectors = index.stored_vectors()
        by_id = np.argsort(faiss_ids, kind="stable")
        saved_dir = index.derived_dir("bm25")
        return cls(
            chunk_ids=chunk_ids,
            chunk_article=chunk_article,
            chunk_day=article_day[chunk_article],
            article_ids=[summary.id for summary in summaries],
            article_day=article_day,
            article_rows=np.split(np.arange(len(chunk_ids)), np.cumsum(counts)[:-1]) if summaries else [],
            vectors=vectors,
            vector_row=by_id[np.searchsorted(faiss_ids, chunk_ids, sorter=by_id)].astype(np.int64),
            index=index,
            saved_dir=saved_dir,
            fingerprint=index.saved_checksum() if saved_dir else None,
            _by_id=np.argsort(chunk_ids, kind="stable"),
        )

    def rows(self, chunk_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The chunk rows of these chunk ids (each must be in the corpus)."""
        wanted = np.asarray(chunk_ids, dtype=np.int64)
        found: np.ndarray = self._by_id[np.searchsorted(self.chunk_ids, wanted, sorter=self._by_id)]
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


def ranks_of(order: np.ndarray, size: int) -> np.ndarray:
    """1-based rank of each row listed in `order`, 0 for rows not listed."""
    ranks = np.zeros(size, dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def top(scores: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """Rows of the n best positive scores among the allowed rows, best first."""
    candidates = np.flatnonzero(allowed & (scores > 0))
    if len(candidates) > n:
        candidates = candidates[np.argpartition(-scores[candidates], n - 1)[:n]]
    return candidates[np.argsort(-scores[candidates], kind="stable")]


def fused(rankings: Sequence[tuple[np.ndarray, float]], size: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """RRF over rankings of rows (each best first, with its weight): the fused score of every row, and
    which rows any ranking listed."""
    score = np.zeros(size, dtype=np.float64)
    listed = np.zeros(size, dtype=bool)
    for order, weight in rankings:
        score += rrf(ranks_of(order, size), k, weight)
        listed[order] = True
    return score, listed


def first_seen(values: np.ndarray) -> np.ndarray:
    """`values` without repeats, in order of first appearance."""
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]
