"""The Python API the CLI, the chat page and the server are thin layers over: one `RAG` per settings, a
facade over the three objects that do the work, so that user code sees one object and loaded models are
reused across questions:

- `store.Store`: the index or archive at `index_dir`, the embedding model, the locks, the retriever;
- `indexer.Indexer`: everything that changes the store (index, upload, delete, re-embed, seed, recover);
- `answerer.Answerer`: a question in, an answer out (search, read, check);
- `stories.Stories`: a topic in, its timeline out; followed questions asked again.

Beside them, the jobs that drive the pipeline: `sync` (feeds and pages kept current) and `ray_indexer`
(an archive indexed on a Ray cluster). Layer 8: may import every layer below (ingest, store, retrieval,
archive, answer); the server, the evaluation, the CLI and the page are the layers over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rag.config import Settings
from rag.pipeline.answerer import Answerer
from rag.pipeline.indexer import SAME_MODEL, Indexer, IndexReport
from rag.pipeline.store import Store
from rag.pipeline.stories import Stories
from rag.retrieval import Retriever
from rag.store.embedding import Embedder
from rag.types import Generator

__all__ = ["RAG", "SAME_MODEL", "IndexReport"]


class RAG:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        embedder: Embedder | None = None,
        generators: Mapping[str, Generator] | None = None,
        **overrides: Any,
    ) -> None:
        """`embedder` and `generators` (by backend name) let several pipelines share loaded models, and
        tests answer with a scripted generator; without them, they are built from the settings on first
        use. `overrides` are settings by name (`RAG(top_k=3)`)."""
        settings = settings.model_copy(update=overrides) if settings else Settings(**overrides)
        self.store = Store(settings, embedder)
        self.indexer = Indexer(self.store)
        self.answerer = Answerer(self.store, self.retriever, generators)
        self.stories = Stories(self.store, self.retriever, self.answerer.answer)
        stories = self.stories
        self.timeline, self.timeline_stream = stories.timeline, stories.timeline_stream
        self.follow, self.follow_up = stories.follow, stories.follow_up
        # The API, each call answered by the object whose job it is (see their docstrings).
        answerer, indexer, store = self.answerer, self.indexer, self.store
        self.search, self.retrieve, self.answer_stream, self.answer = (
            answerer.search, answerer.retrieve, answerer.answer_stream, answerer.answer
        )  # fmt: skip
        self.generator, self.generators, self.count_tokens = (
            answerer.generator,
            answerer.generators,
            answerer.count_tokens,
        )
        self.index, self.add_documents, self.index_uploads = indexer.index, indexer.add_documents, indexer.index_uploads
        self.documents, self.delete, self.reembed, self.merge = (
            indexer.documents,
            indexer.delete,
            indexer.reembed,
            indexer.merge,
        )
        self.recover_manifest, self.ensure_index = indexer.recover_manifest, indexer.ensure_index
        self.open_index, self.new_manifest, self.chunker = store.open_index, store.new_manifest, store.chunker
        self.vectors_reproduced = store.vectors_reproduced

    @property
    def settings(self) -> Settings:
        return self.store.settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self.store.settings = settings

    @property
    def embedder(self) -> Embedder:
        return self.store.embedder

    def retriever(self) -> Retriever:
        """The retriever over the index (built from the seed articles the first time), or over the
        archive's shards when `index_dir` holds an archive (`rag index --ray`)."""
        return self.store.retriever(None if self.store.is_archive else self.indexer.ensure_index())

    def warm_up(self) -> None:
        """Open the index and load the embedding model now, so a server's first question is timed (and
        waits) only for itself."""
        self.retriever()
        _ = self.embedder.encoder
