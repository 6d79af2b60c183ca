"""What the archive's search sends to its shards and gets back: small picklable values, the same whether a
shard runs in this process or as a Ray actor on another machine."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rag.dates import DateRange
from rag.store.records import ChunkRow, DocumentRecord
from rag.store.sparse import KeywordStats


@dataclass(frozen=True)
class Key:
    """A unit in the archive: an article (`chunk` None) or one of its chunks (archive-wide id)."""

    partition: str
    doc_id: str
    position: int
    """The article's place in the archive (partition number, then row), which breaks ties as one index does."""
    chunk: int | None = None

    @property
    def tie(self) -> int:
        """Equal scores go in archive order: partition, then the article's (or chunk's) place in it."""
        return self.position if self.chunk is None else self.chunk


@dataclass
class CandidateRequest:
    """One question's candidate search, with the statistics every shard scores BM25 with."""

    partitions: list[str]
    """The partitions the question's dates can reach; a shard searches those of them it holds."""
    dates: DateRange
    n: int
    """How many candidates each ranking keeps (`Settings.candidates`)."""
    vector: np.ndarray | None
    terms: list[str]
    keyword_unit: str | None
    """"article" or "chunk": which BM25 ranking to make; None for none."""
    stats: KeywordStats = field(default_factory=KeywordStats)
    """Archive-wide statistics of the keyword unit (articles or chunks)."""
    nprobe: int = 32


@dataclass
class Candidates:
    """Each ranking as (score, key), best first."""

    dense: list[tuple[float, Key]] = field(default_factory=list)
    keyword: list[tuple[float, Key]] = field(default_factory=list)


@dataclass
class Gathered:
    """An article with everything the later retrieval stages read: its record (its chunk ids archive-wide),
    its chunks as stored, their vectors, and their BM25 scores for the question with archive-wide statistics."""

    partition: str
    position: int
    record: DocumentRecord
    chunks: list[ChunkRow]
    vectors: np.ndarray
    chunk_scores: np.ndarray
