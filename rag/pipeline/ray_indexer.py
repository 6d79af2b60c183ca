"""`rag index --ray`: read, chunk and embed on a Ray cluster with Ray Data; write the archive here.

    files -> read (tasks) -> chunk + embed (an actor pool, one encoder per actor) -> this process

This process plans each article against the partition its date puts it in and writes the partitions
(`ArchiveWriter`); the workers skip articles the archive already holds unchanged, so a re-run embeds
only what is new. Ray retries the work of a worker that dies; the writer keeps one copy per article id
whatever arrives twice, and saves every `checkpoint_chunks` chunks, so a stopped run keeps its work.
The files must be readable at the same paths on every node (a shared or copied directory).
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rag.archive.catalog import partition_of
from rag.archive.ingest import ArchiveWriter, Prints
from rag.archive.shards import connect
from rag.config import Settings
from rag.errors import DocumentError, IndexDirError
from rag.ingest.loaders import find_files, read_file
from rag.pipeline import RAG, IndexReport
from rag.store.index import AddReport, ArticleIndex, Manifest, writing
from rag.types import Document

log = logging.getLogger(__name__)
BLOCK_BYTES = 128 * 1024
BATCH_DOCUMENTS = 32
"""Articles an embedding actor takes at a time: about 240 chunks, as `rag index` embeds per flush."""


def _read(row: dict[str, Any], *, max_bytes: int) -> list[dict[str, Any]]:
    """One file's documents, or what was wrong with it, as rows (a Ray Data task)."""
    out = []
    for loaded in read_file(Path(row["path"]), row["doc_id"], max_bytes=max_bytes):
        item = loaded.item
        if isinstance(item, DocumentError):
            error = pickle.dumps((item.path, item.problem, item.line, item.hint))
            out.append({"document": b"", "error": error, "size": loaded.size})
        else:
            out.append({"document": pickle.dumps(item), "error": b"", "size": loaded.size})
    return out


class _ChunkAndEmbed:
    """An embedding worker: loads the encoder once and turns articles into chunks and vectors, skipping those
    the archive holds unchanged (`known`: (id, partition, content hash) of each, `Prints`)."""

    def __init__(self, settings: dict[str, Any], manifest: Manifest, known: Any) -> None:
        import ray

        self.rag = RAG(Settings(**settings))
        self.chunker = self.rag.chunker(manifest)
        self.known: Prints = ray.get(known)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        docs: list[Document | None] = [pickle.loads(d) if len(d) else None for d in batch["document"]]
        todo = [
            (i, doc)
            for i, doc in enumerate(docs)
            if doc is not None and (doc.id, partition_of(doc.published), doc.content_hash) not in self.known
        ]
        chunks = {i: self.chunker.split(doc) for i, doc in todo}
        texts = [c.text for i, _ in todo for c in chunks[i]]
        vectors = self.rag.embedder.embed(texts) if texts else np.zeros((0, 0), np.float32)
        embedded, offset = [b""] * len(docs), 0
        for i, _ in todo:
            embedded[i] = pickle.dumps((chunks[i], vectors[offset : offset + len(chunks[i])]))
            offset += len(chunks[i])
        return {**batch, "embedded": np.asarray(embedded, dtype=object)}


def index_with_ray(
    settings: Settings, paths: Iterable[Path | str], *, address: str | None, workers: int | None = None
) -> IndexReport:
    """Add the files at `paths` to the archive at `settings.index_dir` on the Ray cluster at `address`."""
    started = time.perf_counter()
    root = settings.index_dir
    if ArticleIndex.exists(root):
        raise IndexDirError(
            f"{root} is a single index; `rag index --ray` builds an archive of monthly partitions",
            hint="choose another RAG_INDEX_DIR for the archive",
        )
    found = find_files(paths)
    errors = list(found.errors)
    ray = connect(address)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # a partition lists its articles in input order
    context.enable_progress_bars = False
    # Blocks of a few dozen articles, so one large file still feeds every worker. (A repartition step would
    # need a CPU of its own, which the embedding actors hold.)
    context.target_max_block_size = BLOCK_BYTES
    rag = RAG(settings)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    report = AddReport()
    with writing(root, timeout=settings.index.lock_timeout):
        writer = ArchiveWriter(
            root,
            rag.new_manifest(),
            lock_timeout=settings.index.lock_timeout,
            ann_min_chunks=settings.retrieval.ann_min_chunks,
        )
        files = [{"path": str(path), "doc_id": doc_id} for path, doc_id in found.files]
        read = ray.data.from_items(files).flat_map(
            _read, fn_kwargs={"max_bytes": settings.index.max_article_bytes}, num_cpus=0
        )
        embedded = read.map_batches(
            _ChunkAndEmbed,
            fn_constructor_kwargs={
                "settings": _worker_settings(settings),
                "manifest": writer.manifest,
                "known": ray.put(writer.known),
            },
            compute=ray.data.ActorPoolStrategy(size=workers or cpus),
            batch_size=BATCH_DOCUMENTS,
            batch_format="numpy",
            num_cpus=1,
        )
        pending = 0
        bar = tqdm(total=found.size, unit="B", unit_scale=True, desc="indexing on Ray", disable=not settings.progress)
        with bar:
            for batch in embedded.iter_batches(batch_size=None, batch_format="numpy") if files else ():
                bar.update(int(batch["size"].sum()))
                docs, payloads = {}, {}
                for document, error, payload in zip(batch["document"], batch["error"], batch["embedded"], strict=True):
                    if len(error):
                        path, problem, line, hint = pickle.loads(error)
                        errors.append(DocumentError(path, problem, line=line, hint=hint))
                    else:
                        doc = pickle.loads(document)
                        docs[id(doc)], payloads[id(doc)] = doc, payload
                todo, planned = writer.plan(list(docs.values()))  # a batch is planned as `rag index` plans a window
                report.extend(planned)
                for doc in todo:
                    if not len(payloads[id(doc)]):
                        raise IndexDirError(f"{doc.id} was not embedded by the workers", hint="a bug: please report it")
                    chunks, vectors = pickle.loads(payloads[id(doc)])
                    writer.add(doc, chunks, vectors)
                    report.chunks_added += len(chunks)
                    pending += len(chunks)
                if pending >= settings.index.checkpoint_chunks:
                    writer.save()
                    pending = 0
        writer.save()
        writer.merge()
    return IndexReport(report, errors, found.skipped, time.perf_counter() - started)


def _worker_settings(settings: Settings) -> dict[str, Any]:
    """What a worker needs to chunk and embed as this process would: the index section, and the paths."""
    return {"index": settings.index.model_dump(), "cache_dir": settings.cache_dir, "index_dir": settings.index_dir}
