"""Sparse retrieval: BM25 (bm25s) over chunks and over whole articles, both with titles.

Names, numbers and rare words are where dense embeddings of a small model are weakest and keyword
matching is strongest. Two granularities are kept because they answer different questions: a chunk's
BM25 says which passage holds the words, an article's BM25 says which story is about them (on RealTime
QA, article-level BM25 fused with dense ranks the gold article first far more often than chunk-level
BM25 does, while chunk-level BM25 picks the passages).

The index is derived from the article index. Building it takes about 8 s for RealTime QA's 50,000
chunks, which every `rag ask` would pay, so it is saved beside the generation it was built from and
memory-mapped by later processes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import bm25s

from rag.text import bm25s_module, index_terms

log = logging.getLogger(__name__)
FORMAT = "bm25s-stemmed-english-1"
"""Part of a saved index's fingerprint: change it when tokenizing changes, and saved indexes are rebuilt."""
_FINGERPRINT = "fingerprint.txt"


@dataclass
class BM25Index:
    """BM25 scores of a query against a fixed list of texts, in the list's order."""

    model: bm25s.BM25
    size: int

    @classmethod
    def build(cls, texts: Sequence[str]) -> BM25Index:
        model = bm25s_module().BM25()
        if texts:
            model.index(index_terms(texts, return_ids=True), show_progress=False)
        return cls(model, len(texts))

    @classmethod
    def cached(
        cls, texts: Callable[[], Sequence[str]], size: int, directory: Path | None, checksum: str | None
    ) -> BM25Index:
        """Loaded from `directory` when a process saved it there for exactly these texts, else built and
        saved there. `size` is how many texts there are; `checksum` names them (the index's recorded file
        checksums), so loading never reads them; without one they are hashed. Saving is best effort: an
        index on a read-only medium is searched all the same."""
        if directory is None:
            return cls.build(texts())
        fingerprint = _fingerprint(texts() if checksum is None else [checksum])
        try:
            if (directory / _FINGERPRINT).read_text(encoding="utf-8") == fingerprint:
                model = bm25s_module().BM25.load(str(directory), mmap=True, show_progress=False)
                _check(model, size)
                return cls(model, size)
        except Exception as exc:  # derived data: whatever is wrong with it, building it again fixes it
            if not isinstance(exc, FileNotFoundError):
                log.warning("rebuilding the BM25 index: the saved one at %s is unreadable (%s)", directory, exc)
        built = cls.build(texts())
        if built.size:
            try:
                built._save(directory, fingerprint)
            except OSError as exc:
                log.debug("BM25 index not saved to %s: %s", directory, exc)
        return built

    def _save(self, directory: Path, fingerprint: str) -> None:
        """Written to a sibling directory and renamed into place, so no process loads half an index."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            self.model.save(str(staging), show_progress=False)
            (staging / _FINGERPRINT).write_text(fingerprint, encoding="utf-8")
            shutil.rmtree(directory, ignore_errors=True)
            os.rename(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def scores(self, query_terms: list[str]) -> np.ndarray:
        """One score per text; all zero when no query term occurs in the texts."""
        known = [term for term in query_terms if term in getattr(self.model, "vocab_dict", {})]
        if not known or not self.size:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.model.get_scores(known), dtype=np.float32)


def _check(model: bm25s.BM25, size: int) -> None:
    """The saved arrays fit together and these texts: a truncated or zero-length file must mean "rebuild",
    not a crash in every later search."""
    scores = model.scores
    if int(scores["num_docs"]) != size:
        raise ValueError(f"it indexes {scores['num_docs']} texts, not {size}")
    data, indices, indptr = scores["data"], scores["indices"], scores["indptr"]
    if not (len(data) == len(indices) == int(indptr[-1])) or len(indptr) < len(model.vocab_dict):
        raise ValueError("its arrays do not fit together")


def _fingerprint(texts: Sequence[str]) -> str:
    digest = hashlib.sha256(FORMAT.encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()
