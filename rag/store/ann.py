"""Approximate dense search for large corpora: an inverted file (IVF) over 8-bit codes.

Exact search reads every vector: about 67 ms a question at 1M chunks on this project's 2-core machines,
and 4 ms at the 50,000 chunks of RealTime QA, where the IVF takes 0.5 ms with the same document
metrics in the evaluation harness. Past `ann_min_chunks` the index therefore adds
an IVF with nlist ≈ 4√n lists, probes `ann_nprobe` of them, and rescores the candidates with the exact
vectors it already holds. Scalar-quantized codes cost a quarter of the float vectors, where IVF-Flat
would keep a second full copy; the exact rescoring makes up for the codes' rounding. The trade-off
table that led here (HNSW, IVF-Flat, IVF-PQ) is in the README and `benchmarks/scale.py`.

An index of several segments shares one codebook (the lists' centroids and the codes' ranges) between
their IVFs: a question is assigned to its lists once, and each segment scans its part of those lists, so
the segments together scan exactly the codes one IVF over all their chunks would. (Each segment with its
own codebook scanned about as many codes but searched five coarse quantizers at 10 M chunks, and its
recall@10 fell from 0.968 to 0.949.) A codebook is trained for the index's size when a segment first needs
one and is reused by later segments and merges until the index has grown four-fold (`codebook_for`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from functools import cached_property

import faiss
import numpy as np

_TRAINING_POINTS_PER_LIST = 50
"""k-means sample size per list: more only slows training."""
_FEWEST_POINTS_PER_LIST = 39
"""FAISS's k-means warns below this many training points per list: with more lists than n / 39, some are
fitted to a handful of chunks."""


class IvfIndex:
    """IVF-SQ8 keyed by chunk id, so adds and deletes need no renumbering."""

    def __init__(self, ivf: faiss.IndexIVFScalarQuantizer) -> None:
        self.ivf = ivf

    @classmethod
    def train(cls, vectors: np.ndarray, ids: np.ndarray, *, lists: int | None = None, seed: int = 0) -> IvfIndex:
        """A new codebook trained on these vectors, with `lists` lists (`lists_for` the vectors when None;
        never more than they can train), holding them."""
        n, dim = vectors.shape
        nlist = min(lists_for(n) if lists is None else lists, max(1, n // _FEWEST_POINTS_PER_LIST))
        ivf = _sq8(faiss.IndexFlatIP(dim), nlist)
        sample = np.random.default_rng(seed).choice(n, min(n, _TRAINING_POINTS_PER_LIST * nlist), replace=False)
        ivf.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
        index = cls(ivf)
        index.add(vectors, ids)
        return index

    def holding(self, vectors: np.ndarray, ids: np.ndarray) -> IvfIndex:
        """A new IVF with this one's codebook, holding these vectors (and none of this one's)."""
        centroids = self.ivf.quantizer.reconstruct_n(0, self.ivf.nlist)
        quantizer = faiss.IndexFlatIP(self.ivf.d)
        quantizer.add(centroids)
        ivf = _sq8(quantizer, self.ivf.nlist)
        ivf.sq.trained = self.ivf.sq.trained
        ivf.is_trained = True
        ivf.own_fields = True
        quantizer.this.disown()  # the IVF frees it with itself
        index = IvfIndex(ivf)
        index.add(vectors, ids)
        return index

    @cached_property
    def codebook(self) -> str:
        """What identifies its codebook: IVFs with equal ones are searched with one assignment to lists."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(faiss.vector_to_array(self.ivf.sq.trained).tobytes())
        digest.update(self.ivf.quantizer.reconstruct_n(0, self.ivf.nlist).tobytes())
        return digest.hexdigest()

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.ivf.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def assign(self, query: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, lists): the query's `nprobe` nearest lists, for every IVF sharing this codebook."""
        scores, lists = self.ivf.quantizer.search(query.reshape(1, -1).astype(np.float32), min(nprobe, self.ivf.nlist))
        return scores, lists

    def approximate(
        self, query: np.ndarray, n: int, *, lists: tuple[np.ndarray, np.ndarray], selector: faiss.IDSelector | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores by their 8-bit codes) of the n best candidates in these lists (`assign`), best first."""
        coarse, assigned = lists
        params = faiss.SearchParametersIVF(sel=selector, nprobe=assigned.shape[1])
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        scores, ids = np.empty((1, n), dtype=np.float32), np.empty((1, n), dtype=np.int64)
        # The C++ call: FAISS's Python wrapper of it takes no parameters, so neither a selector nor nprobe.
        self.ivf.search_preassigned_c(
            1, faiss.swig_ptr(query), n, faiss.swig_ptr(np.ascontiguousarray(assigned, dtype=np.int64)),
            faiss.swig_ptr(np.ascontiguousarray(coarse, dtype=np.float32)), faiss.swig_ptr(scores),
            faiss.swig_ptr(ids), False, params,
        )  # fmt: skip
        found = ids[0] >= 0
        return ids[0][found], scores[0][found]


def _sq8(quantizer: faiss.IndexFlatIP, nlist: int) -> faiss.IndexIVFScalarQuantizer:
    """An IVF of 8-bit codes by inner product over `quantizer`'s lists (untrained unless it is given the
    codebook's ranges)."""
    return faiss.IndexIVFScalarQuantizer(
        quantizer, quantizer.d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )


def assignments(ivfs: Sequence[IvfIndex], query: np.ndarray, nprobe: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per codebook among these IVFs, the query's lists (`IvfIndex.assign`). IVFs of different codebooks
    (an index grown past one, or saved before they were shared) each probe the share of `nprobe` one IVF
    over all of them would scan of theirs: ceil(nprobe·√(their chunks / all chunks)), as the lists grow
    with the square root of the chunks (`lists_for`); one codebook probes `nprobe`."""
    held: dict[str, int] = {}
    first: dict[str, IvfIndex] = {}
    for ivf in ivfs:
        held[ivf.codebook] = held.get(ivf.codebook, 0) + ivf.ivf.ntotal
        first.setdefault(ivf.codebook, ivf)
    searched = max(sum(held.values()), 1)
    return {
        key: first[key].assign(query, max(1, math.ceil(nprobe * math.sqrt(chunks / searched) - 1e-9)))
        for key, chunks in held.items()
    }


def codebook_for(ivfs: Sequence[IvfIndex], chunks: int) -> IvfIndex | None:
    """The IVF whose codebook a new segment's IVF should share in an index of `chunks` chunks: the one with
    most lists, while it has at least half the lists the index's size calls for (`lists_for`). Past that
    (the index grew four-fold since it was trained), None: a new codebook is trained, and the old one leaves
    with the merges of the segments holding it."""
    best = max(ivfs, key=lambda ivf: ivf.ivf.nlist, default=None)
    return best if best is not None and 2 * best.ivf.nlist >= lists_for(chunks) else None


def rescored(
    query: np.ndarray, candidates: np.ndarray, exact: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates ordered by their exact score (`exact` gives the float vectors of chunk ids), and the
    scores in that order."""
    scores = exact(candidates) @ query.reshape(-1).astype(np.float32)
    order = np.argsort(-scores, kind="stable")
    return candidates[order], scores[order]


def lists_for(n: int) -> int:
    """About 4√n lists, and never fewer than FAISS's minimum of training points per list: k-means cannot
    train more centroids than points (a tiny `RAG_ANN_MIN_CHUNKS` made the save that crossed it fail), and
    below the minimum it warns on every save that trains (up to about 24,000 chunks)."""
    return max(1, min(n // _FEWEST_POINTS_PER_LIST, int(4 * math.sqrt(n))))
