"""Sync at scale: an index grown in sync-sized batches (100 articles) from RealTime QA's indexed articles
(50,083 chunks) toward a million chunks and more, each batch saved as `rag sync` saves it.

After every batch: the save's time (its new segment, its term counts, the manifest, and the merges of at
most `save_merge_chunks` that the policy asks for), the save's peak RSS above the process's RSS before it
(the loaded index, which a reader holds too), then the time and peak of the larger merges that `rag sync`
runs after the save (its articles already searchable), and the number of segments; every `search_every`
batches, the p50 of the default (hybrid) search over RealTime QA questions in the same process. The
articles are the real ones copied under new ids, with noisy copies of their real chunk vectors (as
`benchmarks.disk_scale` makes them): embedding a million chunks would take four hours here and is not what
a save costs.

    python -m benchmarks --parts sync [--sync-target 1000000]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.disk_scale import SPREAD, Source
from benchmarks.measure import percentile, proc_status_mb
from rag import Settings
from rag.retrieval import IndexSource, Retriever
from rag.store.embedding import Embedder
from rag.store.index import ArticleIndex
from rag.store.records import ChunkRow, DocumentRecord

BATCH = 100
"""Articles a sync adds at a time: a newsroom's half hour."""


def _reset_peak() -> None:
    """Start the process's peak RSS (VmHWM) afresh: Linux resets it when 5 is written to clear_refs."""
    Path("/proc/self/clear_refs").write_text("5")


def _articles(source: Source, first_id: int, seed: int) -> Iterator[tuple[DocumentRecord, list[ChunkRow], np.ndarray]]:
    """The source's articles again and again under new ids, their chunks under new chunk ids from `first_id`."""
    rng = np.random.default_rng(seed)
    dimension = source.manifest.dimension
    next_id, copy = first_id, 0
    while True:
        copy += 1
        for record in source.records:
            ids = list(range(next_id, next_id + len(record.chunk_ids)))
            next_id += len(ids)
            new_id = f"{record.id}#sync{copy}"
            digest = hashlib.sha256(f"{record.content_hash}:sync{copy}".encode()).hexdigest()
            copied = dataclasses.replace(record, id=new_id, content_hash=digest, chunk_ids=ids)
            rows = [(new_id, *source.rows[old][1:]) for old in record.chunk_ids]
            vectors = np.stack([source.vectors[old] for old in record.chunk_ids]) if ids else np.zeros((0, dimension))
            vectors = vectors + SPREAD * rng.standard_normal(vectors.shape, dtype=np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            yield copied, rows, vectors.astype(np.float32)


def _search_p50(index: ArticleIndex, embedder: Embedder, questions: list[tuple[str, dt.date | None]]) -> float:
    retriever = Retriever(IndexSource(index), embedder)
    retriever.retrieve("warm-up: the arrays of this index version", 10)
    times = []
    for question, as_of in questions:
        started = time.perf_counter()
        retriever.retrieve(question, 10, as_of=as_of)
        times.append(time.perf_counter() - started)
    return percentile(times, 0.5) * 1000


def run(
    work: Path, source_dir: Path, target: int, questions: list[tuple[str, dt.date | None]], search_every: int = 20
) -> list[dict[str, Any]]:
    folder = work / "sync-scale"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source_dir, folder, ignore=shutil.ignore_patterns(".lock", ".write", ".creating"))
    settings = Settings(index_dir=folder)
    index = ArticleIndex.load(folder)
    s = settings.index
    index.configure(settings.retrieval.ann_min_chunks, s.merge_factor, s.max_merged_chunks, s.save_merge_chunks)
    index.save()  # an index of an older format is upgraded, and its terms counted, before the first timed batch
    embedder = Embedder(settings.index.embedding_model, backend=settings.index.embedding_backend)
    source = Source.of(index)
    articles = _articles(source, index.manifest.next_id, seed=0)
    rows: list[dict[str, Any]] = []
    batch = 0
    while len(index.chunks) < target:
        batch += 1
        for _ in range(BATCH):
            index.restore(*next(articles))
        before_mb, generation = proc_status_mb("VmRSS"), index.manifest.generation
        _reset_peak()
        started = time.perf_counter()
        index.save()
        seconds = time.perf_counter() - started
        row: dict[str, Any] = {
            "batch": batch,
            "chunks": len(index.chunks),
            "save_s": round(seconds, 3),
            "merges": index.manifest.generation - generation - 1,
            "peak_above_mb": round(proc_status_mb("VmHWM") - before_mb, 1),
            "rss_mb": round(before_mb, 1),
        }
        _reset_peak()
        started = time.perf_counter()
        row["later_merges"] = index.merge()
        row["later_merge_s"] = round(time.perf_counter() - started, 3)
        row["later_merge_peak_above_mb"] = round(proc_status_mb("VmHWM") - before_mb, 1)
        row["segments"] = len(index.segments)
        if batch % search_every == 0 or len(index.chunks) >= target:
            row["search_p50_ms"] = round(_search_p50(index, embedder, questions), 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    shutil.rmtree(folder)
    return rows


def rows(measured: list[dict[str, Any]]) -> list[str]:
    """The Markdown table's lines: every tenth of the way, and the last batch."""
    step = max(1, len(measured) // 10)
    shown = [*measured[step - 1 :: step], *([measured[-1]] if len(measured) % step else [])]
    saves = [r["save_s"] for r in measured]
    later = [r for r in measured if r.get("later_merges")]
    lines = [
        "",
        f"An index grown in saves of {BATCH} articles (the sync part): {len(measured)} saves, save p50 "
        f"{percentile(saves, 0.5):.2f} s, p95 {percentile(saves, 0.95):.2f} s, max {max(saves):.1f} s, peak "
        f"RSS above the reader's at most {max(r['peak_above_mb'] for r in measured):.0f} MB; "
        f"{sum(r['merges'] for r in measured)} merges within saves, "
        f"{sum(r.get('later_merges', 0) for r in measured)} after them"
        + (
            f" (up to {max(r['later_merge_s'] for r in later):.0f} s and "
            f"{max(r['later_merge_peak_above_mb'] for r in later):.0f} MB)."
            if later
            else "."
        ),
        "",
        "| chunks | save s | merges in the save | merges after it (s) | peak RSS above the reader's MB | segments "
        "| hybrid search p50 ms |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['chunks']:,} | {r['save_s']:.2f} | {r['merges']} | "
        f"{r.get('later_merges', 0)} ({r.get('later_merge_s', 0):.1f}) | {r['peak_above_mb']:.0f} | "
        f"{r['segments']} | {r.get('search_p50_ms', '')} |"
        for r in shown
    ]
    return lines


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    """Save time, peak RSS above the reader's and search p50 against the index's size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chunks = np.asarray([r["chunks"] for r in rows]) / 1e6
    figure, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    merged = np.asarray([r["merges"] > 0 for r in rows])
    saves = np.asarray([r["save_s"] for r in rows])
    axes[0].scatter(chunks[~merged], saves[~merged], s=6, label="save")
    axes[0].scatter(chunks[merged], saves[merged], s=10, color="tab:red", label="save that merged")
    axes[0].set_ylabel("save (s)")
    axes[0].legend()
    axes[1].scatter(chunks, [r["peak_above_mb"] for r in rows], s=6)
    axes[1].set_ylabel("peak RSS above\nthe reader's (MB)")
    searched = [r for r in rows if "search_p50_ms" in r]
    axes[2].plot([r["chunks"] / 1e6 for r in searched], [r["search_p50_ms"] for r in searched], marker="o")
    axes[2].set_ylabel("hybrid search p50 (ms)")
    axes[2].set_xlabel("index size (million chunks), 100 articles a save")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
