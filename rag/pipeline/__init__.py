"""The Python API the CLI, the chat page and the server are thin layers over: one `RAG` per settings, a
facade over the three objects that do the work, so that user code sees one object and loaded models are
reused across questions:

- `store.Store`: the index or archive at `index_dir`, the embedding model, the locks, the retriever;
- `indexer.Indexer`: everything that changes the store (index, upload, delete, re-embed, seed, recover);
- `answerer.Answerer`: a question in, an answer out (search, read, check).

Beside them, the jobs that drive the pipeline: `sync` (feeds and pages kept current) and `ray_indexer`
(an archive indexed on a Ray cluster). Layer 8: may import every layer below (ingest, store, retrieval,
archive, answer); the server, the evaluation, the CLI and the page are the layers over it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.ingest.chunking import Chunker
from rag.pipeline.answerer import Answerer
from rag.pipeline.indexer import SAME_MODEL, Indexer, IndexReport, Progress
from rag.pipeline.store import Store
from rag.retrieval import Retriever
from rag.store.embedding import Embedder
from rag.store.index import AddReport, ArticleIndex, Manifest
from rag.store.records import DocumentRecord
from rag.types import Answer, Document, Generator, Passage, Retrieval

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

    @property
    def settings(self) -> Settings:
        return self.store.settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self.store.settings = settings

    @property
    def embedder(self) -> Embedder:
        return self.store.embedder

    @property
    def generators(self) -> dict[str, Generator]:
        return self.answerer.generators

    def retriever(self) -> Retriever:
        """The retriever over the index (built from the seed articles the first time), or over the
        archive's shards when `index_dir` holds an archive (`rag index --ray`)."""
        return self.store.retriever(None if self.store.is_archive else self.indexer.ensure_index())

    def warm_up(self) -> None:
        """Open the index and load the embedding model now, so a server's first question is timed (and
        waits) only for itself."""
        self.retriever()
        _ = self.embedder.encoder

    # Questions (`rag.pipeline.answerer`).

    def search(
        self,
        question: str,
        *,
        k: int | None = None,
        since: dt.date | None = None,
        until: dt.date | None = None,
        as_of: dt.date | None = None,
    ) -> Retrieval:
        """Passages and the ranked articles they come from, with the dates searched (see `rag.retrieval`).
        `as_of` is the date the question is asked (default today): later articles are left out."""
        return self.answerer.search(question, k=k, since=since, until=until, as_of=as_of)

    def retrieve(self, question: str, **options: Any) -> list[Passage]:
        """`search`'s passages alone (same options)."""
        return self.search(question, **options).passages

    def answer_stream(self, question: str, **options: Any) -> Iterator[str | Answer]:
        """Yields answer text pieces as they are generated, then the final `Answer` (options: those of
        `search`, and `backend`, `model`, `history`, `retrieved`; see `Answerer.answer_stream`)."""
        return self.answerer.answer_stream(question, **options)

    def answer(self, question: str, **options: Any) -> Answer:
        return self.answerer.answer(question, **options)

    def generator(self, backend: str | None = None, model: str | None = None) -> Generator:
        return self.answerer.generator(backend, model)

    @property
    def count_tokens(self) -> Any:
        return self.answerer.count_tokens

    # Changes (`rag.pipeline.indexer`).

    def index(
        self,
        paths: Iterable[Path | str],
        on_progress: Progress | None = None,
        *,
        provenance: Mapping[str, str] | None = None,
    ) -> IndexReport:
        return self.indexer.index(paths, on_progress, provenance=provenance)

    def add_documents(self, documents: Sequence[Document], on_progress: Progress | None = None) -> AddReport:
        return self.indexer.add_documents(documents, on_progress)

    def index_uploads(
        self,
        files: Sequence[tuple[str, bytes]],
        on_progress: Progress | None = None,
        *,
        provenance: Mapping[str, str] | None = None,
    ) -> IndexReport:
        return self.indexer.index_uploads(files, on_progress, provenance=provenance)

    def documents(self) -> list[DocumentRecord]:
        return self.indexer.documents()

    def delete(self, doc_id: str) -> None:
        self.indexer.delete(doc_id)

    def reembed(self, on_progress: Progress | None = None) -> IndexReport:
        return self.indexer.reembed(on_progress)

    def recover_manifest(self) -> ArticleIndex:
        return self.indexer.recover_manifest()

    def ensure_index(self) -> ArticleIndex:
        return self.indexer.ensure_index()

    # The store (`rag.pipeline.store`).

    def open_index(self, *, create: bool = False) -> ArticleIndex:
        return self.store.open_index(create=create)

    def new_manifest(self) -> Manifest:
        return self.store.new_manifest()

    def chunker(self, manifest: Manifest) -> Chunker:
        return self.store.chunker(manifest)

    def vectors_reproduced(self, index: ArticleIndex) -> float | None:
        return self.store.vectors_reproduced(index)
