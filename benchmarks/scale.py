"""Search at a million chunks: exact search against approximate FAISS indexes, on synthetic vectors.

Real embeddings cluster by topic; uniformly random vectors do not, and would make every approximate
index look worse than it is on text. Given real chunk embeddings (the RealTime QA index), the synthetic
corpus is noisy copies of them and the queries are real question embeddings; without them, a mixture of
unit vectors around random topic centres stands in. Recall@10 is measured against exact search."""

from __future__ import annotations

import time
from typing import Any

import faiss
import numpy as np

from benchmarks.measure import percentile
from rag.config import Settings
from rag.store.ann import IvfIndex, rescored


def _mixture(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float) -> np.ndarray:
    picks = rng.integers(0, len(centres), n)
    vectors: np.ndarray = centres[picks] + spread * rng.standard_normal((n, centres.shape[1]), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def _latency_and_recall(index: faiss.Index, queries: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    times, found = [], []
    for query in queries:
        start = time.perf_counter()
        _, ids = index.search(query.reshape(1, -1), 10)
        times.append(time.perf_counter() - start)
        found.append(ids[0])
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
    return {"p50_ms": percentile(times, 0.5) * 1000, "p95_ms": percentile(times, 0.95) * 1000, "recall@10": recall}


def _rag_ivf(vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, flat: faiss.Index) -> dict[str, Any]:
    """What `rag` runs past `ann_min_chunks`: IVF-SQ8, its top `candidates` rescored with the exact
    vectors, of which the best 10 count."""
    start = time.perf_counter()
    ivf = IvfIndex.train(vectors, np.arange(len(vectors)))
    build = time.perf_counter() - start
    size = faiss.serialize_index(ivf.ivf).nbytes / len(vectors)
    depth = Settings().retrieval.candidates
    rows = {}
    for nprobe in (16, 32, 64):
        times, found = [], []
        for query in queries:
            begin = time.perf_counter()
            candidates, _ = ivf.approximate(query, depth, lists=ivf.assign(query, nprobe), selector=None)
            found.append(rescored(query, candidates, flat.reconstruct_batch)[0][:10])
            times.append(time.perf_counter() - begin)
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
        rows[f"rag: ivf-sq8 nlist={ivf.ivf.nlist} nprobe={nprobe}, top {depth} rescored exactly"] = {
            "p50_ms": percentile(times, 0.5) * 1000,
            "p95_ms": percentile(times, 0.95) * 1000,
            "recall@10": recall,
            "build_s": build,
            "bytes_per_vector": size,
        }
    return rows


def run(
    n: int, real: np.ndarray | None = None, real_queries: np.ndarray | None = None, seed: int = 0
) -> dict[str, Any]:
    """`real`, `real_queries`: chunk and question embeddings to derive the corpus and queries from."""
    rng = np.random.default_rng(seed)
    if real is not None and real_queries is not None:
        vectors = _mixture(rng, np.ascontiguousarray(real, dtype=np.float32), n, spread=0.03)
        queries = np.ascontiguousarray(real_queries, dtype=np.float32)
        source = f"noisy copies of {len(real):,} real chunk embeddings, {len(queries)} real questions"
    else:
        centres = rng.standard_normal((max(n // 1000, 10), 384), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        vectors = _mixture(rng, centres, n, spread=0.06)
        queries = _mixture(rng, centres, 200, spread=0.06)
        source = f"a mixture around {len(centres):,} random centres"
    dim = vectors.shape[1]
    rows: dict[str, Any] = {}
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    _, truth = flat.search(queries, 10)
    rows["flat (exact)"] = {**_latency_and_recall(flat, queries, truth), "build_s": 0.0, "bytes_per_vector": dim * 4}
    nlist = int(4 * np.sqrt(n))
    candidates: list[tuple[str, faiss.Index]] = [
        ("ivf-flat", faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)),
        ("ivf-pq m48", faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, 48, 8, faiss.METRIC_INNER_PRODUCT)),
        ("hnsw32", faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)),
    ]
    for name, index in candidates:
        start = time.perf_counter()
        if not index.is_trained:
            index.train(vectors[rng.choice(n, min(n, 50 * nlist), replace=False)])
        index.add(vectors)
        build = time.perf_counter() - start
        size = faiss.serialize_index(index).nbytes / n
        if isinstance(index, faiss.IndexHNSWFlat):
            for ef in (32, 64, 128):
                index.hnsw.efSearch = ef
                rows[f"{name} efSearch={ef}"] = {
                    **_latency_and_recall(index, queries, truth),
                    "build_s": build,
                    "bytes_per_vector": size,
                }
        else:
            for nprobe in (8, 32, 64):
                index.nprobe = nprobe
                rows[f"{name} nlist={nlist} nprobe={nprobe}"] = {
                    **_latency_and_recall(index, queries, truth),
                    "build_s": build,
                    "bytes_per_vector": size,
                }
        del index
    rows.update(_rag_ivf(vectors, queries, truth, flat))
    return {"vectors": n, "dim": dim, "queries": len(queries), "source": source, "indexes": rows}
