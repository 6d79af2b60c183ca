"""The Python API the CLI and the chat page are thin layers over: one `RAG` object per settings, holding
the heavy pieces (embedding model, index, LLM) so they are loaded once and reused across questions."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rag.archive.catalog import Catalog
from rag.archive.search import ArchiveSource
from rag.backends import make_generator
from rag.chunking import Chunker, tiktoken_counter
from rag.config import EmbeddingBackend, Settings
from rag.conversation import Turn, condense
from rag.dates import DateRange
from rag.embedding import Embedder, precision_of
from rag.errors import DocumentError, IndexDirError, QuestionError
from rag.evidence import EvidencePool
from rag.index import (
    MANIFEST,
    AddReport,
    ArticleIndex,
    Manifest,
    RunSeen,
    being_created,
    read_manifest,
    refuse_lost_manifest,
    writing,
)
from rag.index_store import DocumentRecord
from rag.loaders import Loaded, find_files, read_file
from rag.packing import pack_passages
from rag.question import Question, analyze
from rag.reader import Asked, ReaderOptions, read
from rag.rerank import reranker_for
from rag.retrieval import IndexSource, Retriever
from rag.types import Answer, Chunk, Document, Generator, Passage, Retrieval

log = logging.getLogger("rag")
Progress = Callable[[int, int], None]
CHUNKS_PER_FLUSH = 512
"""Chunks embedded together. The encoder sorts what it is given by length, so a larger flush pads less
(32 documents, about 240 chunks, padded 2.4 % more tokens than sorting everything); small enough that
progress moves every few seconds."""
PART_PASSAGES = 2
"""Passages searched for each part of a multi-part question, beside the question's own."""


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
    """Outcome of `RAG.index()`: what changed, and every input that could not be read."""

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


_MODEL_CHECK_CHUNKS = 4
"""Stored chunks re-embedded to check that a recovered manifest names the model that made the vectors."""
SAME_MODEL = 0.999
"""The same model and precision reproduce a vector to rounding (cosine 1.0000 here); int8 against fp32
of the same model differ by more."""


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
        use."""
        self.settings = settings.model_copy(update=overrides) if settings else Settings(**overrides)
        self.count_tokens = tiktoken_counter(self.settings.index.tokenizer_encoding)
        self._embedder = embedder
        self._index: ArticleIndex | None = None
        self.generators: dict[str, Generator] = dict(generators or {})
        """Generators built so far, by backend name (`backend:model` with a model override)."""
        self._retriever: Retriever | None = None
        self._reranker = reranker_for(self.settings)
        # The chat page shares one RAG between browser sessions: searches must not see an index that an
        # upload or a delete is halfway through changing.
        self._lock = threading.RLock()
        self._writers = 0
        """Nesting depth of `_writing` (an index run that saves, say): the process lock is taken once."""

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.settings
            self._embedder = Embedder(
                s.index.embedding_model,
                backend=self._embedding_backend(),
                batch_size=s.index.embedding_batch_size,
                device=s.index.embedding_device,
                cache_dir=s.cache_dir,
            )
        return self._embedder

    def _embedding_backend(self) -> EmbeddingBackend:
        """The configured backend; left at its default, the one the existing index was built for, so an
        index from before int8 became the default keeps answering (`rag index --reembed` moves it)."""
        s = self.settings
        archive = Catalog.exists(s.index_dir)
        if "embedding_backend" in s.index.model_fields_set or not (archive or ArticleIndex.exists(s.index_dir)):
            return s.index.embedding_backend
        try:
            built = (
                Catalog.load(s.index_dir).embedding_precision
                if archive
                else read_manifest(s.index_dir).embedding_precision
            )
        except (OSError, ValueError, TypeError):
            return s.index.embedding_backend  # opening the index will say what is wrong with it
        if built == precision_of(s.index.embedding_backend):
            return s.index.embedding_backend
        log.info("the index at %s holds %s vectors: searching it with the fp32 encoder", s.index_dir, built)
        return "onnx"

    def reembed(self, on_progress: Progress | None = None) -> IndexReport:
        """Embed every stored article again with the configured backend (int8 by default) into a sibling
        directory that then replaces the index: an index never mixes precisions, and a killed run resumes
        where it stopped, since the sibling is an index like any other."""
        started = time.perf_counter()
        source = self.settings.index_dir
        target = source.with_name(f"{source.name}.reembed")
        backend = self.settings.index.embedding_backend
        with self._writing():
            old = self.open_index()
            documents = [r.document() for r in old.documents.records()]
            fresh = RAG(self.settings.model_copy(update={"index_dir": target, "embedding_backend": backend}))
            report = fresh.add_documents(documents, on_progress)
            stale = set(fresh.open_index().documents) - {d.id for d in documents}
            for doc_id in stale:  # deleted from the index while an earlier run was stopped
                fresh.delete(doc_id)
            fresh.retriever().prepare()
            previous = source.with_name(f"{source.name}.previous")
            shutil.rmtree(previous, ignore_errors=True)
            os.rename(source, previous)
            os.rename(target, source)
            shutil.rmtree(previous, ignore_errors=True)
        self._index, self._retriever, self._embedder = None, None, fresh.embedder
        return IndexReport(report, seconds=time.perf_counter() - started)

    def open_index(self, *, create: bool = False) -> ArticleIndex:
        """The index at `index_dir`, checked against the configured embedding model, and reloaded when
        another process (`rag index` while the chat page runs) has saved a newer one."""
        if self._index is not None and self._index.is_stale():
            self._index = None
        if self._index is None:
            path = self.settings.index_dir
            if Catalog.exists(path):
                raise IndexDirError(
                    f"{path} is an archive of monthly partitions, not a single index",
                    hint="add articles to it with `rag index --ray PATH...`; questions search it as usual",
                )
            if ArticleIndex.exists(path) or not create:
                index = ArticleIndex.load(path, lock_timeout=self.settings.index.lock_timeout)
                index.check_model(self.embedder.name, self.embedder.precision)
            else:
                index = ArticleIndex.create(path, self.new_manifest(), lock_timeout=self.settings.index.lock_timeout)
            index.configure_ann(self.settings.retrieval.ann_min_chunks)
            self._index = index
        return self._index

    def recover_manifest(self) -> ArticleIndex:
        """Rebuild a lost `manifest.json` from the index's own files (`ArticleIndex.recover`), and keep it
        only when the configured embedding model reproduces the stored vectors of a few chunks: a manifest
        naming another model would make every later search compare unlike vectors without a word."""
        path = self.settings.index_dir
        with self._writing():
            index = ArticleIndex.recover(path, self.new_manifest(), lock_timeout=self.settings.index.lock_timeout)
            similarity = self.vectors_reproduced(index)
            if similarity is not None and similarity < SAME_MODEL:
                (path / MANIFEST).unlink()
                raise IndexDirError(
                    f"cannot recover {path}: its vectors were not made by the configured embedding model "
                    f"{self.embedder.name} ({self.embedder.precision}; cosine {similarity:.4f} to them)",
                    hint="set RAG_EMBEDDING_MODEL and RAG_EMBEDDING_BACKEND to those it was built with, "
                    "then run `rag doctor --repair` again",
                )
        self._index, self._retriever = None, None
        return index

    def vectors_reproduced(self, index: ArticleIndex) -> float | None:
        """The lowest cosine between a few stored chunk vectors and the same chunks embedded again now;
        below `SAME_MODEL`, the vectors were made by another model or precision than this RAG embeds with
        (None for an index without chunks)."""
        ids = index.chunks.ids()[:_MODEL_CHECK_CHUNKS]
        if not len(ids):
            return None
        stored = index.vectors_of(ids)
        fresh = self.embedder.embed([index.chunks[int(i)].text for i in ids])
        return float(np.min(np.sum(stored * fresh, axis=1)))

    def new_manifest(self) -> Manifest:
        """The manifest of an index built now with these settings."""
        s = self.settings
        return Manifest(
            embedding_model=self.embedder.name,
            dimension=self.embedder.dimension,
            embedding_precision=self.embedder.precision,
            chunk_tokens=s.index.chunk_tokens,
            chunk_overlap=s.index.chunk_overlap,
            tokenizer=s.index.tokenizer_encoding,
        )

    def ensure_index(self) -> ArticleIndex:
        """Open the index, building it from the seed articles the first time, so a fresh checkout answers.
        An index another process is still building is left alone: seeding it would put the seed articles
        into someone else's corpus."""
        path = self.settings.index_dir
        if self._index is None and not ArticleIndex.exists(path):
            builder = being_created(path)
            if builder is not None:
                raise IndexDirError(
                    f"the index at {path} is still being built by {builder}",
                    hint="wait for that command to finish, then ask again",
                )
            refuse_lost_manifest(path)
            seeds = self.settings.seed_dir
            if not seeds.is_dir():
                raise IndexDirError(
                    f"no index at {path} and no seed articles at {seeds}",
                    hint="build an index with `rag index PATH...`",
                )
            with self._writing():
                if not ArticleIndex.exists(path):
                    log.warning("no index at %s yet: indexing the seed articles in %s", path, seeds)
                    self.index([seeds])
        return self.open_index()

    def warm_up(self) -> None:
        """Open the index and load the embedding model now, so a server's first question is timed (and
        waits) only for itself."""
        self.retriever()
        _ = self.embedder.encoder

    def chunker(self, manifest: Manifest) -> Chunker:
        return Chunker(
            manifest.chunk_tokens,
            manifest.chunk_overlap,
            count_tokens=tiktoken_counter(manifest.tokenizer),
            model_max_tokens=self.embedder.max_tokens,
            count_model_tokens=self.embedder.count_tokens,
        )

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
                    max_bytes=self.settings.index.max_article_bytes,
                    max_seconds=self.settings.index.max_extract_seconds,
                ):
                    if isinstance(loaded.item, DocumentError):
                        errors.append(loaded.item)
                    elif provenance:
                        metadata = {**loaded.item.metadata, **provenance}
                        loaded = Loaded(dataclasses.replace(loaded.item, metadata=metadata), loaded.size)
                    yield loaded

        with self._writing(), self._reload_on_failure():
            report = self._add(documents(), found.size, on_progress)
            if self.open_index().ann_pending:
                self.open_index().save()
        if report.added or report.updated or report.removed:
            self.retriever().prepare()
        return IndexReport(report, errors, found.skipped, time.perf_counter() - started)

    def add_documents(self, documents: Sequence[Document], on_progress: Progress | None = None) -> AddReport:
        """Embed only what is new or changed, saving every `checkpoint_chunks` chunks: an interrupted run
        keeps what it finished, and the index on disk is always a consistent one. `on_progress(done, total)`
        lets a UI show the same progress the terminal bar shows (in characters of text here)."""
        with self._writing(), self._reload_on_failure():
            loaded = [Loaded(doc, len(doc.text)) for doc in documents]
            return self._add(loaded, sum(one.size for one in loaded), on_progress)

    def _add(self, documents: Iterable[Loaded], total: int, on_progress: Progress | None) -> AddReport:
        """Plan in windows of what has been read, and embed in flushes of `CHUNKS_PER_FLUSH`: neither the
        input nor its chunks are held whole, so a feed export of any size streams through."""
        index = self.open_index(create=True)
        if ArticleIndex.exists(index.path):
            index.clear_torn()
        chunker = self.chunker(index.manifest)
        run, report = RunSeen(), AddReport()
        bar = tqdm(
            total=total, unit="B", unit_scale=True, desc="indexing", disable=not self.settings.progress or total < 1e6
        )
        queue = _EmbedQueue(self.embedder, index)
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
                if pending >= self.settings.index.checkpoint_chunks:
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
        limit = self.settings.ui.max_upload_mb * 1024 * 1024
        too_big = [
            DocumentError(
                name,
                f"is {len(data) / 1e6:.1f} MB, over the {self.settings.ui.max_upload_mb} MB limit",
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

    def documents(self) -> list[DocumentRecord]:
        """Indexed articles, newest first (undated last): the order a news reader scans them in."""
        with self._lock:
            records = list(self.ensure_index().documents.records())
        return sorted(records, key=lambda r: (r.published is not None, r.published or dt.date.min, r.id), reverse=True)

    def delete(self, doc_id: str) -> None:
        if not ArticleIndex.exists(self.settings.index_dir):
            self.open_index()  # says there is no index, and what to do
        with self._writing(), self._reload_on_failure():
            index = self.open_index()
            index.remove(doc_id)
            index.save()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """This pipeline's threads and other processes change the index one at a time (`index.writing`)."""
        with self._lock:
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
    def _reload_on_failure(self) -> Iterator[None]:
        """A change that failed to save must not live on in memory: drop the in-memory index so the next
        use reads what is really on disk."""
        try:
            yield
        except BaseException:
            self._index = None
            raise

    def generator(self, backend: str | None = None, model: str | None = None) -> Generator:
        name = backend or self.settings.backend
        key = f"{name}:{model}" if model else name
        if key not in self.generators:
            self.generators[key] = make_generator(self.settings, name, model)
        return self.generators[key]

    def retriever(self) -> Retriever:
        """The retriever over the current index; a new one when the index was reloaded. An archive of
        monthly partitions (`rag index --ray`) is searched through its shards (`rag.archive`)."""
        source = self._retriever.source if self._retriever is not None else None
        if Catalog.exists(self.settings.index_dir):
            if not isinstance(source, ArchiveSource):
                source = ArchiveSource(self.settings.index_dir, self.settings)
        else:
            index = self.ensure_index()
            if not isinstance(source, IndexSource) or source.index is not index:
                source = IndexSource(index)
        if self._retriever is None or self._retriever.source is not source:
            self._retriever = Retriever(source, self.embedder, self.settings.retrieval, self._reranker)
        return self._retriever

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
        question = _check_question(question, self.settings.reader.max_question_chars)
        start = time.perf_counter()
        with self._lock:
            found = self.retriever().retrieve(
                question, k or self.settings.retrieval.top_k, DateRange(since, until), as_of=as_of
            )
        found.seconds = time.perf_counter() - start
        return found

    def retrieve(
        self,
        question: str,
        *,
        k: int | None = None,
        since: dt.date | None = None,
        until: dt.date | None = None,
        as_of: dt.date | None = None,
    ) -> list[Passage]:
        return self.search(question, k=k, since=since, until=until, as_of=as_of).passages

    def answer_stream(
        self,
        question: str,
        *,
        k: int | None = None,
        since: dt.date | None = None,
        until: dt.date | None = None,
        as_of: dt.date | None = None,
        backend: str | None = None,
        model: str | None = None,
        history: Sequence[Turn] = (),
        retrieved: Retrieval | None = None,
    ) -> Iterator[str | Answer]:
        """Yields answer text pieces as they are generated, then the final `Answer`. With `history`, a
        follow-up question is first rewritten into a standalone one (`Answer.standalone_question`). With
        `retrieved`, its first k passages are used instead of searching again (the evaluation harness has
        already retrieved deeper for scoring)."""
        original = _check_question(question, self.settings.reader.max_question_chars)
        generator = self.generator(backend, model)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        rewriter = generator if generator.capabilities.rewrites_follow_ups else None
        question = condense(original, history, rewriter)
        timings["rewrite"] = time.perf_counter() - start
        # A retrieval passed in was searched before this call: its time is charged to this answer.
        earlier = retrieved.seconds if retrieved is not None else 0.0
        if retrieved is None:
            retrieved = self.search(question, k=k, since=since, until=until, as_of=as_of)
        # The date phrase was used to search; the evidence must match the rest ("last week" is in no passage).
        topic = retrieved.mention.strip_from(question) if retrieved.mention else question
        analysis = analyze(question, topic=topic)
        found = self._with_parts(analysis, retrieved, k or self.settings.retrieval.top_k)
        timings["retrieve"] = earlier + time.perf_counter() - start - timings["rewrite"]
        passages = pack_passages(found, self.settings.reader.context_tokens, self.count_tokens)
        s = self.settings.reader
        options = ReaderOptions(
            focus_sentences=s.local_focus_sentences,
            max_tokens=s.max_answer_tokens,
            temperature=s.temperature,
            min_confidence=s.min_confidence,
            attribute_citations=s.attribute_citations,
        )
        asked = Asked(original, analysis, retrieved, len(found), start - earlier)
        yield from read(
            asked,
            passages,
            generator,
            pool=EvidencePool(passages, self.embedder.embed),
            options=options,
            count=self.count_tokens,
            timings=timings,
        )

    def _with_parts(self, question: Question, retrieved: Retrieval, k: int) -> list[Passage]:
        """The first k passages, and for a multi-part question the best passages for each part searched on
        its own (same dates), so evidence for every part reaches the reader."""
        found = list(retrieved.passages[:k])
        seen = {p.chunk.id for p in found}
        for part in question.parts:
            since, until = retrieved.dates.since, retrieved.dates.until
            for passage in self.search(part, k=PART_PASSAGES, since=since, until=until, as_of=retrieved.as_of).passages:
                if passage.chunk.id not in seen:
                    seen.add(passage.chunk.id)
                    found.append(passage)
        return found

    def answer(self, question: str, **options: Any) -> Answer:
        final = None
        for item in self.answer_stream(question, **options):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        return final


def _check_question(question: str, limit: int) -> str:
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("the question is empty", hint='ask something, e.g. `rag ask "Who is ...?"`')
    if len(question.strip()) > limit:
        raise QuestionError(
            f"the question is {len(question.strip()):,} characters long, over the {limit:,} allowed",
            hint="ask it in a sentence or two (RAG_MAX_QUESTION_CHARS sets the limit)",
        )
    return question.strip()
