"""BM25 over a corpus split into segments: the best rows for a question without scoring every text that
holds one of its common words.

A question of RealTime QA has about 13 terms after stop words ("which", "week", "new" among them), whose
postings reach about one chunk in two: scoring every posting is about 50,000 additions per question at
50,000 chunks and 10 M at 10 M chunks. Most of them cannot matter: a term adds at most its idf times the
largest term-frequency part among its texts (saved with the counts, `TermCounts.bound`), so once the rows
already seen hold `n` scores that the remaining terms' bounds together cannot reach, no row outside them
can enter the top `n` (MaxScore, Turtle & Flood 1995, as Lucene and Tantivy prune). Terms are taken
largest bound first (the rarest, mostly) over their whole postings until that holds; the rest are looked
up only for the rows still in the running, which shrink as the bound does. The rows that remain are
scored term by term in the question's order, in bm25s's own types, so scores and order are exactly those
of scoring everything.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from rag.store.records import article_text, chunk_text
from rag.store.segments import Segment, Unit
from rag.store.sparse import KeywordStats, TermCounts, located

if TYPE_CHECKING:
    from rag.retrieval.corpus import Corpus

log = logging.getLogger(__name__)
T = TypeVar("T")
_SLACK = 1e-4
"""Relative margin on every pruning comparison: the partial sums that prune are added in another order
than the final scores (32-bit rounding), so a row is dropped only when it misses by more than that."""
_READ_WHOLE = 4
"""A term still to add is read whole, rather than looked up row by row for the rows still in the running,
when its postings are at most this many times as many as those rows (a binary search per row costs about
as much as reading a few postings)."""
_STATS_KEPT = 64
"""Questions whose statistics `Keyword.stats` keeps: a search asks for them once per stage and unit."""


def best(rows: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n` best positive scores of `rows` (row order), best first, equal scores in row order: one
    order whichever way the rows were found."""
    keep = scores > 0
    rows, scores = rows[keep], scores[keep]
    if len(rows) > n:
        kth = np.partition(scores, len(scores) - n)[len(scores) - n]
        above = scores > kth
        tied = np.flatnonzero(scores == kth)[: n - int(above.sum())]
        above[tied] = True
        rows, scores = rows[above], scores[above]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


class Keyword:
    """BM25 over one unit's rows (chunks or articles) of a corpus: each segment's saved term counts, and the
    unsaved articles' counted here, scored with the statistics of every live row together, so the scores
    are those of one BM25 index over the corpus however it is split."""

    def __init__(self, corpus: Corpus, unit: Unit) -> None:
        self.corpus, self.unit = corpus, unit
        self.size = len(corpus.chunk_ids) if unit == "chunk" else len(corpus.article_ids)
        index = corpus.index
        self._parts: list[tuple[Segment | None, np.ndarray, np.ndarray | None, int | None]] = []
        """(segment, or None for the unsaved articles; each of its rows' corpus row, -1 when dead; the dead
        rows as a mask, None when there are none; the first corpus row when its rows are corpus rows in
        order, as they are without tombstones)."""
        self._unsaved: TermCounts | None = None
        self._part = np.zeros(self.size, dtype=np.int32)
        """Each corpus row's part (its place in `_parts`)."""
        self._local = np.zeros(self.size, dtype=np.int64)
        """Each corpus row's row within its part."""
        self._stats: OrderedDict[tuple[str, ...], KeywordStats] = OrderedDict()
        # Parts in corpus order (the unsaved articles last), so a term's rows gathered part by part are in order.
        for number, rows in sorted(corpus.by_segment().items(), key=lambda item: int(item[1][0])):
            segment = index.segments[number] if number >= 0 else None
            if segment is None:
                counts = self._unsaved = self._unsaved_counts()
            else:
                counts = segment.terms(unit)
            order = np.full(counts.size, -1, dtype=np.int64)
            positions, corpus_rows = self._positions(rows)
            order[positions] = corpus_rows
            self._part[corpus_rows], self._local[corpus_rows] = len(self._parts), positions
            dead = order < 0
            first = int(order[0]) if len(order) else 0
            contiguous = not dead.any() and np.array_equal(order, np.arange(first, first + len(order)))
            self._parts.append((segment, order, dead if dead.any() else None, first if contiguous else None))
        self._totals = KeywordStats()
        """Texts and terms of every live row: the statistics that do not depend on the question."""
        for part, (_, _, gone, _) in enumerate(self._parts):
            self._totals += KeywordStats(*self._counted(part, functools.partial(TermCounts.totals, dead=gone)))

    def _positions(self, article_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in their segment, corpus rows) of these articles, or of their chunks."""
        corpus = self.corpus
        if self.unit == "article":
            return corpus.article_position[article_rows], article_rows
        rows = [corpus.article_rows[r] for r in article_rows.tolist()]
        counts = np.asarray([len(one) for one in rows], np.int64)
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        firsts = np.repeat(corpus.article_first_chunk[article_rows], counts)
        return firsts + within, np.concatenate([np.zeros(0, np.int64), *rows])

    def _unsaved_counts(self) -> TermCounts:
        """The unsaved articles' counts, in the order `Documents.summaries` places them."""
        index = self.corpus.index
        _, records = index.documents.changes
        if self.unit == "article":
            return TermCounts.build(article_text(record) for record in records)
        return TermCounts.build(
            chunk_text(record, *index.chunks.span(chunk_id)) for record in records for chunk_id in record.chunk_ids
        )

    def _counted(self, part: int, use: Callable[[TermCounts], T]) -> T:
        """`use` of the part's term counts. Loading checks every byte, but a file changed under the mapping
        since must still not fail every question: counts that fail are counted again from the records."""
        segment = self._parts[part][0]
        if segment is None:
            assert self._unsaved is not None  # the unsaved articles' part is made with their counts
            return use(self._unsaved)
        try:
            return use(segment.terms(self.unit))
        except (ValueError, IndexError) as exc:
            number = segment.info.number
            log.warning("rebuilding the BM25 term counts of segment %d: they failed while scoring (%s)", number, exc)
            segment.recount(self.unit)
            return use(segment.terms(self.unit))

    def stats(self, terms: list[str]) -> KeywordStats:
        """The corpus's statistics for these terms: every live row, whatever the dates searched. Kept for
        the next call with the same terms (a search's stages ask again; the corpus does not change)."""
        key = tuple(terms)
        found = self._stats.get(key)
        if found is None:
            found = KeywordStats(self._totals.texts, self._totals.terms)
            for part, (_, _, dead, _) in enumerate(self._parts):
                count = functools.partial(TermCounts.frequency, query_terms=terms, dead=dead)
                found += KeywordStats(frequency=self._counted(part, count))
            self._stats[key] = found
            while len(self._stats) > _STATS_KEPT:
                self._stats.popitem(last=False)
        self._stats.move_to_end(key)
        return found

    def scores(self, terms: list[str], stats: KeywordStats | None = None) -> np.ndarray:
        """One BM25 score per row of the unit (`stats`: the statistics to score with, by default the
        corpus's own); all zero when no term occurs. Reads every posting of every term: `top` and
        `scores_at` are for questions."""
        stats = self.stats(terms) if stats is None else stats
        out = np.zeros(self.size, dtype=np.float32)
        for part, (_, order, _, first) in enumerate(self._parts):
            scores = self._counted(part, lambda counts: counts.scores(terms, stats))
            if first is not None:
                out[first : first + len(scores)] = scores
            else:
                live = order >= 0
                out[order[live]] = scores[live]
        return out

    def scores_at(self, terms: list[str], rows: np.ndarray, stats: KeywordStats | None = None) -> np.ndarray:
        """`scores(terms, stats)[rows]`, reading only these rows' postings (a binary search per term)."""
        stats = self.stats(terms) if stats is None else stats
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        out = np.zeros(len(rows), dtype=np.float32)
        for term in terms:  # in the question's order, repeats again: the sums are `scores`'s to the bit
            out[order] += self._term_at(term, rows[order], stats)
        return out

    def _term_at(self, term: str, rows: np.ndarray, stats: KeywordStats) -> np.ndarray:
        """The term's scores of these (sorted) corpus rows, part by part."""
        out = np.zeros(len(rows), dtype=np.float32)
        parts = self._part[rows]
        for part in np.unique(parts).tolist():
            inside = np.flatnonzero(parts == part)
            look = functools.partial(TermCounts.scores_at, term=term, stats=stats, rows=self._local[rows[inside]])
            out[inside] = self._counted(part, look)
        return out

    def _term_rows(self, term: str, stats: KeywordStats) -> tuple[np.ndarray, np.ndarray]:
        """(corpus rows, scores) of every live row holding the term."""
        found = []
        for part, (_, order, _, first) in enumerate(self._parts):
            scored = self._counted(part, functools.partial(TermCounts.term_scores, term=term, stats=stats))
            if scored is None:
                continue
            local, scores = scored
            if first is not None:
                found.append((local + first, scores))
            else:
                rows = order[local]
                live = rows >= 0
                found.append((rows[live], scores[live]))
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return np.concatenate([rows for rows, _ in found]), np.concatenate([scores for _, scores in found])

    def _most(self, term: str, stats: KeywordStats) -> float:
        """The largest term-frequency part of the term's BM25 score in any part (`TermCounts.bound`)."""
        look = functools.partial(TermCounts.bound, term=term, average=stats.average)
        return max(self._counted(part, look) for part in range(len(self._parts)))

    def top(
        self, terms: list[str], allowed: np.ndarray, n: int, stats: KeywordStats | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the `n` best positive scores among the `allowed` rows (a mask), best first,
        equal scores in row order: `best` over `scores`, reading only the postings that can change it
        (the module's docstring)."""
        stats = self.stats(terms) if stats is None else stats
        repeats = Counter(term for term in terms if stats.frequency.get(term))
        bound = {
            term: float(TermCounts.weight(term, stats)) * self._most(term, stats) * k for term, k in repeats.items()
        }
        rarest = sorted(repeats, key=lambda term: -bound[term])
        partial = np.zeros(self.size, dtype=np.float32)
        seen = np.zeros(self.size, dtype=bool)
        touched: list[np.ndarray] = []
        known: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        """Per term, (rows in order, their scores) for a set of rows holding every row still in the running."""
        reached = 0.0
        for taken, term in enumerate(rarest):
            rows, scores = known[term] = self._term_rows(term, stats)
            partial[rows] += scores * np.float32(repeats[term])
            fresh = rows[~seen[rows]]
            seen[fresh] = True
            touched.append(fresh)
            reached += bound[term]
            rest = rarest[taken + 1 :]
            remaining = sum(bound[term] for term in rest)
            if remaining >= reached:  # no row can have n sums above what any unseen row may still get
                continue
            rows = np.concatenate(touched)
            rows = rows[allowed[rows]]
            if _beaten(partial[rows], remaining, n):
                rows = np.sort(rows)
                sums = partial[rows].astype(np.float64)
                for term in rest:
                    rows, sums = _running(rows, sums, remaining, n)
                    if stats.frequency[term] <= _READ_WHOLE * len(rows):
                        known[term] = self._term_rows(term, stats)
                    else:
                        known[term] = (rows, self._term_at(term, rows, stats))
                    sums += _looked_up(rows, *known[term]) * repeats[term]
                    remaining -= bound[term]
                rows, _ = _running(rows, sums, remaining, n)
                total = np.zeros(len(rows), dtype=np.float32)
                for term in terms:  # in the question's order, repeats again: the sums are `scores`'s to the bit
                    if term in known:
                        total += _looked_up(rows, *known[term])
                return best(rows, total, n)
        scores = self.scores(terms, stats)  # no bound pruned: every posting is read anyway
        rows = np.flatnonzero(allowed & (scores > 0))
        return best(rows, scores[rows], n)


def _looked_up(rows: np.ndarray, held: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The scores of `rows` (sorted) among rows `held` (sorted) with theirs; 0 for a row not held."""
    out = np.zeros(len(rows), dtype=np.float32)
    hit, at = located(rows, held)
    out[hit] = scores[at]
    return out


def _kth(sums: np.ndarray, n: int) -> float:
    """The n-th best of `sums`, less the rounding margin; 0 when there are fewer."""
    if len(sums) < n:
        return 0.0
    return float(np.partition(sums, len(sums) - n)[len(sums) - n]) * (1 - _SLACK)


def _beaten(sums: np.ndarray, remaining: float, n: int) -> bool:
    """Whether `n` rows already have partial sums that a row not seen yet, which can gain at most
    `remaining`, cannot reach: then only the rows seen can be among the `n` best."""
    return _kth(sums, n) > remaining * (1 + _SLACK)


def _running(rows: np.ndarray, sums: np.ndarray, remaining: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows (and their partial sums, lower bounds: scores are not negative) that can still be among
    the `n` best when at most `remaining` is still to come to any of them."""
    keep = sums + remaining * (1 + _SLACK) >= _kth(sums, n)
    return rows[keep], sums[keep]
