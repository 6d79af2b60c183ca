"""A shard: some partitions of an archive, loaded where they live, answering the archive search's three
calls (`stats`, `candidates`, `gather`). The same class runs in process and as a Ray actor.

Each partition is a normal (segmented) index, so its dense search (exact, or IVF past `ann_min_chunks`) is
the one `rag.store.index` does; BM25 is scored from its segments' saved term counts
(`rag.retrieval.corpus.Keyword`) with the statistics of the whole archive, which the search gathers first,
so a sharded archive ranks as one index would.
"""

from __future__ import annotations

import functools
import heapq
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rag.archive.catalog import CATALOG, ID_BITS, partition_path
from rag.archive.wire import CandidateRequest, Candidates, Gathered, Key
from rag.retrieval.corpus import Corpus, allowed
from rag.retrieval.keyword import Keyword
from rag.store.index import ArticleIndex
from rag.store.sparse import KeywordStats

log = logging.getLogger(__name__)


@dataclass
class _Partition:
    number: int
    index: ArticleIndex
    corpus: Corpus

    @property
    def articles(self) -> Keyword:
        return self.corpus.article_bm25

    @property
    def chunks(self) -> Keyword:
        return self.corpus.chunk_bm25

    @functools.cached_property
    def article_row(self) -> dict[str, int]:
        return {doc_id: row for row, doc_id in enumerate(self.corpus.article_ids)}

    def archive_id(self, local: int) -> int:
        """A chunk id, or an article row, made unique across the archive (`ID_BITS`)."""
        return (self.number << ID_BITS) | local

    def key(self, name: str, row: int, chunk_id: int | None = None) -> Key:
        """The article at `row` (or its chunk `chunk_id`) as the archive names it."""
        chunk = None if chunk_id is None else self.archive_id(chunk_id)
        return Key(name, self.corpus.article_ids[row], self.archive_id(row), chunk)


class Shard:
    """`numbers` names the partitions held, each with its number in the catalog."""

    def __init__(self, root: str, numbers: dict[str, int]) -> None:
        self.root = Path(root)
        self.numbers = numbers
        self._stamp = (self.root / CATALOG).stat().st_mtime_ns
        self._partitions = {name: self._load(name) for name in numbers}

    def _load(self, name: str) -> _Partition:
        index = ArticleIndex.load(partition_path(self.root, name))
        return _Partition(self.numbers[name], index, Corpus.of(index))

    def _partition(self, name: str) -> _Partition:
        return self._partitions[name]

    def _follow(self) -> None:
        """Reload the partitions saved since they were loaded. A writer rewrites the catalog after every
        save, so one stat of it per question says whether any partition needs looking at."""
        try:
            stamp = (self.root / CATALOG).stat().st_mtime_ns
        except OSError:
            return
        if stamp == self._stamp:
            return
        self._stamp = stamp
        for name, partition in self._partitions.items():
            if partition.index.is_stale():
                log.info("reloading partition %s: it was saved again", name)
                self._partitions[name] = self._load(name)

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
        self._follow()
        dense: list[tuple[float, str, int, int | None]] = []
        keyword: list[tuple[float, str, int, int | None]] = []
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
                if len(ids):
                    scores = partition.index.vectors_of(ids) @ request.vector
                    rows = corpus.chunk_article[corpus.rows(ids)]
                    dense += zip(scores.tolist(), [name] * len(ids), rows.tolist(), ids.tolist(), strict=True)
            if request.keyword_unit == "article":
                rows, scores = partition.articles.top(
                    request.terms, allowed(corpus.article_day, request.dates), request.n, request.stats
                )
                keyword += zip(scores.tolist(), [name] * len(rows), rows.tolist(), [None] * len(rows), strict=True)
            elif request.keyword_unit == "chunk":
                rows, scores = partition.chunks.top(request.terms, inside, request.n, request.stats)
                chunk_ids, articles = corpus.chunk_ids[rows].tolist(), corpus.chunk_article[rows].tolist()
                keyword += zip(scores.tolist(), [name] * len(rows), articles, chunk_ids, strict=True)
        return Candidates(self._keys(dense, request.n), self._keys(keyword, request.n))

    def _keys(self, found: list[tuple[float, str, int, int | None]], n: int) -> list[tuple[float, Key]]:
        """The best `n` of (score, partition, article row, chunk id), named as the archive names them; ties
        in archive order (`Key.tie`), as the search merges them."""

        def order(item: tuple[float, str, int, int | None]) -> tuple[float, int]:
            score, name, row, chunk = item
            return -score, self._partition(name).archive_id(row if chunk is None else chunk)

        best = heapq.nsmallest(n, found, key=order)
        return [(score, self._partition(name).key(name, row, chunk)) for score, name, row, chunk in best]

    def gather(self, wanted: dict[str, list[str]], terms: list[str], stats: KeywordStats) -> list[Gathered]:
        """The articles asked for (doc ids by partition) with their chunks, vectors and chunk BM25 scores."""
        out = []
        for name, doc_ids in wanted.items():
            if name not in self.numbers:
                continue
            partition = self._partition(name)
            index, corpus = partition.index, partition.corpus
            for doc_id in doc_ids:
                stored = index.documents[doc_id]
                ids = np.asarray(stored.chunk_ids, dtype=np.int64)
                record = replace(stored, chunk_ids=[partition.archive_id(i) for i in ids.tolist()])
                vectors = index.vectors_of(ids) if len(ids) else np.zeros((0, index.manifest.dimension))
                rows = corpus.rows(ids)
                position = partition.archive_id(partition.article_row[doc_id])
                chunks = [index.chunks.row(int(i)) for i in ids]
                scores = partition.chunks.scores_at(terms, rows, stats) if terms else np.zeros(len(rows), np.float32)
                out.append(Gathered(name, position, record, chunks, np.asarray(vectors, np.float32), scores))
        return out
