"""Sparse retrieval: BM25 (bm25s) over chunks and over whole articles, both with titles.

Names, numbers and rare words are where dense embeddings of a small model are weakest and keyword
matching is strongest. Two granularities are kept because they answer different questions: a chunk's
BM25 says which passage holds the words, an article's BM25 says which story is about them (on RealTime
QA, article-level BM25 fused with dense ranks the gold article first far more often than chunk-level
BM25 does, while chunk-level BM25 picks the passages).

The index is derived from the article index and rebuilt in memory when that changes; building it is a
few seconds for 50,000 chunks.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import bm25s


@functools.cache
def _bm25s() -> ModuleType:
    """bm25s, imported on first use: it costs about 120 ms that `rag info` or `rag --help` need not pay."""
    import bm25s

    # bm25s sets its own logger to DEBUG, which would print its progress notes through any configured handler.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    module: ModuleType = bm25s
    return module


@functools.cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def _tokenize(texts: Sequence[str], *, return_ids: bool) -> Any:
    """Texts and questions go through the same lower-casing, stop words and stemming."""
    return _bm25s().tokenize(
        list(texts), stopwords="en", stemmer=_stemmer(), return_ids=return_ids, show_progress=False
    )


@dataclass
class BM25Index:
    """BM25 scores of a query against a fixed list of texts, in the list's order."""

    model: bm25s.BM25
    size: int

    @classmethod
    def build(cls, texts: Sequence[str]) -> BM25Index:
        model = _bm25s().BM25()
        if texts:
            model.index(_tokenize(texts, return_ids=True), show_progress=False)
        return cls(model, len(texts))

    def scores(self, query_terms: list[str]) -> np.ndarray:
        """One score per text; all zero when no query term occurs in the texts."""
        known = [term for term in query_terms if term in getattr(self.model, "vocab_dict", {})]
        if not known or not self.size:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.model.get_scores(known), dtype=np.float32)


def query_terms(question: str) -> list[str]:
    """The question as the index sees text: lower-cased, stop words dropped, stemmed."""
    tokenized = _tokenize([question], return_ids=False)
    return list(tokenized[0]) if tokenized else []
