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

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import bm25s
    from scipy import sparse

from rag.store.index import fingerprint
from rag.text import bm25s_module, index_terms

log = logging.getLogger(__name__)
FORMAT = "bm25s-stemmed-english-1"
"""Part of a saved index's fingerprint: change it when tokenizing changes, and saved indexes are rebuilt."""
_FINGERPRINT = "fingerprint.txt"
_SUMS = "sha256.json"
"""Each saved file's sha256, written with it and checked at every load (`_damage`)."""


@dataclass
class BM25Index:
    """BM25 scores of a query against a fixed list of texts, in the list's order."""

    model: bm25s.BM25
    size: int
    rebuild: Callable[[], BM25Index] | None = None
    """For an index loaded from disk: how to build it afresh, should its arrays fail while scoring."""

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
        checksums), so loading never reads them; without one they are hashed. A saved index whose files no
        longer match their checksums is built again. Saving is best effort: an index on a read-only medium
        is searched all the same."""
        if directory is None:
            return cls.build(texts())
        fingerprint = _fingerprint(texts() if checksum is None else [checksum])
        try:
            if (directory / _FINGERPRINT).read_text(encoding="utf-8") == fingerprint:
                problem = _damage(directory)
                if problem is None:
                    model = bm25s_module().BM25.load(str(directory), mmap=True, show_progress=False)
                    return cls(model, size, functools.partial(cls._fresh, texts, directory, fingerprint))
                log.warning("rebuilding the BM25 index: the saved one at %s is damaged (%s)", directory, problem)
        except Exception as exc:  # derived data: whatever is wrong with it, building it again fixes it
            if not isinstance(exc, FileNotFoundError):
                log.warning("rebuilding the BM25 index: the saved one at %s is unreadable (%s)", directory, exc)
        return cls._fresh(texts, directory, fingerprint)

    @classmethod
    def _fresh(cls, texts: Callable[[], Sequence[str]], directory: Path, fingerprint: str) -> BM25Index:
        """Built from the texts and saved to `directory` for later processes (`cached`)."""
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
            sums = {path.name: _sha256(path) for path in sorted(staging.iterdir())}
            (staging / _SUMS).write_text(json.dumps(sums, indent=1), encoding="utf-8")
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
        try:
            scores = np.asarray(self.model.get_scores(known), dtype=np.float32)
            if self.rebuild is None or (scores.shape == (self.size,) and np.isfinite(scores).all()):
                return scores
            problem = f"{len(scores)} scores for {self.size} texts, or scores that are not finite"
        except (IndexError, ValueError, TypeError, KeyError) as exc:
            if self.rebuild is None:  # built here from the texts, not read from a file that may be damaged
                raise
            problem = str(exc)
        # Loading checks every byte, but a file changed under the memory map since must still not fail
        # every question.
        log.warning("rebuilding the BM25 index: the saved one failed while scoring (%s)", problem)
        fresh = self.rebuild()
        self.model, self.rebuild = fresh.model, None
        return self.scores(query_terms)


@dataclass
class KeywordStats:
    """The corpus statistics BM25 scores with: how many texts, their total length in terms, and in how
    many texts each query term occurs. A sharded archive adds up its partitions' so that every partition
    scores as one index over the whole archive would."""

    texts: int = 0
    terms: int = 0
    frequency: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: KeywordStats) -> KeywordStats:
        frequency = dict(self.frequency)
        for term, count in other.frequency.items():
            frequency[term] = frequency.get(term, 0) + count
        return KeywordStats(self.texts + other.texts, self.terms + other.terms, frequency)


class TermCounts:
    """Term counts of a fixed list of texts, for BM25 scores with statistics from elsewhere (`KeywordStats`).
    bm25s bakes its own corpus's statistics into the scores it saves, so a partition of an archive, scored
    alone, would weigh words by how rare they are in its month rather than in the archive. The scores
    use bm25s's own formula and parameters, so an archive of one partition scores as `BM25Index` does."""

    def __init__(self, counts: sparse.csc_matrix, lengths: np.ndarray, vocabulary: dict[str, int]) -> None:
        self.counts = counts
        self.lengths = lengths
        self.vocabulary = vocabulary

    @classmethod
    def build(cls, texts: Sequence[str]) -> TermCounts:
        from scipy import sparse

        tokenized = index_terms(texts, return_ids=True) if texts else None
        ids: list[list[int]] = list(tokenized.ids) if tokenized else []
        vocabulary: dict[str, int] = dict(tokenized.vocab) if tokenized else {}
        rows = np.repeat(np.arange(len(ids)), [len(one) for one in ids])
        columns = np.fromiter((term for one in ids for term in one), dtype=np.int64, count=len(rows))
        counts = sparse.csc_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, columns)), shape=(len(ids), len(vocabulary))
        )
        counts.sum_duplicates()
        return cls(counts, np.asarray([len(one) for one in ids], dtype=np.int64), vocabulary)

    def stats(self, query_terms: Sequence[str]) -> KeywordStats:
        """These texts' share of the statistics, for the query's terms."""
        indptr = self.counts.indptr
        frequency = {
            term: int(indptr[self.vocabulary[term] + 1] - indptr[self.vocabulary[term]])
            for term in dict.fromkeys(query_terms)
            if term in self.vocabulary
        }
        return KeywordStats(len(self.lengths), int(self.lengths.sum()), frequency)

    def scores(self, query_terms: Sequence[str], stats: KeywordStats) -> np.ndarray:
        """One BM25 score per text, with the corpus statistics `stats`; all zero when no term occurs."""
        model, tfc, idf = _bm25_formula()
        average = stats.terms / stats.texts if stats.texts else 1.0
        out = np.zeros(len(self.lengths), dtype=np.float32)
        for term in query_terms:  # repeats count again, as in bm25s
            if term not in self.vocabulary or not stats.frequency.get(term):
                continue
            column = self.vocabulary[term]
            start, end = self.counts.indptr[column], self.counts.indptr[column + 1]
            rows = self.counts.indices[start:end]
            weight = idf(stats.frequency[term], N=stats.texts)
            part = tfc(
                tf_array=self.counts.data[start:end], l_d=self.lengths[rows], l_avg=average, k1=model.k1, b=model.b
            )
            out[rows] += (weight * part).astype(np.float32)
        return out


@functools.cache
def _bm25_formula() -> tuple[bm25s.BM25, Any, Any]:
    """bm25s's default model (its k1 and b) with its term-frequency and idf functions, looked up once: a
    sharded search scores every partition with them for every question."""
    from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer

    model = bm25s_module().BM25()
    return model, _select_tfc_scorer(model.method), _select_idf_scorer(model.idf_method)


def saved_problem(directory: Path, checksum: str | None) -> str | None:
    """What is wrong with the BM25 index saved at `directory` (`rag doctor`), or None when it is sound,
    absent, or saved for other texts (then it is simply rebuilt)."""
    try:
        fingerprint = (directory / _FINGERPRINT).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    if checksum is not None and fingerprint != _fingerprint([checksum]):
        return None
    problem = _damage(directory)
    return None if problem is None else f"{directory} is damaged ({problem})"


def _damage(directory: Path) -> str | None:
    """Which saved files changed since they were saved, or None. Every byte is read at each load (about
    0.1 s for RealTime QA's 50,000 chunks): a flipped byte that keeps the arrays consistent (a text number
    still in range, a score still a number) would otherwise silently rank with wrong scores, and one that
    does not would send bm25s outside its arrays on every question."""
    try:
        sums = json.loads((directory / _SUMS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{_SUMS} is missing"
    except (OSError, ValueError) as exc:
        return f"{_SUMS} is unreadable ({exc})"
    if not isinstance(sums, dict) or not sums:
        return f"{_SUMS} is not a list of checksums"
    changed = sorted(str(name) for name, digest in sums.items() if _sha256_or_none(directory / str(name)) != digest)
    return f"{', '.join(changed)} changed since it was saved" if changed else None


def _sha256(path: Path) -> str:
    return str(fingerprint(path)["sha256"])


def _sha256_or_none(path: Path) -> str | None:
    try:
        return _sha256(path)
    except OSError:
        return None


def _fingerprint(texts: Sequence[str]) -> str:
    digest = hashlib.sha256(FORMAT.encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()
