"""The Python API the CLI and the chat page are thin layers over: one `RAG` object per settings, holding
the heavy pieces (embedding model, index, LLM) so they are loaded once and reused across questions."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.backends import make_generator
from rag.chunking import Chunker, tiktoken_counter
from rag.config import Settings
from rag.conversation import Turn, condense
from rag.dates import DateRange
from rag.embedding import Embedder
from rag.errors import DocumentError, IndexDirError, QuestionError
from rag.evidence import EvidencePool
from rag.index import AddReport, ArticleIndex, DocumentRecord, Manifest, being_created, writing
from rag.loaders import load_paths
from rag.packing import pack_passages
from rag.question import Question, analyze
from rag.reader import Asked, ReaderOptions, read
from rag.rerank import Reranker
from rag.retrieval import Retriever
from rag.types import Answer, Chunk, Document, Generator, LoadResult, Passage, Retrieval

log = logging.getLogger("rag")
Progress = Callable[[int, int], None]
CHUNKS_PER_FLUSH = 512
"""Chunks embedded together. The encoder sorts what it is given by length, so a larger flush pads less
(32 documents, about 240 chunks, padded 2.4 % more tokens than sorting everything); small enough that
progress moves every few seconds."""
PART_PASSAGES = 2
"""Passages searched for each part of a multi-part question, beside the question's own."""


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
        self.count_tokens = tiktoken_counter(self.settings.tokenizer_encoding)
        self._embedder = embedder
        self._index: ArticleIndex | None = None
        self.generators: dict[str, Generator] = dict(generators or {})
        """Generators built so far, by backend name (`backend:model` with a model override)."""
        self._retriever: Retriever | None = None
        reranker = self.settings.reranker
        self._reranker = Reranker(reranker, device=self.settings.embedding_device) if reranker else None
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
                s.embedding_model,
                backend=s.embedding_backend,
                batch_size=s.embedding_batch_size,
                device=s.embedding_device,
                cache_dir=s.cache_dir,
            )
        return self._embedder

    def open_index(self, *, create: bool = False) -> ArticleIndex:
        """The index at `index_dir`, checked against the configured embedding model, and reloaded when
        another process (`rag index` while the chat page runs) has saved a newer one."""
        if self._index is not None and self._index.is_stale():
            self._index = None
        if self._index is None:
            path = self.settings.index_dir
            if ArticleIndex.exists(path) or not create:
                index = ArticleIndex.load(path, lock_timeout=self.settings.lock_timeout)
                index.check_model(self.embedder.name, self.embedder.precision)
            else:
                s = self.settings
                index = ArticleIndex.create(
                    path,
                    Manifest(
                        embedding_model=self.embedder.name,
                        dimension=self.embedder.dimension,
                        embedding_precision=self.embedder.precision,
                        chunk_tokens=s.chunk_tokens,
                        chunk_overlap=s.chunk_overlap,
                        tokenizer=s.tokenizer_encoding,
                    ),
                    lock_timeout=s.lock_timeout,
                )
            index.configure_ann(self.settings.ann_min_chunks)
            self._index = index
        return self._index

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
        self.ensure_index()
        _ = self.embedder.encoder

    def chunker(self, manifest: Manifest) -> Chunker:
        return Chunker(
            manifest.chunk_tokens,
            manifest.chunk_overlap,
            count_tokens=tiktoken_counter(manifest.tokenizer),
            model_max_tokens=self.embedder.max_tokens,
            count_model_tokens=self.embedder.count_tokens,
        )

    def index(self, paths: Iterable[Path | str], on_progress: Progress | None = None) -> IndexReport:
        """Load, then add new or changed documents; bad files are reported, good ones indexed regardless."""
        started = time.perf_counter()
        loaded: LoadResult = load_paths(paths, max_bytes=int(self.settings.max_article_mb * 1_000_000))
        report = self.add_documents(loaded.documents, on_progress) if loaded.documents else AddReport()
        if not loaded.documents and not ArticleIndex.exists(self.settings.index_dir):
            with self._writing(), self._reload_on_failure():
                self.open_index(create=True).save()
        elif self.open_index().ann_pending:
            with self._writing(), self._reload_on_failure():
                self.open_index().save()
        if report.added or report.updated or report.removed:
            self.retriever().prepare()
        return IndexReport(report, loaded.errors, loaded.skipped, time.perf_counter() - started)

    def add_documents(self, documents: Sequence[Document], on_progress: Progress | None = None) -> AddReport:
        """Embed only what is new or changed, saving every `checkpoint_chunks` chunks: an interrupted run
        keeps what it finished, and the index on disk is always a consistent one. `on_progress(done, total)`
        lets a UI show the same progress the terminal bar shows."""
        with self._writing(), self._reload_on_failure():
            return self._add_documents(documents, on_progress)

    def _add_documents(self, documents: Sequence[Document], on_progress: Progress | None) -> AddReport:
        index = self.open_index(create=True)
        todo, report = index.plan(documents)
        for doc_id in report.removed:
            index.remove(doc_id)
        chunker = self.chunker(index.manifest)
        pending = 0
        bar = tqdm(total=len(todo), unit="doc", desc="indexing", disable=not self.settings.progress or len(todo) < 2)
        batch: list[Document] = []
        chunks: list[list[Chunk]] = []
        waiting = 0

        def flush() -> None:
            nonlocal pending
            vectors = self.embedder.embed([c.text for group in chunks for c in group])
            offset = 0
            for doc, group in zip(batch, chunks, strict=True):
                index.add(doc, group, vectors[offset : offset + len(group)])
                offset += len(group)
            report.chunks_added += offset
            pending += offset
            bar.update(len(batch))
            if on_progress is not None:
                on_progress(bar.n, len(todo))
            batch.clear()
            chunks.clear()
            if pending >= self.settings.checkpoint_chunks:
                index.save()
                pending = 0

        with bar:
            for doc in todo:
                batch.append(doc)
                chunks.append(chunker.split(doc))
                waiting += len(chunks[-1])
                if waiting >= CHUNKS_PER_FLUSH:
                    flush()
                    waiting = 0
            if batch:
                flush()
        if todo or report.removed or not ArticleIndex.exists(index.path):
            index.save()
        return report

    def index_uploads(self, files: Sequence[tuple[str, bytes]], on_progress: Progress | None = None) -> IndexReport:
        """Index files received in memory (the chat page's uploads) under their own names. Files over
        `max_upload_mb` are reported, not read; the others go through the same loaders as `index()`."""
        limit = self.settings.max_upload_mb * 1024 * 1024
        too_big = [
            DocumentError(
                name,
                f"is {len(data) / 1e6:.1f} MB, over the {self.settings.max_upload_mb} MB limit",
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
            result = self.index(paths, on_progress)
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
            records = list(self.ensure_index().documents.values())
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
            with writing(self.settings.index_dir, timeout=self.settings.lock_timeout):
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
        """The retriever over the current index; a new one when the index was reloaded."""
        index = self.ensure_index()
        if self._retriever is None or self._retriever.index is not index:
            self._retriever = Retriever(index, self.embedder, self.settings, self._reranker)
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
        question = _check_question(question)
        start = time.perf_counter()
        with self._lock:
            found = self.retriever().retrieve(question, k or self.settings.top_k, DateRange(since, until), as_of=as_of)
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
        original = _check_question(question)
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
        found = self._with_parts(analysis, retrieved, k or self.settings.top_k)
        timings["retrieve"] = earlier + time.perf_counter() - start - timings["rewrite"]
        passages = pack_passages(found, self.settings.context_tokens, self.count_tokens)
        s = self.settings
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


def _check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise QuestionError("the question is empty", hint='ask something, e.g. `rag ask "Who is ...?"`')
    return question.strip()
