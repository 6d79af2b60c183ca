"""Candidates: the units each retrieval signal puts forward, as rankings for fusion.

Names and numbers favour keyword matching and paraphrases favour embeddings, so news needs both. With
article ranking, dense candidates are articles ranked by their best chunk and keyword candidates come from
BM25 over whole articles; without it, both rank chunks.
"""

from __future__ import annotations

from rag.config import Settings
from rag.retrieval.corpus import allowed, first_seen, top
from rag.retrieval.search import Search


class DenseCandidates:
    """The FAISS top `candidates` chunks within the dates searched."""

    name = "dense"

    @staticmethod
    def enabled(settings: Settings) -> bool:
        return settings.retrieval_mode != "bm25"

    def __call__(self, search: Search) -> None:
        assert search.vector is not None, "dense candidates need the question's embedding"
        corpus, s = search.corpus, search.settings
        allowed_ids = None if search.allowed_chunks.all() else corpus.chunk_ids[search.allowed_chunks]
        ids = search.index.dense_search(search.vector, s.candidates, allowed=allowed_ids, nprobe=s.ann_nprobe)
        rows = corpus.rows(ids)
        if search.unit == "chunk":
            search.rankings.append((rows, s.dense_weight))
        elif len(rows):
            search.rankings.append((first_seen(corpus.chunk_article[rows]), s.dense_weight))


class KeywordCandidates:
    """The BM25 top `candidates` (`rag.sparse`) within the dates searched."""

    name = "bm25"

    @staticmethod
    def enabled(settings: Settings) -> bool:
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
            articles = allowed(corpus.article_day, search.result.dates)
            order = top(corpus.article_bm25.scores(search.terms), articles, s.candidates)
            search.rankings.append((order, s.article_bm25_weight))


CANDIDATE_STAGES = frozenset({DenseCandidates.name, KeywordCandidates.name})
"""The stages that read the whole index: an archive's search gathers their rankings from its shards."""
