"""How `rag` grows with the corpus: the same articles repeated at 1×, 4× and 16× (each copy with its own
id and a marker so its content hash differs), measuring index time, size on disk, peak RSS of `rag ask`
and search p50 at each size."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.latency import search
from benchmarks.measure import peak_rss_mb
from rag import RAG

FACTORS = (1, 4, 16)


def _replicate(corpus: Path, factor: int, out: Path) -> Path:
    rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    copies = [
        {**row, "id": f"{row['id']}#copy{i}", "text": f"{row['text']}\n(copy {i})"} if i else row
        for i in range(factor)
        for row in rows
    ]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in copies), encoding="utf-8")
    return out


def run(corpus: Path, questions: Sequence[tuple[str, dt.date | None]], work: Path) -> list[dict[str, Any]]:
    rows = []
    rag_cli = str(Path(sys.executable).with_name("rag"))
    for factor in FACTORS:
        index_dir = work / f"growth-{factor}"
        shutil.rmtree(index_dir, ignore_errors=True)
        rag = RAG(index_dir=index_dir, progress=False)
        _ = rag.embedder.encoder
        replicated = _replicate(corpus, factor, work / f"growth-{factor}.jsonl")
        start = time.perf_counter()
        rag.index([replicated])
        seconds = time.perf_counter() - start
        index = rag.open_index()
        env = {**os.environ, "RAG_INDEX_DIR": str(index_dir), "RAG_PROGRESS": "false"}
        rss, _ = peak_rss_mb([rag_cli, "ask", questions[0][0], "--backend", "extractive", "--json"], env)
        latency = search(rag, questions, 1)
        rows.append(
            {
                "factor": factor,
                "articles": len(index.documents),
                "chunks": len(index.chunks),
                "index_s": seconds,
                "disk_mb": index.size_on_disk() / 1e6,
                "rss_mb": rss,
                "search_p50_ms": latency["p50_ms"],
            }
        )
    return rows
