"""Diversity: the same wire story in another outlet should not take a second place in the results."""

from __future__ import annotations

import numpy as np

from rag.config import RetrievalSettings
from rag.retrieval.search import Search


class Diversify:
    """Folds each unit whose passage is a near-copy (cosine at or above `near_duplicate_similarity`) of a
    kept unit's passage into that unit (`Passage.also_in`). Articles stop once enough are kept for the
    list and the second stage (`rescore`); chunks go through to the end, since the article list is read off
    them."""

    name = "diversity"

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool:
        return settings.near_duplicate_similarity is not None

    def __call__(self, search: Search) -> None:
        threshold = search.settings.near_duplicate_similarity
        assert threshold is not None, "diversity needs near_duplicate_similarity"
        limit = max(search.shown, search.settings.rerank_depth) if search.unit == "article" else len(search.ranked)
        kept: list[int] = []
        kept_vectors: list[np.ndarray] = []
        for unit in search.ranked:
            if len(kept) >= limit:
                break
            vector = search.vectors([search.passage_row(unit)])[0]
            if kept_vectors:
                similarity = np.stack(kept_vectors) @ vector
                j = int(np.argmax(similarity))
                if similarity[j] >= threshold:
                    search.folded.setdefault(kept[j], []).append(unit)
                    continue
            kept.append(unit)
            kept_vectors.append(vector)
        search.ranked = kept
