"""Exact vectors read a row at a time from a saved generation's file, for indexes an IVF searches.

With an IVF, a question needs the exact vectors of its 100 or so candidates and of the articles it shows,
never all of them. Memory-mapping the file served those reads, but the kernel maps the already-cached
neighbours of every page a process touches (fault-around, 64 KB), so the mapped pages of a search process
grew to the whole file: 1.5 GB of "RSS" at 1 M chunks, 15 GB at 10 M, though none of it was memory the
process needed. `pread` reads the same rows from the same page cache, which the kernel then owns and
reclaims freely under pressure; a row costs about a microsecond.

The file stays FAISS's own (`IndexIDMap2` over a flat index, so writers and exact search read it as
before); its rows are found from the end, where FAISS writes the id map after the vectors, and checked
against the mapped index once at load.
"""

from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)
_ID_BYTES = 8


class VectorFile:
    def __init__(self, path: Path, count: int, dimension: int, offset: int) -> None:
        self.path, self.count, self.dimension, self.offset = path, count, dimension, offset
        self.row_bytes = 4 * dimension
        self._fd = os.open(path, os.O_RDONLY)  # read for as long as the index is; still readable once unlinked
        weakref.finalize(self, os.close, self._fd)

    @classmethod
    def of(cls, path: Path, mapped: faiss.IndexIDMap2) -> VectorFile | None:
        """The rows of `path`, the file `mapped` was read from; None when they are not where FAISS's
        layout puts them (another FAISS version): the mapped index is then read instead."""
        count, dimension = mapped.ntotal, mapped.d
        offset = path.stat().st_size - _ID_BYTES - _ID_BYTES * count - 4 * dimension * count
        if not count or offset < 0:
            return None
        rows = cls(path, count, dimension, offset)
        inner = faiss.downcast_index(mapped.index)
        for position in (0, count - 1):
            if not np.array_equal(rows.at(np.asarray([position])), inner.reconstruct(position)[None]):
                log.warning("%s does not lay out its vectors as expected: they are memory-mapped instead", path)
                return None
        return rows

    def at(self, positions: np.ndarray) -> np.ndarray:
        """The vectors at these FAISS positions, in their order. Consecutive positions are read in one call:
        an article's chunks were added together, so its vectors are one run of the file."""
        positions = np.asarray(positions, dtype=np.int64)
        if not len(positions):  # a filter that let no candidate through
            return np.zeros((0, self.dimension), dtype=np.float32)
        order = np.argsort(positions, kind="stable")
        wanted = positions[order]
        starts = np.flatnonzero(np.diff(wanted, prepend=-2) != 1)  # runs of +1 steps (a repeat starts a run)
        out = np.empty((len(positions), self.dimension), dtype=np.float32)
        for start, stop in zip(starts.tolist(), [*starts[1:].tolist(), len(wanted)], strict=True):
            first = int(wanted[start])
            data = os.pread(self._fd, (stop - start) * self.row_bytes, self.offset + first * self.row_bytes)
            out[order[start:stop]] = np.frombuffer(data, dtype=np.float32).reshape(stop - start, self.dimension)
        return out


def flat_matrix(vectors: faiss.IndexIDMap2) -> np.ndarray:
    """The vectors of an `IndexIDMap2` over a flat index, by FAISS position: a view of FAISS's own memory
    (or of the file it maps), never a copy."""
    inner = faiss.downcast_index(vectors.index)
    n, d = inner.ntotal, inner.d
    if not n:
        return np.zeros((0, d), dtype=np.float32)
    matrix: np.ndarray = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)
    return matrix
