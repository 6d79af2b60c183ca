"""Candidates: the units each retrieval signal puts forward, as rankings for fusion.

Names and numbers favour keyword matching and paraphrases favour embeddings, so news needs both. With
article ranking, dense candidates are articles ranked by their best chunk and keyword candidates come from
BM25 over whole articles; without it, both rank chunks.
"""

from __future__ import annotations

import numpy as np

from rag.config import RetrievalSettings
from rag.retrieval.corpus import first_seen, top
from rag.retrieval.search import Search


class DenseCandidates:
    """The FAISS top `candidates` chunks within the dates searched."""

    name = "dense"

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool:
        return settings.retrieval_mode != "bm25"

    def __call__(self, search: Search) -> None:
        assert search.vector is not None, "dense candidates need the question's embedding"
        corpus, s = search.corpus, search.settings
        rows = self._rows(search)
        if search.unit == "chunk":
            search.rankings.append((rows, s.dense_weight))
        elif len(rows):
            search.rankings.append((first_seen(corpus.chunk_article[rows]), s.dense_weight))

    @staticmethod
    def _rows(search: Search) -> np.ndarray:
        """The best chunks' rows within the dates searched."""
        assert search.vector is not None
        corpus, s, index, inside = search.corpus, search.settings, search.index, search.allowed_chunks
        share = float(corpus.memo(("share", search.result.dates), lambda: np.asarray(inside.mean())))
        ids = None
        if 0 < share < 1:

            def keep(found: np.ndarray) -> np.ndarray:
                kept: np.ndarray = inside[corpus.rows(found)]
                return kept

            ids = index.dense_search_within(search.vector, s.candidates, keep=keep, share=share, nprobe=s.ann_nprobe)
        if ids is None:
            allowed_ids = None if share == 1 else corpus.chunk_ids[inside]
            ids = index.dense_search(search.vector, s.candidates, allowed=allowed_ids, nprobe=s.ann_nprobe)
        return corpus.rows(ids)


class KeywordCandidates:
    """The BM25 top `candidates` (`rag.sparse`) within the dates searched."""

    name = "bm25"

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool:
        return settings.retrieval_mode != "dense"

    def __call__(self, search: Search) -> None:
        corpus, s = search.corpus, search.settings
        if not search.terms:
            return
        if search.unit == "chunk":
            if s.bm25_weight > 0:
                order = top(corpus.chunk_bm25.scores(search.terms), search.allowed_chunks, s.candidates)
                search.rankings.append((order, s.bm25_weight))
        elif s.article_bm25_weight > 0:
            articles = corpus.allowed_articles(search.result.dates)
            order = top(corpus.article_bm25.scores(search.terms), articles, s.candidates)
            search.rankings.append((order, s.article_bm25_weight))


CANDIDATE_STAGES = frozenset({DenseCandidates.name, KeywordCandidates.name})
"""The stages that read the whole index: an archive's search gathers their rankings from its shards."""
