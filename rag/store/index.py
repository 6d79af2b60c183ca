"""Index: the articles, their chunks and vectors, as immutable segments listed by a manifest.

On-disk layout of an index directory:

    manifest.json            names the live segments, their tombstones and files (size and sha256), and
                             records model, dimension, chunking and counts
    vectors.<n>.faiss        a segment's exact vectors: IndexIDMap2 over an inner-product flat index,
                             memory-mapped by readers, read by row when the segment has an IVF
    records.<n>.sqlite3      its articles (metadata, hash, text, chunk ids) and chunks (doc id, span), read
                             by key (`rag.store.records`), and the tombstones its save laid
    ann.<n>.faiss            only for a segment of `ann_min_chunks` or more: IVF-SQ8 over its chunk ids,
                             on the codebook the IVFs of the index share (`rag.store.ann`)
    terms.<n>/               its BM25 term counts (`rag.store.sparse`), derived: counted again if lost

A search process holds in RAM the IVFs' 8-bit codes and a few arrays per chunk, not the texts or the
exact vectors: the pages it reads of those are the operating system's cache, shared between processes
and given back under pressure. Segments are why a save costs what it adds (`rag.store.segments`).

A save or a merge writes its segment's files first and then replaces `manifest.json` atomically; only
after that are the files of segments it no longer lists deleted. A crash at any point therefore leaves a
manifest that names a complete set of files, which is the whole crash-safety argument. (Format 2 was one
segment per generation, format 1 kept JSON lines instead of the records file; both are read, and the next
save writes format 3.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import orjson

from rag import durable
from rag.config import DEFAULT_MAX_MERGED_CHUNKS, DEFAULT_MERGE_FACTOR, DEFAULT_SAVE_MERGE_CHUNKS
from rag.durable import fingerprint
from rag.errors import IndexDirError
from rag.store.ann import IvfIndex, assignments, codebook_for, lists_for, rescored
from rag.store.records import (
    ChunkRow,
    ChunkTable,
    DocumentRecord,
    Documents,
    Holders,
    RecordStore,
    SegmentRecords,
)
from rag.store.segments import Segment, SegmentInfo, merges, save_terms
from rag.store.vectors import flat_matrix
from rag.types import Chunk, Document

FORMAT_VERSION = 3
"""3: segments (`rag.store.segments`); 2: one generation's files, read as one segment; 1 held articles and
chunks in JSON lines, read whole into memory. All are read; the next save writes 3."""
READABLE_FORMATS = (1, 2, 3)
MANIFEST = "manifest.json"
log = logging.getLogger(__name__)
_DERIVED_DIR = re.compile(r"(?:bm25|terms)\.(?P<gen>\d+)")
"""Derived data: a segment's term counts (`terms.<n>`), and format 2's BM25 (`bm25.<n>`)."""
_CREATING = ".creating"
"""Present, and locked by the building process, while a new index has not had its first save."""
_WRITE = ".write"
"""Locked by the process changing the index, for as long as the change (an index run, a delete) lasts."""
_LOCKS = (".lock", _CREATING, _WRITE)
_DATA_FILE = re.compile(r"(?:vectors|documents|chunks|ann|records)\.(?P<gen>\d+)\.(?:faiss|jsonl|sqlite3)(?:\.tmp)?")


@dataclass
class Manifest:
    embedding_model: str
    dimension: int
    chunk_tokens: int
    chunk_overlap: int
    tokenizer: str
    embedding_precision: str = "fp32"
    """int8 encoders give slightly different vectors: an index is searched with the precision it was built in."""
    format_version: int = FORMAT_VERSION
    generation: int = 0
    next_id: int = 0
    n_documents: int = 0
    n_chunks: int = 0
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    updated: str = ""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The live segments' files with their size and sha256, as written: every load checks the sizes (a
    stat each), `rag doctor` the checksums (flipped bytes, edited or reordered lines)."""
    segments: list[dict[str, Any]] = field(default_factory=list)
    """The live segments, oldest first (`SegmentInfo`); format 2 and 1 had none (one generation)."""

    def segment_infos(self) -> list[SegmentInfo]:
        if self.format_version < 3:
            return [SegmentInfo(self.generation, self.n_documents, self.n_chunks)] if self.format_version == 2 else []
        return [SegmentInfo(**entry) for entry in self.segments]


@dataclass
class AddReport:
    """What an incremental add did, per document id, so the CLI and UI can say it plainly."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """Stored documents whose new content duplicates another one: their old text is gone, so are they."""
    repeated: list[str] = field(default_factory=list)
    """Ids given to more than one document of this batch: the first was taken, the later ones skipped."""
    chunks_added: int = 0

    def extend(self, other: AddReport) -> None:
        """Add a window's plan to the run's report."""
        for name in ("added", "updated", "unchanged", "duplicates", "removed", "repeated"):
            getattr(self, name).extend(getattr(other, name))
        self.chunks_added += other.chunks_added


@dataclass
class RunSeen:
    """What one indexing run has met so far, for planning it in windows."""

    incoming: dict[str, str] = field(default_factory=dict)
    """Document id -> content hash of every document the run has read."""
    seen: dict[str, str] = field(default_factory=dict)
    """Content hash -> id of the documents the run is embedding."""


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One question is too little work to share out: waking FAISS's OpenMP threads cost more than the
    search itself (0.23 ms against 0.008 ms over 265 chunks), and they fight onnxruntime's threads, which
    have just embedded the question, for the same cores (RealTime QA search p50 9.3 ms against 5.0 ms at
    265 chunks, 13.0 against 9.3 ms exact over 50,083). Training an IVF keeps every thread."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _bitmap(ids: np.ndarray, size: int) -> np.ndarray:
    """The ids as a bit per possible id: FAISS tests membership with one shift, and building it costs
    a fraction of a hash set's (0.1 ms against 0.8 ms at 50,000 chunks)."""
    bits = np.zeros(size, dtype=bool)
    bits[ids] = True
    packed: np.ndarray = np.packbits(bits, bitorder="little")
    return packed


def _write_manifest(path: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically and durably: the switch to a new generation is this one rename."""
    durable.replace(path / MANIFEST, lambda p: p.write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8"))
    durable.fsync_dir(path)


def _write_faiss(index: Any, path: Path) -> None:
    """faiss reports a failed write (disk full, file-size limit) as a RuntimeError whose message ends with
    the system's reason; it is an OSError like any other write, so the CLI says it in one line."""
    try:
        faiss.write_index(index, str(path))
    except RuntimeError as exc:
        match = re.search(r"\(([^()]+)\)\s*$", str(exc))
        code = next((n for n in errno.errorcode if match and os.strerror(n) == match.group(1)), None)
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from exc


def verify(path: Path, *, lock_timeout: float | None = None) -> tuple[ArticleIndex | None, list[str]]:
    """The index at `path` (None when it does not load) and what is wrong with it, checked the slow way
    (`rag doctor`): it loads, and every file of its segments matches the checksum recorded when it was
    saved. No problems when all is well."""
    try:
        index = ArticleIndex.load(path, lock_timeout=LOCK_TIMEOUT if lock_timeout is None else lock_timeout)
    except IndexDirError as exc:
        return None, [exc.message]
    problems = []
    for name, recorded in index.manifest.files.items():
        if fingerprint(path / name)["sha256"] != recorded.get("sha256"):
            problems.append(f"{name} does not match the checksum recorded when it was saved")
    if not index.manifest.files:
        problems.append("saved by an older rag, without checksums: its next save records them")
    return index, problems


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """orjson halves a new process's wait for a large index (RealTime QA's chunks: 0.62 s -> 0.32 s); the
    standard parser reads what orjson refuses (integers beyond 64 bits kept from a feed's metadata)."""
    with open(path, "rb") as handle:
        for line in handle:
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                yield json.loads(line)


LOCK_TIMEOUT = 120.0
"""Seconds a command waits for another process's lock on the index before it gives up and says who holds
it (`Settings.lock_timeout` sets it per pipeline)."""
_POLL = 0.1


def _holder(handle: Any) -> str:
    """Who holds a lock, as the holder wrote it ("pid 123: rag index ..."), for the waiting process."""
    try:
        handle.seek(0)
        return str(handle.read(300)).strip() or "another process (a reader)"
    except OSError:
        return "another process"


def _acquire(handle: Any, path: Path, operation: int, timeout: float) -> None:
    """flock that never hangs silently: one line when it has to wait, and after `timeout` an error naming
    the holder, since a stopped (Ctrl-Z) or hung process would otherwise block every command forever."""
    try:
        fcntl.flock(handle, operation | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    holder = _holder(handle)
    log.warning("waiting for the index lock on %s, held by %s", path, holder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(_POLL)
        try:
            fcntl.flock(handle, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            continue
    raise IndexDirError(
        f"the index at {path} has been locked by {holder} for over {timeout:g} s",
        hint="wait for it to finish, or if it is stopped or hung, resume it (`kill -CONT PID`) or end it "
        "(`kill PID`); RAG_LOCK_TIMEOUT sets how long to wait",
    )


def _who() -> str:
    return f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}"


def _sign(handle: Any) -> None:
    """Leave this process's pid and command in a lock file it holds, for whoever has to wait."""
    handle.truncate(0)
    handle.write(_who())
    handle.flush()


@contextlib.contextmanager
def _held(handle: Any, path: Path, operation: int, timeout: float) -> Iterator[None]:
    """The lock on `handle` for the duration (`_acquire`); an exclusive holder signs the file meanwhile."""
    _acquire(handle, path, operation, timeout)
    exclusive = operation == fcntl.LOCK_EX
    try:
        if exclusive:
            _sign(handle)
        yield
    finally:
        if exclusive:
            handle.truncate(0)
        fcntl.flock(handle, fcntl.LOCK_UN)


def _index_dir(path: Path) -> bool:
    """Create the index directory if need be; True when this call created it."""
    if path.exists() and not path.is_dir():
        raise IndexDirError(f"{path} is a file, not an index directory", hint="point RAG_INDEX_DIR at a directory")
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    return created


@contextlib.contextmanager
def _locked(path: Path, *, exclusive: bool, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Readers share the lock and a writer takes it alone, so a save never deletes the files of the
    generation a concurrent reader (the chat page, say) is loading. An index on a read-only medium cannot
    be written by anyone, so it is read without a lock."""
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(open(path / ".lock", "a+"))
        except OSError:
            if exclusive:
                raise
            yield
            return
        with _held(handle, path, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, timeout):
            yield


@contextlib.contextmanager
def writing(path: Path, *, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """One change at a time (an index run, a delete), held for the whole change rather than only its
    saves: a second writer waits, saying for whom, instead of embedding for minutes and then being
    refused, and never makes the first throw its finished work away. The index directory is created."""
    created = _index_dir(path)
    try:
        with open(path / _WRITE, "a+") as handle, _held(handle, path, fcntl.LOCK_EX, timeout):
            yield
    finally:
        if created and not ArticleIndex.exists(path) and {f.name for f in path.iterdir()} <= set(_LOCKS):
            shutil.rmtree(path, ignore_errors=True)  # a change that saved nothing leaves no directory behind


def being_created(path: Path) -> str | None:
    """Who is building a new index at `path` (its first save still to come), or None."""
    try:
        with open(path / _CREATING) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return handle.read(300).strip() or "another process"
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None
    except OSError:
        return None


def _ours(file: Path) -> bool:
    """A file or directory of a generation, whole or torn (`.tmp`): what an index writes, and nothing else."""
    if file.name == MANIFEST + ".tmp":
        return True
    pattern = _DERIVED_DIR if file.is_dir() else _DATA_FILE
    return pattern.fullmatch(file.name) is not None


@dataclass(frozen=True)
class SavedGeneration:
    """The data files of one generation found on disk, whole (no `.tmp`)."""

    generation: int
    names: tuple[str, ...]


def saved_generations(path: Path) -> list[SavedGeneration]:
    """Generations whose files are all there (vectors, and records or format 1's two JSON lines files),
    oldest first, whatever the manifest says: what may hold articles when the manifest is gone."""
    found: dict[int, set[str]] = {}
    for file in path.iterdir() if path.is_dir() else ():
        match = _DATA_FILE.fullmatch(file.name)
        if match is not None and not file.name.endswith(".tmp") and file.is_file():
            found.setdefault(int(match.group("gen")), set()).add(file.name)
    whole = []
    for gen, names in sorted(found.items()):
        records = {f"records.{gen}.sqlite3"} <= names or {f"documents.{gen}.jsonl", f"chunks.{gen}.jsonl"} <= names
        if records and f"vectors.{gen}.faiss" in names:
            whole.append(SavedGeneration(gen, tuple(sorted(names))))
    return whole


def refuse_lost_manifest(path: Path) -> None:
    """Raise when `path` holds a saved generation's files but no manifest. Without a `.creating` marker
    that is an index whose manifest was lost (a bad copy, a sync tool), not a first build that died: its
    files hold every article, so no command may clean them up or build over them."""
    saved = saved_generations(path)
    if saved and not ArticleIndex.exists(path):
        raise IndexDirError(
            f"{path} holds an index's files ({', '.join(saved[-1].names)}) but no {MANIFEST}: nothing was changed",
            hint=f"rebuild {MANIFEST} from them with `rag doctor --repair`, or restore it from a backup",
        )


def read_manifest(path: Path) -> Manifest:
    return Manifest(**json.loads((path / MANIFEST).read_text(encoding="utf-8")))


def plan_additions(
    documents: Sequence[Document], run: RunSeen, stored: Mapping[str, str], holders: Mapping[str, str]
) -> tuple[list[Document], AddReport]:
    """Which documents need embedding: new ids and changed content only.

    A stored document only makes another one a duplicate if this batch leaves its content alone:
    when `a` is edited and its old text arrives as `b` in the same run, `b` is new content, not a
    copy of `a`, and skipping it would drop that text from the index. A run planned in windows (a
    streamed archive) passes one `run` to all of them, so repeated ids and copies are caught across
    the whole run; the edit-and-copy case is then caught within a window.

    `stored` gives the content hash of each stored document among these ids, `holders` the stored
    document holding each content hash: one index's, or a whole archive's.
    """
    report = AddReport()
    todo: list[Document] = []
    seen, incoming = run.seen, run.incoming
    firsts: list[Document] = []
    for doc in documents:
        if doc.id in incoming:
            report.repeated.append(doc.id)
        else:
            incoming[doc.id] = doc.content_hash
            firsts.append(doc)
    for doc in firsts:
        digest = doc.content_hash
        existing = stored.get(doc.id)
        if existing == digest:
            report.unchanged.append(doc.id)
            continue
        twin = seen.get(digest)
        holder = holders.get(digest)
        if twin is None and holder is not None and incoming.get(holder, digest) == digest:
            twin = holder
        if twin is not None and twin != doc.id:
            report.duplicates.append((doc.id, twin))
            if existing is not None:
                report.removed.append(doc.id)
            continue
        seen[digest] = doc.id
        (report.updated if existing is not None else report.added).append(doc.id)
        todo.append(doc)
    return todo, report


class ArticleIndex:
    """The persistent corpus: saved segments, and the changes memory holds over them until `save()`."""

    def __init__(self, path: Path, manifest: Manifest, segments: list[Segment] | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self.segments: list[Segment] = segments or []
        self.fresh = faiss.IndexIDMap2(faiss.IndexFlatIP(manifest.dimension))
        """The vectors added since the last save, in memory: the next save's segment."""
        self._dropped: set[int] = set()
        """Chunk ids of saved segments removed since the last save: tombstones the next save lays."""
        self.documents = Documents(SegmentRecords([seg.file for seg in self.segments]) if self.segments else None)
        self.chunks = ChunkTable(self.documents)
        self.version = 0
        """Bumped by every add and remove, so views derived from the contents (retrieval arrays) know to rebuild."""
        self._saved_version: int | None = None
        """`version` as of the last load or save; None for an index never saved."""
        self.ann_min_chunks: int | None = None
        """Set by `configure` from `Settings.ann_min_chunks`; None: exact search only."""
        self.merge_factor, self.max_merged_chunks = DEFAULT_MERGE_FACTOR, DEFAULT_MAX_MERGED_CHUNKS
        self.save_merge_chunks = DEFAULT_SAVE_MERGE_CHUNKS
        self.lock_timeout = LOCK_TIMEOUT
        self._creating: Any = None
        """While a new index is built, its `.creating` marker, held locked until the first save."""
        self._id_order: tuple[int, np.ndarray, np.ndarray] | None = None
        """(version, chunk ids by position, the positions sorted by id), for `positions`."""

    @classmethod
    def create(cls, path: Path, manifest: Manifest, *, lock_timeout: float = LOCK_TIMEOUT) -> ArticleIndex:
        """A new, empty index, its directory marked `.creating` (locked, with this process's pid) until the
        first save. Another process that finds the marker locked leaves the directory alone; one that finds
        it unlocked knows the first build died, and clears what it left behind. A non-empty directory with
        files this class never writes is someone's data, and is refused."""
        _index_dir(path)
        marked = (path / _CREATING).exists()
        marker = open(path / _CREATING, "a+")  # noqa: SIM115 - held open until the first save
        try:
            try:
                fcntl.flock(marker, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IndexDirError(
                    f"an index is being created at {path} by {_holder(marker)}",
                    hint="wait for that command to finish, then run this one again",
                ) from None
            leftovers = [f for f in path.iterdir() if f.name not in _LOCKS]
            if not marked:
                refuse_lost_manifest(path)
            if leftovers and (not marked or any(not _ours(f) for f in leftovers)):
                raise IndexDirError(
                    f"{path} is not empty and has no {MANIFEST}: refusing to build an index over it",
                    hint="choose an empty or new RAG_INDEX_DIR, or delete that directory if it is a damaged index",
                )
            if leftovers:
                for file in leftovers:
                    shutil.rmtree(file) if file.is_dir() else file.unlink()
                log.warning("removed %d files left in %s by a first build that did not finish", len(leftovers), path)
            _sign(marker)
        except BaseException:
            marker.close()
            if not marked:
                (path / _CREATING).unlink(missing_ok=True)
            raise
        index = cls(path, manifest)
        index.lock_timeout = lock_timeout
        index._creating = marker
        return index

    @staticmethod
    def exists(path: Path) -> bool:
        return (path / MANIFEST).is_file()

    @property
    def unsaved(self) -> bool:
        """Memory holds changes the last load or save did not (a checkpoint may have saved them all)."""
        return self._saved_version != self.version

    def is_stale(self) -> bool:
        """True when another process has saved a newer generation since this index was loaded."""
        try:
            return read_manifest(self.path).generation != self.manifest.generation
        except (OSError, ValueError, TypeError):
            return False  # gone or unreadable: the next load reports it properly

    @classmethod
    def load(cls, path: Path, *, lock_timeout: float = LOCK_TIMEOUT) -> ArticleIndex:
        if not path.exists():
            raise IndexDirError(f"no index at {path}", hint="build one with `rag index PATH...`")
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise IndexDirError(
                f"{path} is not an index directory (no {MANIFEST})",
                hint="point RAG_INDEX_DIR at an index, or build one with `rag index PATH...`",
            )
        with _locked(path, exclusive=False, timeout=lock_timeout):
            index = cls._read(path)
        index.lock_timeout = lock_timeout
        return index

    @classmethod
    def recover(cls, path: Path, template: Manifest, *, lock_timeout: float = LOCK_TIMEOUT) -> ArticleIndex:
        """Write a lost manifest from the segments on disk and load it (`rag doctor --repair`). The files say
        what a manifest records, but for how the vectors were made: that comes from `template` (the
        settings), and the caller checks it against a stored vector. The tombstones are replayed from the
        records files (each keeps those its save laid), and an article found live in two segments is the
        newer one's. A directory of format 1 files is recovered as its newest generation. Nothing is
        deleted; segments that do not load as one index leave the directory as it was."""
        if cls.exists(path):
            raise IndexDirError(f"{path} has its {MANIFEST}: there is nothing to recover")
        saved = saved_generations(path)
        if not saved:
            raise IndexDirError(
                f"{path} has no {MANIFEST} and no whole generation of index files to rebuild it from",
                hint="restore the directory from a backup, or rebuild it with `rag index PATH...`",
            )
        with _locked(path, exclusive=True, timeout=lock_timeout):
            segments = [g.generation for g in saved if f"records.{g.generation}.sqlite3" in g.names]
            try:
                manifest = cls._recovered(path, template, segments or [saved[-1].generation], legacy=not segments)
            except (RuntimeError, AttributeError, OSError) as exc:
                raise IndexDirError(f"cannot recover {path}: its files are unreadable ({exc})") from exc
            _write_manifest(path, manifest)
            try:
                index = cls._read(path)
            except IndexDirError:
                (path / MANIFEST).unlink()
                raise
        index.lock_timeout = lock_timeout
        return index

    @classmethod
    def _recovered(cls, path: Path, template: Manifest, numbers: list[int], *, legacy: bool) -> Manifest:
        """The manifest of the segments `numbers` (or of format 1's generation, `legacy`)."""
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        if legacy:
            gen = numbers[-1]
            vectors = faiss.read_index(str(path / f"vectors.{gen}.faiss"), faiss.IO_FLAG_MMAP_IFC)
            ids = faiss.vector_to_array(faiss.downcast_index(vectors).id_map) if vectors.ntotal else []
            manifest = replace(
                template, dimension=vectors.d, format_version=1, generation=gen, updated=now, files={},
                next_id=int(np.max(ids)) + 1 if len(ids) else 0,
            )  # fmt: skip
            counted = cls(path, manifest)
            counted._read_lines_format(gen)
            manifest.n_documents, manifest.n_chunks = len(counted.documents), len(counted.chunks)
            return manifest
        stores = {n: RecordStore(path / f"records.{n}.sqlite3") for n in numbers}
        dead: dict[int, set[str]] = {n: set() for n in numbers}
        for n in numbers:
            for target, doc_id in stores[n].deleted():
                if target in dead:
                    dead[target].add(doc_id)
        newest: dict[str, int] = {}
        for n in numbers:
            for doc_id in stores[n].ids():
                if doc_id in dead[n]:
                    continue
                if doc_id in newest:
                    dead[newest[doc_id]].add(doc_id)
                newest[doc_id] = n
        infos, files, top, dimension = [], {}, -1, template.dimension
        for n in numbers:
            vectors = faiss.read_index(str(path / f"vectors.{n}.faiss"), faiss.IO_FLAG_MMAP_IFC)
            dimension = vectors.d
            if vectors.ntotal:
                top = max(top, int(faiss.vector_to_array(faiss.downcast_index(vectors).id_map).max()))
            store = stores[n]
            deleted = sorted(dead[n])
            dead_chunks = sum(len(r.chunk_ids) for d in deleted if (r := store.document(d)) is not None)
            info = SegmentInfo(n, store.n_documents, store.n_chunks, deleted, dead_chunks)
            infos.append(info)
            for name in info.names(ann=(path / f"ann.{n}.faiss").is_file()):
                files[name] = fingerprint(path / name)
        return replace(
            template,
            dimension=dimension,
            format_version=FORMAT_VERSION,
            generation=numbers[-1],
            next_id=top + 1,
            n_documents=sum(i.documents - len(i.deleted) for i in infos),
            n_chunks=sum(i.live_chunks for i in infos),
            updated=now,
            files=files,
            segments=[asdict(i) for i in infos],
        )

    @classmethod
    def _read(cls, path: Path) -> ArticleIndex:
        damaged = f"index at {path} is damaged"
        fix = f"delete {path} and rebuild it with `rag index PATH...`"
        try:
            manifest = read_manifest(path)
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
            raise IndexDirError(f"{damaged}: {MANIFEST} is unreadable ({exc})", hint=fix) from exc
        if manifest.format_version not in READABLE_FORMATS:
            raise IndexDirError(
                f"index at {path} has format version {manifest.format_version}, this rag reads "
                f"{', '.join(map(str, READABLE_FORMATS))}",
                hint=fix,
            )
        try:
            recorded_sizes = {str(name): int(entry["bytes"]) for name, entry in dict(manifest.files).items()}
            infos = manifest.segment_infos()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IndexDirError(f"{damaged}: {MANIFEST} lists its files wrongly ({exc!r})", hint=fix) from exc
        for name, saved in recorded_sizes.items():
            size = (path / name).stat().st_size if (path / name).is_file() else None
            if size != saved:
                found = "missing" if size is None else f"{size} bytes"
                raise IndexDirError(
                    f"{damaged}: {name} is {found}, {saved} bytes were saved",
                    hint=f"restore {path} from a backup, or {fix}",
                )
        try:
            if manifest.format_version == 1:
                index = cls(path, manifest)
                legacy = faiss.read_index(str(path / f"vectors.{manifest.generation}.faiss"))
                index.fresh = legacy  # read whole into memory: the next save writes it as a segment
                index._read_lines_format(manifest.generation)
            else:
                index = cls(path, manifest, [Segment(path, info) for info in infos])
            index._saved_version = index.version
        except (OSError, RuntimeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise IndexDirError(f"{damaged}: {exc}", hint=fix) from exc
        problem = index._inconsistency()
        if problem is not None:
            raise IndexDirError(f"{damaged}: {problem}", hint=fix)
        return index

    def _read_lines_format(self, gen: int) -> None:
        """Format 1: every article and chunk read into memory, as changes over no saved file."""
        for row in _read_lines(self.path / f"documents.{gen}.jsonl"):
            record = DocumentRecord.from_json(row)
            self.documents[record.id] = record
        for row in _read_lines(self.path / f"chunks.{gen}.jsonl"):
            self.chunks.put(
                row["id"], row["doc_id"], row["ordinal"], row["text"], row["start"], row["end"], row["n_tokens"]
            )

    def _inconsistency(self, *, saved_counts: bool = True) -> str | None:
        """Why the loaded files do not describe one index, or None. Checked at load time because a mismatch
        otherwise surfaces much later: a vector id without a chunk is a KeyError in the middle of a search,
        and chunk ids a document does not list are never removed from FAISS when it is deleted. A save
        checks only what memory holds (`saved_counts` False): the segments are as they were loaded."""
        manifest = self.manifest
        if not isinstance(self.fresh, faiss.IndexIDMap2) or self.fresh.d != manifest.dimension:
            return f"the unsaved vectors are a {type(self.fresh).__name__} of dimension {self.fresh.d}"
        if self.fresh.ntotal != len(self.chunks.changes[1]):
            return f"{self.fresh.ntotal} unsaved vectors for {len(self.chunks.changes[1])} unsaved chunks"
        top = max([seg.file.high for seg in self.segments] + [int(self.fresh_ids().max(initial=-1))])
        if top >= manifest.next_id:
            return f"chunk id {top} is not below the next id to assign ({manifest.next_id})"
        if not saved_counts:
            return None
        for seg in self.segments:
            problem = _segment_inconsistency(seg, manifest.dimension)
            if problem is not None:
                return problem
        if (manifest.n_documents, manifest.n_chunks) != (len(self.documents), len(self.chunks)):
            return (
                f"{MANIFEST} counts {manifest.n_documents} documents and {manifest.n_chunks} chunks, "
                f"the files hold {len(self.documents)} and {len(self.chunks)}"
            )
        return None

    def check_model(self, embedding_model: str, precision: str) -> None:
        built = self.manifest
        if built.embedding_model != embedding_model:
            raise IndexDirError(
                f"index at {self.path} was built with embedding model {built.embedding_model!r}, "
                f"but the settings ask for {embedding_model!r}",
                hint=f"set RAG_EMBEDDING_MODEL={built.embedding_model} to use this index, "
                "or choose another RAG_INDEX_DIR to build a new one",
            )
        if built.embedding_precision != precision:
            backend = "onnx-int8" if built.embedding_precision == "int8" else "onnx (or torch)"
            raise IndexDirError(
                f"index at {self.path} holds {built.embedding_precision} vectors, but the settings' embedding "
                f"backend computes {precision} ones",
                hint=f"set RAG_EMBEDDING_BACKEND={backend} to use this index, "
                "or choose another RAG_INDEX_DIR to build a new one",
            )

    def plan(self, documents: Sequence[Document], run: RunSeen | None = None) -> tuple[list[Document], AddReport]:
        """Which documents need embedding: new ids and changed content only (`plan_additions`)."""
        stored = {doc.id: digest for doc in documents if (digest := self.documents.hash_of(doc.id)) is not None}
        return plan_additions(documents, run or RunSeen(), stored, Holders(self.documents))

    def add(self, doc: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Replace any previous version of the document with these chunks and vectors."""
        self.version += 1
        if doc.id in self.documents:
            self.remove(doc.id)
        ids = np.arange(self.manifest.next_id, self.manifest.next_id + len(chunks), dtype=np.int64)
        self.manifest.next_id += len(chunks)
        if len(chunks):
            self.fresh.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        self.documents[doc.id] = DocumentRecord(
            id=doc.id,
            title=doc.title,
            published=doc.published,
            url=doc.url,
            source=doc.source,
            content_hash=doc.content_hash,
            text=doc.text,
            chunk_ids=ids.tolist(),
            metadata=doc.metadata,
        )
        for chunk, chunk_id in zip(chunks, ids.tolist(), strict=True):
            self.chunks[chunk_id] = chunk

    def restore(self, record: DocumentRecord, rows: Sequence[ChunkRow], vectors: np.ndarray) -> None:
        """Hold an article as another index stored it, under the chunk ids its record names: an archive's
        search gathers its candidates from the partitions so, without chunking or hashing them again."""
        self.version += 1
        ids = np.asarray(record.chunk_ids, dtype=np.int64)
        if len(ids):
            self.fresh.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
            self.manifest.next_id = max(self.manifest.next_id, int(ids.max()) + 1)
        self.documents[record.id] = record
        for chunk_id, row in zip(ids.tolist(), rows, strict=True):
            self.chunks.restore(chunk_id, row)

    def remove(self, doc_id: str) -> DocumentRecord:
        """Forget the article: its unsaved vectors at once, a saved one's by a tombstone at the next save."""
        record = self.documents.pop(doc_id, None)
        if record is None:
            raise IndexDirError(
                f"no document {doc_id!r} in the index at {self.path}", hint="`rag info --docs` lists ids"
            )
        self.version += 1
        ids = np.asarray(record.chunk_ids, dtype=np.int64)
        unsaved = np.isin(ids, self.fresh_ids())
        if unsaved.any():
            self.fresh.remove_ids(ids[unsaved])
        self._dropped.update(ids[~unsaved].tolist())
        for chunk_id in record.chunk_ids:
            self.chunks.discard(chunk_id)
        return record

    def fresh_ids(self) -> np.ndarray:
        """The unsaved vectors' chunk ids, by position."""
        return faiss.vector_to_array(self.fresh.id_map) if self.fresh.ntotal else np.zeros(0, np.int64)

    def _parts(self) -> list[tuple[faiss.IndexIDMap2, IvfIndex | None, np.ndarray]]:
        """(exact vectors, IVF when it is to be used, dead chunk ids) of each segment, then of memory."""
        dropped = np.fromiter(self._dropped, np.int64, len(self._dropped)) if self._dropped else None
        parts = []
        for seg in self.segments:
            dead = seg.file.dead_chunks
            if dropped is not None:
                dead = np.union1d(dead, dropped[(dropped >= seg.file.low) & (dropped <= seg.file.high)])
            parts.append((seg.vectors, seg.ann if self._searches_ann(seg) else None, dead))
        parts.append((self.fresh, None, np.zeros(0, np.int64)))
        return [part for part in parts if part[0].ntotal]

    def dense_search(self, query: np.ndarray, n: int, *, allowed: np.ndarray | None, nprobe: int) -> np.ndarray:
        """Chunk ids of the n stored vectors nearest the query, nearest first, among the `allowed` chunk
        ids (all live ones when None). Each segment puts forward its n best; the IVFs' are ranked together
        by their codes' scores and the n best of them rescored with the exact vectors (`_rescored`), as one
        IVF's would be; then all are ranked by their exact scores."""
        if not self.chunks:
            return np.zeros(0, dtype=np.int64)
        query = query.reshape(1, -1).astype(np.float32)
        bitmap = None if allowed is None else _bitmap(allowed, self.manifest.next_id)
        parts = self._parts()
        found, approximate = [], []
        with _one_thread():
            lists = assignments([ivf for _, ivf, _ in parts if ivf is not None], query, nprobe)
            for vectors, ivf, dead in parts:
                selector = _selector(bitmap, dead)
                if ivf is None:
                    params = faiss.SearchParameters(sel=selector) if selector else None
                    scores, ids = vectors.search(query, n, params=params)
                    found.append((ids[0][ids[0] >= 0], scores[0][ids[0] >= 0]))
                else:
                    approximate.append(ivf.approximate(query, n, lists=lists[ivf.codebook], selector=selector))
        return _merged([*found, *self._rescored(query, approximate, n)], n)

    def _rescored(
        self, query: np.ndarray, approximate: list[tuple[np.ndarray, np.ndarray]], n: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The n best of the IVFs' candidates by their codes' scores, rescored with the exact vectors: n
        rows read from disk a question, however many segments put candidates forward."""
        if not approximate:
            return []
        return [rescored(query, _merged(approximate, n), self.vectors_of)]

    def dense_search_within(
        self, query: np.ndarray, n: int, *, keep: Callable[[np.ndarray], np.ndarray], share: float, nprobe: int
    ) -> np.ndarray | None:
        """`dense_search` among the chunk ids `keep` accepts (a mask over ids), about `share` of them, by
        filtering each IVF's own ranking rather than restricting it to a bitmap of every allowed id: at
        millions of chunks that bitmap (and the list of allowed ids it is made from) cost more than the
        search. A ranking is drawn deeper until it holds n accepted chunks or every chunk of the lists
        probed, so the chunks are the ones `dense_search` with `allowed` finds. None when no segment has
        an IVF (exact search with the bitmap is then the cheaper way)."""
        parts = self._parts()
        if not any(ivf is not None for _, ivf, _ in parts):
            return None
        query = query.reshape(1, -1).astype(np.float32)
        found: list[tuple[np.ndarray, np.ndarray]] = []
        approximate: list[tuple[np.ndarray, np.ndarray]] = []
        with _one_thread():
            lists = assignments([ivf for _, ivf, _ in parts if ivf is not None], query, nprobe)
            for vectors, ivf, dead in parts:
                total = max(vectors.ntotal, 1)
                draw = min(math.ceil(n / max(share, 1e-6) * 1.5), total)  # half as many again as the share lets through
                selector = _selector(None, dead)
                while True:
                    if ivf is None:
                        params = faiss.SearchParameters(sel=selector) if selector else None
                        scores, ranked = (one[0] for one in vectors.search(query, draw, params=params))
                        scores, ranked = scores[ranked >= 0], ranked[ranked >= 0]
                    else:
                        ranked, scores = ivf.approximate(query, draw, lists=lists[ivf.codebook], selector=selector)
                    accepted = keep(ranked)
                    kept = (ranked[accepted][:n], scores[accepted][:n])
                    if len(kept[0]) >= n or len(ranked) < draw or draw == total:
                        (found if ivf is None else approximate).append(kept)
                        break
                    draw = min(draw * 4, total)  # the question's neighbours lie mostly outside the dates
        return _merged([*found, *self._rescored(query, approximate, n)], n)

    def positions(self, chunk_ids: np.ndarray) -> np.ndarray:
        """The positions of these stored chunk ids (valid until the next add or remove): segment after
        segment, then memory, each in FAISS's order."""
        if self._id_order is None or self._id_order[0] != self.version:
            ids = np.concatenate([np.zeros(0, np.int64), *(seg.ids for seg in self.segments), self.fresh_ids()])
            self._id_order = (self.version, ids, np.argsort(ids, kind="stable"))
        _, ids, order = self._id_order
        found: np.ndarray = order[np.searchsorted(ids, np.asarray(chunk_ids, dtype=np.int64), sorter=order)]
        return found

    def vectors_at(self, positions: np.ndarray) -> np.ndarray:
        """The exact vectors at these positions (`positions`): a few rows of a segment with an IVF are read
        from its file (`VectorFile`), the rest from its mapping or from memory."""
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty((len(positions), self.manifest.dimension), dtype=np.float32)
        start = 0
        for seg in self.segments:
            end = start + seg.vectors.ntotal
            inside = (positions >= start) & (positions < end)
            if inside.any():
                out[inside] = seg.vectors_at(positions[inside] - start)
            start = end
        inside = positions >= start
        if inside.any():
            out[inside] = flat_matrix(self.fresh)[positions[inside] - start]
        return out

    def vectors_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        """The exact vectors of these stored chunk ids, in their order."""
        return self.vectors_at(self.positions(chunk_ids))

    def stored_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, matrix): every live vector and its chunk id, segment after segment. A copy: for tools and
        benchmarks that want them all, never for a search."""
        ids = self.chunks.ids()
        return ids, self.vectors_of(ids)

    def configure(
        self,
        ann_min_chunks: int | None,
        merge_factor: int = DEFAULT_MERGE_FACTOR,
        max_merged_chunks: int = DEFAULT_MAX_MERGED_CHUNKS,
        save_merge_chunks: int = DEFAULT_SAVE_MERGE_CHUNKS,
    ) -> None:
        """The settings a save and a search follow: IVFs once the index holds `ann_min_chunks` (None: exact
        search only, and the IVFs saved are not used), the merge policy (`rag.store.segments`) and the
        largest merge a save runs itself."""
        self.ann_min_chunks = ann_min_chunks
        self.merge_factor, self.max_merged_chunks = merge_factor, max_merged_chunks
        self.save_merge_chunks = save_merge_chunks

    def _searches_ann(self, seg: Segment) -> bool:
        """Its IVF is searched while the segment is at least half the threshold (a segment near the line
        does not lose and regain it), and never with IVFs turned off; a save drops one it rules out."""
        return seg.ann is not None and self.ann_min_chunks is not None and seg.info.chunks >= self.ann_min_chunks // 2

    def searched_ivfs(self) -> list[int]:
        """The segments whose IVF a search uses, by number."""
        return [seg.info.number for seg in self.segments if self._searches_ann(seg)]

    @property
    def ann_pending(self) -> bool:
        """A segment is past the threshold but has no IVF (saved before IVFs existed, or before the
        threshold was lowered): the next save builds it."""
        return any(self._wants_ann(seg) for seg in self.segments)

    def _wants_ann(self, seg: Segment) -> bool:
        return seg.ann is None and self._ivf_due(seg.info.chunks)

    def _ivf_due(self, chunks: int) -> bool:
        """Whether a segment of this many chunks gets an IVF: once the index holds `ann_min_chunks`, every
        segment of half that or more, so that the segments searched exactly stay a bounded few small
        ones (a merge level's worth: about 0.1 ms per 1,000 chunks a question) whatever the index's size."""
        threshold = self.ann_min_chunks
        return threshold is not None and len(self.chunks) >= threshold and chunks >= threshold // 2

    def save(self) -> None:
        """Write the changes as a new segment, lay the tombstones, and switch the manifest to it; then run
        the merges the policy asks for up to `save_merge_chunks` (larger ones wait for `merge`, which the
        pipeline calls once its saves are done), so a save costs what it adds. Refuses when another process
        saved since this index was loaded: writing now would silently discard that process's changes."""
        self.path.mkdir(parents=True, exist_ok=True)
        with _locked(self.path, exclusive=True, timeout=self.lock_timeout):
            self._check_unchanged_on_disk()
            problem = self._inconsistency(saved_counts=False)  # the counts are the save's to write
            if problem is not None:
                raise IndexDirError(
                    f"refusing to save the index at {self.path}: {problem}",
                    hint="nothing was written; the previous generation is intact. This is a bug: please report it",
                )
            gen = self.manifest.generation + 1
            infos = [replace(seg.info, deleted=list(seg.info.deleted)) for seg in self.segments]
            files = {name: entry for name, entry in self.manifest.files.items() if self.manifest.format_version > 1}
            gone, documents = self.documents.changes
            _, chunks = self.chunks.changes
            laid = self._tombstones(gone, infos)
            if documents or laid or self.manifest.format_version == 1:
                info = SegmentInfo(gen, len(documents), len(chunks))
                vectors = self.fresh
                self._write_segment(info, lambda p: RecordStore.write(p, [], documents, chunks, laid), vectors)
                infos.append(info)
                files.update(self._fingerprints(info))
            for seg in self.segments:  # an IVF the threshold now asks for, or rules out
                if seg.ann is not None and not self._searches_ann(seg):
                    files.pop(f"ann.{seg.info.number}.faiss", None)
                    seg.drop_ann()
                if self._wants_ann(seg):
                    log.info("building an IVF over segment %d (%d chunks)", seg.info.number, seg.info.chunks)
                    name = self._write_ann(seg.info.number, seg.matrix(), seg.ids)
                    files[name] = fingerprint(self.path / name)
            self._commit(gen, infos, files)
            if self._creating is not None:
                (self.path / _CREATING).unlink(missing_ok=True)
                self._creating.close()
                self._creating = None
        self.merge(largest=self.save_merge_chunks)

    def _check_unchanged_on_disk(self) -> None:
        on_disk = read_manifest(self.path).generation if self.exists(self.path) else 0
        if on_disk != self.manifest.generation:
            raise IndexDirError(
                f"the index at {self.path} was changed by another process since it was loaded",
                hint="nothing was written; run the command again to apply your change to the new index",
            )

    def _tombstones(self, gone: set[str], infos: list[SegmentInfo]) -> list[tuple[int, str]]:
        """Lay a tombstone on the segment holding each saved article that is gone (removed or replaced),
        in `infos`; the (segment, id) pairs laid, for the new segment's file to keep."""
        laid = []
        for doc_id in sorted(gone):
            for seg, info in zip(self.segments[::-1], infos[::-1], strict=True):
                if doc_id in seg.file.dead:
                    continue
                record = seg.store.document(doc_id)
                if record is not None:
                    info.deleted.append(doc_id)
                    info.dead_chunks += len(record.chunk_ids)
                    laid.append((info.number, doc_id))
                    break
        return laid

    def _write_segment(self, info: SegmentInfo, records: Callable[[Path], None], vectors: faiss.IndexIDMap2) -> None:
        """A segment's files, each written whole and renamed into place (not yet listed by a manifest)."""
        n = info.number
        durable.replace(self.path / f"vectors.{n}.faiss", lambda p: _write_faiss(vectors, p))
        durable.replace(self.path / f"records.{n}.sqlite3", records)
        if self._ivf_due(vectors.ntotal):
            log.info("building an IVF over %d chunks", vectors.ntotal)
            self._write_ann(n, flat_matrix(vectors), faiss.vector_to_array(vectors.id_map))
        try:
            save_terms(self.path, n, RecordStore(self.path / f"records.{n}.sqlite3"))
        except OSError as exc:  # derived: the first search counts them again
            log.warning("the term counts of segment %d were not saved: %s", n, exc)

    def _write_ann(self, number: int, matrix: np.ndarray, ids: np.ndarray) -> str:
        """Write a segment's IVF, on the codebook the index's IVFs share (`codebook_for`), or on a new one
        trained for the index's size; its file's name."""
        total = len(self.chunks)
        codebook = codebook_for(
            [seg.ann for seg in self.segments if seg.ann is not None and self._searches_ann(seg)], total
        )
        ivf = (
            codebook.holding(matrix, ids)
            if codebook is not None
            else IvfIndex.train(matrix, ids, lists=lists_for(total))
        )
        name = f"ann.{number}.faiss"
        durable.replace(self.path / name, lambda p: _write_faiss(ivf.ivf, p))
        return name

    def _fingerprints(self, info: SegmentInfo) -> dict[str, dict[str, Any]]:
        names = info.names(ann=(self.path / f"ann.{info.number}.faiss").is_file())
        return {name: fingerprint(self.path / name) for name in names}

    def _commit(self, gen: int, infos: list[SegmentInfo], files: dict[str, dict[str, Any]]) -> None:
        """Switch the manifest to these segments, open them, and delete the files of any it no longer lists."""
        live = {info.number for info in infos}
        files = {name: entry for name, entry in files.items() if _segment_of(name) in live}
        manifest = replace(
            self.manifest,
            generation=gen,
            format_version=FORMAT_VERSION,
            n_documents=sum(i.documents - len(i.deleted) for i in infos),
            n_chunks=sum(i.live_chunks for i in infos),
            updated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            files=files,
            segments=[asdict(i) for i in infos],
        )
        _write_manifest(self.path, manifest)
        self.manifest = manifest
        kept = {seg.info.number: seg for seg in self.segments}
        self.segments = [kept[i.number].with_info(i) if i.number in kept else Segment(self.path, i) for i in infos]
        self.fresh = faiss.IndexIDMap2(faiss.IndexFlatIP(manifest.dimension))
        self._dropped = set()
        self.documents.rebase(SegmentRecords([seg.file for seg in self.segments]) if self.segments else None)
        self.chunks.rebase()
        self.version += 1
        self._saved_version = self.version
        self._remove_stale(live)

    def merge(self, *, everything: bool = False, largest: int | None = None) -> int:
        """Merge segments as the policy asks (`everything`: into one, as far as `max_merged_chunks` allows;
        `largest`: only merges writing at most that many chunks), each merge its own switch of the
        manifest, so a crash in one loses nothing. How many merges ran. For a writer, after a save: memory
        holds no changes."""
        if self.unsaved:
            raise IndexDirError("cannot merge an index with unsaved changes", hint="save it first")
        done = 0
        while True:
            infos = [seg.info for seg in self.segments]
            if everything:
                plan = [list(range(len(infos)))] if len(infos) > 1 or any(i.deleted for i in infos) else []
            else:
                plan = merges(infos, self.merge_factor, self.max_merged_chunks)
            if not plan or (largest is not None and sum(infos[p].live_chunks for p in plan[0]) > largest):
                return done
            self._merge(plan[0])
            done += 1
            if everything:
                return done

    def _merge(self, positions: list[int]) -> None:
        chosen = [self.segments[p] for p in positions]
        with _locked(self.path, exclusive=True, timeout=self.lock_timeout):
            self._check_unchanged_on_disk()
            gen = self.manifest.generation + 1
            numbers = {seg.info.number for seg in chosen}
            live = {seg.info.number for seg in self.segments}
            carried = [
                (target, doc_id)
                for seg in chosen
                for target, doc_id in seg.store.deleted()
                if target in live and target not in numbers
            ]
            vectors = faiss.IndexIDMap2(faiss.IndexFlatIP(self.manifest.dimension))
            documents = chunks = 0
            for seg in chosen:
                keep = ~np.isin(seg.ids, seg.file.dead_chunks)
                if keep.any():
                    vectors.add_with_ids(np.ascontiguousarray(seg.matrix()[keep]), seg.ids[keep])
                documents += seg.info.documents - len(seg.info.deleted)
                chunks += seg.info.live_chunks
            info = SegmentInfo(gen, documents, chunks)
            log.info("merging segments %s into %d (%d chunks)", sorted(numbers), gen, chunks)
            sources = [(seg.store, seg.file.dead) for seg in chosen]
            self._write_segment(info, lambda p: RecordStore.write(p, sources, [], [], carried), vectors)
            infos = [seg.info for seg in self.segments if seg.info.number not in numbers]
            infos.insert(positions[0], info)
            files = dict(self.manifest.files)
            files.update(self._fingerprints(info))
            self._commit(gen, infos, files)

    def clear_torn(self) -> None:
        """Delete what a save or merge stopped halfway left (files of segments the manifest never listed):
        the next save would, but a run with nothing to save must leave the directory clean too. For a
        writer, which holds `.write`; readers never open files a manifest does not list."""
        with _locked(self.path, exclusive=True, timeout=self.lock_timeout):
            if read_manifest(self.path).generation == self.manifest.generation:
                removed = self._remove_stale({seg.info.number for seg in self.segments})
                if removed:
                    log.warning("removed %d files left in %s by a save that did not finish", removed, self.path)

    def _remove_stale(self, live: set[int]) -> int:
        """Delete data files (and torn `.tmp` files) of every segment but the `live` ones, with format 2's
        BM25 files; how many. Only names this class writes are matched, `<kind>.<number>.<ext>[.tmp]`: the
        directory may hold files that are not ours, and a loose match such as `documents.backup.jsonl`
        must never be deleted."""
        removed = 0
        for file in self.path.iterdir():
            if file.is_dir():
                match = _DERIVED_DIR.fullmatch(file.name)
                if match is not None and (file.name.startswith("bm25.") or int(match.group("gen")) not in live):
                    shutil.rmtree(file, ignore_errors=True)
                continue
            match = _DATA_FILE.fullmatch(file.name)
            dropped_ivf = file.name.startswith("ann.") and file.name not in self.manifest.files
            if match is not None and (int(match.group("gen")) not in live or file.name.endswith(".tmp") or dropped_ivf):
                file.unlink(missing_ok=True)
                removed += 1
        return removed

    def size_on_disk(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


def _merged(found: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """The n best of the segments' candidates (ids and exact scores, each best first) by exact score: a
    lone segment's order is kept as it is, and ties between segments go to the older."""
    if len(found) == 1:
        return found[0][0][:n]
    ids = np.concatenate([np.zeros(0, np.int64), *(ids for ids, _ in found)])
    scores = np.concatenate([np.zeros(0, np.float32), *(scores for _, scores in found)])
    merged: np.ndarray = ids[np.argsort(-scores, kind="stable")[:n]]
    return merged


def _segment_inconsistency(seg: Segment, dimension: int) -> str | None:
    """Why a segment's files do not describe one segment (`ArticleIndex._inconsistency`), or None."""
    n, vectors = seg.info.number, seg.vectors
    if not isinstance(vectors, faiss.IndexIDMap2):
        return f"the vectors of segment {n} are a {type(vectors).__name__}, not an IndexIDMap2"
    if vectors.d != dimension:
        return f"the vectors of segment {n} have dimension {vectors.d}, not {dimension}"
    if vectors.ntotal != seg.store.n_chunks:
        return f"segment {n} holds {vectors.ntotal} vectors for {seg.store.n_chunks} chunks"
    if seg.ann is not None and (seg.ann.ivf.ntotal, seg.ann.ivf.d) != (vectors.ntotal, vectors.d):
        return f"the IVF of segment {n} holds {seg.ann.ivf.ntotal} vectors for {vectors.ntotal} exact ones"
    if (seg.store.n_documents, seg.store.n_chunks) != (seg.info.documents, seg.info.chunks):
        return (
            f"{MANIFEST} counts {seg.info.documents} documents and {seg.info.chunks} chunks in segment {n}, "
            f"its file holds {seg.store.n_documents} and {seg.store.n_chunks}"
        )
    chunk_ids = seg.store.chunk_columns()[:, 0]  # sorted arrays: a set of Python ints per chunk would not scale
    if not np.array_equal(np.sort(seg.ids), chunk_ids):
        return f"the vector ids of segment {n} do not match its chunk ids"
    if not np.array_equal(np.sort(seg.store.summaries().chunk_ids), chunk_ids):
        return f"the documents' chunk lists of segment {n} do not match its chunks"
    return None


def _segment_of(name: str) -> int | None:
    match = _DATA_FILE.fullmatch(name)
    return int(match.group("gen")) if match else None


def _selector(bitmap: np.ndarray | None, dead: np.ndarray) -> faiss.IDSelector | None:
    """Only the allowed ids (a bitmap, `_bitmap`), and never a dead one."""
    allowed = None if bitmap is None else faiss.IDSelectorBitmap(bitmap)  # keeps the bitmap alive
    if not len(dead):
        return allowed
    alive = faiss.IDSelectorNot(faiss.IDSelectorBatch(dead))  # each selector keeps the ones it wraps
    return alive if allowed is None else faiss.IDSelectorAnd(allowed, alive)
