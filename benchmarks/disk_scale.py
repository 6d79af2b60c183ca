"""Toward 10 M chunks on one machine (issue: "Beyond one machine", part 1): what a search process costs
when only the IVF's 8-bit codes are in RAM, the exact vectors are a memory-mapped fp16 file read for the
candidates' rescoring, and chunk texts are rows of an SQLite file read for the passages shown.

This measures that layout on synthetic corpora before `rag`'s index adopts it: vectors are noisy copies of
the real RealTime QA chunk embeddings, queries real question embeddings, texts real chunk texts repeated
under new ids. The build runs here; the search runs in a child process, so its peak RSS is its own.
Recall@10 is against exact search over the same fp16 vectors."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks.measure import peak_rss_of, percentile, proc_status_mb
from rag.index_ann import lists_for

BLOCK = 200_000
DEPTH = 100
"""Candidates the IVF returns and the exact vectors rescore, as `rag`'s search does (`candidates`)."""


def _noisy(rng: np.random.Generator, real: np.ndarray, n: int, spread: float = 0.03) -> np.ndarray:
    picks = rng.integers(0, len(real), n)
    block: np.ndarray = real[picks] + spread * rng.standard_normal((n, real.shape[1]), dtype=np.float32)
    block /= np.linalg.norm(block, axis=1, keepdims=True)
    return block


def build(work: Path, n: int, real: np.ndarray, texts: list[str], seed: int = 0) -> dict[str, Any]:
    """vectors.f16 (n × d, memory-mapped), ivf.faiss (IVF-SQ8 over them) and texts.sqlite3."""
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dim = real.shape[1]
    started = time.perf_counter()
    vectors = np.lib.format.open_memmap(work / "vectors.f16.npy", mode="w+", dtype=np.float16, shape=(n, dim))
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        vectors[start:stop] = _noisy(rng, real, stop - start)
    vectors.flush()
    written = time.perf_counter() - started
    nlist = lists_for(n)
    sample = np.sort(rng.choice(n, min(n, 50 * nlist), replace=False))
    ivf = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    ivf.train(np.asarray(vectors[sample], dtype=np.float32))
    trained = time.perf_counter() - started - written
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        ivf.add_with_ids(np.asarray(vectors[start:stop], dtype=np.float32), np.arange(start, stop, dtype=np.int64))
    faiss.write_index(ivf, str(work / "ivf.faiss"))
    added = time.perf_counter() - started - written - trained
    with sqlite3.connect(work / "texts.sqlite3") as db:
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("CREATE TABLE chunks (id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, text TEXT NOT NULL)")
        for start in range(0, n, BLOCK):
            db.executemany(
                "INSERT INTO chunks VALUES (?, ?, ?)",
                ((i, f"doc-{i // 8}", texts[i % len(texts)]) for i in range(start, min(n, start + BLOCK))),
            )
    total = time.perf_counter() - started
    sizes = {p.name: p.stat().st_size for p in work.iterdir()}
    return {
        "chunks": n,
        "nlist": nlist,
        "build_s": {"vectors": written, "train": trained, "add": added, "texts": total - written - trained - added},
        "disk_mb": {name: size / 1e6 for name, size in sizes.items()},
    }


def truth(work: Path, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact top-k over the fp16 vectors, block by block."""
    vectors = np.load(work / "vectors.f16.npy", mmap_mode="r")
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), BLOCK):
        scores = np.asarray(vectors[start : start + BLOCK], dtype=np.float32) @ queries.T
        scores = scores.T
        ids = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, ids], axis=1)
        top = np.argsort(-merged_scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_ids = np.take_along_axis(merged_ids, top, axis=1)
    return best_ids


def search(work: Path, queries_file: Path, nprobe: int, mapped: bool) -> dict[str, Any]:
    """Run in a fresh process: load the IVF (into RAM, or `mapped`: its lists memory-mapped, so only the
    lists probed are read, and the kernel may drop them again), map the vectors, answer every query (IVF
    candidates, exact rescoring from the mapped file, the top 5 passages' texts from SQLite)."""
    faiss.omp_set_num_threads(1)
    started = time.perf_counter()
    ivf = faiss.read_index(str(work / "ivf.faiss"), faiss.IO_FLAG_MMAP if mapped else 0)
    vectors = np.load(work / "vectors.f16.npy", mmap_mode="r")
    db = sqlite3.connect(work / "texts.sqlite3")
    loaded = time.perf_counter() - started
    queries = np.load(queries_file)
    params = faiss.SearchParametersIVF(nprobe=nprobe)
    times, found = [], []
    for query in queries:
        begin = time.perf_counter()
        _, ids = ivf.search(query.reshape(1, -1), DEPTH, params=params)
        candidates = ids[0][ids[0] >= 0]
        order = np.argsort(candidates)  # sorted reads from the mapped file
        scores = np.empty(len(candidates), dtype=np.float32)
        scores[order] = np.asarray(vectors[candidates[order]], dtype=np.float32) @ query
        ranked = candidates[np.argsort(-scores, kind="stable")][:10]
        shown = ",".join(str(int(i)) for i in ranked[:5])
        db.execute(f"SELECT id, doc_id, text FROM chunks WHERE id IN ({shown})").fetchall()
        times.append(time.perf_counter() - begin)
        found.append(ranked.tolist())
    return {
        "load_s": loaded,
        "p50_ms": percentile(times, 0.5) * 1000,
        "p95_ms": percentile(times, 0.95) * 1000,
        "peak_rss_mb": peak_rss_of(),
        # What of it must be RAM (anonymous) and what is mapped file pages the kernel can drop under pressure.
        **{f"{kind.lower()}_mb": proc_status_mb(kind) for kind in ("RssAnon", "RssFile")},
        "found": found,
    }


def run(work: Path, sizes: list[int], real: np.ndarray, queries: np.ndarray, texts: list[str]) -> list[dict[str, Any]]:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    np.save(work / "queries.npy", queries)
    rows = []
    for n in sizes:
        folder = work / f"n{n}"
        row = build(folder, n, real, texts)
        # The next size needs the disk: this one's files go once measured (a 10 M corpus is about 20 GB).
        exact = truth(folder, queries)
        for nprobe, mapped in ((32, False), (64, False), (64, True)):
            command = [sys.executable, "-m", "benchmarks.disk_scale", str(folder), str(work / "queries.npy")]
            command += [str(nprobe), str(int(mapped))]
            child = subprocess.run(command, capture_output=True, text=True, check=True)
            measured = json.loads(child.stdout)
            found = measured.pop("found")
            recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, exact.tolist(), strict=True)]))
            rows.append({**row, "nprobe": nprobe, "ivf_mapped": mapped, **measured, "recall@10": recall})
            print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(folder)
    return rows


if __name__ == "__main__":
    print(json.dumps(search(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1")))
