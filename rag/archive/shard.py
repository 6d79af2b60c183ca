"""A shard: some partitions of an archive, loaded where they live, answering the archive search's three
calls (`stats`, `candidates`, `gather`). The same class runs in process and as a Ray actor.

Each partition is a normal index, so its dense search (exact, or IVF past `ann_min_chunks`) is the one
`rag.index` does; BM25 is scored from term counts (`rag.sparse.TermCounts`) with the statistics of the
whole archive, which the search gathers first, so a sharded archive ranks as one index would.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rag.archive.catalog import ID_BITS, partition_path
from rag.archive.wire import CandidateRequest, Candidates, Gathered, Key
from rag.index import ArticleIndex
from rag.retrieval.corpus import Corpus, allowed, top
from rag.sparse import KeywordStats, TermCounts

log = logging.getLogger(__name__)


@dataclass
class _Partition:
    number: int
    index: ArticleIndex
    corpus: Corpus
    articles: TermCounts
    chunks: TermCounts

    def archive_id(self, chunk_id: int) -> int:
        return (self.number << ID_BITS) | chunk_id

    def key(self, name: str, row: int, chunk_id: int | None = None) -> Key:
        """The article at `row` (or its chunk `chunk_id`) as the archive names it."""
        doc_id = self.corpus.article_ids[row]
        return Key(
            name, doc_id, (self.number << ID_BITS) | row, None if chunk_id is None else self.archive_id(chunk_id)
        )


class Shard:
    """`numbers` names the partitions held, each with its number in the catalog."""

    def __init__(self, root: str, numbers: dict[str, int]) -> None:
        self.root = Path(root)
        self.numbers = numbers
        self._partitions = {name: self._load(name) for name in numbers}

    def _load(self, name: str) -> _Partition:
        index = ArticleIndex.load(partition_path(self.root, name))
        corpus = Corpus.of(index)
        return _Partition(
            self.numbers[name],
            index,
            corpus,
            TermCounts.build(corpus.article_texts),
            TermCounts.build(corpus.chunk_texts),
        )

    def _partition(self, name: str) -> _Partition:
        """The partition as last saved: an ingest run that saved it since is picked up here."""
        partition = self._partitions[name]
        if partition.index.is_stale():
            log.info("reloading partition %s: it was saved again", name)
            partition = self._partitions[name] = self._load(name)
        return partition

    def pid(self) -> int:
        """The process this shard runs in (the fault tests kill it)."""
        return os.getpid()

    def stats(self, terms: list[str]) -> tuple[KeywordStats, KeywordStats]:
        """This shard's share of the archive-wide BM25 statistics, (articles, chunks), over every partition it
        holds: a date filter narrows the candidates, never the statistics, as in one index."""
        articles, chunks = KeywordStats(), KeywordStats()
        for name in self.numbers:
            partition = self._partition(name)
            articles += partition.articles.stats(terms)
            chunks += partition.chunks.stats(terms)
        return articles, chunks

    def candidates(self, request: CandidateRequest) -> Candidates:
        """The best `n` dense chunks and keyword units of the partitions asked for that this shard holds."""
        found = Candidates()
        for name in request.partitions:
            if name not in self.numbers:
                continue
            partition = self._partition(name)
            corpus = partition.corpus
            if not len(corpus.chunk_ids):
                continue
            inside = allowed(corpus.chunk_day, request.dates)
            if request.vector is not None and inside.any():
                ids = partition.index.dense_search(
                    request.vector,
                    request.n,
                    allowed=None if inside.all() else corpus.chunk_ids[inside],
                    nprobe=request.nprobe,
                )
                scores = partition.index.vectors.reconstruct_batch(ids) @ request.vector if len(ids) else []
                for chunk_id, score in zip(ids.tolist(), scores, strict=True):
                    row = int(corpus.chunk_article[corpus.row_of[chunk_id]])
                    found.dense.append((float(score), partition.key(name, row, chunk_id)))
            if request.keyword_unit == "article":
                scores = partition.articles.scores(request.terms, request.stats)
                for row in top(scores, allowed(corpus.article_day, request.dates), request.n).tolist():
                    found.keyword.append((float(scores[row]), partition.key(name, row)))
            elif request.keyword_unit == "chunk":
                scores = partition.chunks.scores(request.terms, request.stats)
                for row in top(scores, inside, request.n).tolist():
                    key = partition.key(name, int(corpus.chunk_article[row]), int(corpus.chunk_ids[row]))
                    found.keyword.append((float(scores[row]), key))
        return found

    def gather(self, wanted: dict[str, list[str]], terms: list[str], stats: KeywordStats) -> list[Gathered]:
        """The articles asked for (doc ids by partition) with their chunks, vectors and chunk BM25 scores."""
        out = []
        for name, doc_ids in wanted.items():
            if name not in self.numbers:
                continue
            partition = self._partition(name)
            index, corpus = partition.index, partition.corpus
            scores = partition.chunks.scores(terms, stats) if terms else np.zeros(len(corpus.chunk_ids), np.float32)
            rows_of = {doc_id: row for row, doc_id in enumerate(corpus.article_ids)}
            for doc_id in doc_ids:
                record = index.documents[doc_id]
                ids = np.asarray(record.chunk_ids, dtype=np.int64)
                chunks = [replace(index.chunks[int(i)], id=partition.archive_id(int(i))) for i in ids]
                vectors = index.vectors.reconstruct_batch(ids) if len(ids) else np.zeros((0, index.manifest.dimension))
                rows = [corpus.row_of[int(i)] for i in ids]
                position = partition.key(name, rows_of[doc_id]).position
                out.append(Gathered(name, position, record, chunks, np.asarray(vectors, np.float32), scores[rows]))
        return out
