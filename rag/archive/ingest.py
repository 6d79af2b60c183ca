"""Writing an archive: each article goes to its month's partition, a normal index saved atomically, and
the catalog is rewritten from the partitions after they are saved.

Re-running adds only new or changed articles, as `rag index` does for one index: each partition plans
its own articles (`ArticleIndex.plan`). An article whose date moved it to another month leaves its old
partition in the same save.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.archive.catalog import PARTITIONS, Catalog, partition_of, partition_path
from rag.errors import IndexDirError
from rag.store.index import LOCK_TIMEOUT, AddReport, ArticleIndex, Manifest, RunSeen, plan_additions
from rag.types import Chunk, Document

log = logging.getLogger(__name__)


class ArchiveWriter:
    """Adds articles to the archive at `root`, whose partitions are built as `manifest` says. For one
    writer at a time: hold `rag.store.index.writing(root)` while it works."""

    def __init__(
        self,
        root: Path,
        manifest: Manifest,
        *,
        lock_timeout: float = LOCK_TIMEOUT,
        ann_min_chunks: int | None = None,
    ) -> None:
        """`ann_min_chunks`: a partition that reaches it gets an IVF at its save, as one index does."""
        self.root = root
        self.lock_timeout = lock_timeout
        self.ann_min_chunks = ann_min_chunks
        self.catalog = Catalog.load(root) if Catalog.exists(root) else Catalog.like(manifest)
        self.manifest = self.catalog.manifest()
        """New partitions chunk as the archive's first did, whatever the settings say now."""
        wanted = (manifest.embedding_model, manifest.embedding_precision)
        built = (self.catalog.embedding_model, self.catalog.embedding_precision)
        if built != wanted:
            raise IndexDirError(
                f"the archive at {root} holds {built[1]} vectors of {built[0]}, the settings embed with {wanted[1]} "
                f"{wanted[0]}",
                hint="set RAG_EMBEDDING_MODEL and RAG_EMBEDDING_BACKEND as the archive was built, or choose "
                "another RAG_INDEX_DIR",
            )
        self.partitions: dict[str, ArticleIndex] = {}
        self.home: dict[str, str] = {}
        """Each stored article's partition."""
        self.hashes: dict[str, str] = {}
        """Each stored article's content hash."""
        self.holders: dict[str, str] = {}
        """The stored article holding each content hash."""
        self.touched: set[str] = set()
        """Partitions the catalog must record again at the next save: changed since, or saved by a run that
        stopped before its catalog."""
        for path in sorted((root / PARTITIONS).glob("*")):
            if ArticleIndex.exists(path):
                index = ArticleIndex.load(path, lock_timeout=lock_timeout)
                listed = self.catalog.partitions.get(path.name)
                if listed is None or listed.generation != index.manifest.generation:
                    self.touched.add(path.name)
                index.configure(ann_min_chunks)
                index.clear_torn()
                self.partitions[path.name] = index
                for doc_id, content_hash in index.documents.hashes():
                    self.home[doc_id] = path.name
                    self.hashes[doc_id] = content_hash
                    self.holders[content_hash] = doc_id
        self.run = RunSeen()

    def _partition(self, name: str) -> ArticleIndex:
        """The partition's index, made (in memory until its first save) when it is new."""
        if name not in self.partitions:
            index = ArticleIndex(partition_path(self.root, name), replace(self.manifest))
            index.lock_timeout = self.lock_timeout
            index.configure(self.ann_min_chunks)
            self.partitions[name] = index
        return self.partitions[name]

    def known(self) -> dict[str, tuple[str, str]]:
        """Stored article id -> (partition, content hash): what the embedding workers may skip."""
        return {doc_id: (self.home[doc_id], digest) for doc_id, digest in self.hashes.items()}

    def plan(self, documents: list[Document]) -> tuple[list[Document], AddReport]:
        """Which of these articles to add: planned against the whole archive as `rag index` plans against
        one index, so an article copied into two months is kept once, as it would be there."""
        # An article whose new date puts it in another month has changed, even with the same text.
        stored = {
            doc.id: self.hashes[doc.id] if self.home[doc.id] == partition_of(doc.published) else "moved"
            for doc in documents
            if doc.id in self.hashes
        }
        todo, report = plan_additions(documents, self.run, stored, self.holders)
        for doc_id in report.removed:
            self.remove(doc_id)
        return todo, report

    def add(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> None:
        name = partition_of(doc.published)
        if doc.id in self.home and self.home[doc.id] != name:  # a new date moves it to another month
            self.remove(doc.id)
        self._partition(name).add(doc, chunks, vectors)
        self.home[doc.id] = name
        self.hashes[doc.id] = doc.content_hash
        self.holders[doc.content_hash] = doc.id
        self.touched.add(name)

    def remove(self, doc_id: str) -> None:
        """Drop a stored article (its new content duplicates another one's, or it moved)."""
        name = self.home.pop(doc_id)
        record = self.partitions[name].remove(doc_id)
        del self.hashes[doc_id]
        if self.holders.get(record.content_hash) == doc_id:
            del self.holders[record.content_hash]
        self.touched.add(name)

    def save(self) -> None:
        """Save every partition changed since the last save, then the catalog, rewriting only their rows."""
        for name in sorted(self.touched):
            index = self.partitions[name]
            if index.unsaved:
                index.save()
            if ArticleIndex.exists(index.path):
                self.catalog.refresh(index)
            else:
                self.catalog.partitions.pop(name, None)
        self.root.mkdir(parents=True, exist_ok=True)
        self.catalog.save(self.root)
        self.touched.clear()

    def merge(self) -> None:
        """Run the merges larger than a save runs itself (`ArticleIndex.merge`), once the run's articles
        are saved and searchable, and record the partitions they rewrote."""
        for name, index in self.partitions.items():
            if ArticleIndex.exists(index.path) and index.merge():
                self.touched.add(name)
        self.save()


def split(index: ArticleIndex, root: Path) -> ArchiveWriter:
    """Move a single index's articles into an archive at `root`, month by month, with the vectors it has:
    nothing is embedded again."""
    writer = ArchiveWriter(root, index.manifest, lock_timeout=index.lock_timeout, ann_min_chunks=index.ann_min_chunks)
    for record in index.documents.records():
        doc = record.document()
        todo, _ = writer.plan([doc])
        ids = np.asarray(record.chunk_ids, dtype=np.int64)
        for planned in todo:
            writer.add(planned, [index.chunks[int(i)] for i in ids], index.vectors_of(ids))
    writer.save()
    return writer
