"""The index as arrays for retrieval, and the array helpers the stages share."""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from rag.dates import DateRange
from rag.retrieval.keyword import Keyword, best
from rag.store.index import ArticleIndex
from rag.store.records import UNDATED, DocumentRecord, article_text, chunk_text, day
from rag.store.segments import Unit

log = logging.getLogger(__name__)
T = TypeVar("T")
_MEMO_SIZE = 32
"""Arrays `Corpus.memo` keeps: 32 masks of 10 M chunks are 320 MB, and a server's questions share a few dates."""


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
    """Each chunk row's position, where `ArticleIndex.vectors_at` finds its embedding."""
    index: ArticleIndex = field(repr=False)
    article_segment: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32), repr=False)
    """Each article row's segment (its place in `ArticleIndex.segments`), -1 when unsaved."""
    article_position: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    """Each article row's row in its segment (`Summary.position`)."""
    article_first_chunk: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    """Each article row's first chunk's row in its segment (`Summary.first_chunk`)."""
    _by_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    """Chunk rows sorted by chunk id, for `rows`."""
    _sorted_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    """`chunk_ids` in that order: a binary search over it reads memory in order, not through `_by_id`."""
    _keyword: dict[Unit, Keyword] = field(default_factory=dict, repr=False)
    _memo: OrderedDict[Hashable, np.ndarray] = field(default_factory=OrderedDict, repr=False)

    @classmethod
    def of(cls, index: ArticleIndex) -> Corpus:
        """The arrays of the index as it stands: its segments' `Summaries` (each read once per process)
        joined with the unsaved articles'."""
        summaries = index.documents.summaries()
        counts, chunk_ids = summaries.counts, summaries.chunk_ids
        chunk_article = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        by_id = np.argsort(chunk_ids, kind="stable")
        return cls(
            chunk_ids=chunk_ids,
            chunk_article=chunk_article,
            chunk_day=summaries.days[chunk_article],
            article_ids=summaries.ids,
            article_day=summaries.days,
            article_rows=np.split(np.arange(len(chunk_ids)), np.cumsum(counts)[:-1]) if len(counts) else [],
            vector_row=index.positions(chunk_ids),
            index=index,
            article_segment=summaries.segment,
            article_position=summaries.position,
            article_first_chunk=summaries.first_chunk,
            _by_id=by_id,
            _sorted_ids=chunk_ids[by_id],
        )

    def by_segment(self) -> dict[int, np.ndarray]:
        """The article rows of each segment (-1: unsaved), in row order."""
        order = np.argsort(self.article_segment, kind="stable")
        numbers, starts = np.unique(self.article_segment[order], return_index=True)
        return dict(zip(numbers.tolist(), np.split(order, starts[1:]), strict=True))

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
        """An article row's record, text included, read from its segment (or memory)."""
        return self.index.documents.get_in(self.article_ids[row], int(self.article_segment[row]))

    def chunk_text(self, row: int) -> str:
        """A chunk's text with its article's title, as BM25 and the reranker read it."""
        return chunk_text(self.record(int(self.chunk_article[row])), *self.index.chunks.span(int(self.chunk_ids[row])))

    def article_text(self, row: int) -> str:
        """An article's title and text, as BM25 reads it."""
        return article_text(self.record(row))

    @functools.cached_property
    def article_texts(self) -> list[str]:
        """`article_text` of every article row, read in one pass and kept (for a stage that scans every article)."""
        return [article_text(record) for record in self.index.documents.records()]

    def keyword(self, unit: Unit) -> Keyword:
        """BM25 over the chunks or the articles, made on first use."""
        found = self._keyword.get(unit)
        if found is None:
            found = self._keyword[unit] = Keyword(self, unit)
        return found

    @property
    def chunk_bm25(self) -> Keyword:
        return self.keyword("chunk")

    @property
    def article_bm25(self) -> Keyword:
        return self.keyword("article")


def rrf(ranks: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Weighted reciprocal rank fusion term, scaled so that first place is worth `weight`; rank 0 means
    "not in this list" and is worth nothing."""
    out = np.zeros(len(ranks), dtype=np.float64)
    listed = ranks > 0
    out[listed] = weight * (k + 1) / (k + ranks[listed])
    return out


def top(scores: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """Rows of the n best positive scores among the allowed rows, best first, equal scores in row order."""
    rows = np.flatnonzero(allowed & (scores > 0))
    return best(rows, scores[rows], n)[0]


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
