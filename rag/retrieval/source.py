"""Where a search draws its candidates from: one index (`IndexSource`), or an archive's shards
(`rag.archive.search.ArchiveSource`), behind one interface, so that one `Retriever` and one list of stages
search both.

A source puts forward the dense top `candidates` chunks and the BM25 top `candidates` units within the
dates searched, and the index those candidates are rows of: the whole index for one index; for an archive,
the candidate articles gathered from the shards into a small in-memory index, scored with archive-wide
statistics. The stages after the candidates then run over it unchanged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from rag.config import RetrievalSettings
from rag.dates import DateRange
from rag.retrieval.corpus import Corpus
from rag.retrieval.search import keyword_weight
from rag.store.embedding import Embedder
from rag.store.index import ArticleIndex
from rag.store.segments import Unit
from rag.store.sparse import KeywordStats
from rag.text import query_terms


@dataclass
class Wanted:
    """What a source is asked for: one question's candidates within its dates."""

    question: str
    dates: DateRange
    unit: Unit
    settings: RetrievalSettings
    embedder: Embedder

    @functools.cached_property
    def vector(self) -> np.ndarray | None:
        """The question's embedding, made when a source first needs it (never for a search that finds
        nothing to search); None without dense retrieval."""
        return self.embedder.embed_query(self.question) if self.settings.retrieval_mode != "bm25" else None

    @functools.cached_property
    def terms(self) -> list[str]:
        """The question's BM25 terms; empty without keyword retrieval."""
        return query_terms(self.question) if self.settings.retrieval_mode != "dense" else []

    @property
    def keyword_weight(self) -> float:
        return keyword_weight(self.settings, self.unit)


@dataclass
class Drawn:
    """A source's candidates, as rows of the index it searched (or gathered)."""

    index: ArticleIndex
    corpus: Corpus
    allowed_chunks: np.ndarray
    """Chunk rows inside the dates searched."""
    dense: np.ndarray | None
    """Chunk rows, best first; None without dense retrieval."""
    keyword: np.ndarray | None
    """Units (article or chunk rows), best first; None when there is no keyword ranking."""
    chunk_scores: np.ndarray | None = None
    """Per chunk row, the question's chunk BM25 score, when the source computed it (an archive, with
    archive-wide statistics); otherwise an article's chunks are scored when its passages are ordered."""


class Source(Protocol):
    def draw(self, wanted: Wanted) -> Drawn | None:
        """The candidates, or None when nothing inside the dates can be searched."""
        ...

    def prepare(self) -> None:
        """Build ahead what the first search would otherwise build."""
        ...

    def article_stats(self, terms: list[str]) -> KeywordStats:
        """How many live articles there are and how many hold each term: how specific a word is here."""
        ...


class IndexSource:
    """One index: FAISS for the dense candidates, its own BM25 for the keyword ones."""

    def __init__(self, index: ArticleIndex) -> None:
        self.index = index
        self._corpus: tuple[int, Corpus] | None = None

    @property
    def corpus(self) -> Corpus:
        if self._corpus is None or self._corpus[0] != self.index.version:
            self._corpus = (self.index.version, Corpus.of(self.index))
        return self._corpus[1]

    def prepare(self) -> None:
        """Build, and save beside the index, the keyword indexes the first search would otherwise build:
        indexing pays for them once rather than the first question of every process."""
        _ = self.corpus.chunk_bm25, self.corpus.article_bm25

    def article_stats(self, terms: list[str]) -> KeywordStats:
        return self.corpus.article_bm25.stats(terms)

    def draw(self, wanted: Wanted) -> Drawn | None:
        corpus = self.corpus
        if not len(corpus.chunk_ids):
            return None
        inside = corpus.allowed_chunks(wanted.dates)
        if not inside.any():
            return None
        dense = self._dense(wanted, corpus, inside) if wanted.vector is not None else None
        return Drawn(self.index, corpus, inside, dense, self._keyword(wanted, corpus, inside))

    def _dense(self, wanted: Wanted, corpus: Corpus, inside: np.ndarray) -> np.ndarray:
        """The best chunks' rows within the dates searched."""
        assert wanted.vector is not None
        s = wanted.settings
        share = float(corpus.memo(("share", wanted.dates), lambda: np.asarray(inside.mean())))
        ids = None
        if 0 < share < 1:

            def keep(found: np.ndarray) -> np.ndarray:
                kept: np.ndarray = inside[corpus.rows(found)]
                return kept

            ids = self.index.dense_search_within(
                wanted.vector, s.candidates, keep=keep, share=share, nprobe=s.ann_nprobe
            )
        if ids is None:
            allowed_ids = None if share == 1 else corpus.chunk_ids[inside]
            ids = self.index.dense_search(wanted.vector, s.candidates, allowed=allowed_ids, nprobe=s.ann_nprobe)
        return corpus.rows(ids)

    @staticmethod
    def _keyword(wanted: Wanted, corpus: Corpus, inside: np.ndarray) -> np.ndarray | None:
        if not wanted.terms or wanted.keyword_weight <= 0:
            return None
        n = wanted.settings.candidates
        if wanted.unit == "chunk":
            return corpus.chunk_bm25.top(wanted.terms, inside, n)[0]
        return corpus.article_bm25.top(wanted.terms, corpus.allowed_articles(wanted.dates), n)[0]
