"""A new process's first question with the index files out of the page cache, as after a reboot or on an
index nobody has read for a while: `posix_fadvise(DONTNEED)` drops each file's cached pages (no root
needed), then a fresh Python process imports `rag`, loads the embedding model and searches once."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

CHILD = """
import json, sys, time
start = time.perf_counter()
from rag import RAG
imported = time.perf_counter()
rag = RAG(index_dir=sys.argv[1], progress=False)
rag.embedder.embed_query("warm")
loaded = time.perf_counter()
rag.search(sys.argv[2], k=10)
searched = time.perf_counter()
print(json.dumps({"import_s": imported - start, "model_s": loaded - imported, "first_search_s": searched - loaded}))
"""


def evict(directory: Path) -> int:
    """Drop the directory's files from the page cache; the bytes dropped."""
    dropped = 0
    for path in directory.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                dropped += os.fstat(fd).st_size
            finally:
                os.close(fd)
    return dropped


def first_question(index_dir: Path, question: str, repeats: int) -> dict[str, Any]:
    """Median and worst of `repeats` cold starts; the first search includes loading the index."""
    runs = []
    for _ in range(repeats):
        dropped = evict(index_dir)
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(index_dir), question], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    out: dict[str, Any] = {"evicted_mb": dropped / 1e6, "runs": runs}
    for key in ("import_s", "model_s", "first_search_s"):
        values = [r[key] for r in runs]
        out[key] = {"median": statistics.median(values), "max": max(values)}
    return out
