"""Fusion: one score per unit from the candidate rankings, then the order the later stages refine.

Weighted reciprocal rank fusion needs no score calibration between signals, which BM25 and cosine
similarity lack. Priors are added after fusion, so they are in the units of a first place in one ranking.
"""

from __future__ import annotations

import numpy as np

from rag.config import RetrievalSettings
from rag.retrieval.corpus import fused
from rag.retrieval.search import Search


class Fuse:
    """RRF of the candidate rankings (`rrf_k`, each ranking's weight)."""

    name = "fuse"

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool:
        return True

    def __call__(self, search: Search) -> None:
        search.score, listed = fused(search.rankings, search.size, search.settings.rrf_k)
        search.ranked = listed.tolist()


class Order:
    """Adds each candidate's prior to its fused score and sorts, best first; equal ones go newest first,
    since the same story's later report usually holds the outcome (and an archive's partitions, which
    hold different months, then break ties as one index does)."""

    name = "order"

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool:
        return True

    def __call__(self, search: Search) -> None:
        corpus = search.corpus
        candidates = np.asarray(search.ranked, dtype=np.int64)
        prior = search.prior if search.unit == "article" else search.prior[corpus.chunk_article]
        search.score[candidates] += prior[candidates]
        days = corpus.article_day if search.unit == "article" else corpus.chunk_day
        order = np.lexsort((-days[candidates], -search.score[candidates]))
        search.ranked = [int(u) for u in candidates[order]]
