"""Reranking: a cross-encoder (`rag.rerank`) reorders the leading units by their passage."""

from __future__ import annotations

from rag.config import Settings
from rag.retrieval.search import Search


class Rerank:
    """Reorders the leading `rerank_depth` units by the cross-encoder's score of their passage."""

    name = "rerank"

    @staticmethod
    def enabled(settings: Settings) -> bool:
        return settings.reranker is not None

    def __call__(self, search: Search) -> None:
        head = search.ranked[: search.settings.rerank_depth]
        if search.reranker is None or not head:
            return
        texts = [search.corpus.chunk_text(search.passage_row(unit)) for unit in head]
        scores = search.reranker.score(search.question, texts)
        order = sorted(range(len(head)), key=lambda i: -scores[i])
        search.ranked = [head[i] for i in order] + search.ranked[len(head) :]
