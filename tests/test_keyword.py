"""Keyword search that prunes (MaxScore over the segments' term counts) finds exactly the rows that scoring
every posting finds, with the same scores, and reads less. Real index, real term counts."""

from __future__ import annotations

import itertools
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rag import RAG
from rag.config import Settings
from rag.retrieval import keyword as keyword_module
from rag.retrieval.corpus import Corpus
from rag.retrieval.keyword import Keyword, best
from rag.store.embedding import Embedder
from rag.store.sparse import KeywordStats, TermCounts, located
from rag.text import query_terms
from tests.test_segments import QUESTIONS, article, history


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Seven segments with tombstones (replaced and removed articles) and some unsaved articles."""
    directory = tmp_path_factory.mktemp("keyword") / "split"
    rag = RAG(
        Settings(index_dir=directory, progress=False, backend="extractive", merge_factor=1000), embedder=Embedder()
    )
    history(rag, save_each_step=True)
    index = rag.store.open_index()
    chunker = rag.store.chunker(index.manifest)
    for doc in [article(i, version=3) for i in (2, 40, 48, 49)]:
        chunks = chunker.split(doc)
        index.add(doc, chunks, rag.embedder.embed([c.text for c in chunks]))
    assert len(index.segments) == 7 and index.unsaved
    return Corpus.of(index)


def queries(corpus: Corpus) -> list[list[str]]:
    """The questions, and word mixes drawn from the texts with a seeded generator: rare and common words,
    repeats, words no text holds."""
    random = np.random.default_rng(7)
    words = sorted({term for row in range(len(corpus.article_ids)) for term in query_terms(corpus.article_text(row))})
    mixes = [list(random.choice(words, size=int(random.integers(1, 9)))) for _ in range(60)]
    repeated = [["tram", "tram", "harbour"], ["stori", "7", "revis", "revis"], ["zeppelin"], ["zeppelin", "flood"]]
    return [query_terms(question) for question in QUESTIONS] + mixes + repeated


@pytest.mark.parametrize("unit", ["chunk", "article"])
def test_top_is_the_best_of_every_score_exactly(corpus: Corpus, unit: str) -> None:
    keyword = corpus.keyword(unit)  # type: ignore[arg-type]
    random = np.random.default_rng(11)
    masks = [np.ones(keyword.size, dtype=bool), random.random(keyword.size) < 0.5, np.zeros(keyword.size, bool)]
    for terms, allowed, n in itertools.product(queries(corpus), masks, (1, 3, 10, 200)):
        scores = keyword.scores(terms)
        rows = np.flatnonzero(allowed & (scores > 0))
        expected = best(rows, scores[rows], n)
        found = keyword.top(terms, allowed, n)
        assert np.array_equal(found[0], expected[0]) and np.array_equal(found[1], expected[1]), (terms, n)
        some = random.choice(keyword.size, size=min(keyword.size, 9), replace=False)
        assert np.array_equal(keyword.scores_at(terms, some), scores[some])


def test_top_reads_only_the_postings_that_can_change_it(corpus: Corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rare word with common ones: the common words' postings are looked up for the rows in the running,
    not read whole, and every posting is never scored."""
    keyword = corpus.chunk_bm25
    terms = query_terms("Which story was revision 7 of the mayor's council meeting about?")
    stats = keyword.stats(terms)
    read: list[str] = []
    whole = Keyword._term_rows

    def counted(self: Keyword, term: str, stats: KeywordStats) -> tuple[np.ndarray, np.ndarray]:
        read.append(term)
        return whole(self, term, stats)

    monkeypatch.setattr(Keyword, "_term_rows", counted)
    monkeypatch.setattr(keyword_module, "_READ_WHOLE", 0)  # look up every term left, however short
    monkeypatch.setattr(Keyword, "scores", lambda *_: pytest.fail("every posting was scored"))
    rows, _ = keyword.top(terms, np.ones(keyword.size, dtype=bool), 3)
    assert len(rows) == 3 and read and len(read) < len({t for t in terms if stats.frequency.get(t)})
    assert {"mayor", "council"}.isdisjoint(read), "common words were read whole"


def test_a_terms_bound_holds_for_every_text_at_any_average_length() -> None:
    texts = [article(i).text * (1 + i % 4) for i in range(40)] + ["tram " * 30, "harbour"]
    counts = TermCounts.build(texts)
    for average in (counts.average / 3, counts.average, counts.average * 5):
        stats = KeywordStats(counts.size, round(average * counts.size), {})
        for term, column in counts.vocabulary.items():
            stats.frequency[term] = int(counts.indptr[column + 1] - counts.indptr[column])
            scores = counts.term_scores(term, stats)
            assert scores is not None
            ceiling = float(TermCounts.weight(term, stats)) * counts.bound(term, stats.terms / stats.texts)
            assert scores[1].max() <= ceiling * (1 + 1e-6), (term, average)


def test_equal_scores_are_taken_in_row_order() -> None:
    rows = np.arange(10, 20)
    scores = np.asarray([1, 3, 2, 3, 3, 0, 1, 3, 2, 3], dtype=np.float32)
    assert best(rows, scores, 3)[0].tolist() == [11, 13, 14]
    assert best(rows, scores, 20)[0].tolist() == [11, 13, 14, 17, 19, 12, 18, 10, 16]


def test_bounds_are_saved_with_the_counts(tmp_path: Path) -> None:
    counts = TermCounts.build([article(i).text for i in range(12)])
    counts.save(tmp_path / "terms")
    loaded = TermCounts.load(tmp_path / "terms")
    assert np.array_equal(np.asarray(loaded.bounds), counts.bounds) and loaded.bounds.max() < 1


def test_counts_match_a_count_of_each_texts_terms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Built in small batches (so pairs from many batches are placed into each term's postings), the counts
    are each text's own, every term's texts in order."""
    import rag.store.sparse as sparse

    monkeypatch.setattr(sparse, "_BATCH", 7)
    texts = [article(i, version=i % 3).text for i in range(40)] + ["", "tram tram tram", "harbour"]
    counts = TermCounts.build(texts)
    expected = [Counter(query_terms(text)) for text in texts]
    for term, column in counts.vocabulary.items():
        start, end = counts.indptr[column], counts.indptr[column + 1]
        rows, found = counts.rows[start:end], counts.data[start:end]
        assert np.all(np.diff(rows) > 0), term
        assert {int(r): float(c) for r, c in zip(rows, found, strict=True)} == {
            row: float(count[term]) for row, count in enumerate(expected) if count[term]
        }, term
    assert counts.lengths.tolist() == [sum(count.values()) for count in expected]


def test_looking_up_a_few_rows_reads_a_few_postings() -> None:
    """A lookup is a binary search in the postings as they are mapped: rows of a wider type than the
    postings made numpy copy all of them first (30 ms a lookup of a common word at 10 M chunks)."""
    held = np.arange(0, 20_000_000, 2, dtype=np.int32)
    rows = np.asarray([4, 5, 19_999_998], dtype=np.int64)
    tracemalloc.start()
    try:
        hit, at = located(rows, held)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert hit.tolist() == [0, 2] and at.tolist() == [2, 9_999_999]
    assert peak < held.nbytes // 100, f"{peak} bytes allocated to look up 3 rows in {held.nbytes} bytes of postings"
