"""The indexer: everything that changes what the store holds — reading files and uploads into articles,
embedding only what is new or changed, deleting, re-embedding into another precision, seeding a fresh
checkout, recovering a lost manifest — one writer at a time, and nothing half-done left visible."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rag.errors import DocumentError, IndexDirError
from rag.ingest.loaders import Loaded, find_files, read_file
from rag.pipeline.store import Store
from rag.store.embedding import Embedder
from rag.store.index import MANIFEST, AddReport, ArticleIndex, RunSeen, being_created, refuse_lost_manifest
from rag.store.records import DocumentRecord
from rag.types import Chunk, Document

log = logging.getLogger("rag")
Progress = Callable[[int, int], None]
CHUNKS_PER_FLUSH = 512
"""Chunks embedded together. The encoder sorts what it is given by length, so a larger flush pads less
(32 documents, about 240 chunks, padded 2.4 % more tokens than sorting everything); small enough that
progress moves every few seconds."""


WINDOW_DOCUMENTS = 256
WINDOW_CHARS = 8_000_000
"""A window of read documents is planned (new, changed, duplicate) at once: enough for a batch's edits and
copies to be seen together, small enough that memory does not grow with the input."""


def _windows(loaded: Iterable[Loaded]) -> Iterator[list[Loaded]]:
    window: list[Loaded] = []
    chars = 0
    for one in loaded:
        window.append(one)
        chars += len(one.item.text) if isinstance(one.item, Document) else 0
        if len(window) >= WINDOW_DOCUMENTS or chars >= WINDOW_CHARS:
            yield window
            window, chars = [], 0
    if window:
        yield window


@dataclass
class _Queued:
    doc: Document
    chunks: list[Chunk]
    size: int
    vectors: list[np.ndarray] = field(default_factory=list)
    credited: int = 0

    @property
    def embedded(self) -> int:
        return sum(len(v) for v in self.vectors)


class _EmbedQueue:
    """Chunks waiting to be embedded, in document order. A flush may end inside a long article: its
    vectors wait until the rest is embedded, so the index only ever holds whole articles while progress
    still moves through a single huge file."""

    def __init__(self, embedder: Embedder, index: ArticleIndex) -> None:
        self.embedder, self.index = embedder, index
        self.waiting: collections.deque[_Queued] = collections.deque()
        self.chunks = 0

    def put(self, doc: Document, chunks: list[Chunk], size: int) -> None:
        self.waiting.append(_Queued(doc, chunks, size))
        self.chunks += len(chunks)

    def embed(self, most: int) -> tuple[int, int]:
        """Embed up to `most` waiting chunks; (chunks embedded, input bytes now accounted for)."""
        parts: list[tuple[_Queued, int, int]] = []
        taken = 0
        for queued in self.waiting:
            start = queued.embedded
            take = min(len(queued.chunks) - start, most - taken)
            parts.append((queued, start, start + take))
            taken += take
            if taken >= most:
                break
        texts = [c.text for queued, a, b in parts for c in queued.chunks[a:b]]
        vectors = self.embedder.embed(texts) if texts else np.empty((0, 0), dtype=np.float32)
        offset, read = 0, 0
        for queued, a, b in parts:
            queued.vectors.append(vectors[offset : offset + b - a])
            offset += b - a
            share = queued.size * b // max(len(queued.chunks), 1) - queued.credited
            queued.credited += share
            read += share
        while self.waiting and self.waiting[0].embedded == len(self.waiting[0].chunks):
            done = self.waiting.popleft()
            self.index.add(done.doc, done.chunks, np.concatenate(done.vectors))
            read += done.size - done.credited
        self.chunks -= taken
        return taken, read


@dataclass
class IndexReport:
    """Outcome of `Indexer.index()`: what changed, and every input that could not be read."""

    report: AddReport
    errors: list[DocumentError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _upload_name(name: str) -> str | None:
    """The file name an upload is stored and indexed under: its last path part, without control
    characters; None when nothing usable is left ("", "..", over the 255 bytes a file system allows)."""
    base = "".join(ch for ch in name.replace("\\", "/").rsplit("/", 1)[-1] if ch.isprintable())
    try:
        size = len(base.encode("utf-8"))
    except UnicodeEncodeError:
        return None
    return None if base in ("", ".", "..") or size > 255 else base


SAME_MODEL = 0.999
"""The same model and precision reproduce a vector to rounding (cosine 1.0000 here); int8 against fp32
of the same model differ by more."""


class Indexer:
    def __init__(self, store: Store) -> None:
        self.store = store

    def reembed(self, on_progress: Progress | None = None) -> IndexReport:
        """Embed every stored article again with the configured backend (int8 by default) into a sibling
        directory that then replaces the index: an index never mixes precisions, and a killed run resumes
        where it stopped, since the sibling is an index like any other."""
        started = time.perf_counter()
        source = self.store.settings.index_dir
        target = source.with_name(f"{source.name}.reembed")
        backend = self.store.settings.index.embedding_backend
        with self.store.writing():
            old = self.store.open_index()
            documents = [r.document() for r in old.documents.records()]
            fresh = Indexer(
                Store(self.store.settings.model_copy(update={"index_dir": target, "embedding_backend": backend}))
            )
            report = fresh.add_documents(documents, on_progress)
            stale = set(fresh.store.open_index().documents) - {d.id for d in documents}
            for doc_id in stale:  # deleted from the index while an earlier run was stopped
                fresh.delete(doc_id)
            fresh.prepare()
            previous = source.with_name(f"{source.name}.previous")
            shutil.rmtree(previous, ignore_errors=True)
            os.rename(source, previous)
            os.rename(target, source)
            shutil.rmtree(previous, ignore_errors=True)
        self.store.forget(fresh.store.embedder)
        return IndexReport(report, seconds=time.perf_counter() - started)

    def recover_manifest(self) -> ArticleIndex:
        """Rebuild a lost `manifest.json` from the index's own files (`ArticleIndex.recover`), and keep it
        only when the configured embedding model reproduces the stored vectors of a few chunks: a manifest
        naming another model would make every later search compare unlike vectors without a word."""
        path = self.store.settings.index_dir
        with self.store.writing():
            index = ArticleIndex.recover(
                path, self.store.new_manifest(), lock_timeout=self.store.settings.index.lock_timeout
            )
            similarity = self.store.vectors_reproduced(index)
            if similarity is not None and similarity < SAME_MODEL:
                (path / MANIFEST).unlink()
                raise IndexDirError(
                    f"cannot recover {path}: its vectors were not made by the configured embedding model "
                    f"{self.store.embedder.name} ({self.store.embedder.precision}; cosine {similarity:.4f} to them)",
                    hint="set RAG_EMBEDDING_MODEL and RAG_EMBEDDING_BACKEND to those it was built with, "
                    "then run `rag doctor --repair` again",
                )
        self.store.forget()
        return index

    def ensure_index(self) -> ArticleIndex:
        """Open the index, building it from the seed articles the first time, so a fresh checkout answers.
        An index another process is still building is left alone: seeding it would put the seed articles
        into someone else's corpus."""
        path = self.store.settings.index_dir
        if not self.store.loaded and not ArticleIndex.exists(path):
            builder = being_created(path)
            if builder is not None:
                raise IndexDirError(
                    f"the index at {path} is still being built by {builder}",
                    hint="wait for that command to finish, then ask again",
                )
            refuse_lost_manifest(path)
            seeds = self.store.settings.seed_dir
            if not seeds.is_dir():
                raise IndexDirError(
                    f"no index at {path} and no seed articles at {seeds}",
                    hint="build an index with `rag index PATH...`",
                )
            with self.store.writing():
                if not ArticleIndex.exists(path):
                    log.warning("no index at %s yet: indexing the seed articles in %s", path, seeds)
                    self.index([seeds])
        return self.store.open_index()

    def index(
        self,
        paths: Iterable[Path | str],
        on_progress: Progress | None = None,
        *,
        provenance: Mapping[str, str] | None = None,
    ) -> IndexReport:
        """Read and add new or changed documents as the files are read, in bounded memory: bad files and
        records are reported, good ones indexed regardless. `on_progress(done, total)` is in input bytes.
        `provenance` is merged into every document's metadata (who added it through the API, and when)."""
        started = time.perf_counter()
        found = find_files(paths)
        errors = list(found.errors)

        def documents() -> Iterator[Loaded]:
            for path, doc_id in found.files:
                for loaded in read_file(
                    path,
                    doc_id,
                    max_bytes=self.store.settings.index.max_article_bytes,
                    max_seconds=self.store.settings.index.max_extract_seconds,
                ):
                    if isinstance(loaded.item, DocumentError):
                        errors.append(loaded.item)
                    elif provenance:
                        metadata = {**loaded.item.metadata, **provenance}
                        loaded = Loaded(dataclasses.replace(loaded.item, metadata=metadata), loaded.size)
                    yield loaded

        with self.store.writing(), self.store.reload_on_failure():
            report = self._add(documents(), found.size, on_progress)
            if self.store.open_index().ann_pending:
                self.store.open_index().save()
        if report.added or report.updated or report.removed:
            self.prepare()
        return IndexReport(report, errors, found.skipped, time.perf_counter() - started)

    def add_documents(self, documents: Sequence[Document], on_progress: Progress | None = None) -> AddReport:
        """Embed only what is new or changed, saving every `checkpoint_chunks` chunks: an interrupted run
        keeps what it finished, and the index on disk is always a consistent one. `on_progress(done, total)`
        lets a UI show the same progress the terminal bar shows (in characters of text here)."""
        with self.store.writing(), self.store.reload_on_failure():
            loaded = [Loaded(doc, len(doc.text)) for doc in documents]
            return self._add(loaded, sum(one.size for one in loaded), on_progress)

    def _add(self, documents: Iterable[Loaded], total: int, on_progress: Progress | None) -> AddReport:
        """Plan in windows of what has been read, and embed in flushes of `CHUNKS_PER_FLUSH`: neither the
        input nor its chunks are held whole, so a feed export of any size streams through."""
        index = self.store.open_index(create=True)
        if ArticleIndex.exists(index.path):
            index.clear_torn()
        chunker = self.store.chunker(index.manifest)
        run, report = RunSeen(), AddReport()
        bar = tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc="indexing",
            disable=not self.store.settings.progress or total < 1e6,
        )
        queue = _EmbedQueue(self.store.embedder, index)
        pending = done = 0

        def advance(size: int) -> None:
            nonlocal done
            done += size
            bar.update(size)
            if on_progress is not None:
                on_progress(done, total)

        def flush(everything: bool) -> None:
            nonlocal pending
            while queue.chunks >= CHUNKS_PER_FLUSH or (everything and queue.waiting):
                embedded, read = queue.embed(CHUNKS_PER_FLUSH)
                report.chunks_added += embedded
                pending += embedded
                advance(read)
                if pending >= self.store.settings.index.checkpoint_chunks:
                    index.save()
                    pending = 0

        with bar:
            for window in _windows(documents):
                docs = [one.item for one in window if isinstance(one.item, Document)]
                todo, planned = index.plan(docs, run)
                report.extend(planned)
                for doc_id in planned.removed:
                    index.remove(doc_id)
                sizes = {id(one.item): one.size for one in window}
                embedding = {id(doc) for doc in todo}
                advance(sum(size for key, size in sizes.items() if key not in embedding))
                for doc in todo:
                    queue.put(doc, chunker.split(doc), sizes[id(doc)])
                    flush(everything=False)
            flush(everything=True)
        if index.unsaved:  # also an index created by this run and never saved
            index.save()
        index.merge()  # the merges larger than a save runs, now that the run's articles are searchable
        return report

    def index_uploads(
        self,
        files: Sequence[tuple[str, bytes]],
        on_progress: Progress | None = None,
        *,
        provenance: Mapping[str, str] | None = None,
    ) -> IndexReport:
        """Index files received in memory (the chat page's uploads) under their own names. Files over
        `max_upload_mb` are reported, not read; the others go through the same loaders as `index()`."""
        limit = self.store.settings.ui.max_upload_mb * 1024 * 1024
        too_big = [
            DocumentError(
                name,
                f"is {len(data) / 1e6:.1f} MB, over the {self.store.settings.ui.max_upload_mb} MB limit",
                hint="split it, or raise RAG_MAX_UPLOAD_MB",
            )
            for name, data in files
            if len(data) > limit
        ]
        names = [_upload_name(name) for name, _ in files]
        unusable = [
            DocumentError(
                repr(name)[1:-1] or "(no name)",
                "is not a usable file name",
                hint="rename the file (at most 255 bytes, no control characters)",
            )
            for (name, _), safe in zip(files, names, strict=True)
            if safe is None
        ]
        repeated = [
            DocumentError(
                name, "was uploaded twice in one batch", hint="upload each file once; the first copy was used"
            )
            for i, name in enumerate(names)
            if name is not None and name in names[:i]
        ]
        with tempfile.TemporaryDirectory(prefix="rag-upload-") as tmp:
            paths = []
            for i, (_, data) in enumerate(files):
                name = names[i]
                if name is not None and len(data) <= limit and name not in names[:i]:
                    path = Path(tmp) / name
                    path.write_bytes(data)
                    paths.append(path)
            result = self.index(paths, on_progress, provenance=provenance)
        # Name bad uploads as the user knows them, not by the temporary path they were read from.
        result.errors = (
            unusable
            + too_big
            + repeated
            + [DocumentError(Path(e.path).name, e.problem, line=e.line, hint=e.hint) for e in result.errors]
        )
        return result

    def prepare(self) -> None:
        """Build, and save beside the index, the keyword indexes the first search would otherwise build:
        indexing pays for them once rather than the first question of every process."""
        self.store.retriever(self.store.open_index()).prepare()

    def documents(self) -> list[DocumentRecord]:
        """Indexed articles, newest first (undated last): the order a news reader scans them in."""
        with self.store.lock:
            records = list(self.ensure_index().documents.records())
        return sorted(records, key=lambda r: (r.published is not None, r.published or dt.date.min, r.id), reverse=True)

    def merge(self) -> int:
        """Merge the index's segments into one (as far as `max_merged_chunks` allows), dropping every
        tombstoned row: what the merge policy otherwise does a level at a time. How many merges ran."""
        with self.store.writing(), self.store.reload_on_failure():
            index = self.store.open_index()
            index.clear_torn()
            return index.merge(everything=True)

    def delete(self, doc_id: str) -> None:
        if not ArticleIndex.exists(self.store.settings.index_dir):
            self.store.open_index()  # says there is no index, and what to do
        with self.store.writing(), self.store.reload_on_failure():
            index = self.store.open_index()
            index.remove(doc_id)
            index.save()
