"""One search as the stages see it: what was asked, and what the stages before it have found so far."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rag.config import RetrievalSettings
from rag.dates import DateMention
from rag.retrieval.corpus import Corpus, fused, top
from rag.store.index import ArticleIndex
from rag.store.segments import Unit
from rag.types import Retrieval

if TYPE_CHECKING:
    from rag.retrieval.rerank import Reranker

"""What is ranked: whole articles (the default, `article_ranking`), or chunks directly."""


def keyword_weight(settings: RetrievalSettings, unit: Unit) -> float:
    """The keyword ranking's weight in fusion: BM25 over whole articles when articles are ranked, over chunks
    when chunks are."""
    return settings.article_bm25_weight if unit == "article" else settings.bm25_weight


ARTICLES_LISTED = 10
"""Articles a search lists whatever k is: enough to score the article ranking at depth 10."""


@dataclass
class Search:
    question: str
    k: int
    as_of: dt.date
    mention: DateMention | None
    index: ArticleIndex
    corpus: Corpus
    settings: RetrievalSettings
    reranker: Reranker | None
    unit: Unit
    vector: np.ndarray | None
    """The question's embedding; None without dense retrieval."""
    terms: list[str]
    """The question's BM25 terms; empty without keyword retrieval."""
    allowed_chunks: np.ndarray
    """Chunk rows inside the dates searched."""
    result: Retrieval
    """What the search returns: `articles` and `passages` are filled by the last stage."""
    dense_rows: np.ndarray | None = None
    """The source's dense candidates (chunk rows, best first); None without dense retrieval."""
    keyword_rows: np.ndarray | None = None
    """The source's keyword candidates (units, best first); None without a keyword ranking."""
    rankings: list[tuple[np.ndarray, float]] = field(default_factory=list)
    """Candidate lists of units (rows), each best first, with its weight in fusion."""
    prior: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Per article: the bonus the prior stages give it, in the units of a first place in one ranking."""
    score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Per unit: the fused score, then with its prior added."""
    ranked: list[int] = field(default_factory=list)
    """Candidate units in order, best first: ordered, then thinned and reordered by later stages."""
    folded: dict[int, list[int]] = field(default_factory=dict)
    """Per kept unit, the near-copies folded into it."""
    chunk_scores: np.ndarray | None = None
    """Per chunk row, the question's chunk BM25 score when the source drew them (an archive's, with
    archive-wide statistics); otherwise an article's chunks are scored when its passages are ordered."""
    _best_rows: dict[int, list[int]] = field(default_factory=dict)
    _vectors: dict[int, np.ndarray] = field(default_factory=dict)
    """Chunk rows' vectors read so far: the stages after ranking read the same articles' vectors again."""

    def __post_init__(self) -> None:
        self.prior = np.zeros(len(self.corpus.article_ids), dtype=np.float64)

    @property
    def size(self) -> int:
        return len(self.corpus.article_ids) if self.unit == "article" else len(self.corpus.chunk_ids)

    @property
    def shown(self) -> int:
        """Articles the search lists."""
        return max(self.k, ARTICLES_LISTED)

    def vectors(self, rows: list[int] | np.ndarray) -> np.ndarray:
        """The chunk rows' embeddings, read once per search (a large index reads them from its file)."""
        wanted = [int(row) for row in rows]
        missing = [row for row in dict.fromkeys(wanted) if row not in self._vectors]
        if missing:
            found = self.index.vectors_at(self.corpus.vector_row[np.asarray(missing, dtype=np.int64)])
            self._vectors.update(zip(missing, found, strict=True))
        if not wanted:
            return np.zeros((0, self.index.manifest.dimension), dtype=np.float32)
        return np.stack([self._vectors[row] for row in wanted])

    def passage_row(self, unit: int) -> int:
        """The chunk row that stands for a unit: an article's best passage, or the chunk itself."""
        return self.best_rows(unit)[0] if self.unit == "article" else unit

    def best_rows(self, article: int) -> list[int]:
        """The article's chunk rows, best first: dense similarity and chunk BM25 fused by RRF within the
        article, so the passage shown is the one that both matches the meaning and holds the words."""
        if article not in self._best_rows:
            s = self.settings
            rows = self.corpus.article_rows[article]
            rankings = []
            if self.vector is not None:
                rankings.append((np.argsort(-(self.vectors(rows) @ self.vector), kind="stable"), s.dense_weight))
            if self.terms and s.bm25_weight > 0:
                if self.chunk_scores is not None:
                    scores = self.chunk_scores[rows]
                else:
                    scores = self.corpus.chunk_bm25.scores_at(self.terms, rows)
                rankings.append((top(scores, np.ones(len(rows), dtype=bool), len(rows)), s.bm25_weight))
            score, _ = fused(rankings, len(rows), s.rrf_k)
            self._best_rows[article] = [int(r) for r in rows[np.argsort(-score, kind="stable")]]
        return self._best_rows[article]

    def reorder_rows(self, article: int, first: list[int]) -> None:
        """Put `first` (some of the article's rows) at the head of its best rows, in that order: a later
        stage that read them again knows better which passage to show."""
        rest = [row for row in self.best_rows(article) if row not in first]
        self._best_rows[article] = [*first, *rest]


class Stage(Protocol):
    """A retrieval stage: reads and updates the `Search`. `rag.retrieval.PIPELINE` lists them in order,
    `enabled` says whether the settings switch one on, and `Retriever` runs those that are."""

    name: str

    def __init__(self) -> None: ...

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool: ...

    def __call__(self, search: Search) -> None: ...
