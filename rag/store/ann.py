"""Approximate dense search for large corpora: an inverted file (IVF) over 8-bit codes.

Exact search reads every vector: about 67 ms a question at 1M chunks on this project's 2-core machines,
and 4 ms at the 50,000 chunks of RealTime QA, where the IVF takes 0.5 ms with the same document
metrics in the evaluation harness. Past `ann_min_chunks` the index therefore adds
an IVF with nlist ≈ 4√n lists, probes `ann_nprobe` of them, and rescores the candidates with the exact
vectors it already holds. Scalar-quantized codes cost a quarter of the float vectors, where IVF-Flat
would keep a second full copy; the exact rescoring makes up for the codes' rounding. The trade-off
table that led here (HNSW, IVF-Flat, IVF-PQ) is in the README and `benchmarks/scale.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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
    def train(cls, vectors: np.ndarray, ids: np.ndarray, *, seed: int = 0) -> IvfIndex:
        n, dim = vectors.shape
        nlist = lists_for(n)
        ivf = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        sample = np.random.default_rng(seed).choice(n, min(n, _TRAINING_POINTS_PER_LIST * nlist), replace=False)
        ivf.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
        index = cls(ivf)
        index.add(vectors, ids)
        return index

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self.ivf.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def approximate(
        self, query: np.ndarray, n: int, *, nprobe: int, selector: faiss.IDSelector | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores by their 8-bit codes) of the n best candidates, best first."""
        params = faiss.SearchParametersIVF(sel=selector, nprobe=min(nprobe, self.ivf.nlist))
        scores, ids = self.ivf.search(query.reshape(1, -1).astype(np.float32), n, params=params)
        found = ids[0] >= 0
        return ids[0][found], scores[0][found]

    def probes(self, nprobe: int, searched: int) -> int:
        """Lists to probe here when IVFs over `searched` chunks in all are searched at `nprobe`: the share
        of its chunks one IVF over all of them would scan (its lists growing as the square root of its
        chunks, `lists_for`), so an index split into segments scans about the codes one IVF would, and a
        lone IVF probes `nprobe`. (Probing `nprobe` lists in each of five segments of 2 M chunks scanned
        2.3 times as many codes, and took 76 ms a question at 10 M.)"""
        share = self.ivf.ntotal / max(searched, 1)
        return max(1, min(int(self.ivf.nlist), math.ceil(nprobe * math.sqrt(share) - 1e-9)))


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
