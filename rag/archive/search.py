"""Searching an archive: its shards as the source the retrieval stages draw candidates from.

1. `stats`: each shard's BM25 statistics for the question's terms, added up, so every shard scores as
   one index over the whole archive would;
2. `candidates`: each shard's dense and keyword candidates within the dates searched (the catalog has
   already left out the months that cannot match), merged into the archive's top `candidates`;
3. `gather`: the candidate articles' records, chunks, vectors and chunk BM25 scores, as one small
   in-memory index; every stage (`rag.retrieval`) then runs over it as over one index.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rag.archive.catalog import Catalog
from rag.archive.shards import Shards
from rag.archive.wire import CandidateRequest, Gathered, Key
from rag.config import Settings
from rag.retrieval.corpus import Corpus
from rag.retrieval.source import Drawn, Wanted
from rag.store.index import ArticleIndex
from rag.store.sparse import KeywordStats


class ArchiveSource:
    """An archive's shards as a retrieval source (`rag.retrieval.source.Source`)."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.shards = Shards(root, settings)

    @property
    def catalog(self) -> Catalog:
        return self.shards.catalog

    def prepare(self) -> None:
        """Nothing to build ahead: each shard counts its partitions' terms when it loads them."""

    def article_stats(self, terms: list[str]) -> KeywordStats:
        self.shards.refresh()
        return self.shards.stats(terms)[0]

    def draw(self, wanted: Wanted) -> Drawn | None:
        self.shards.refresh()
        partitions = self.catalog.partitions_for(wanted.dates)
        if not partitions:
            return None
        s, terms = wanted.settings, wanted.terms
        keyword_unit = wanted.unit if terms and wanted.keyword_weight > 0 else None
        article_stats, chunk_stats = self.shards.stats(terms) if terms else (KeywordStats(), KeywordStats())
        request = CandidateRequest(
            partitions=partitions,
            dates=wanted.dates,
            n=s.candidates,
            vector=wanted.vector,
            terms=terms,
            keyword_unit=keyword_unit,
            nprobe=s.ann_nprobe,
        )
        if keyword_unit is not None:
            request.stats = article_stats if keyword_unit == "article" else chunk_stats
        found = self.shards.candidates(request)
        chosen: dict[str, list[str]] = {}
        for _, key in sorted(found.dense + found.keyword, key=lambda item: item[1].position):
            if key.doc_id not in chosen.setdefault(key.partition, []):
                chosen[key.partition].append(key.doc_id)
        gathered = self.shards.gather(chosen, terms, chunk_stats) if chosen else []
        view, chunk_scores = self._view(sorted(gathered, key=lambda g: g.position))
        corpus = Corpus.of(view)

        def chunk_rows(items: list[tuple[float, Key]]) -> np.ndarray:
            return corpus.rows([key.chunk for _, key in items if key.chunk is not None])

        keyword = None
        if keyword_unit == "chunk":
            keyword = chunk_rows(found.keyword)
        elif keyword_unit == "article":
            article_row = {doc_id: row for row, doc_id in enumerate(corpus.article_ids)}
            keyword = np.asarray([article_row[key.doc_id] for _, key in found.keyword], np.int64)
        dense = chunk_rows(found.dense) if request.vector is not None else None
        return Drawn(view, corpus, corpus.allowed_chunks(wanted.dates), dense, keyword, chunk_scores)

    def _view(self, gathered: list[Gathered]) -> tuple[ArticleIndex, np.ndarray]:
        """The gathered articles as an in-memory index under their archive-wide chunk ids, and their chunk
        BM25 scores in its chunk rows' order (articles as added, each article's chunks in order)."""
        manifest = self.catalog.manifest()
        view = ArticleIndex(self.root, manifest)
        scores = []
        for one in gathered:
            view.restore(one.record, one.chunks, one.vectors)
            scores.append(one.chunk_scores)
        return view, np.concatenate(scores) if scores else np.zeros(0, np.float32)
