"""Sparse retrieval: BM25 over chunks and over whole articles, both with titles, one set of term counts per
segment, scored with the statistics of the whole index.

Names, numbers and rare words are where dense embeddings of a small model are weakest and keyword
matching is strongest. Two granularities are kept because they answer different questions: a chunk's
BM25 says which passage holds the words, an article's BM25 says which story is about them (on RealTime
QA, article-level BM25 fused with dense ranks the gold article first far more often than chunk-level
BM25 does, while chunk-level BM25 picks the passages).

bm25s bakes its corpus's statistics into the scores it saves, so an index kept as one bm25s model had
to be rebuilt from every text whenever anything was added (184–216 s and 5.6 GB at 1 M chunks). Term
counts (`TermCounts`) do not depend on the rest of the corpus: each segment's are counted once, when
the segment is written, in batches (bounded memory), saved beside it and memory-mapped by readers; a
question adds up the segments' statistics for its terms (`KeywordStats`, dead rows taken off) and scores
each segment with them, using bm25s's own formula and parameters, so any split ranks as one bm25s index
over the live texts would.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import bm25s

from rag.durable import fingerprint, fsync_dir
from rag.text import bm25s_module, index_terms

log = logging.getLogger(__name__)
FORMAT = "termcounts-stemmed-english-1"
"""Written with saved counts: change it when tokenizing changes, and saved counts are counted again."""
_SUMS = "sha256.json"
"""Each saved file's sha256 and the format, written with them and checked at every load (`damage`)."""
_ARRAYS = ("data", "rows", "indptr", "lengths")
_SCORED_BYTES = 64 << 20
"""Scored postings a set of term counts keeps for the next question (`TermCounts._term_scores`)."""
_BATCH = 10_000
"""Texts tokenized at a time: the counts grow as compact arrays, never as every text's token lists."""


@dataclass
class KeywordStats:
    """The corpus statistics BM25 scores with: how many texts, their total length in terms, and in how
    many texts each query term occurs. Segments (and an archive's partitions) add theirs up, so that each
    scores as one index over everything would."""

    texts: int = 0
    terms: int = 0
    frequency: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: KeywordStats) -> KeywordStats:
        frequency = dict(self.frequency)
        for term, count in other.frequency.items():
            frequency[term] = frequency.get(term, 0) + count
        return KeywordStats(self.texts + other.texts, self.terms + other.terms, frequency)


class TermCounts:
    """Term counts of a fixed list of texts, column by term (`indptr` into `rows` and `data`, as a CSC
    matrix), for BM25 scores with statistics from elsewhere (`KeywordStats`)."""

    def __init__(
        self, data: np.ndarray, rows: np.ndarray, indptr: np.ndarray, lengths: np.ndarray, vocabulary: dict[str, int]
    ) -> None:
        self.data, self.rows, self.indptr, self.lengths, self.vocabulary = data, rows, indptr, lengths, vocabulary
        self._scored: OrderedDict[tuple[str, int, int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        """A term's (rows, 32-bit scores) under given statistics (`_term_scores`), most recent last."""
        self._scored_bytes = 0
        self._scoring = threading.Lock()

    @property
    def size(self) -> int:
        return len(self.lengths)

    @classmethod
    def build(cls, texts: Iterable[str]) -> TermCounts:
        """Counted `_BATCH` texts at a time, each batch's (text, term) pairs made unique with their counts as
        it comes, into one vocabulary: the memory is the counts', never every text's tokens."""
        from scipy import sparse

        vocabulary: dict[str, int] = {}
        blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        lengths: list[np.ndarray] = []
        done = 0
        for batch in batched(texts):
            tokenized = index_terms(batch, return_ids=True)
            ids: list[list[int]] = list(tokenized.ids)
            local = np.asarray(
                [vocabulary.setdefault(term, len(vocabulary)) for term, _ in sorted(tokenized.vocab.items(), key=_id)],
                dtype=np.int32,
            )
            sizes = np.asarray([len(one) for one in ids], dtype=np.int32)
            flat = np.fromiter((term for one in ids for term in one), dtype=np.int64, count=int(sizes.sum()))
            rows = np.repeat(np.arange(len(ids), dtype=np.int32), sizes)
            counted = sparse.coo_matrix(
                (np.ones(len(flat), dtype=np.float32), (rows, local[flat] if len(flat) else flat)),
                shape=(len(ids), max(len(vocabulary), 1)),
            ).tocsr()
            counted.sum_duplicates()
            pairs = counted.tocoo()
            blocks.append(
                (pairs.row.astype(np.int32) + done, pairs.col.astype(np.int32), pairs.data.astype(np.float32))
            )
            lengths.append(sizes)
            done += len(ids)
        empty = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32))
        rows, columns, data = (np.concatenate([part[i] for part in [empty, *blocks]]) for i in range(3))
        blocks.clear()
        counts = sparse.csc_matrix((data, (rows, columns)), shape=(done, len(vocabulary)))
        del rows, columns, data
        return cls(
            counts.data.astype(np.float32),
            counts.indices.astype(np.int32),
            counts.indptr.astype(np.int64),
            np.concatenate([np.zeros(0, np.int32), *lengths]),
            vocabulary,
        )

    def save(self, directory: Path) -> None:
        """Written to a sibling directory and renamed into place, so no process loads half of it."""
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            for name in _ARRAYS:
                np.save(staging / f"{name}.npy", getattr(self, name))
            terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
            (staging / "vocabulary.json").write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
            sums = {path.name: fingerprint(path)["sha256"] for path in sorted(staging.iterdir())}
            (staging / _SUMS).write_text(json.dumps({"format": FORMAT, "files": sums}, indent=1), encoding="utf-8")
            for path in staging.iterdir():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
            shutil.rmtree(directory, ignore_errors=True)
            os.rename(staging, directory)
            fsync_dir(directory.parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> TermCounts:
        """Memory-mapped: the counts are file pages the search reads, not memory this process owns."""
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
        terms = json.loads((directory / "vocabulary.json").read_text(encoding="utf-8"))
        counts = cls(vocabulary={term: column for column, term in enumerate(terms)}, **arrays)
        if len(counts.indptr) != len(terms) + 1 or counts.indptr[-1] != len(counts.rows) != len(counts.data):
            raise ValueError(f"{directory}: the arrays do not describe one matrix")
        return counts

    def _column(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows, counts) of the texts holding the term."""
        column = self.vocabulary.get(term)
        if column is None:
            return None
        start, end = int(self.indptr[column]), int(self.indptr[column + 1])
        rows = np.asarray(self.rows[start:end])
        if len(rows) and (rows.min() < 0 or rows.max() >= self.size):
            raise ValueError(f"the counts of {term!r} name texts that do not exist")
        return rows, np.asarray(self.data[start:end])

    def stats(self, query_terms: Sequence[str], dead: np.ndarray | None = None) -> KeywordStats:
        """These texts' share of the statistics for the query's terms, without the `dead` rows (a mask)."""
        frequency = {}
        for term in dict.fromkeys(query_terms):
            found = self._column(term)
            if found is not None:
                frequency[term] = len(found[0]) - (int(dead[found[0]].sum()) if dead is not None else 0)
        texts, terms = self.size, int(self.lengths.sum(dtype=np.int64))
        if dead is not None:
            texts, terms = texts - int(dead.sum()), terms - int(self.lengths[dead].sum(dtype=np.int64))
        return KeywordStats(texts, terms, frequency)

    def scores(self, query_terms: Sequence[str], stats: KeywordStats) -> np.ndarray:
        """One BM25 score per text, with the corpus statistics `stats`; all zero when no term occurs. The
        work is the query terms' postings; each text's terms are added in the query's order in 32 bits,
        with bm25s's own types (a 32-bit idf, a 64-bit average length), so the scores are bm25s's to the
        last bit."""
        out = np.zeros(self.size, dtype=np.float32)
        for term in query_terms:  # repeats count again, as in bm25s
            found = self._term_scores(term, stats)
            if found is not None:
                rows, scores = found
                out[rows] += scores  # a term's rows are distinct: no add is lost
        return out

    def _term_scores(self, term: str, stats: KeywordStats) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows, scores) of the texts holding `term`, kept for the next question under the same statistics
        (they change only when the index does): a common word's postings are most of a question's
        keyword work, and common words come back question after question. At most `_SCORED_BYTES` kept."""
        frequency = stats.frequency.get(term)
        if not frequency:
            return None
        key = (term, frequency, stats.texts, stats.terms)
        with self._scoring:
            found = self._scored.get(key)
            if found is not None:
                self._scored.move_to_end(key)
                return found
        column = self._column(term)
        if column is None:
            return None
        model, tfc, idf = _bm25_formula()
        rows, counts = column
        average = np.float64(stats.terms / stats.texts if stats.texts else 1.0)
        weight = np.float32(idf(frequency, N=stats.texts))
        part = tfc(tf_array=counts, l_d=self.lengths[rows], l_avg=average, k1=model.k1, b=model.b)
        found = (rows, (weight * part).astype(np.float32))
        with self._scoring:
            if key not in self._scored:
                self._scored[key] = found
                self._scored_bytes += rows.nbytes + found[1].nbytes
            while self._scored_bytes > _SCORED_BYTES and len(self._scored) > 1:
                _, (old_rows, old_scores) = self._scored.popitem(last=False)
                self._scored_bytes -= old_rows.nbytes + old_scores.nbytes
        return found


def _id(item: tuple[str, int]) -> int:
    return item[1]


def batched(texts: Iterable[str], size: int = _BATCH) -> Iterator[list[str]]:
    """The texts in lists of `size` (the last one shorter), read as they come."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@functools.cache
def _bm25_formula() -> tuple[bm25s.BM25, Any, Any]:
    """bm25s's default model (its k1 and b) with its term-frequency and idf functions, looked up once: a
    search scores every segment with them for every question."""
    from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer

    model = bm25s_module().BM25()
    return model, _select_tfc_scorer(model.method), _select_idf_scorer(model.idf_method)


def damage(directory: Path) -> str | None:
    """What is wrong with the counts saved at `directory`, or None. Every byte is read at each load (about
    0.1 s for RealTime QA's 50,000 chunks): a flipped byte that keeps the arrays consistent (a row number
    still in range, a count still a number) would otherwise silently rank with wrong scores, and one
    that does not would send the scoring outside its arrays on every question."""
    try:
        saved = json.loads((directory / _SUMS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{_SUMS} is missing"
    except (OSError, ValueError) as exc:
        return f"{_SUMS} is unreadable ({exc})"
    sums = saved.get("files") if isinstance(saved, dict) else None
    if not isinstance(sums, dict) or not sums:
        return f"{_SUMS} is not a list of checksums"
    if saved.get("format") != FORMAT:
        return f"counted by another version ({saved.get('format')!r})"
    changed = sorted(str(name) for name, digest in sums.items() if _sha256_or_none(directory / str(name)) != digest)
    return f"{', '.join(changed)} changed since it was saved" if changed else None


def _sha256_or_none(path: Path) -> str | None:
    try:
        return str(fingerprint(path)["sha256"])
    except OSError:
        return None
