"""Retrieval: which articles a question is about, and which of their passages to show the model.

News needs more than dense top-k. Names and numbers favour keyword matching, so BM25 runs beside the
embeddings; the same story is reported many times over months, so the date the question is asked
decides which report is right. The stages, each switchable in `Settings`:

1. Candidates, published within the date filter (explicit `since`/`until`, capped at the as-of date):
   the dense top chunks (FAISS), and BM25 over whole articles and over chunks (`rag.sparse`).
2. Articles ranked by weighted reciprocal rank fusion (RRF) of the dense ranking (each article by its
   best chunk) and the article BM25 ranking, plus a recency prior that decays with the article's age at
   the as-of date, plus a bonus for articles inside a date the question names ("last week").
3. Diversity: an article whose best passage is a near-copy of one already kept (the same wire story in
   another outlet) is folded into it (`Passage.also_in`) instead of taking a place of its own.
4. An optional cross-encoder reranks the best passage of the leading articles.
5. Passages: each article in turn gives its best chunks (dense and chunk BM25 fused by RRF within the
   article), at most `passages_per_article` until every article has had its turn.

With `article_ranking` off, chunks are ranked directly by RRF of dense and chunk BM25 (plus the same
prior), the textbook hybrid; the evaluation harness reports what each stage buys.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.config import Settings
from rag.dates import DateMention, DateRange, resolve
from rag.embedding import Embedder
from rag.index import ArticleIndex
from rag.sparse import BM25Index
from rag.text import query_terms
from rag.types import ArticleHit, Passage, Retrieval

if TYPE_CHECKING:
    from rag.rerank import Reranker

UNDATED = np.iinfo(np.int32).min
"""Day number of an undated article: it passes every date filter and earns no recency prior."""
_EPOCH = dt.date(1970, 1, 1)
ARTICLES_LISTED = 10
"""Articles a search lists whatever k is: enough to score the article ranking at depth 10."""
_RowOf = Callable[[int], int]


def _day(date: dt.date | None) -> int:
    return UNDATED if date is None else (date - _EPOCH).days


@dataclass
class _Corpus:
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
    def of(cls, index: ArticleIndex) -> _Corpus:
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
            chunk_day=np.asarray([_day(c.published) for c in chunks], dtype=np.int32),
            article_ids=[record.id for record in records],
            article_day=np.asarray([_day(record.published) for record in records], dtype=np.int32),
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


def _ranks_of(order: np.ndarray, size: int) -> np.ndarray:
    """1-based rank of each row listed in `order`, 0 for rows not listed."""
    ranks = np.zeros(size, dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def _top(scores: np.ndarray, allowed: np.ndarray, n: int) -> np.ndarray:
    """Rows of the n best positive scores among the allowed rows, best first."""
    candidates = np.flatnonzero(allowed & (scores > 0))
    if len(candidates) > n:
        candidates = candidates[np.argpartition(-scores[candidates], n - 1)[:n]]
    return candidates[np.argsort(-scores[candidates], kind="stable")]


def _fused(rankings: Sequence[tuple[np.ndarray, float]], size: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """RRF over rankings of rows (each best first, with its weight): the fused score of every row, and
    which rows any ranking listed."""
    score = np.zeros(size, dtype=np.float64)
    listed = np.zeros(size, dtype=bool)
    for order, weight in rankings:
        score += rrf(_ranks_of(order, size), k, weight)
        listed[order] = True
    return score, listed


def _first_seen(values: np.ndarray) -> np.ndarray:
    """`values` without repeats, in order of first appearance."""
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]


class Retriever:
    def __init__(
        self,
        index: ArticleIndex,
        embedder: Embedder,
        settings: Settings | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = settings or Settings()
        self.reranker = reranker
        self._corpus: tuple[int, _Corpus] | None = None

    @property
    def corpus(self) -> _Corpus:
        if self._corpus is None or self._corpus[0] != self.index.version:
            self._corpus = (self.index.version, _Corpus.of(self.index))
        return self._corpus[1]

    def prepare(self) -> None:
        """Build, and save beside the index, the keyword indexes the first search would otherwise build:
        indexing pays for them once rather than the first question of every process."""
        if self.settings.retrieval_mode != "dense":
            _ = self.corpus.chunk_bm25, self.corpus.article_bm25

    def retrieve(
        self,
        question: str,
        k: int,
        dates: DateRange | None = None,
        *,
        as_of: dt.date | None = None,
    ) -> Retrieval:
        s = self.settings
        as_of = as_of or dt.date.today()
        dates = dates or DateRange()
        if s.as_of_filter:
            dates = DateRange(dates.since, min(dates.until or as_of, as_of))
        mention = resolve(question, as_of) if s.question_dates != "off" else None
        filtered = mention is not None and s.question_dates == "filter"
        if filtered:
            assert mention is not None
            since = max(filter(None, (dates.since, mention.range.since)), default=None)
            until = min(filter(None, (dates.until, mention.range.until)), default=None)
            if since and until and since > until:
                return Retrieval([], [], as_of, dates, mention, True)
            dates = DateRange(since, until)
        result = Retrieval([], [], as_of, dates, mention, filtered)
        corpus = self.corpus
        if not len(corpus.chunk_ids):
            return result
        allowed_chunks = self._allowed(corpus.chunk_day, dates)
        if not allowed_chunks.any():
            return result
        query = self.embedder.embed_query(question) if s.retrieval_mode != "bm25" else None
        terms = query_terms(question) if s.retrieval_mode != "dense" else []
        prior = self._prior(corpus.article_day, as_of, mention)
        if s.article_ranking:
            self._rank_articles(result, corpus, query, terms, allowed_chunks, prior, question, k)
        else:
            self._rank_chunks(result, corpus, query, terms, allowed_chunks, prior[corpus.chunk_article], question, k)
        return result

    @staticmethod
    def _allowed(days: np.ndarray, dates: DateRange) -> np.ndarray:
        allowed = np.ones(len(days), dtype=bool)
        if dates.since is not None:
            allowed &= days >= _day(dates.since)
        if dates.until is not None:
            allowed &= days <= _day(dates.until)
        allowed |= days == UNDATED
        return allowed

    def _prior(self, days: np.ndarray, as_of: dt.date, mention: DateMention | None) -> np.ndarray:
        """Per-article bonus, in the units of a first place in one fused ranking: recency, halving every
        `recency_half_life_days` of age at the as-of date, plus `question_date_weight` for articles inside
        a date the question names. The named date only adds: it often names when an event happened
        rather than when it was reported ("how long did Trump let the violence of January 6, 2021 play
        out?" asked during the 2022 hearings), and letting it move the recency reference cost 2 points
        of Hit@1 and Hit@5 on RealTime QA."""
        s = self.settings
        prior = np.zeros(len(days), dtype=np.float64)
        dated = days != UNDATED
        if s.recency_weight > 0:
            age = np.maximum(_day(as_of) - days[dated].astype(np.int64), 0)
            prior[dated] += s.recency_weight * 0.5 ** (age / s.recency_half_life_days)
        if mention is not None and s.question_date_weight > 0:
            inside = self._allowed(days, mention.range) & dated
            prior[inside] += s.question_date_weight
        return prior

    def _dense(self, query: np.ndarray | None, allowed: np.ndarray, n: int) -> np.ndarray:
        """Rows of the dense top n among the allowed chunks, best first."""
        if query is None:
            return np.zeros(0, dtype=np.int64)
        corpus = self.corpus
        ids = self.index.dense_search(
            query, n, allowed=None if allowed.all() else corpus.chunk_ids[allowed], nprobe=self.settings.ann_nprobe
        )
        return np.asarray([corpus.row_of[int(i)] for i in ids], dtype=np.int64)

    def _vectors(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        corpus = self.corpus
        vectors: np.ndarray = corpus.vectors[corpus.vector_row[np.asarray(rows, dtype=np.int64)]]
        return vectors

    def _rank_articles(
        self,
        result: Retrieval,
        corpus: _Corpus,
        query: np.ndarray | None,
        terms: list[str],
        allowed_chunks: np.ndarray,
        prior: np.ndarray,
        question: str,
        k: int,
    ) -> None:
        s = self.settings
        rankings = []
        dense_rows = self._dense(query, allowed_chunks, s.candidates)
        if len(dense_rows):
            rankings.append((_first_seen(corpus.chunk_article[dense_rows]), s.dense_weight))
        if terms and s.article_bm25_weight > 0:
            allowed_articles = self._allowed(corpus.article_day, result.dates)
            order = _top(corpus.article_bm25.scores(terms), allowed_articles, s.candidates)
            rankings.append((order, s.article_bm25_weight))
        score, listed = _fused(rankings, len(corpus.article_ids), s.rrf_k)
        candidates = np.flatnonzero(listed)
        score[candidates] += prior[candidates]
        ranked = candidates[np.lexsort((-corpus.article_day[candidates], -score[candidates]))]
        chunk_bm25 = corpus.chunk_bm25.scores(terms) if terms and s.bm25_weight > 0 else None
        passages: dict[int, list[int]] = {}

        def best(article: int) -> list[int]:
            if article not in passages:
                passages[article] = self._article_passages(article, query, chunk_bm25)
            return passages[article]

        shown = max(k, ARTICLES_LISTED)
        kept, folded = self._diverse([int(a) for a in ranked], lambda a: best(a)[0], max(shown, s.rerank_depth))
        kept = self._rerank(question, kept, lambda a: best(a)[0], s.rerank_depth)[:shown]
        result.articles = [
            ArticleHit(corpus.article_ids[a], float(score[a]), rank, tuple(corpus.article_ids[b] for b in folded[a]))
            for rank, a in enumerate(kept, start=1)
        ]
        rows = [(row, a) for a in kept for row in best(a)[: s.passages_per_article]][:k]
        if len(rows) < k:  # few articles: the rest of their passages, article by article
            rows += [(row, a) for a in kept for row in best(a)[s.passages_per_article :]][: k - len(rows)]
        result.passages = [
            Passage(
                self.index.chunks[int(corpus.chunk_ids[row])],
                float(score[a]),
                rank,
                tuple(corpus.article_ids[b] for b in folded[a]) if row == best(a)[0] else (),
            )
            for rank, (row, a) in enumerate(rows, start=1)
        ]

    def _article_passages(self, article: int, query: np.ndarray | None, chunk_bm25: np.ndarray | None) -> list[int]:
        """The article's chunk rows, best first: dense similarity and chunk BM25 fused by RRF within the
        article, so the passage shown is the one that both matches the meaning and holds the words."""
        s = self.settings
        rows = self.corpus.article_rows[article]
        rankings = []
        if query is not None:
            rankings.append((np.argsort(-(self._vectors(rows) @ query), kind="stable"), s.dense_weight))
        if chunk_bm25 is not None:
            rankings.append((_top(chunk_bm25[rows], np.ones(len(rows), dtype=bool), len(rows)), s.bm25_weight))
        score, _ = _fused(rankings, len(rows), s.rrf_k)
        return [int(r) for r in rows[np.argsort(-score, kind="stable")]]

    def _rank_chunks(
        self,
        result: Retrieval,
        corpus: _Corpus,
        query: np.ndarray | None,
        terms: list[str],
        allowed: np.ndarray,
        prior: np.ndarray,
        question: str,
        k: int,
    ) -> None:
        s = self.settings
        rankings = [(self._dense(query, allowed, s.candidates), s.dense_weight)]
        if terms and s.bm25_weight > 0:
            rankings.append((_top(corpus.chunk_bm25.scores(terms), allowed, s.candidates), s.bm25_weight))
        score, listed = _fused(rankings, len(corpus.chunk_ids), s.rrf_k)
        candidates = np.flatnonzero(listed)
        score[candidates] += prior[candidates]
        ranked = [int(r) for r in candidates[np.argsort(-score[candidates], kind="stable")]]
        kept, folded = self._diverse(ranked, lambda row: row, len(ranked))
        kept = self._rerank(question, kept, lambda row: row, s.rerank_depth)
        articles = [int(a) for a in _first_seen(corpus.chunk_article[np.asarray(kept, dtype=np.int64)])]
        best_row = {int(corpus.chunk_article[row]): row for row in reversed(kept)}
        result.articles = [
            ArticleHit(corpus.article_ids[a], float(score[best_row[int(a)]]), rank)
            for rank, a in enumerate(articles[: max(k, ARTICLES_LISTED)], start=1)
        ]
        result.passages = [
            Passage(
                self.index.chunks[int(corpus.chunk_ids[row])],
                float(score[row]),
                rank,
                tuple(dict.fromkeys(corpus.article_ids[corpus.chunk_article[b]] for b in folded[row])),
            )
            for rank, row in enumerate(kept[:k], start=1)
        ]

    def _rerank(self, question: str, ranked: list[int], passage_row: _RowOf, depth: int) -> list[int]:
        """Reorder the leading `depth` items by the cross-encoder's score of their best passage."""
        if self.reranker is None or not ranked:
            return ranked
        head = ranked[:depth]
        texts = [self.corpus.chunk_texts[passage_row(item)] for item in head]
        scores = self.reranker.score(question, texts)
        order = sorted(range(len(head)), key=lambda i: -scores[i])
        return [head[i] for i in order] + ranked[depth:]

    def _diverse(self, ranked: list[int], passage_row: _RowOf, limit: int) -> tuple[list[int], dict[int, list[int]]]:
        """The first `limit` items in order, folding each one whose passage is a near-copy (cosine at or
        above the threshold) of a kept item's passage into that item."""
        threshold = self.settings.near_duplicate_similarity
        folded: dict[int, list[int]] = {item: [] for item in ranked}
        if threshold is None:
            return ranked[:limit], folded
        kept: list[int] = []
        kept_vectors: list[np.ndarray] = []
        for item in ranked:
            if len(kept) >= limit:
                break
            vector = self._vectors([passage_row(item)])[0]
            if kept_vectors:
                similarity = np.stack(kept_vectors) @ vector
                j = int(np.argmax(similarity))
                if similarity[j] >= threshold:
                    folded[kept[j]].append(item)
                    continue
            kept.append(item)
            kept_vectors.append(vector)
        return kept, folded
