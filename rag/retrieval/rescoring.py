"""Rescoring: a stronger model (`rag.retrieval.rerank`) reads the leading units again, and its ranking joins the fusion.

The second model's ranking is added to each unit's score as one more weighted RRF term (`rerank_weight`),
in the units the first stage and the priors already use, so the question's dates and the recency prior
still count and a unit the second model likes little is moved, not dropped. Within each article the
passages the second model read are put in its order, so the reader gets the passages it found best.
"""

from __future__ import annotations

import numpy as np

from rag.config import RetrievalSettings
from rag.retrieval.corpus import rrf
from rag.retrieval.search import Search


class Rescore:
    """Scores the leading `rerank_depth` units (an article by its best `rerank_passages` passages) with the
    second model and re-sorts them by first-stage score plus the second model's RRF term."""

    name = "rescore"

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool:
        return bool(settings.reranker)

    def __call__(self, search: Search) -> None:
        s = search.settings
        head = search.ranked[: s.rerank_depth]
        if search.reranker is None or not head:
            return
        rows = {
            unit: search.best_rows(unit)[: s.rerank_passages] if search.unit == "article" else [unit] for unit in head
        }
        read = [row for unit in head for row in rows[unit]]
        texts = [search.corpus.chunk_text(row) for row in read]
        scores = dict(zip(read, search.reranker.score(search.question, texts), strict=True))
        best = np.array([max(scores[row] for row in rows[unit]) for unit in head])
        places = np.empty(len(head), dtype=np.int64)
        places[np.argsort(-best, kind="stable")] = np.arange(1, len(head) + 1)
        units = np.asarray(head, dtype=np.int64)
        search.score[units] += rrf(places, s.rrf_k, s.rerank_weight)
        order = np.argsort(-search.score[units], kind="stable")
        search.ranked = [head[i] for i in order] + search.ranked[len(head) :]
        if search.unit == "article":
            for unit in head:
                ahead = sorted(rows[unit], key=lambda row: -scores[row])
                search.reorder_rows(unit, ahead)
