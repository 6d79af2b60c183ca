"""Retrieval: top-k passages by cosine similarity, optionally restricted to a publication date range."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rag.chunking import Chunk
from rag.embedding import Embedder
from rag.index import ArticleIndex


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its score; `rank` is 1-based in retrieval order."""

    chunk: Chunk
    score: float
    rank: int

    @property
    def text(self) -> str:
        return self.chunk.text

    @property
    def doc_id(self) -> str:
        return self.chunk.doc_id

    def to_json(self) -> dict[str, object]:
        c = self.chunk
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "chunk_id": c.id,
            "doc_id": c.doc_id,
            "title": c.title,
            "published": c.published.isoformat() if c.published else None,
            "source": c.source,
            "url": c.url,
            "start": c.start,
            "end": c.end,
            "text": c.text,
        }


@dataclass(frozen=True)
class DateRange:
    since: dt.date | None = None
    until: dt.date | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            from rag.errors import QuestionError

            raise QuestionError(
                f"date range is empty: since {self.since} is after until {self.until}", hint="swap the dates"
            )


class Retriever:
    def __init__(self, index: ArticleIndex, embedder: Embedder, *, include_undated: bool = True) -> None:
        self.index = index
        self.embedder = embedder
        self.include_undated = include_undated

    def retrieve(self, question: str, k: int, dates: DateRange | None = None) -> list[Passage]:
        dates = dates or DateRange()
        hits = self.index.search(
            self.embedder.embed_query(question),
            k,
            since=dates.since,
            until=dates.until,
            include_undated=self.include_undated,
        )
        return [Passage(chunk=chunk, score=score, rank=rank) for rank, (chunk, score) in enumerate(hits, start=1)]
