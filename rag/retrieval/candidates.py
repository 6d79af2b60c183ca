"""Candidates: the units each retrieval signal puts forward, as rankings for fusion.

Names and numbers favour keyword matching and paraphrases favour embeddings, so news needs both. With
article ranking, dense candidates are articles ranked by their best chunk and keyword candidates come from
BM25 over whole articles; without it, both rank chunks. The source searched (`rag.retrieval.source`: one
index, or an archive's shards) draws them; these stages turn them into the rankings fusion reads.
"""

from __future__ import annotations

from rag.config import RetrievalSettings
from rag.retrieval.corpus import first_seen
from rag.retrieval.search import Search, keyword_weight


class DenseCandidates:
    """The dense top `candidates` chunks within the dates searched; with article ranking, their articles
    in the order of their best chunk."""

    name = "dense"

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool:
        return settings.retrieval_mode != "bm25"

    def __call__(self, search: Search) -> None:
        rows, weight = search.dense_rows, search.settings.dense_weight
        assert rows is not None, "dense candidates need the question's embedding"
        if search.unit == "chunk":
            search.rankings.append((rows, weight))
        elif len(rows):
            search.rankings.append((first_seen(search.corpus.chunk_article[rows]), weight))


class KeywordCandidates:
    """The BM25 top `candidates` (`rag.store.sparse`) within the dates searched."""

    name = "bm25"

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool:
        return settings.retrieval_mode != "dense"

    def __call__(self, search: Search) -> None:
        if search.keyword_rows is not None:
            search.rankings.append((search.keyword_rows, keyword_weight(search.settings, search.unit)))
