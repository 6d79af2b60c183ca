"""Searching an archive: the single-machine retrieval stages, over the articles its shards put forward.

1. `stats`: each shard's BM25 statistics for the question's terms, added up, so every shard scores as
   one index over the whole archive would;
2. `candidates`: each shard's dense and keyword candidates within the dates searched (the catalog has
   already left out the months that cannot match), merged into the archive's top `candidates`;
3. `gather`: the candidate articles' records, chunks, vectors and chunk BM25 scores, as one small
   in-memory index; the fusion, prior, diversity, rescore and passage stages then run over it unchanged.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from rag.archive.catalog import Catalog
from rag.archive.shards import Shards
from rag.archive.wire import CandidateRequest, Gathered, Key
from rag.config import Settings
from rag.dates import DateRange
from rag.embedding import Embedder
from rag.index import ArticleIndex
from rag.retrieval import Search, scope, stages_for
from rag.retrieval.candidates import CANDIDATE_STAGES
from rag.retrieval.corpus import Corpus, first_seen
from rag.retrieval.search import Unit
from rag.sparse import KeywordStats
from rag.text import query_terms
from rag.types import Retrieval

if TYPE_CHECKING:
    from rag.rerank import Reranker


class ArchiveRetriever:
    """`Retriever`'s interface over an archive's shards."""

    def __init__(self, root: Path, embedder: Embedder, settings: Settings, reranker: Reranker | None = None) -> None:
        self.root = root
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        self.shards = Shards(root, settings)

    @property
    def catalog(self) -> Catalog:
        return self.shards.catalog

    def prepare(self) -> None:
        """Nothing to build ahead: each shard counts its partitions' terms when it loads them."""

    def retrieve(
        self, question: str, k: int, dates: DateRange | None = None, *, as_of: dt.date | None = None
    ) -> Retrieval:
        s = self.settings.retrieval
        result, searchable = scope(question, dates, as_of, s)
        self.shards.refresh()
        partitions = self.catalog.partitions_for(result.dates)
        if not searchable or not partitions:
            return result
        unit: Unit = "article" if s.article_ranking else "chunk"
        terms = query_terms(question) if s.retrieval_mode != "dense" else []
        keyword_weight = s.article_bm25_weight if unit == "article" else s.bm25_weight
        keyword_unit = unit if terms and keyword_weight > 0 else None
        article_stats, chunk_stats = self.shards.stats(terms) if terms else (KeywordStats(), KeywordStats())
        request = CandidateRequest(
            partitions=partitions,
            dates=result.dates,
            n=s.candidates,
            vector=self.embedder.embed_query(question) if s.retrieval_mode != "bm25" else None,
            terms=terms,
            keyword_unit=keyword_unit,
            nprobe=s.ann_nprobe,
        )
        if keyword_unit is not None:
            request.stats = article_stats if keyword_unit == "article" else chunk_stats
        found = self.shards.candidates(request)
        wanted: dict[str, list[str]] = {}
        for _, key in sorted(found.dense + found.keyword, key=lambda item: item[1].position):
            if key.doc_id not in wanted.setdefault(key.partition, []):
                wanted[key.partition].append(key.doc_id)
        gathered = self.shards.gather(wanted, terms, chunk_stats) if wanted else []
        view, chunk_scores = self._view(sorted(gathered, key=lambda g: g.position))
        corpus = Corpus.of(view)
        search = Search(
            question=question,
            k=k,
            as_of=result.as_of,
            mention=result.mention,
            index=view,
            corpus=corpus,
            settings=s,
            reranker=self.reranker,
            unit=unit,
            vector=request.vector,
            terms=terms,
            allowed_chunks=corpus.allowed_chunks(result.dates),
            result=result,
            chunk_scores=chunk_scores,
        )
        search.rankings = self._rankings(search, found.dense, found.keyword if keyword_unit else None, keyword_weight)
        for stage in stages_for(s):
            if stage.name not in CANDIDATE_STAGES:
                stage(search)
        return result

    def _view(self, gathered: list[Gathered]) -> tuple[ArticleIndex, np.ndarray]:
        """The gathered articles as an in-memory index under their archive-wide chunk ids, and their chunk
        BM25 scores in its chunk rows' order (articles as added, each article's chunks in order)."""
        manifest = self.catalog.manifest()
        view = ArticleIndex(self.root, manifest, faiss.IndexIDMap2(faiss.IndexFlatIP(manifest.dimension)))
        scores = []
        for one in gathered:
            view.restore(one.record, one.chunks, one.vectors)
            scores.append(one.chunk_scores)
        return view, np.concatenate(scores) if scores else np.zeros(0, np.float32)

    @staticmethod
    def _rankings(
        search: Search,
        dense: list[tuple[float, Key]],
        keyword: list[tuple[float, Key]] | None,
        keyword_weight: float,
    ) -> list[tuple[np.ndarray, float]]:
        """The candidate rankings as `DenseCandidates` and `KeywordCandidates` make them, in view rows;
        `keyword` None when the question has no keyword ranking."""
        s, corpus = search.settings, search.corpus

        def chunk_rows(items: list[tuple[float, Key]]) -> np.ndarray:
            return corpus.rows([key.chunk for _, key in items if key.chunk is not None])

        rankings = []
        if search.vector is not None:
            rows = chunk_rows(dense)
            if search.unit == "chunk":
                rankings.append((rows, s.dense_weight))
            elif len(rows):
                rankings.append((first_seen(corpus.chunk_article[rows]), s.dense_weight))
        if keyword is not None:
            if search.unit == "chunk":
                rankings.append((chunk_rows(keyword), keyword_weight))
            else:
                article_row = {doc_id: row for row, doc_id in enumerate(corpus.article_ids)}
                rankings.append((np.asarray([article_row[key.doc_id] for _, key in keyword], np.int64), keyword_weight))
        return rankings
