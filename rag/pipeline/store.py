"""The store: what is kept at `index_dir` — one index, or an archive of monthly partitions — opened once and
shared by the indexer (which changes it) and the answerer (which searches it).

It owns what both need: the embedding model the vectors were made with, the index as last loaded (reloaded
when another process saves a newer one), the locks that let one writer at a time change it, and the
retriever, which draws from the index or the archive's shards behind one interface (`rag.retrieval.source`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

import numpy as np

from rag.archive.catalog import Catalog
from rag.archive.search import ArchiveSource
from rag.config import EmbeddingBackend, Settings
from rag.errors import IndexDirError
from rag.ingest.chunking import Chunker, tiktoken_counter
from rag.retrieval import IndexSource, Retriever
from rag.retrieval.rerank import Reranker, reranker_for
from rag.store.embedding import Embedder, precision_of
from rag.store.index import ArticleIndex, Manifest, read_manifest, writing

log = logging.getLogger("rag")
_MODEL_CHECK_CHUNKS = 4
"""Stored chunks re-embedded to check that a recovered manifest names the model that made the vectors."""


class Store:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        """`embedder` lets several pipelines share a loaded model; without it, it is built from the
        settings on first use."""
        self.settings = settings
        self._embedder = embedder
        self._index: ArticleIndex | None = None
        self._retriever: Retriever | None = None
        self.reranker: Reranker | None = reranker_for(settings)
        # The chat page shares one pipeline between browser sessions: searches must not see an index that an
        # upload or a delete is halfway through changing.
        self.lock = threading.RLock()
        self._writers = 0
        """Nesting depth of `writing` (an index run that saves, say): the process lock is taken once."""

    @property
    def is_archive(self) -> bool:
        return Catalog.exists(self.settings.index_dir)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.settings.index
            self._embedder = Embedder(
                s.embedding_model,
                backend=self._embedding_backend(),
                batch_size=s.embedding_batch_size,
                device=s.embedding_device,
                cache_dir=self.settings.cache_dir,
            )
        return self._embedder

    def _embedding_backend(self) -> EmbeddingBackend:
        """The configured backend; left at its default, the one the existing index was built for, so an
        index from before int8 became the default keeps answering (`rag index --reembed` moves it)."""
        s, path = self.settings.index, self.settings.index_dir
        archive = self.is_archive
        if "embedding_backend" in s.model_fields_set or not (archive or ArticleIndex.exists(path)):
            return s.embedding_backend
        try:
            built = Catalog.load(path).embedding_precision if archive else read_manifest(path).embedding_precision
        except (OSError, ValueError, TypeError):
            return s.embedding_backend  # opening the index will say what is wrong with it
        if built == precision_of(s.embedding_backend):
            return s.embedding_backend
        log.info("the index at %s holds %s vectors: searching it with the fp32 encoder", path, built)
        return "onnx"

    def open_index(self, *, create: bool = False) -> ArticleIndex:
        """The index at `index_dir`, checked against the configured embedding model, and reloaded when
        another process (`rag index` while the chat page runs) has saved a newer one."""
        if self._index is not None and self._index.is_stale():
            self._index = None
        if self._index is None:
            path, timeout = self.settings.index_dir, self.settings.index.lock_timeout
            if self.is_archive:
                raise IndexDirError(
                    f"{path} is an archive of monthly partitions, not a single index",
                    hint="add articles to it with `rag index --ray PATH...`; questions search it as usual",
                )
            if ArticleIndex.exists(path) or not create:
                index = ArticleIndex.load(path, lock_timeout=timeout)
                index.check_model(self.embedder.name, self.embedder.precision)
            else:
                index = ArticleIndex.create(path, self.new_manifest(), lock_timeout=timeout)
            s = self.settings
            index.configure(
                s.retrieval.ann_min_chunks, s.index.merge_factor, s.index.max_merged_chunks, s.index.save_merge_chunks
            )
            self._index = index
        return self._index

    def retriever(self, index: ArticleIndex | None) -> Retriever:
        """The retriever over `index`, or over the archive's shards when there is one (`index` None); a new
        one when the index was reloaded."""
        source = self._retriever.source if self._retriever is not None else None
        if index is None:
            if not isinstance(source, ArchiveSource):
                source = ArchiveSource(self.settings.index_dir, self.settings)
        elif not isinstance(source, IndexSource) or source.index is not index:
            source = IndexSource(index)
        if self._retriever is None or self._retriever.source is not source:
            self._retriever = Retriever(source, self.embedder, self.settings.retrieval, self.reranker)
        return self._retriever

    @property
    def loaded(self) -> bool:
        return self._index is not None

    def forget(self, embedder: Embedder | None = None) -> None:
        """Drop the loaded index and retriever: the next use reads what is on disk (with `embedder` from
        now on, when given: a re-embedded index's)."""
        self._index, self._retriever = None, None
        if embedder is not None:
            self._embedder = embedder

    def new_manifest(self) -> Manifest:
        """The manifest of an index built now with these settings."""
        s = self.settings.index
        return Manifest(
            embedding_model=self.embedder.name,
            dimension=self.embedder.dimension,
            embedding_precision=self.embedder.precision,
            chunk_tokens=s.chunk_tokens,
            chunk_overlap=s.chunk_overlap,
            tokenizer=s.tokenizer_encoding,
        )

    def chunker(self, manifest: Manifest) -> Chunker:
        return Chunker(
            manifest.chunk_tokens,
            manifest.chunk_overlap,
            count_tokens=tiktoken_counter(manifest.tokenizer),
            model_max_tokens=self.embedder.max_tokens,
            count_model_tokens=self.embedder.count_tokens,
        )

    def vectors_reproduced(self, index: ArticleIndex) -> float | None:
        """The lowest cosine between a few stored chunk vectors and the same chunks embedded again now;
        below `rag.pipeline.indexer.SAME_MODEL`, the vectors were made by another model or precision than this store
        embeds with (None for an index without chunks)."""
        ids = index.chunks.ids()[:_MODEL_CHECK_CHUNKS]
        if not len(ids):
            return None
        stored = index.vectors_of(ids)
        fresh = self.embedder.embed([index.chunks[int(i)].text for i in ids])
        return float(np.min(np.sum(stored * fresh, axis=1)))

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """This pipeline's threads and other processes change the index one at a time (`index.writing`)."""
        with self.lock:
            if self._writers:
                self._writers += 1
                try:
                    yield
                finally:
                    self._writers -= 1
                return
            with writing(self.settings.index_dir, timeout=self.settings.index.lock_timeout):
                self._writers = 1
                try:
                    yield
                finally:
                    self._writers = 0

    @contextlib.contextmanager
    def reload_on_failure(self) -> Iterator[None]:
        """A change that failed to save must not live on in memory: drop the in-memory index so the next
        use reads what is really on disk."""
        try:
            yield
        except BaseException:
            self._index = None
            raise
