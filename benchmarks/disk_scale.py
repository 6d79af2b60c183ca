"""One machine toward 10 M chunks (issue "Beyond one machine", part 1): `rag`'s own index at 1 M, 4 M and
10 M chunks, searched by `rag`'s own retriever in a fresh process.

The corpus is RealTime QA's indexed articles repeated under new ids (`<id>#<copy>`), each copy with its
real text, dates and chunk spans, and with vectors that are noisy copies of the real chunk embeddings.
Embedding 10 M chunks would take 40 hours on these 2 cores, so the index's segments (of at most
`max_merged_chunks`, as merges leave them) are written directly with `rag.store`'s own pieces (the
records file, the exact vectors, the IVF and a manifest with checksums); what is measured is what `rag`
loads and searches.

The search is dense (the question's embedding, IVF candidates rescored from the memory-mapped exact
vectors, the article ranking and its passages read from the records file) and hybrid (`rag`'s default:
BM25 over articles and chunks as well, from the segments' term counts, counted first segment by segment,
each in a fresh process, as a save counts a new segment's) at every size up to `HYBRID_LIMIT`. Recall@10
compares the IVF's chunks with exact search over the same vectors, after the timed questions, since exact
search reads the whole vectors file."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np

from benchmarks.measure import peak_rss_of, percentile, proc_status_mb
from rag import RAG, Settings
from rag.config import RetrievalMode
from rag.durable import fingerprint
from rag.store.ann import IvfIndex, lists_for
from rag.store.index import FORMAT_VERSION, MANIFEST, ArticleIndex, Manifest, read_manifest
from rag.store.records import ChunkRow, DocumentRecord, RecordStore
from rag.store.segments import SegmentInfo, save_terms
from rag.store.vectors import VectorFile

BLOCK = 200_000
"""Vectors read at a time by the exact search (300 MB)."""
SPREAD = 0.03
"""Noise per component (unit vectors of 384): copies stay near their source, as a story's follow-ups do."""
HYBRID_LIMIT = 10_000_000
"""The largest corpus whose term counts are counted (in batches: memory grows with the counts, not the texts)."""


@dataclasses.dataclass
class Source:
    """The real index the synthetic corpus copies, read once into memory (50,083 chunks)."""

    records: list[DocumentRecord]
    rows: dict[int, ChunkRow]
    vectors: dict[int, np.ndarray]
    manifest: Manifest

    @classmethod
    def of(cls, index: ArticleIndex) -> Source:
        records = list(index.documents.records())
        ids, matrix = index.stored_vectors()
        vectors = dict(zip(ids.tolist(), np.array(matrix), strict=True))
        rows = {i: index.chunks.row(i) for r in records for i in r.chunk_ids}
        return cls(records, rows, vectors, index.manifest)


def _copies(source: Source, n: int) -> Iterator[tuple[DocumentRecord, list[int]]]:
    """(record, source chunk ids) of each copied article, until `n` chunks; chunk ids run from 0."""
    next_id, copy = 0, 0
    while next_id < n:
        for record in source.records:
            take = record.chunk_ids[: n - next_id]
            if not take:
                return
            ids = list(range(next_id, next_id + len(take)))
            digest = hashlib.sha256(f"{record.content_hash}:{copy}".encode()).hexdigest()
            yield dataclasses.replace(record, id=f"{record.id}#{copy}", content_hash=digest, chunk_ids=ids), take
            next_id += len(take)
        copy += 1


def _segments(source: Source, n: int, largest: int) -> Iterator[list[tuple[DocumentRecord, list[int]]]]:
    """The copied articles cut into segments of at most `largest` chunks, as merges leave an index."""
    segment: list[tuple[DocumentRecord, list[int]]] = []
    size = 0
    for record, taken in _copies(source, n):
        if size + len(taken) > largest and segment:
            yield segment
            segment, size = [], 0
        segment.append((record, taken))
        size += len(taken)
    if segment:
        yield segment


def build(folder: Path, n: int, source: Source, seed: int = 0) -> dict[str, Any]:
    """A `rag` index of `n` chunks at `folder`, in segments of at most `max_merged_chunks` (the largest a
    merge writes, 2 M by default), each with its IVF on the one codebook (`ivfs`)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dim = source.manifest.dimension
    seconds = dict.fromkeys(("vectors", "ivf", "records", "checksums"), 0.0)
    infos, files = [], {}
    for number, segment in enumerate(_segments(source, n, Settings().index.max_merged_chunks), start=1):
        started = time.perf_counter()
        ids = np.asarray([i for record, _ in segment for i in record.chunk_ids], dtype=np.int64)
        vectors = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        copied = [i for _, taken in segment for i in taken]
        for start in range(0, len(ids), 100_000):
            block = np.stack([source.vectors[i] for i in copied[start : start + 100_000]])
            block = block + SPREAD * rng.standard_normal(block.shape, dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            vectors.add_with_ids(block.astype(np.float32), ids[start : start + 100_000])
        faiss.write_index(vectors, str(folder / f"vectors.{number}.faiss"))
        seconds["vectors"] += time.perf_counter() - started
        del vectors
        mark = time.perf_counter()
        RecordStore.write(
            folder / f"records.{number}.sqlite3",
            [],
            (record for record, _ in segment),
            (
                (new, (record.id, *source.rows[old][1:]))
                for record, taken in segment
                for new, old in zip(record.chunk_ids, taken, strict=True)
            ),
        )
        seconds["records"] += time.perf_counter() - mark
        infos.append(SegmentInfo(number, len(segment), len(ids)))
    mark = time.perf_counter()
    ivfs(folder, [info.number for info in infos], n)
    seconds["ivf"] = time.perf_counter() - mark
    mark = time.perf_counter()
    for info in infos:
        files.update({name: fingerprint(folder / name) for name in info.names(ann=True)})
    seconds["checksums"] = time.perf_counter() - mark
    manifest = dataclasses.replace(
        source.manifest,
        format_version=FORMAT_VERSION,
        generation=len(infos),
        next_id=n,
        n_documents=sum(info.documents for info in infos),
        n_chunks=n,
        files=files,
        segments=[dataclasses.asdict(info) for info in infos],
    )
    (folder / MANIFEST).write_text(json.dumps(dataclasses.asdict(manifest), indent=2), encoding="utf-8")
    return {
        "chunks": n,
        "documents": manifest.n_documents,
        "segments": len(infos),
        "build_s": seconds,
        "disk_mb": {name: (folder / name).stat().st_size / 1e6 for name in files},
    }


def ivfs(folder: Path, numbers: list[int], n: int) -> None:
    """Every segment's IVF on one codebook trained for the index's `n` chunks (on the first segment's
    vectors), as the segments of an index share theirs (`rag.store.ann.codebook_for`)."""
    codebook = None
    for number in numbers:
        vectors = faiss.read_index(str(folder / f"vectors.{number}.faiss"), faiss.IO_FLAG_MMAP_IFC)
        ids = faiss.vector_to_array(faiss.downcast_index(vectors).id_map)
        inner = faiss.downcast_index(vectors.index)
        matrix = faiss.rev_swig_ptr(inner.get_xb(), len(ids) * vectors.d).reshape(len(ids), vectors.d)
        ivf = IvfIndex.train(matrix, ids, lists=lists_for(n)) if codebook is None else codebook.holding(matrix, ids)
        codebook = codebook or ivf
        faiss.write_index(ivf.ivf, str(folder / f"ann.{number}.faiss"))
        print(
            f"IVF of segment {number} written ({len(ids)} chunks, {ivf.ivf.nlist} lists)", file=sys.stderr, flush=True
        )


def rebuild_ivfs(folder: Path) -> None:
    """`ivfs` for an index built before its segments shared a codebook, and its manifest's checksums."""
    manifest = read_manifest(folder)
    infos = manifest.segment_infos()
    ivfs(folder, [info.number for info in infos], manifest.n_chunks)
    for info in infos:
        manifest.files[f"ann.{info.number}.faiss"] = fingerprint(folder / f"ann.{info.number}.faiss")
    (folder / MANIFEST).write_text(json.dumps(dataclasses.asdict(manifest), indent=2), encoding="utf-8")


def exact(folder: Path, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """The exact top-k chunk ids of each query, reading the vectors files block by block: mapped whole, a
    10 M-chunk file (15 GB) held the page cache hostage and thrashed for half an hour."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), k), dtype=np.int64)
    for path in sorted(folder.glob("vectors.*.faiss"), key=lambda p: int(p.name.split(".")[1])):
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        chunk_ids = faiss.vector_to_array(index.id_map)
        rows = VectorFile.of(path, index)
        assert rows is not None, f"{path}: vectors not where FAISS puts them"
        for start in range(0, rows.count, BLOCK):
            count = min(BLOCK, rows.count - start)
            offset = rows.offset + start * rows.row_bytes
            block = np.fromfile(path, dtype=np.float32, count=count * rows.dimension, offset=offset)
            scores = queries @ block.reshape(count, rows.dimension).T
            ids = np.argpartition(-scores, min(k, count) - 1, axis=1)[:, :k]  # each block's own top k first
            merged_scores = np.hstack([best_scores, np.take_along_axis(scores, ids, axis=1)])
            merged_ids = np.hstack([best_ids, chunk_ids[ids + start]])
            top = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
            best_scores = np.take_along_axis(merged_scores, top, axis=1)
            best_ids = np.take_along_axis(merged_ids, top, axis=1)
    return best_ids


def keywords(folder: Path) -> dict[str, Any]:
    """Count and save the BM25 term counts of every segment of the index at `folder` as a save counts a
    new segment's (`save_terms`), each in a fresh process: a segment's count is the unit of building, and
    its peak is the counting's own, not the IVFs' of a loaded index."""
    counted = [_child("count", folder, info["number"]) for info in read_manifest(folder).segments]
    size = sum(file.stat().st_size for file in folder.glob("terms.*/**/*") if file.is_file())
    return {
        "bm25_build_s": sum(one["seconds"] for one in counted),
        "bm25_build_rss_mb": max(one["peak_rss_mb"] for one in counted),
        "bm25_mb": size / 1e6,
    }


def count(folder: Path, number: int) -> dict[str, Any]:
    """In a fresh process: one segment's term counts, counted and saved."""
    started = time.perf_counter()
    save_terms(folder, number, RecordStore(folder / f"records.{number}.sqlite3"))
    return {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_of()}


def search(folder: Path, questions_file: Path, truth_file: Path, nprobe: int, mode: RetrievalMode) -> dict[str, Any]:
    """In a fresh process: load the index, answer every question (timed, embedding included), then
    compare the IVF's top 10 chunks with the exact ones (`truth_file`: the queries and their top 10)."""
    questions = [
        (q, dt.date.fromisoformat(a) if a else None) for q, a in json.loads(questions_file.read_text(encoding="utf-8"))
    ]
    settings = Settings(index_dir=folder, retrieval_mode=mode, ann_nprobe=nprobe)
    rag = RAG(settings, progress=False)
    started = time.perf_counter()
    rag.search("warm-up: load the index and the embedding model", k=10)
    loaded = time.perf_counter() - started
    times = []
    for question, as_of in questions:
        begin = time.perf_counter()
        rag.search(question, k=10, as_of=as_of)
        times.append(time.perf_counter() - begin)
    memory = {
        "peak_rss_mb": peak_rss_of(),
        # What must be RAM (anonymous), and what is mapped file pages the kernel can drop under pressure.
        **{f"{kind.lower()}_mb": proc_status_mb(kind) for kind in ("RssAnon", "RssFile")},
    }
    index = rag.open_index()
    saved = np.load(truth_file)
    recall = [
        len(set(index.dense_search(query, 10, allowed=None, nprobe=nprobe).tolist()) & set(truth.tolist())) / 10
        for query, truth in zip(saved["queries"], saved["truth"], strict=True)
    ]
    timed = {"load_s": loaded, "p50_ms": percentile(times, 0.5) * 1000, "p95_ms": percentile(times, 0.95) * 1000}
    return timed | memory | {"recall@10": float(np.mean(recall)), "questions": len(questions), "mode": mode}


def _child(*arguments: object) -> dict[str, Any]:
    """This module run in a fresh process, and the JSON its last line prints."""
    command = [sys.executable, "-m", "benchmarks.disk_scale", *map(str, arguments)]
    child = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(child.stdout.splitlines()[-1])
    return result


def measure(folder: Path, asked: Path, nprobes: tuple[int, ...] = (32, 64)) -> list[dict[str, Any]]:
    """Each nprobe's dense search of the index at `folder`, then (up to `HYBRID_LIMIT` chunks) the default
    hybrid search at the default nprobe once its term counts are counted, each in its own process."""
    questions = [q for q, _ in json.loads(asked.read_text(encoding="utf-8"))]
    queries = RAG(index_dir=folder, progress=False).embedder.embed(questions).astype(np.float32)
    started = time.perf_counter()
    truth_file = folder.parent / f"{folder.name}-truth.npz"
    np.savez(truth_file, queries=queries, truth=exact(folder, queries))
    exact_s = time.perf_counter() - started
    rows = [
        {"nprobe": nprobe, "exact_s": exact_s, **_child("search", folder, asked, truth_file, nprobe, "dense")}
        for nprobe in nprobes
    ]
    if read_manifest(folder).n_chunks <= HYBRID_LIMIT:
        built, nprobe = keywords(folder), Settings().retrieval.ann_nprobe
        hybrid = _child("search", folder, asked, truth_file, nprobe, "hybrid")
        rows.append({"nprobe": nprobe, "exact_s": exact_s, **built, **hybrid})
    return rows


def run(
    work: Path, sizes: list[int], source: ArticleIndex, questions: list[tuple[str, str | None]]
) -> list[dict[str, Any]]:
    asked = work / "disk-questions.json"
    asked.write_text(json.dumps(questions), encoding="utf-8")
    copied = Source.of(source)
    rows = []
    for n in sizes:
        folder = work / f"disk-{n}"
        shutil.rmtree(folder, ignore_errors=True)
        built = build(folder, n, copied)
        for measured in measure(folder, asked):
            rows.append({**built, **measured})
            print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(folder)  # the next size needs the disk: a 10 M index is about 27 GB
    return rows


if __name__ == "__main__":
    if sys.argv[1] == "count":
        print(json.dumps(count(Path(sys.argv[2]), int(sys.argv[3]))))
    elif sys.argv[1] == "ivfs":
        rebuild_ivfs(Path(sys.argv[2]))
    else:
        folder, asked, truth, nprobe, mode = sys.argv[2:]
        print(json.dumps(search(Path(folder), Path(asked), Path(truth), int(nprobe), cast(RetrievalMode, mode))))
