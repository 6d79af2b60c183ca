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
over the live texts would. Each term's largest term-frequency part is saved with the counts (`bounds`),
so that a search can skip the postings that cannot reach its top rows (`rag.retrieval.keyword`).
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
FORMAT = "termcounts-stemmed-english-2"
"""Written with saved counts: change it when tokenizing changes, and saved counts are counted again."""
_SUMS = "sha256.json"
"""Each saved file's sha256 and the format, written with them and checked at every load (`damage`)."""
_ARRAYS = ("data", "rows", "indptr", "lengths", "bounds")
_SCORED_BYTES = 64 << 20
"""Scored postings a set of term counts keeps for the next question (`TermCounts.term_scores`)."""
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

    @property
    def average(self) -> float:
        """The texts' average length in terms, as BM25 normalizes by it."""
        return self.terms / self.texts if self.texts else 1.0

    def __add__(self, other: KeywordStats) -> KeywordStats:
        frequency = dict(self.frequency)
        for term, count in other.frequency.items():
            frequency[term] = frequency.get(term, 0) + count
        return KeywordStats(self.texts + other.texts, self.terms + other.terms, frequency)


class TermCounts:
    """Term counts of a fixed list of texts, column by term (`indptr` into `rows` and `data`, as a CSC
    matrix), for BM25 scores with statistics from elsewhere (`KeywordStats`)."""

    def __init__(
        self,
        data: np.ndarray,
        rows: np.ndarray,
        indptr: np.ndarray,
        lengths: np.ndarray,
        vocabulary: dict[str, int],
        bounds: np.ndarray | None = None,
    ) -> None:
        self.data, self.rows, self.indptr, self.lengths, self.vocabulary = data, rows, indptr, lengths, vocabulary
        self.bounds = self._bounds() if bounds is None else bounds
        """Per term, the largest term-frequency part of BM25 among its texts at these texts' own average
        length (`bound`)."""
        self._scored_cache: OrderedDict[tuple[str, int, int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        """A term's (rows, 32-bit scores) under given statistics (`term_scores`), most recent last."""
        self._scored_bytes = 0
        self._scoring = threading.Lock()

    @property
    def size(self) -> int:
        return len(self.lengths)

    @functools.cached_property
    def length(self) -> int:
        """These texts' total length in terms."""
        return int(self.lengths.sum(dtype=np.int64))

    @property
    def average(self) -> float:
        """These texts' average length in terms."""
        return self.length / self.size if self.size else 1.0

    def _bounds(self) -> np.ndarray:
        """`bounds`, terms' postings in blocks of about `_BATCH` * 100 (bounded memory)."""
        model, tfc, _ = _bm25_formula()
        assert model.method == "lucene", "`bound` scales by the average length as tf / (tf + k1 (1 - b + b len / avg))"
        out = np.zeros(len(self.indptr) - 1, dtype=np.float64)
        average, step = np.float64(self.average), _BATCH * 100
        first = 0
        while first < len(out):
            last = int(np.searchsorted(self.indptr, self.indptr[first] + step, side="right")) - 1
            last = min(max(last, first + 1), len(out))
            start, end = int(self.indptr[first]), int(self.indptr[last])
            lengths = self.lengths[np.asarray(self.rows[start:end])]
            part = tfc(tf_array=np.asarray(self.data[start:end]), l_d=lengths, l_avg=average, k1=model.k1, b=model.b)
            starts = np.asarray(self.indptr[first:last]) - start
            filled = starts < end - start  # a term with no texts (none are counted so) keeps 0
            out[first:last][filled] = np.maximum.reduceat(part, starts[filled]) if len(part) else 0.0
            first = last
        return out

    def bound(self, term: str, average: float) -> float:
        """The most one occurrence of `term` adds to a text's score, in units of its idf, when the corpus's
        average length is `average`: the term-frequency part grows as the average does (a text looks
        shorter), by at most the ratio to these texts' own average; 0 when no text holds the term."""
        column = self.vocabulary.get(term)
        if column is None:
            return 0.0
        return float(self.bounds[column]) * max(1.0, average / self.average)

    @classmethod
    def build(cls, texts: Iterable[str]) -> TermCounts:
        """Counted `_BATCH` texts at a time, each batch's (text, term) pairs made unique with their counts as
        it comes, into one vocabulary, then placed term by term into the final arrays a batch at a time
        (each batch's pairs freed as placed): the memory is the counts' (about 20 bytes a pair at the peak,
        2.4 GB for a segment of 2 M chunks), never every text's tokens nor a sparse library's copies."""
        from scipy import sparse

        vocabulary: dict[str, int] = {}
        blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        """Per batch: its pairs' terms, texts and counts, term by term (each term's texts in order)."""
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
            by_term = sparse.coo_matrix(
                (np.ones(len(flat), dtype=np.float32), (rows, local[flat] if len(flat) else flat)),
                shape=(len(ids), max(len(vocabulary), 1)),
            ).tocsc()
            by_term.sum_duplicates()  # also sorts each term's texts
            terms = np.repeat(np.arange(by_term.shape[1], dtype=np.int32), np.diff(by_term.indptr))
            blocks.append((terms, by_term.indices.astype(np.int32) + done, by_term.data.astype(np.float32)))
            lengths.append(sizes)
            done += len(ids)
        per_term = np.zeros(len(vocabulary), dtype=np.int64)
        for terms, _, _ in blocks:
            per_term += np.bincount(terms, minlength=len(vocabulary))
        indptr = np.concatenate([np.zeros(1, np.int64), np.cumsum(per_term)])
        rows, data = np.empty(int(indptr[-1]), dtype=np.int32), np.empty(int(indptr[-1]), dtype=np.float32)
        filled = indptr[:-1].copy()
        """Where each term's next pair goes: batches come in text order, so each term's texts stay sorted."""
        blocks.reverse()
        while blocks:
            terms, texts_of, counts = blocks.pop()
            starts = np.flatnonzero(np.diff(terms, prepend=-1))
            run = np.diff(np.append(starts, len(terms)))
            place = np.repeat(filled[terms[starts]] - starts, run) + np.arange(len(terms))
            rows[place], data[place] = texts_of, counts
            filled[terms[starts]] += run
        return cls(data, rows, indptr, np.concatenate([np.zeros(0, np.int32), *lengths]), vocabulary)

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
        # Plain arrays over the mapping: slicing a numpy memmap runs Python code per slice, and a question
        # slices every term's postings in every segment.
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r").view(np.ndarray) for name in _ARRAYS}
        terms = json.loads((directory / "vocabulary.json").read_text(encoding="utf-8"))
        counts = cls(vocabulary={term: column for column, term in enumerate(terms)}, **arrays)
        if len(counts.indptr) != len(terms) + 1 != len(counts.bounds) + 1 or (
            counts.indptr[-1] != len(counts.rows) != len(counts.data)
        ):
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
        return KeywordStats(*self.totals(dead), self.frequency(query_terms, dead))

    def totals(self, dead: np.ndarray | None = None) -> tuple[int, int]:
        """(texts, their total length in terms), without the `dead` rows."""
        texts, terms = self.size, self.length
        if dead is not None:
            texts, terms = texts - int(dead.sum()), terms - int(self.lengths[dead].sum(dtype=np.int64))
        return texts, terms

    def frequency(self, query_terms: Sequence[str], dead: np.ndarray | None = None) -> dict[str, int]:
        """In how many texts each query term occurs, without the `dead` rows: the postings' lengths, and
        the postings themselves read only when some rows are dead."""
        frequency = {}
        for term in dict.fromkeys(query_terms):
            column = self.vocabulary.get(term)
            if column is not None:
                frequency[term] = int(self.indptr[column + 1] - self.indptr[column])
                if dead is not None:
                    frequency[term] -= int(dead[self.rows[self.indptr[column] : self.indptr[column + 1]]].sum())
        return frequency

    def scores(self, query_terms: Sequence[str], stats: KeywordStats) -> np.ndarray:
        """One BM25 score per text, with the corpus statistics `stats`; all zero when no term occurs. The
        work is the query terms' postings; each text's terms are added in the query's order in 32 bits,
        with bm25s's own types (a 32-bit idf, a 64-bit average length), so the scores are bm25s's to the
        last bit."""
        out = np.zeros(self.size, dtype=np.float32)
        for term in query_terms:  # repeats count again, as in bm25s
            found = self.term_scores(term, stats)
            if found is not None:
                rows, scores = found
                out[rows] += scores  # a term's rows are distinct: no add is lost
        return out

    @staticmethod
    def weight(term: str, stats: KeywordStats) -> np.float32:
        """The term's idf, bm25s's 32-bit one."""
        _, _, idf = _bm25_formula()
        return np.float32(idf(stats.frequency.get(term, 0), N=stats.texts))

    def _scored(self, counts: np.ndarray, lengths: np.ndarray, term: str, stats: KeywordStats) -> np.ndarray:
        """The term's 32-bit scores of texts with these counts of it and these lengths: one formula for a
        term's whole postings and for a few looked-up texts, so both give the same bits."""
        model, tfc, _ = _bm25_formula()
        part = tfc(tf_array=counts, l_d=lengths, l_avg=np.float64(stats.average), k1=model.k1, b=model.b)
        scored: np.ndarray = (self.weight(term, stats) * part).astype(np.float32)
        return scored

    def scores_at(self, term: str, stats: KeywordStats, rows: np.ndarray) -> np.ndarray:
        """The term's scores of these texts (sorted rows), 0 where it does not occur: a binary search in its
        postings (sorted by row), so a few texts cost a few reads whatever the term's frequency."""
        out = np.zeros(len(rows), dtype=np.float32)
        column = self.vocabulary.get(term)
        if column is None or not stats.frequency.get(term):
            return out
        start, end = int(self.indptr[column]), int(self.indptr[column + 1])
        hit, at = located(rows, self.rows[start:end])
        out[hit] = self._scored(self.data[start + at], self.lengths[rows[hit]], term, stats)
        return out

    def term_scores(self, term: str, stats: KeywordStats) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows, scores) of the texts holding `term`, kept for the next question under the same statistics
        (they change only when the index does): a common word's postings are most of a question's
        keyword work, and common words come back question after question. At most `_SCORED_BYTES` kept."""
        frequency = stats.frequency.get(term)
        if not frequency:
            return None
        key = (term, frequency, stats.texts, stats.terms)
        with self._scoring:
            found = self._scored_cache.get(key)
            if found is not None:
                self._scored_cache.move_to_end(key)
                return found
        column = self._column(term)
        if column is None:
            return None
        rows, counts = column
        found = (rows, self._scored(counts, self.lengths[rows], term, stats))
        with self._scoring:
            if key not in self._scored_cache:
                self._scored_cache[key] = found
                self._scored_bytes += rows.nbytes + found[1].nbytes
            while self._scored_bytes > _SCORED_BYTES and len(self._scored_cache) > 1:
                _, (old_rows, old_scores) = self._scored_cache.popitem(last=False)
                self._scored_bytes -= old_rows.nbytes + old_scores.nbytes
        return found


def located(rows: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of `rows` (sorted) are among `held` (sorted), as positions in `rows`, and where each is in
    `held`: a binary search per row. The rows take `held`'s type: numpy would otherwise copy all of `held`
    to the rows' wider type first, a common word's whole postings per lookup."""
    if not len(held):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    at = np.minimum(np.searchsorted(held, rows.astype(held.dtype, copy=False)), len(held) - 1)
    hit = np.flatnonzero(held[at] == rows)
    return hit, at[hit]


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


def outdated(directory: Path) -> str | None:
    """The format of counts saved at `directory` by another version of `rag` (they are counted again at
    their next use, as missing ones are: not damage), or None: this version's, or unreadable (`damage`)."""
    try:
        saved = json.loads((directory / _SUMS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = saved.get("format") if isinstance(saved, dict) else None
    return str(found) if isinstance(found, str) and found != FORMAT else None


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
