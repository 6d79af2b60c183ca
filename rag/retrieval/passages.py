"""Passages: the ranked units become the articles listed and the passages shown to the reader."""

from __future__ import annotations

import numpy as np

from rag.config import RetrievalSettings
from rag.retrieval.corpus import first_seen
from rag.retrieval.search import Search
from rag.types import ArticleHit, Passage


class Passages:
    """Each article in turn gives its best chunks, at most `passages_per_article` until every article has
    had its turn, so k passages cover several reports rather than one long article; ranking chunks
    directly, the first k chunks are the passages."""

    name = "passages"

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool:
        return True

    def __call__(self, search: Search) -> None:
        if search.unit == "article":
            self._from_articles(search)
        else:
            self._from_chunks(search)

    @staticmethod
    def _from_articles(search: Search) -> None:
        corpus, k, per_article = search.corpus, search.k, search.settings.passages_per_article
        kept = search.ranked[: search.shown]
        ids = corpus.article_ids

        def also_in(article: int) -> tuple[str, ...]:
            return tuple(ids[b] for b in search.folded.get(article, []))

        search.result.articles = [
            ArticleHit(ids[a], float(search.score[a]), rank, also_in(a)) for rank, a in enumerate(kept, start=1)
        ]
        rows = [(row, a) for a in kept for row in search.best_rows(a)[:per_article]][:k]
        if len(rows) < k:  # few articles: the rest of their passages, article by article
            rows += [(row, a) for a in kept for row in search.best_rows(a)[per_article:]][: k - len(rows)]
        search.result.passages = [
            Passage(
                search.index.chunks[int(corpus.chunk_ids[row])],
                float(search.score[a]),
                rank,
                also_in(a) if row == search.best_rows(a)[0] else (),
            )
            for rank, (row, a) in enumerate(rows, start=1)
        ]

    @staticmethod
    def _from_chunks(search: Search) -> None:
        corpus, kept = search.corpus, search.ranked
        articles = [int(a) for a in first_seen(corpus.chunk_article[np.asarray(kept, dtype=np.int64)])]
        best_row = {int(corpus.chunk_article[row]): row for row in reversed(kept)}
        search.result.articles = [
            ArticleHit(corpus.article_ids[a], float(search.score[best_row[a]]), rank)
            for rank, a in enumerate(articles[: search.shown], start=1)
        ]
        search.result.passages = [
            Passage(
                search.index.chunks[int(corpus.chunk_ids[row])],
                float(search.score[row]),
                rank,
                tuple(dict.fromkeys(corpus.article_ids[corpus.chunk_article[b]] for b in search.folded.get(row, []))),
            )
            for rank, row in enumerate(kept[: search.k], start=1)
        ]
