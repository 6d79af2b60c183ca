"""Segments: an index is a list of immutable segments named by a small manifest (`rag.store.index`).

A save writes only a new segment — the articles, chunks and vectors it adds, their term counts, an IVF
if it is large — and the manifest that lists it; an article removed or replaced in an older segment is a
tombstone on that segment, listed in the manifest, until a merge rewrites the segment without it. The
cost of a save is therefore what was added, not the size of the index (a whole new generation took
11.5 s and 622 MB to add 5 articles to RealTime QA's 50,083 chunks).

The merge policy is Lucene's log-merge: a segment's level is how many powers of `merge_factor` its live
chunks are above `_FLOOR`; when `merge_factor` segments share a level they are merged into one, so the
number of segments stays about `merge_factor` per level (a few dozen at ten million chunks) and each chunk
is rewritten about once per level. No merge produces more than `max_merged_chunks`, which bounds the
memory a merge needs.

On disk a segment is `vectors.<n>.faiss`, `records.<n>.sqlite3`, optionally `ann.<n>.faiss`, and its term
counts under `terms.<n>/` (derived: counted again when missing or damaged). `n` is the generation that
wrote it, so an index saved before segments existed is one segment, numbered by its generation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import faiss
import numpy as np

from rag.store.ann import IvfIndex
from rag.store.records import RecordStore, SegmentFile, article_text, chunk_texts
from rag.store.sparse import TermCounts, damage, outdated
from rag.store.vectors import VectorFile, flat_matrix

log = logging.getLogger(__name__)
Unit = Literal["chunk", "article"]
UNITS: tuple[Unit, ...] = ("chunk", "article")
_FLOOR = 1_000
"""Segments below this many live chunks share the lowest level: tiny saves merge as soon as ten gather."""


@dataclass
class SegmentInfo:
    """A segment as the manifest lists it."""

    number: int
    documents: int
    """Rows in its records file, dead ones included."""
    chunks: int
    deleted: list[str] = field(default_factory=list)
    """Tombstones: articles whose row here no longer counts."""
    dead_chunks: int = 0
    """How many of its chunks belong to those articles."""

    @property
    def live_chunks(self) -> int:
        return self.chunks - self.dead_chunks

    def names(self, *, ann: bool) -> list[str]:
        """Its data files (the IVF's only when it has one)."""
        n = self.number
        return [f"vectors.{n}.faiss", f"records.{n}.sqlite3", *([f"ann.{n}.faiss"] if ann else [])]


class Segment:
    """A saved segment, opened for reading: its vectors memory-mapped, its records read by key, its IVF
    (if any) in memory, its term counts mapped when a keyword search first needs them."""

    def __init__(self, directory: Path, info: SegmentInfo) -> None:
        self.directory, self.info = directory, info
        n = info.number
        self.vectors: faiss.IndexIDMap2 = faiss.read_index(
            str(directory / f"vectors.{n}.faiss"), faiss.IO_FLAG_MMAP_IFC
        )
        self.store = RecordStore(directory / f"records.{n}.sqlite3")
        ann = directory / f"ann.{n}.faiss"
        self.ann = IvfIndex(faiss.read_index(str(ann))) if ann.is_file() else None
        self.rows = VectorFile.of(directory / f"vectors.{n}.faiss", self.vectors) if self.ann is not None else None
        """With an IVF, the exact rows are read from the file rather than the mapping (`VectorFile`)."""
        self.ids: np.ndarray = (
            faiss.vector_to_array(self.vectors.id_map) if self.vectors.ntotal else np.zeros(0, np.int64)
        )
        """Chunk ids by FAISS position."""
        self.file = SegmentFile(self.store, frozenset(info.deleted), self._dead_chunks(), *self._bounds())
        self._terms: dict[Unit, TermCounts] = {}

    def with_info(self, info: SegmentInfo) -> Segment:
        """The same files with the manifest's new entry (more tombstones): nothing is opened again."""
        if info != self.info:
            self.info = info
            self.file = SegmentFile(self.store, frozenset(info.deleted), self._dead_chunks(), *self._bounds())
        return self

    def _dead_chunks(self) -> np.ndarray:
        ids = [np.asarray(r.chunk_ids, np.int64) for d in self.info.deleted if (r := self.store.document(d))]
        return np.sort(np.concatenate(ids)) if ids else np.zeros(0, np.int64)

    def _bounds(self) -> tuple[int, int]:
        return (int(self.ids.min()), int(self.ids.max())) if len(self.ids) else (0, -1)

    def drop_ann(self) -> None:
        """Stop using the IVF (the threshold now rules it out); the save that says so deletes its file."""
        self.ann, self.rows = None, None

    def matrix(self) -> np.ndarray:
        """Every vector by FAISS position: a view of the mapped file, never a copy."""
        return flat_matrix(self.vectors)

    def vectors_at(self, positions: np.ndarray) -> np.ndarray:
        if self.rows is not None:
            return self.rows.at(positions)
        rows: np.ndarray = self.matrix()[positions]
        return rows

    def terms(self, unit: Unit) -> TermCounts:
        """The segment's term counts for articles or chunks: loaded from `terms.<n>/`, or counted from
        its records (and saved there, best effort) when missing, damaged or counted by another version."""
        found = self._terms.get(unit)
        if found is None:
            found = self._terms[unit] = self._load_terms(unit)
        return found

    def _load_terms(self, unit: Unit) -> TermCounts:
        directory = terms_dir(self.directory, self.info.number) / unit
        if directory.is_dir() and (old := outdated(directory)) is not None:
            log.info("counting the BM25 term counts of %s again: counted by another version (%s)", directory, old)
        elif directory.is_dir():
            problem = damage(directory)
            if problem is None:
                try:
                    return TermCounts.load(directory)
                except (OSError, ValueError, KeyError) as exc:
                    problem = str(exc)
            log.warning("rebuilding the BM25 term counts of %s: the saved ones are damaged (%s)", directory, problem)
        counts = count_terms(self.store, unit)
        try:
            counts.save(directory)
        except OSError as exc:  # a read-only medium: searched all the same
            log.debug("term counts not saved to %s: %s", directory, exc)
            return counts
        # Mapped from the file just written rather than kept as counted: counting segment after segment
        # then holds one segment's counts in memory at a time, not every segment's.
        return TermCounts.load(directory)

    def terms_problem(self, unit: Unit) -> str | None:
        """What is wrong with the saved counts (`rag doctor`), or None when they are sound, absent or counted by
        another version (then they are simply counted at their next use)."""
        directory = terms_dir(self.directory, self.info.number) / unit
        problem = damage(directory) if directory.is_dir() and outdated(directory) is None else None
        return None if problem is None else f"{directory} is damaged ({problem})"

    def recount(self, unit: Unit) -> None:
        """Count the terms again from the records, replacing saved counts that failed while scoring."""
        self._terms[unit] = counts = count_terms(self.store, unit)
        try:
            counts.save(terms_dir(self.directory, self.info.number) / unit)
        except OSError as exc:
            log.debug("term counts not saved for segment %d: %s", self.info.number, exc)


def terms_dir(directory: Path, number: int) -> Path:
    return directory / f"terms.{number}"


def count_terms(store: RecordStore, unit: Unit) -> TermCounts:
    """Term counts of a records file's articles, or of their chunks (articles in row order, each one's
    chunks in its order), streamed: the file's texts are never all in memory."""
    if unit == "article":
        return TermCounts.build(article_text(record) for record in store.records())
    spans = store.chunk_columns("start", "end")
    return TermCounts.build(text for record in store.records() for text in chunk_texts(record, spans))


def save_terms(directory: Path, number: int, store: RecordStore) -> None:
    """Count a new segment's terms as it is written, so its first search does not."""
    for unit in UNITS:
        count_terms(store, unit).save(terms_dir(directory, number) / unit)


def level(chunks: int, factor: int) -> int:
    return 0 if chunks < _FLOOR * factor else int(math.log(chunks / _FLOOR, factor))


def merges(infos: list[SegmentInfo], factor: int, largest: int) -> list[list[int]]:
    """The next merge by the policy (the module's docstring), as positions in `infos`; [] when none is due.
    The lowest level with `factor` segments merges its oldest `factor` first, leaving out any whose
    result would pass `largest` chunks."""
    by_level: dict[int, list[int]] = {}
    for position, info in enumerate(infos):
        if info.live_chunks < largest:
            by_level.setdefault(level(info.live_chunks, factor), []).append(position)
    for _, positions in sorted(by_level.items()):
        chosen: list[int] = []
        total = 0
        for position in positions:
            if total + infos[position].live_chunks <= largest:
                chosen.append(position)
                total += infos[position].live_chunks
            if len(chosen) == factor:
                return [chosen]
    return []
