"""The index as arrays for retrieval, and the array helpers the stages share."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from rag.dates import DateRange
from rag.store.index import ArticleIndex
from rag.store.records import DocumentRecord, article_text, chunk_text
from rag.store.segments import Segment, Unit
from rag.store.sparse import KeywordStats, TermCounts

UNDATED = np.iinfo(np.int32).min
"""Day number of an undated article: it passes every date filter and earns no recency prior."""
_EPOCH = dt.date(1970, 1, 1)
log = logging.getLogger(__name__)
T = TypeVar("T")
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


class Keyword:
    """BM25 over one unit's rows (chunks or articles) of a corpus: each segment's saved term counts, and the
    unsaved articles' counted here, scored with the statistics of every live row together, so the scores
    are those of one BM25 index over the corpus however it is split."""

    def __init__(self, corpus: Corpus, unit: Unit) -> None:
        self.corpus, self.unit = corpus, unit
        self.size = len(corpus.chunk_ids) if unit == "chunk" else len(corpus.article_ids)
        index = corpus.index
        self._parts: list[tuple[Segment | None, np.ndarray, np.ndarray | None, int | None]] = []
        """(segment, or None for the unsaved articles; each of its rows' corpus row, -1 when dead; the dead
        rows as a mask, None when there are none; the first corpus row when its rows are corpus rows in
        order, as they are without tombstones)."""
        self._unsaved: TermCounts | None = None
        for number, rows in sorted(corpus.by_segment().items()):
            segment = index.segments[number] if number >= 0 else None
            if segment is None:
                counts = self._unsaved = self._unsaved_counts()
            else:
                counts = segment.terms(unit)
            order = np.full(counts.size, -1, dtype=np.int64)
            positions, corpus_rows = self._positions(rows)
            order[positions] = corpus_rows
            dead = order < 0
            first = int(order[0]) if len(order) else 0
            contiguous = not dead.any() and np.array_equal(order, np.arange(first, first + len(order)))
            self._parts.append((segment, order, dead if dead.any() else None, first if contiguous else None))

    def _positions(self, article_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in their segment, corpus rows) of these articles, or of their chunks."""
        corpus = self.corpus
        if self.unit == "article":
            return corpus.article_position[article_rows], article_rows
        rows = [corpus.article_rows[r] for r in article_rows.tolist()]
        counts = np.asarray([len(one) for one in rows], np.int64)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        firsts = np.repeat(corpus.article_first_chunk[article_rows], counts)
        return firsts + within, np.concatenate([np.zeros(0, np.int64), *rows])

    def _unsaved_counts(self) -> TermCounts:
        """The unsaved articles' counts, in the order `Documents.summaries` places them."""
        index = self.corpus.index
        _, records = index.documents.changes
        if self.unit == "article":
            return TermCounts.build(article_text(record) for record in records)
        return TermCounts.build(
            chunk_text(record, *index.chunks.span(chunk_id)) for record in records for chunk_id in record.chunk_ids
        )

    def _counted(self, part: int, use: Callable[[TermCounts], T]) -> T:
        """`use` of the part's term counts. Loading checks every byte, but a file changed under the mapping
        since must still not fail every question: counts that fail are counted again from the records."""
        segment = self._parts[part][0]
        if segment is None:
            assert self._unsaved is not None  # the unsaved articles' part is made with their counts
            return use(self._unsaved)
        try:
            return use(segment.terms(self.unit))
        except (ValueError, IndexError) as exc:
            number = segment.info.number
            log.warning("rebuilding the BM25 term counts of segment %d: they failed while scoring (%s)", number, exc)
            segment.recount(self.unit)
            return use(segment.terms(self.unit))

    def stats(self, terms: list[str]) -> KeywordStats:
        """The corpus's statistics for these terms: every live row, whatever the dates searched."""
        total = KeywordStats()
        for part, (_, _, dead, _) in enumerate(self._parts):
            total += self._counted(part, functools.partial(TermCounts.stats, query_terms=terms, dead=dead))
        return total

    def scores(self, terms: list[str], stats: KeywordStats | None = None) -> np.ndarray:
        """One BM25 score per row of the unit (`stats`: the statistics to score with, by default the
        corpus's own); all zero when no term occurs."""
        stats = self.stats(terms) if stats is None else stats
        out = np.zeros(self.size, dtype=np.float32)
        for part, (_, order, _, first) in enumerate(self._parts):
            scores = self._counted(part, lambda counts: counts.scores(terms, stats))
            if first is not None:
                out[first : first + len(scores)] = scores
            else:
                live = order >= 0
                out[order[live]] = scores[live]
        return out


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
        summaries = list(index.documents.summaries())
        counts = [len(summary.chunk_ids) for summary in summaries]
        chunk_ids = np.concatenate([s.chunk_ids for s in summaries]) if summaries else np.zeros(0, np.int64)
        chunk_article = np.repeat(np.arange(len(summaries), dtype=np.int32), counts)
        article_day = np.asarray([day(summary.published) for summary in summaries], dtype=np.int32)
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
            article_segment=np.asarray([s.segment for s in summaries], dtype=np.int32),
            article_position=np.asarray([s.position for s in summaries], dtype=np.int64),
            article_first_chunk=np.asarray([s.first_chunk for s in summaries], dtype=np.int64),
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
