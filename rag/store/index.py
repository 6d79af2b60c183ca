"""Index: FAISS vectors with explicit int64 ids, a chunk and document store, and a manifest.

On-disk layout of an index directory:

    manifest.json            names the live generation and records model, dimension, chunking, counts
    vectors.<gen>.faiss      IndexIDMap2 over an exact inner-product index: memory-mapped by readers, and
                             with an IVF read by row (`rag.store.vectors`)
    records.<gen>.sqlite3    the articles (metadata, hash, text, chunk ids) and chunks (doc id, span), read
                             by key (`rag.store.records`)
    ann.<gen>.faiss          only past `ann_min_chunks`: IVF-SQ8 over the same chunk ids (`rag.store.ann`)

A search process therefore holds in RAM the IVF's 8-bit codes and a few arrays per chunk, not the texts
or the exact vectors: the pages it reads of those are the operating system's cache, shared between
processes and given back under pressure. (Format 1 kept `documents.<gen>.jsonl` and `chunks.<gen>.jsonl`
instead of the records file, and is still read.)

A save writes a new generation's files first and then replaces `manifest.json` atomically; only after
that are older generations deleted. A crash at any point therefore leaves a manifest that names a
complete set of files, which is the whole crash-safety argument.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
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
from rag.errors import IndexDirError
from rag.store.ann import IvfIndex, rescored
from rag.store.records import ChunkRow, ChunkTable, DocumentRecord, Documents, Holders, RecordStore
from rag.store.vectors import VectorFile
from rag.types import Chunk, Document

FORMAT_VERSION = 2
"""2: articles and chunks in an SQLite file read by key (`rag.store.records`); 1 held them in JSON lines, read
whole into memory. Both are read; the next save writes 2."""
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
log = logging.getLogger(__name__)
_DERIVED_DIR = re.compile(r"bm25\.(?P<gen>\d+)")
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
    """The generation's files with their size and sha256, as written: every load checks the sizes (a
    stat each), `rag doctor` the checksums (flipped bytes, edited or reordered lines)."""


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


def fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def verify(path: Path, *, lock_timeout: float | None = None) -> tuple[ArticleIndex | None, list[str]]:
    """The index at `path` (None when it does not load) and what is wrong with it, checked the slow way
    (`rag doctor`): it loads, and every file of its generation matches the checksum recorded when it was
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
    """The persistent corpus. Mutations stay in memory until `save()`."""

    def __init__(self, path: Path, manifest: Manifest, vectors: faiss.IndexIDMap2) -> None:
        self.path = path
        self.manifest = manifest
        self.vectors = vectors
        self.documents = Documents()
        self.chunks = ChunkTable(self.documents)
        self.version = 0
        """Bumped by every add and remove, so views derived from the contents (BM25) know to rebuild."""
        self._saved_version: int | None = None
        """`version` as of the last load or save; None for an index never saved."""
        self.ann: IvfIndex | None = None
        self.ann_min_chunks: int | None = None
        """Set by `configure_ann` from `Settings.ann_min_chunks`; None: exact search only."""
        self.lock_timeout = LOCK_TIMEOUT
        self._creating: Any = None
        """While a new index is built, its `.creating` marker, held locked until the first save."""
        self._mapped = False
        """The vectors are a saved generation's file, mapped read-only (`_own_vectors`)."""
        self._vector_file: VectorFile | None = None
        """With an IVF, the saved vectors' rows are read from the file rather than the mapping (`VectorFile`)."""
        self._id_order: tuple[int, np.ndarray, np.ndarray] | None = None
        """(version, FAISS's chunk ids by position, the positions sorted by id), for `positions`."""

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
        index = cls(path, manifest, faiss.IndexIDMap2(faiss.IndexFlatIP(manifest.dimension)))
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
        """Write the lost manifest of the newest whole generation on disk and load it (`rag doctor
        --repair`). The files say what a manifest records, but for how the vectors were made: that comes
        from `template` (the settings), and the caller checks it against a stored vector. Nothing is
        deleted; a generation that does not load as one index leaves the directory as it was."""
        if cls.exists(path):
            raise IndexDirError(f"{path} has its {MANIFEST}: there is nothing to recover")
        saved = saved_generations(path)
        if not saved:
            raise IndexDirError(
                f"{path} has no {MANIFEST} and no whole generation of index files to rebuild it from",
                hint="restore the directory from a backup, or rebuild it with `rag index PATH...`",
            )
        gen = saved[-1].generation
        with _locked(path, exclusive=True, timeout=lock_timeout):
            try:
                vectors = faiss.read_index(str(path / f"vectors.{gen}.faiss"), faiss.IO_FLAG_MMAP_IFC)
                ids = faiss.vector_to_array(faiss.downcast_index(vectors).id_map) if vectors.ntotal else []
            except (RuntimeError, AttributeError) as exc:
                raise IndexDirError(f"cannot recover {path}: vectors.{gen}.faiss is unreadable ({exc})") from exc
            records = f"records.{gen}.sqlite3"
            written = [
                name for name in (f"vectors.{gen}.faiss", records, f"ann.{gen}.faiss") if (path / name).is_file()
            ]
            manifest = replace(
                template,
                dimension=vectors.d,
                format_version=FORMAT_VERSION if (path / records).is_file() else 1,
                generation=gen,
                next_id=int(np.max(ids)) + 1 if len(ids) else 0,
                updated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                files={name: fingerprint(path / name) for name in written} if (path / records).is_file() else {},
            )
            counted = cls(path, manifest, vectors)
            if manifest.format_version == 1:
                counted._read_lines_format(gen)
            else:
                counted.documents.rebase(RecordStore(path / records))
            manifest.n_documents, manifest.n_chunks = len(counted.documents), len(counted.chunks)
            _write_manifest(path, manifest)
            try:
                index = cls._read(path)
            except IndexDirError:
                (path / MANIFEST).unlink()
                raise
        index.lock_timeout = lock_timeout
        return index

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
                f"{' and '.join(map(str, READABLE_FORMATS))}",
                hint=fix,
            )
        gen = manifest.generation
        try:
            recorded_sizes = {str(name): int(entry["bytes"]) for name, entry in dict(manifest.files).items()}
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
            # Mapped, the vectors are file pages the search reads, not memory this process owns; a writer
            # takes its own copy before its first change (`_own_vectors`).
            vectors = faiss.read_index(str(path / f"vectors.{gen}.faiss"), faiss.IO_FLAG_MMAP_IFC)
            index = cls(path, manifest, vectors)
            index._mapped = True
            ann = path / f"ann.{gen}.faiss"
            if ann.is_file():
                index.ann = IvfIndex(faiss.read_index(str(ann)))
                index._vector_file = VectorFile.of(path / f"vectors.{gen}.faiss", vectors)
            if manifest.format_version == 1:
                index._read_lines_format(gen)
            else:
                index.documents.rebase(RecordStore(path / f"records.{gen}.sqlite3"))
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
        and chunk ids a document does not list are never removed from FAISS when it is deleted."""
        vectors, manifest = self.vectors, self.manifest
        if not isinstance(vectors, faiss.IndexIDMap2):
            return f"the vectors file holds a {type(vectors).__name__}, not an IndexIDMap2"
        if vectors.ntotal != len(self.chunks) or vectors.d != manifest.dimension:
            return f"{vectors.ntotal} vectors of dimension {vectors.d} for {len(self.chunks)} chunks"
        if self.ann is not None and (self.ann.ivf.ntotal, self.ann.ivf.d) != (vectors.ntotal, vectors.d):
            return f"the IVF holds {self.ann.ivf.ntotal} vectors for {vectors.ntotal} exact ones"
        if saved_counts and (manifest.n_documents, manifest.n_chunks) != (len(self.documents), len(self.chunks)):
            return (
                f"{MANIFEST} counts {manifest.n_documents} documents and {manifest.n_chunks} chunks, "
                f"the files hold {len(self.documents)} and {len(self.chunks)}"
            )
        chunk_ids = self.chunks.ids()  # sorted arrays: a set of Python ints per chunk would not scale
        if len(chunk_ids) and chunk_ids[-1] >= manifest.next_id:
            return f"chunk id {chunk_ids[-1]} is not below the next id to assign ({manifest.next_id})"
        if not np.array_equal(np.sort(faiss.vector_to_array(vectors.id_map)), chunk_ids):
            return "the vector ids do not match the chunk ids"
        listed = [summary.chunk_ids for summary in self.documents.summaries()]
        if not np.array_equal(np.sort(np.concatenate(listed)) if listed else chunk_ids[:0], chunk_ids):
            return "the documents' chunk lists do not match the chunks"
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
        self._own_vectors()
        if doc.id in self.documents:
            self.remove(doc.id)
        ids = np.arange(self.manifest.next_id, self.manifest.next_id + len(chunks), dtype=np.int64)
        self.manifest.next_id += len(chunks)
        if len(chunks):
            self.vectors.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
            if self.ann is not None:
                self.ann.add(vectors, ids)
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
        self._own_vectors()
        ids = np.asarray(record.chunk_ids, dtype=np.int64)
        if len(ids):
            self.vectors.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
            self.manifest.next_id = max(self.manifest.next_id, int(ids.max()) + 1)
        self.documents[record.id] = record
        for chunk_id, row in zip(ids.tolist(), rows, strict=True):
            self.chunks.restore(chunk_id, row)

    def remove(self, doc_id: str) -> DocumentRecord:
        record = self.documents.pop(doc_id, None)
        if record is None:
            raise IndexDirError(
                f"no document {doc_id!r} in the index at {self.path}", hint="`rag info --docs` lists ids"
            )
        self.version += 1
        self._own_vectors()
        if record.chunk_ids:
            self.vectors.remove_ids(np.asarray(record.chunk_ids, dtype=np.int64))
            if self.ann is not None:
                self.ann.remove(np.asarray(record.chunk_ids, dtype=np.int64))
        for chunk_id in record.chunk_ids:
            self.chunks.discard(chunk_id)
        return record

    def _own_vectors(self) -> None:
        """Take a private copy of mapped vectors before the first change: FAISS cannot grow or shrink a
        mapped file (it aborts the process), and the file belongs to a saved generation anyway."""
        if not self._mapped:
            return
        ids, matrix = self.stored_vectors()
        owned = faiss.IndexIDMap2(faiss.IndexFlatIP(self.manifest.dimension))
        if len(ids):
            owned.add_with_ids(np.ascontiguousarray(matrix), ids)
        self.vectors, self._mapped, self._vector_file = owned, False, None

    def dense_search(self, query: np.ndarray, n: int, *, allowed: np.ndarray | None, nprobe: int) -> np.ndarray:
        """Chunk ids of the n stored vectors nearest the query, nearest first, among the `allowed` chunk
        ids (all when None). With an IVF, its candidates are rescored with the exact vectors."""
        if not self.chunks:
            return np.zeros(0, dtype=np.int64)
        query = query.reshape(1, -1).astype(np.float32)
        bitmap = None if allowed is None else _bitmap(allowed, self.manifest.next_id)
        selector = None if bitmap is None else faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        with _one_thread():
            if self.ann is None:
                params = faiss.SearchParameters(sel=selector) if selector else None
                _, ids = self.vectors.search(query, n, params=params)
                found: np.ndarray = ids[0][ids[0] >= 0]
                return found
            return self.ann.search(query, n, nprobe=nprobe, selector=selector, exact=self.vectors_of)

    def dense_search_within(
        self, query: np.ndarray, n: int, *, keep: Callable[[np.ndarray], np.ndarray], share: float, nprobe: int
    ) -> np.ndarray | None:
        """`dense_search` among the chunk ids `keep` accepts (a mask over ids), about `share` of them, by
        filtering the IVF's own ranking rather than restricting it to a bitmap of every allowed id: at
        millions of chunks that bitmap (and the list of allowed ids it is made from) cost more than the
        search. The ranking is drawn deeper until it holds n accepted chunks or every chunk of the lists
        probed, so the chunks are the ones `dense_search` with `allowed` finds. None without an IVF."""
        if self.ann is None:
            return None
        total = max(self.ann.ivf.ntotal, 1)
        draw = min(math.ceil(n / max(share, 1e-6) * 1.5), total)  # half as many again as the share lets through
        with _one_thread():
            while True:
                found = self.ann.approximate(query, draw, nprobe=nprobe, selector=None)
                kept = found[keep(found)]
                if len(kept) >= n or len(found) < draw or draw == total:
                    return rescored(query, kept[:n], self.vectors_of)
                draw = min(draw * 4, total)  # the question's neighbours lie mostly outside the dates

    def derived_dir(self, name: str) -> Path | None:
        """Where data derived from the saved generation (BM25) may be kept, so later processes load it
        instead of rebuilding it; None while memory holds changes not yet saved. The next save deletes it
        with the rest of the old generation."""
        if self.unsaved:
            return None
        return self.path / f"{name}.{self.manifest.generation}"

    def saved_checksum(self) -> str | None:
        """The recorded sha256s of the saved generation's documents and chunks: names its texts without
        reading them (derived data is keyed by it). None for an index saved before checksums were kept."""
        gen = self.manifest.generation
        names = (
            [f"records.{gen}.sqlite3"]
            if self.manifest.format_version > 1
            else [f"{kind}.{gen}.jsonl" for kind in ("documents", "chunks")]
        )
        sums = [self.manifest.files.get(name, {}).get("sha256") for name in names]
        return None if None in sums else ":".join([str(gen), *map(str, sums)])

    def positions(self, chunk_ids: np.ndarray) -> np.ndarray:
        """The FAISS positions of these stored chunk ids (valid until the next add or remove)."""
        if self._id_order is None or self._id_order[0] != self.version:
            ids = faiss.vector_to_array(self.vectors.id_map)
            self._id_order = (self.version, ids, np.argsort(ids, kind="stable"))
        _, ids, order = self._id_order
        found: np.ndarray = order[np.searchsorted(ids, np.asarray(chunk_ids, dtype=np.int64), sorter=order)]
        return found

    def vectors_at(self, positions: np.ndarray) -> np.ndarray:
        """The exact vectors at these FAISS positions: a few rows of a large index are read from its
        file (`VectorFile`), and the rest from FAISS's memory or mapping."""
        if self._vector_file is not None:
            return self._vector_file.at(positions)
        rows: np.ndarray = self._matrix()[positions]
        return rows

    def vectors_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        """The exact vectors of these stored chunk ids, in their order."""
        return self.vectors_at(self.positions(chunk_ids))

    def stored_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, matrix): every stored vector and its chunk id, in FAISS's internal order. For the exact
        flat index the matrix is a view of FAISS's own memory, not a copy: the vectors are the largest
        part of a loaded index, and keeping them twice would double it. The view is valid until the
        next add or remove (`version` changes)."""
        return faiss.vector_to_array(self.vectors.id_map), self._matrix()

    def _matrix(self) -> np.ndarray:
        """Every stored vector by FAISS position (`stored_vectors`), without copying out the ids: a search
        reads rows of it per article."""
        inner = faiss.downcast_index(self.vectors.index)
        n, d = inner.ntotal, inner.d
        if isinstance(inner, faiss.IndexFlat) and n:
            matrix: np.ndarray = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)
            return matrix
        return inner.reconstruct_n(0, n) if n else np.zeros((0, d), dtype=np.float32)

    def configure_ann(self, min_chunks: int | None) -> None:
        """Set the threshold, and stop using an IVF it rules out (well below it, or turned off) at once;
        building or retraining one waits for `save()`, the writer's job."""
        self.ann_min_chunks = min_chunks
        if min_chunks is None or len(self.chunks) < min_chunks // 2:
            self.ann = None

    @property
    def ann_pending(self) -> bool:
        """The corpus is past the threshold but has no IVF yet (built before IVFs existed, or before the
        threshold was lowered): the next save builds it."""
        return self.ann is None and self.ann_min_chunks is not None and len(self.chunks) >= self.ann_min_chunks

    def _size_ann(self) -> None:
        """Build the IVF once the corpus reaches `ann_min_chunks`, retrain it when the corpus has outgrown
        its lists, and drop it when deletes take the corpus well below the threshold (half, so that
        a corpus near the line does not train on every save)."""
        self.configure_ann(self.ann_min_chunks)
        n = len(self.chunks)
        if self.ann_pending or (self.ann is not None and self.ann.outgrown(n)):
            ids, matrix = self.stored_vectors()
            log.info("training an IVF over %d chunks", n)
            self.ann = IvfIndex.train(matrix, ids)

    def save(self) -> None:
        """Write the next generation, then switch the manifest to it. Refuses when another process saved
        since this index was loaded: writing now would silently discard that process's changes."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._size_ann()
        with _locked(self.path, exclusive=True, timeout=self.lock_timeout):
            on_disk = read_manifest(self.path).generation if self.exists(self.path) else 0
            if on_disk != self.manifest.generation:
                raise IndexDirError(
                    f"the index at {self.path} was changed by another process since it was loaded",
                    hint="nothing was written; run the command again to apply your change to the new index",
                )
            problem = self._inconsistency(saved_counts=False)  # the counts are the save's to write
            if problem is not None:
                raise IndexDirError(
                    f"refusing to save the index at {self.path}: {problem}",
                    hint="nothing was written; the previous generation is intact. This is a bug: please report it",
                )
            gen = self.manifest.generation + 1
            durable.replace(self.path / f"vectors.{gen}.faiss", lambda p: _write_faiss(self.vectors, p))
            ann = self.ann
            if ann is not None:
                durable.replace(self.path / f"ann.{gen}.faiss", lambda p: _write_faiss(ann.ivf, p))
            gone_documents, documents = self.documents.changes
            gone_chunks, chunks = self.chunks.changes
            records = self.path / f"records.{gen}.sqlite3"
            durable.replace(
                records,
                lambda p: RecordStore.write(p, self.documents.base, gone_documents, gone_chunks, documents, chunks),
            )
            written = [f"vectors.{gen}.faiss", f"records.{gen}.sqlite3"]
            if ann is not None:
                written.append(f"ann.{gen}.faiss")
            manifest = replace(
                self.manifest,
                generation=gen,
                format_version=FORMAT_VERSION,
                n_documents=len(self.documents),
                n_chunks=len(self.chunks),
                updated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                files={name: fingerprint(self.path / name) for name in written},
            )
            _write_manifest(self.path, manifest)
            self.manifest = manifest
            self.documents.rebase(RecordStore(records))
            self.chunks.rebase()
            self._saved_version = self.version
            self._remove_stale(gen)
            if self._creating is not None:
                (self.path / _CREATING).unlink(missing_ok=True)
                self._creating.close()
                self._creating = None

    def clear_torn(self) -> None:
        """Delete what a save stopped halfway left (files of a generation the manifest never switched to):
        the next save would, but a run with nothing to save must leave the directory clean too. For a
        writer, which holds `.write`; readers never open another generation's files."""
        with _locked(self.path, exclusive=True, timeout=self.lock_timeout):
            if read_manifest(self.path).generation == self.manifest.generation:
                removed = self._remove_stale(self.manifest.generation)
                if removed:
                    log.warning("removed %d files left in %s by a save that did not finish", removed, self.path)

    def _remove_stale(self, live: int) -> int:
        """Delete data files (and torn `.tmp` files) of every generation but `live`; how many. Only names
        this class writes are matched, `<kind>.<number>.<ext>[.tmp]`: the directory may hold files that are
        not ours, and a loose match such as `documents.backup.jsonl` must never be deleted."""
        removed = 0
        for file in self.path.iterdir():
            if file.is_dir():
                match = _DERIVED_DIR.fullmatch(file.name)
                if match is not None and int(match.group("gen")) != live:
                    shutil.rmtree(file, ignore_errors=True)
                continue
            match = _DATA_FILE.fullmatch(file.name)
            if match is not None and int(match.group("gen")) != live:
                file.unlink(missing_ok=True)
                removed += 1
        return removed

    def size_on_disk(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
