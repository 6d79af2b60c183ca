"""Indexing throughput: `rag` end to end against the raw encoder on the very chunks `rag` embeds (the
ceiling: chunking, storage and FAISS are what `rag` adds), and against LlamaIndex ingesting the same
articles with the same model into FAISS, in its own environment, at its node size and at `rag`'s."""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import llamaindex
from benchmarks.measure import summary, timed
from rag import RAG, Settings
from rag.config import EmbeddingBackend
from rag.ingest.loaders import load_paths
from rag.store.index import Manifest


def sample_corpus(source: Path, n_articles: int, out: Path) -> Path:
    """The first `n_articles` articles of a JSONL corpus (RealTime QA's layout or rag's), as rag's JSONL."""
    rows = []
    with open(source, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            text = (row.get("text") or "").strip()
            if not text:
                continue
            date = (row.get("publish_date") or row.get("date") or row.get("published") or "").replace("/", "-")
            rows.append(
                {"id": row.get("doc_id") or row["id"], "title": row.get("title") or "", "date": date, "text": text}
            )
            if len(rows) == n_articles:
                break
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return out


LLAMAINDEX_NODES = (256, 20)
"""LlamaIndex's `SentenceSplitter` as its documentation configures it; `rag`'s own size is run beside it."""


@dataclass
class _Backend:
    """One embedding backend ready to time: its pipeline, and the very chunk texts it embeds."""

    rag: RAG
    texts: list[str]
    work: Path

    @classmethod
    def ready(cls, corpus: Path, backend: EmbeddingBackend) -> _Backend:
        work = Path(tempfile.mkdtemp(prefix="rag-bench-ingest-"))
        rag = RAG(index_dir=work / "index", progress=False, embedding_backend=backend)
        embedder = rag.embedder
        _ = embedder.encoder  # loading the model is start-up, not ingest: neither side is charged for it
        s = rag.settings
        chunker = rag.chunker(
            Manifest(
                embedder.name,
                embedder.dimension,
                s.index.chunk_tokens,
                s.index.chunk_overlap,
                s.index.tokenizer_encoding,
            )
        )
        texts = [c.text for doc in load_paths([corpus]).documents for c in chunker.split(doc)]
        ready = cls(rag, texts, work)
        ready.encode()  # warm-up: first batches pay for allocator and thread-pool start
        return ready

    def encode(self) -> float:
        embedder = self.rag.embedder
        return timed(lambda: embedder.encoder.encode(self.texts, batch_size=embedder.batch_size))

    def index(self, corpus: Path) -> float:
        shutil.rmtree(self.work / "index", ignore_errors=True)
        self.rag.store.forget()
        return timed(lambda: self.rag.index([corpus]))


def run(corpus: Path, pairs: int, with_llamaindex: bool, backends: Sequence[EmbeddingBackend]) -> dict[str, Any]:
    """`pairs` rounds, each timing every backend's raw encoder and `rag index`, then LlamaIndex at its own
    node size and at `rag`'s: the compared runs alternate (A B A B ...), so a slow minute of a shared
    machine lands on both sides of a ratio, and each ratio is reported per round (min / median / max)."""
    ready = {backend: _Backend.ready(corpus, backend) for backend in backends}
    settings = Settings()
    theirs = llamaindex.Ingester(corpus) if with_llamaindex else None
    rounds: list[dict[str, Any]] = []
    try:
        for _ in range(pairs):
            timing: dict[str, Any] = {}
            for backend, one in ready.items():
                timing[backend] = {"raw_encoder_s": one.encode(), "rag_index_s": one.index(corpus)}
            if theirs is not None:
                timing["llamaindex"] = theirs.ingest(*LLAMAINDEX_NODES)
                timing["llamaindex_rag_size"] = theirs.ingest(settings.index.chunk_tokens, settings.index.chunk_overlap)
            rounds.append(timing)
    finally:
        if theirs is not None:
            theirs.close()
        for one in ready.values():
            shutil.rmtree(one.work, ignore_errors=True)
    result: dict[str, Any] = {
        "articles": len(load_paths([corpus]).documents),
        "default_backend": settings.index.embedding_backend,
        "pairs": pairs,
        "rounds": rounds,
        "backends": {backend: _ratios(rounds, backend, len(one.texts)) for backend, one in ready.items()},
    }
    if theirs is not None:
        result["llamaindex"] = {
            "versions": theirs.versions,
            "nodes": rounds[0]["llamaindex"]["nodes"],
            "nodes_at_rag_size": rounds[0]["llamaindex_rag_size"]["nodes"],
            "seconds": summary([r["llamaindex"]["seconds"] for r in rounds]),
            "seconds_at_rag_size": summary([r["llamaindex_rag_size"]["seconds"] for r in rounds]),
        }
    return result


def _ratios(rounds: list[dict[str, Any]], backend: str, chunks: int) -> dict[str, Any]:
    """Per-round ratios of one backend: to its raw encoder, and to LlamaIndex per article and per chunk."""
    ours = [r[backend]["rag_index_s"] for r in rounds]
    raw = [r[backend]["raw_encoder_s"] for r in rounds]
    out: dict[str, Any] = {
        "chunks": chunks,
        "rag_index_s": summary(ours),
        "raw_encoder_s": summary(raw),
        "rag_index_chunks_per_s": chunks / statistics.median(ours),
        "raw_encoder_chunks_per_s": chunks / statistics.median(raw),
        "vs_raw_encoder": summary([a / b for a, b in zip(raw, ours, strict=True)]),
    }
    if "llamaindex" in rounds[0]:
        for key, name in (("llamaindex", "vs_llamaindex"), ("llamaindex_rag_size", "vs_llamaindex_rag_size")):
            theirs = [r[key] for r in rounds]
            out[f"{name}_per_article"] = summary([t["seconds"] / o for t, o in zip(theirs, ours, strict=True)])
            out[f"{name}_per_chunk"] = summary(
                [(chunks / o) / (t["nodes"] / t["seconds"]) for t, o in zip(theirs, ours, strict=True)]
            )
    return out
