"""Writing an archive: each article goes to its month's partition, a normal index saved atomically, and
the catalog is rewritten from the partitions after they are saved.

Re-running adds only new or changed articles, as `rag index` does for one index: each partition plans
its own articles (`ArticleIndex.plan`). An article whose date moved it to another month leaves its old
partition in the same save.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.archive.catalog import PARTITIONS, Catalog, partition_of, partition_path
from rag.errors import IndexDirError
from rag.store.index import LOCK_TIMEOUT, AddReport, ArticleIndex, Manifest, RunSeen, plan_additions
from rag.store.records import Holders
from rag.types import Chunk, Document

log = logging.getLogger(__name__)


class Prints:
    """Strings (or tuples of them) as sorted 64-bit fingerprints: 8 bytes a member, where a dict of the
    strings took hundreds. A member is always found; a non-member passes for one once in 2^64 / n tries."""

    def __init__(self, *fingerprints: np.ndarray) -> None:
        self._sorted = np.unique(np.concatenate([np.zeros(0, np.uint64), *fingerprints]))

    @staticmethod
    def of(keys: Iterable[tuple[str, ...]]) -> np.ndarray:
        """The keys' fingerprints, for a `Prints` of them and others."""
        return np.fromiter((_print(key) for key in keys), dtype=np.uint64)

    def __contains__(self, key: tuple[str, ...]) -> bool:
        value = np.uint64(_print(key))
        at = int(np.searchsorted(self._sorted, value))
        return at < len(self._sorted) and self._sorted[at] == value

    def __len__(self) -> int:
        return len(self._sorted)


def _print(key: tuple[str, ...]) -> int:
    return int.from_bytes(hashlib.blake2b("\0".join(key).encode(), digest_size=8).digest(), "little")


class ArchiveWriter:
    """Adds articles to the archive at `root`, whose partitions are built as `manifest` says. For one
    writer at a time: hold `rag.store.index.writing(root)` while it works.

    It holds what it adds, not a map of every stored article: where an article is stored and which one
    holds a content are looked up in the partitions (their records files, by key), and fingerprints of
    the ids and contents stored when it opened (`Prints`, 16 bytes an article) answer "stored nowhere",
    the common case, without asking every partition."""

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
        known, ids, contents = [], [], []
        for name, index in self.partitions.items():  # a month's articles in memory at a time
            stored = list(index.documents.hashes())
            known.append(Prints.of((doc_id, name, digest) for doc_id, digest in stored))
            ids.append(Prints.of((doc_id,) for doc_id, _ in stored))
            contents.append(Prints.of((digest,) for _, digest in stored))
        self.known = Prints(*known)
        """The stored articles as (id, partition, content hash) when the writer opened: what the embedding
        workers may skip."""
        self._ids, self._contents = Prints(*ids), Prints(*contents)
        self._added_ids: set[str] = set()
        self._added_contents: set[str] = set()
        """Ids and contents this writer added since: the fingerprints are of what was stored before."""
        self.run = RunSeen()

    def _partition(self, name: str) -> ArticleIndex:
        """The partition's index, made (in memory until its first save) when it is new."""
        if name not in self.partitions:
            index = ArticleIndex(partition_path(self.root, name), replace(self.manifest))
            index.lock_timeout = self.lock_timeout
            index.configure(self.ann_min_chunks)
            self.partitions[name] = index
        return self.partitions[name]

    def home(self, doc_id: str, month: str | None = None) -> str | None:
        """The partition storing the article, if any: `month`'s looked at first, where it almost always is."""
        if doc_id not in self._added_ids and (doc_id,) not in self._ids:
            return None
        for name in sorted(self.partitions, key=lambda name: name != month):
            if doc_id in self.partitions[name].documents:
                return name
        return None

    def plan(self, documents: list[Document]) -> tuple[list[Document], AddReport]:
        """Which of these articles to add: planned against the whole archive as `rag index` plans against
        one index, so an article copied into two months is kept once, as it would be there."""
        stored = {}
        for doc in documents:
            month = partition_of(doc.published)
            name = self.home(doc.id, month)
            if name is not None:  # an article whose new date puts it in another month has changed
                stored[doc.id] = (self.partitions[name].documents.hash_of(doc.id) or "") if name == month else "moved"
        every = Holders(*(index.documents for index in self.partitions.values()))
        holders = {
            doc.content_hash: holder
            for doc in documents
            if (doc.content_hash in self._added_contents or (doc.content_hash,) in self._contents)
            and (holder := every.get(doc.content_hash)) is not None
        }
        todo, report = plan_additions(documents, self.run, stored, holders)
        for doc_id in report.removed:
            self.remove(doc_id)
        return todo, report

    def add(self, doc: Document, chunks: list[Chunk], vectors: np.ndarray) -> None:
        name = partition_of(doc.published)
        home = self.home(doc.id, name)
        if home is not None and home != name:  # a new date moves it to another month
            self.remove(doc.id)
        self._partition(name).add(doc, chunks, vectors)
        self._added_ids.add(doc.id)
        self._added_contents.add(doc.content_hash)
        self.touched.add(name)

    def remove(self, doc_id: str) -> None:
        """Drop a stored article (its new content duplicates another one's, or it moved)."""
        name = self.home(doc_id)
        if name is None:
            raise KeyError(doc_id)
        self.partitions[name].remove(doc_id)
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
