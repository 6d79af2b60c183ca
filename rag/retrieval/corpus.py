"""The index as arrays for retrieval, and the array helpers the stages share."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.dates import DateRange
from rag.index import ArticleIndex
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
    walk over Python objects. Built once per index version."""

    chunk_ids: np.ndarray
    chunk_article: np.ndarray
    chunk_day: np.ndarray
    article_ids: list[str]
    article_day: np.ndarray
    article_rows: list[np.ndarray]
    row_of: dict[int, int]
    vectors: np.ndarray
    """Embeddings by FAISS position (a view, not a copy); `vector_row[row]` is a chunk row's position."""
    vector_row: np.ndarray
    chunk_texts: list[str]
    article_texts: list[str]
    saved_dir: Path | None
    """Where data derived from the saved generation this corpus reflects is kept; None for unsaved changes."""
    _chunk_bm25: BM25Index | None = field(default=None, repr=False)
    _article_bm25: BM25Index | None = field(default=None, repr=False)

    @classmethod
    def of(cls, index: ArticleIndex) -> Corpus:
        records = list(index.documents.values())
        article_of = {record.id: i for i, record in enumerate(records)}
        chunks = [index.chunks[i] for record in records for i in record.chunk_ids]
        chunk_article = np.asarray([article_of[c.doc_id] for c in chunks], dtype=np.int32)
        rows = np.arange(len(chunks))
        faiss_ids, vectors = index.stored_vectors()
        position = {int(chunk_id): i for i, chunk_id in enumerate(faiss_ids)}
        return cls(
            chunk_ids=np.asarray([c.id for c in chunks], dtype=np.int64),
            chunk_article=chunk_article,
            chunk_day=np.asarray([day(c.published) for c in chunks], dtype=np.int32),
            article_ids=[record.id for record in records],
            article_day=np.asarray([day(record.published) for record in records], dtype=np.int32),
            article_rows=np.split(rows, np.cumsum([len(r.chunk_ids) for r in records])[:-1]) if records else [],
            row_of={int(c.id): row for row, c in enumerate(chunks)},
            vectors=vectors,
            vector_row=np.asarray([position[int(c.id)] for c in chunks], dtype=np.int64),
            chunk_texts=[f"{c.title}\n{c.text}" if c.title else c.text for c in chunks],
            article_texts=[f"{r.title}\n{r.text}" if r.title else r.text for r in records],
            saved_dir=index.derived_dir("bm25"),
        )

    @property
    def chunk_bm25(self) -> BM25Index:
        if self._chunk_bm25 is None:
            self._chunk_bm25 = BM25Index.cached(self.chunk_texts, self.saved_dir and self.saved_dir / "chunks")
        return self._chunk_bm25

    @property
    def article_bm25(self) -> BM25Index:
        if self._article_bm25 is None:
            self._article_bm25 = BM25Index.cached(self.article_texts, self.saved_dir and self.saved_dir / "articles")
        return self._article_bm25


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
