"""Indexing throughput: `rag` end to end against the raw encoder on the very chunks `rag` embeds (the
ceiling: chunking, storage and FAISS are what `rag` adds), and against LlamaIndex ingesting the same
articles with the same model into FAISS, in its own environment."""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import llamaindex
from benchmarks.measure import repeat_timings, summary
from rag import RAG, Settings
from rag.config import EmbeddingBackend
from rag.index import Manifest
from rag.loaders import load_paths


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


def run(corpus: Path, repeats: int, with_llamaindex: bool, backends: Sequence[EmbeddingBackend]) -> dict[str, Any]:
    """Every embedding backend against its own raw encoder, and against LlamaIndex (torch fp32, as it
    ships) on the same articles."""
    result: dict[str, Any] = {
        "articles": len(load_paths([corpus]).documents),
        "default_backend": Settings().embedding_backend,
        "backends": {backend: _backend(corpus, backend, repeats) for backend in backends},
    }
    if with_llamaindex:
        theirs = llamaindex.ingest(corpus, repeats)
        result["llamaindex"] = theirs
        for measured in result["backends"].values():
            measured["vs_llamaindex_articles_per_s"] = (
                statistics.median(theirs["seconds"]) / measured["rag_index_s"]["median"]
            )
    return result


def _backend(corpus: Path, backend: EmbeddingBackend, repeats: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rag-bench-ingest-"))
    try:
        rag = RAG(index_dir=work / "index", progress=False, embedding_backend=backend)
        embedder = rag.embedder
        _ = embedder.encoder  # loading the model is start-up, not ingest: neither side is charged for it
        documents = load_paths([corpus]).documents
        s = rag.settings
        chunker = rag.chunker(
            Manifest(embedder.name, embedder.dimension, s.chunk_tokens, s.chunk_overlap, s.tokenizer_encoding)
        )
        texts = [c.text for doc in documents for c in chunker.split(doc)]

        def encode() -> None:
            embedder.encoder.encode(texts, batch_size=s.embedding_batch_size)

        def fresh() -> None:
            shutil.rmtree(work / "index", ignore_errors=True)
            rag._index = None
            rag._retriever = None

        encode()  # warm-up: first batches pay for allocator and thread-pool start
        raw = repeat_timings(encode, repeats)
        ours = repeat_timings(lambda: rag.index([corpus]), repeats, setup=fresh)
        return {
            "chunks": len(texts),
            "raw_encoder_s": summary(raw),
            "rag_index_s": summary(ours),
            "raw_encoder_chunks_per_s": len(texts) / statistics.median(raw),
            "rag_index_chunks_per_s": len(texts) / statistics.median(ours),
            "rag_vs_ceiling": statistics.median(raw) / statistics.median(ours),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
