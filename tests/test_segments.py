"""Segments: a save writes what it adds, a delete is a tombstone, merges keep the count bounded, and no split of
an index changes a ranking. Real model, real FAISS, real SQLite files."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rag import RAG
from rag.cli import run as cli_run
from rag.config import Settings
from rag.store.ann import IvfIndex, assignments, codebook_for, rescored
from rag.store.embedding import Embedder
from rag.store.index import MANIFEST, ArticleIndex
from rag.store.segments import SegmentInfo, level, merges
from rag.text import query_terms
from rag.types import Document

ROOT = Path(__file__).resolve().parent.parent
PLACES = ["harbour", "valley", "capital", "airport", "river", "mountain", "stadium", "market"]
THINGS = ["tram", "bridge", "school", "hospital", "ferry", "museum", "library", "factory"]
EVENTS = ["repairs", "strike", "flood", "election", "festival", "closure", "budget", "fire"]
QUESTIONS = [
    "tram repairs at the harbour",
    "Why did the ferry strike close the river crossing?",
    "flood damage to the valley school",
    "What did the mayor say about the airport budget?",
    "stadium festival",
    "market fire in the capital",
]


def article(i: int, version: int = 0) -> Document:
    place, thing, event = PLACES[i % 8], THINGS[(i // 8) % 8], EVENTS[(i * 3 + version) % 8]
    text = (
        f"The {thing} by the {place} was hit by a {event} on day {i}. Officials said the {event} would last "
        f"{i % 5 + 2} weeks. Residents near the {place} asked the mayor about the {thing}, and the council "
        f"promised an answer about the {event} before the next meeting. Story {i} revision {version}."
    )
    return Document(
        f"a{i:02d}", text, title=f"{event.title()} at the {place} {thing}", published=dt.date(2024, 1, 1 + i % 28)
    )


def ranking(rag: RAG, question: str) -> list[tuple[str, str, float]]:
    found = rag.search(question, k=8)
    return [(p.doc_id, p.text, round(p.score, 6)) for p in found.passages]


def history(rag: RAG, *, save_each_step: bool) -> None:
    """One story of an index: additions, edits, deletes; saved once at the end, or after every step."""
    steps = [
        [article(i) for i in range(0, 20)],
        [article(i) for i in range(20, 35)],
        [article(3, version=1), article(21, version=1)],
        "a07",
        [article(i) for i in range(35, 48)],
        "a22",
        [article(7, version=2)],
    ]
    index = rag.store.open_index(create=True)
    with rag.store.writing():
        for step in steps:
            if isinstance(step, str):
                index.remove(step)
            else:
                chunker = rag.store.chunker(index.manifest)
                for doc in step:
                    chunks = chunker.split(doc)
                    index.add(doc, chunks, rag.embedder.embed([c.text for c in chunks]))
            if save_each_step:
                index.save()
        index.save()


@pytest.fixture
def split_and_whole(tmp_path: Path, embedder: Embedder) -> tuple[RAG, RAG]:
    """The same story saved as one segment, and as one segment per step with their tombstones (no merge)."""
    whole = RAG(Settings(index_dir=tmp_path / "whole", progress=False, backend="extractive"), embedder=embedder)
    split = RAG(
        Settings(index_dir=tmp_path / "split", progress=False, backend="extractive", merge_factor=1000),
        embedder=embedder,
    )
    history(whole, save_each_step=False)
    history(split, save_each_step=True)
    return whole, split


def test_a_split_index_ranks_as_the_same_index_in_one_segment(split_and_whole: tuple[RAG, RAG]) -> None:
    """Dense candidates merged by exact score, BM25 with statistics over every segment's live rows: the
    rankings are the one-segment index's, passage for passage and score for score."""
    whole, split = split_and_whole
    segments = split.store.open_index().manifest.segments
    assert len(segments) == 7 and len(whole.store.open_index().manifest.segments) == 1
    assert [s["deleted"] for s in segments[:2]] == [["a03", "a07"], ["a21", "a22"]]
    for mode in ("hybrid", "bm25", "dense"):
        for rag in (whole, split):
            rag.store.settings.retrieval.retrieval_mode = mode  # type: ignore[assignment]
            rag.store.forget()
        for question in QUESTIONS:
            assert ranking(split, question) == ranking(whole, question), (mode, question)
    assert "revision 2" in split.store.open_index().documents["a07"].text


def test_a_merge_keeps_the_rankings_and_drops_the_tombstoned_rows(split_and_whole: tuple[RAG, RAG]) -> None:
    _, split = split_and_whole
    before = {q: ranking(split, q) for q in QUESTIONS}
    index = split.store.open_index()
    assert index.merge(everything=True) == 1
    (segment,) = index.manifest.segments
    assert segment["deleted"] == [] and segment["documents"] == len(index.documents) == 47
    reloaded = RAG(split.store.settings, embedder=split.embedder)
    assert {q: ranking(reloaded, q) for q in QUESTIONS} == before
    files = {p.name for p in split.store.settings.index_dir.iterdir()}
    n = segment["number"]
    assert {f"vectors.{n}.faiss", f"records.{n}.sqlite3", f"terms.{n}"} <= files
    assert not [name for name in files if name.startswith(("vectors.", "records.", "terms.")) and f".{n}" not in name]


def test_a_save_writes_only_what_it_adds(tmp_path: Path, embedder: Embedder) -> None:
    rag = RAG(Settings(index_dir=tmp_path / "index", progress=False, backend="extractive"), embedder=embedder)
    rag.add_documents([article(i) for i in range(40)])

    def stamps() -> dict[str, int]:
        """The first segment's files (its data files and term counts), with their modification times."""
        root = tmp_path / "index"
        files = [*root.glob("*.1.*"), *(root / "terms.1").rglob("*.*")]
        return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in files}

    first = stamps()
    rag.add_documents([article(40), article(41)])
    assert stamps() == first and len(first) >= 2 + 2 * 6, "the first segment's files were left as they were"
    manifest = json.loads((tmp_path / "index" / MANIFEST).read_text())
    assert [(s["documents"], s["deleted"]) for s in manifest["segments"]] == [(40, []), (2, [])]


def test_the_policy_merges_ten_of_a_level_and_never_past_the_largest() -> None:
    def infos(*sizes: int) -> list[SegmentInfo]:
        return [SegmentInfo(n, 1, size) for n, size in enumerate(sizes)]

    assert [level(c, 10) for c in (0, 999, 9_999, 10_000, 99_999, 100_000, 2_000_000)] == [0, 0, 0, 1, 1, 2, 3]
    assert merges(infos(*[500] * 9), 10, 2_000_000) == []
    assert merges(infos(50_000, *[500] * 10), 10, 2_000_000) == [list(range(1, 11))]
    assert merges(infos(*[20_000] * 10, 700), 10, 2_000_000) == [list(range(10))]
    assert merges(infos(*[20_000] * 10), 10, 150_000) == [], "a merge past the largest waits"
    assert merges(infos(*[1_500_000] * 10), 10, 2_000_000) == []
    dead = [SegmentInfo(0, 1, 5_000, ["x"], 4_600), *infos(*[500] * 9)]
    assert merges(dead, 10, 2_000_000) == [list(range(10))], "a segment counts by its live chunks"


def test_many_small_saves_stay_a_bounded_number_of_segments(tmp_path: Path, embedder: Embedder) -> None:
    rag = RAG(
        Settings(index_dir=tmp_path / "index", progress=False, backend="extractive", merge_factor=3), embedder=embedder
    )
    for i in range(12):
        rag.add_documents([article(i)])
    index = rag.store.open_index()
    assert len(index.manifest.segments) <= 2 * 2  # at most factor - 1 per level over 12 one-article saves
    assert sorted(index.documents) == [f"a{i:02d}" for i in range(12)]
    assert rag.search("tram repairs at the harbour", k=3).passages


def test_a_save_runs_only_small_merges_and_the_pipeline_runs_the_rest_after(tmp_path: Path, embedder: Embedder) -> None:
    """A save returns once its articles are saved and the merges of at most `save_merge_chunks` are done;
    a due larger merge runs after it (`merge`), at the end of the pipeline's run."""
    settings = Settings(index_dir=tmp_path / "index", progress=False, backend="extractive", merge_factor=3)
    settings.index.save_merge_chunks = 0
    rag = RAG(settings, embedder=embedder)
    index = rag.store.open_index(create=True)
    chunker = rag.store.chunker(index.manifest)
    with rag.store.writing():
        for i in range(3):
            doc = article(i)
            chunks = chunker.split(doc)
            index.add(doc, chunks, rag.embedder.embed([c.text for c in chunks]))
            index.save()
        assert len(index.segments) == 3, "the save left the due merge for later"
        assert index.merge() == 1 and len(index.segments) == 1
    rag.add_documents([article(i) for i in range(3, 6)])
    assert len(rag.store.open_index().segments) == 2
    rag.add_documents([article(6)])  # a third segment: the due merge runs at the end of the run
    assert len(rag.store.open_index().segments) == 1
    assert sorted(rag.store.open_index().documents) == [f"a{i:02d}" for i in range(7)]


def test_segments_with_ivfs_rescore_only_the_best_of_their_candidates_together(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The segments' IVFs share one codebook and put candidates forward from the same lists; the n best by
    their codes are read from disk and rescored once for all segments (not n per segment): what one IVF
    over all the chunks finds."""
    settings = Settings(index_dir=tmp_path / "index", progress=False, backend="extractive", merge_factor=1000)
    settings.retrieval.ann_min_chunks = 2
    rag = RAG(settings, embedder=embedder)
    for first in range(0, 48, 12):
        rag.add_documents([article(i) for i in range(first, first + 12)])
    index = rag.store.open_index()
    assert len(index.searched_ivfs()) == len(index.segments) == 4
    assert len({seg.ann.codebook for seg in index.segments if seg.ann is not None}) == 1
    ids, matrix = index.stored_vectors()
    first = index.segments[0].ann
    assert first is not None
    whole = first.holding(matrix, ids)
    read: list[int] = []
    exact = index.vectors_of
    monkeypatch.setattr(index, "vectors_of", lambda wanted: read.append(len(wanted)) or exact(wanted))
    for question in QUESTIONS:
        query = rag.embedder.embed([question])[0]
        candidates, _ = whole.approximate(query, 5, lists=whole.assign(query, 64), selector=None)
        truth, _ = rescored(query, candidates, exact)
        read.clear()
        found = index.dense_search(query, 5, allowed=None, nprobe=64)
        assert found.tolist() == truth.tolist(), question
        assert read == [5], "one read of the n best, whatever the number of segments"


def test_segments_sharing_a_codebook_scan_what_one_ivf_over_all_of_them_scans() -> None:
    """One assignment to lists for every IVF of a codebook: the segments' best candidates by their codes
    are one IVF's over all their chunks, at any nprobe."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((8_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(8_000, dtype=np.int64)
    whole = IvfIndex.train(vectors, ids)
    parts = [whole.holding(vectors[i::4], ids[i::4]) for i in range(4)]
    assert whole.ivf.nlist > 100 and sum(part.ivf.ntotal for part in parts) == 8_000
    for query in vectors[:20] + 0.05 * rng.standard_normal((20, 32)).astype(np.float32):
        for nprobe in (1, 8, 40):
            lists = assignments(parts, query, nprobe)
            assert list(lists) == [whole.codebook], "one codebook: one assignment"
            found = [part.approximate(query, 10, lists=lists[part.codebook], selector=None) for part in parts]
            found_ids, found_scores = (np.concatenate(column) for column in zip(*found, strict=True))
            best = np.argsort(-found_scores, kind="stable")[:10]
            expected_ids, expected_scores = whole.approximate(
                query, 10, lists=whole.assign(query, nprobe), selector=None
            )
            assert sorted(found_ids[best].tolist()) == sorted(expected_ids.tolist())
            assert np.array_equal(found_scores[best], expected_scores)


def test_a_codebook_is_shared_until_the_index_outgrows_it() -> None:
    """Reused while it has at least half the lists the index's size calls for (its size four-fold), then a
    new one is trained; the one with most lists is the one reused."""
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((8_000, 16)).astype(np.float32)
    small = IvfIndex.train(vectors[:2_000], np.arange(2_000))
    large = IvfIndex.train(vectors, np.arange(8_000))
    assert small.ivf.nlist < large.ivf.nlist
    assert codebook_for([small], 2_000) is small
    assert codebook_for([small], 8_000) is None, "grown four-fold: train a codebook for the new size"
    assert codebook_for([small, large], 8_000) is large
    assert codebook_for([], 8_000) is None


def test_a_lost_manifest_is_rebuilt_with_its_tombstones(split_and_whole: tuple[RAG, RAG]) -> None:
    """Each segment's file keeps the tombstones its save laid: a repaired index does not bring back what
    was deleted or replaced."""
    _, split = split_and_whole
    directory = split.store.settings.index_dir
    before = split.store.open_index()
    expected = {doc_id: before.documents[doc_id].text for doc_id in before.documents}
    (directory / MANIFEST).unlink()
    recovered = ArticleIndex.recover(directory, split.store.new_manifest())
    assert {doc_id: recovered.documents[doc_id].text for doc_id in recovered.documents} == expected
    assert "a07" in recovered.documents and "revision 2" in recovered.documents["a07"].text
    assert "a22" not in recovered.documents


KILL_MID_MERGE = textwrap.dedent(
    """
    import os, pathlib, signal, sys

    import rag.store.index as ri

    path, target = pathlib.Path(sys.argv[1]), sys.argv[2]
    real_replace = os.replace

    def replace(src, dst):
        if os.path.basename(dst).startswith(target):
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)

    index = ri.ArticleIndex.load(path)
    os.replace = replace
    index.merge(everything=True)
    sys.exit(3)  # not reached: the merge is killed
    """
)


@pytest.mark.parametrize("target", ["records", "manifest.json"])
def test_a_merge_killed_midway_loses_nothing(split_and_whole: tuple[RAG, RAG], target: str) -> None:
    _, split = split_and_whole
    directory = split.store.settings.index_dir
    before = {q: ranking(split, q) for q in QUESTIONS}
    child = subprocess.run(
        [sys.executable, "-c", KILL_MID_MERGE, str(directory), target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    after = RAG(split.store.settings, embedder=split.embedder)
    assert len(after.store.open_index().manifest.segments) == 7
    assert {q: ranking(after, q) for q in QUESTIONS} == before
    with after.store.writing():
        index = after.store.open_index()
        index.clear_torn()
        assert index.merge(everything=True) == 1
    numbers = {s["number"] for s in index.manifest.segments}
    left = {p.name for p in directory.iterdir() if p.name.endswith((".faiss", ".sqlite3", ".tmp"))}
    assert {int(name.split(".")[1]) for name in left} == numbers and not any(n.endswith(".tmp") for n in left)
    assert {q: ranking(RAG(split.store.settings, embedder=split.embedder), q) for q in QUESTIONS} == before


def test_an_index_from_before_segments_is_read_and_upgraded_by_its_next_save(
    tmp_path: Path, embedder: Embedder
) -> None:
    """Format 2 (one generation's files, BM25 saved beside them) opens as one segment; the next save lists it
    in a format 3 manifest without rewriting it, and drops the old BM25 files."""
    rag = RAG(Settings(index_dir=tmp_path / "index", progress=False, backend="extractive"), embedder=embedder)
    rag.add_documents([article(i) for i in range(10)])
    directory = tmp_path / "index"
    manifest = json.loads((directory / MANIFEST).read_text())
    (number,) = [s["number"] for s in manifest["segments"]]
    old = {k: v for k, v in manifest.items() if k != "segments"} | {"format_version": 2, "generation": number}
    (directory / MANIFEST).write_text(json.dumps(old))
    (directory / f"bm25.{number}").mkdir()
    stamp = (directory / f"records.{number}.sqlite3").stat().st_mtime_ns
    before = {q: ranking(RAG(rag.store.settings, embedder=embedder), q) for q in QUESTIONS}

    again = RAG(rag.store.settings, embedder=embedder)
    assert again.store.open_index().manifest.format_version == 2
    again.store.open_index().save()
    upgraded = json.loads((directory / MANIFEST).read_text())
    assert upgraded["format_version"] == 3 and [s["number"] for s in upgraded["segments"]] == [number]
    assert (directory / f"records.{number}.sqlite3").stat().st_mtime_ns == stamp
    assert not (directory / f"bm25.{number}").exists()
    assert {q: ranking(RAG(rag.store.settings, embedder=embedder), q) for q in QUESTIONS} == before
    again.add_documents([article(10)])
    assert [s["number"] for s in json.loads((directory / MANIFEST).read_text())["segments"]] == [number, number + 2]


def test_term_counts_of_a_segment_are_counted_again_when_damaged(tmp_path: Path, embedder: Embedder) -> None:
    rag = RAG(Settings(index_dir=tmp_path / "index", progress=False, backend="extractive"), embedder=embedder)
    rag.add_documents([article(i) for i in range(10)])
    before = ranking(RAG(rag.store.settings, embedder=embedder), "ferry strike")
    (number,) = [s["number"] for s in rag.store.open_index().manifest.segments]
    counts = tmp_path / "index" / f"terms.{number}" / "chunk" / "data.npy"
    raw = bytearray(counts.read_bytes())
    raw[-3] ^= 0xFF
    counts.write_bytes(bytes(raw))
    assert ranking(RAG(rag.store.settings, embedder=embedder), "ferry strike") == before
    assert np.load(counts).dtype == np.float32  # counted again and saved over the damaged file


def test_rag_info_lists_the_segments_and_rag_index_merge_merges_them(
    split_and_whole: tuple[RAG, RAG], capsys: pytest.CaptureFixture[str]
) -> None:
    _, split = split_and_whole
    directory = str(split.store.settings.index_dir)
    capsys.readouterr()
    assert cli_run(["--index-dir", directory, "info"]) == 0
    info = capsys.readouterr().out
    assert "segments: 7" in info and "deleted or replaced" in info
    assert cli_run(["--index-dir", directory, "index", "--merge"]) == 0
    assert "merged 1 time: 1 segment left" in capsys.readouterr().out
    assert cli_run(["--index-dir", directory, "info"]) == 0
    info = capsys.readouterr().out
    assert "segments: 1" in info and "47 documents" in info and "deleted" not in info


def test_scored_postings_are_kept_for_the_next_question_within_their_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A common word's scored postings are kept under the same statistics, and only as many as the budget
    allows; other statistics (the index changed) are scored afresh."""
    import rag.store.sparse as sparse

    texts = [article(i).text for i in range(48)]
    counts = sparse.TermCounts.build(texts)
    terms = query_terms("tram repairs at the harbour after the flood")
    stats = counts.stats(terms)
    first = counts.scores(terms, stats)
    assert counts._scored_cache and np.array_equal(counts.scores(terms, stats), first)
    other = sparse.KeywordStats(stats.texts + 10, stats.terms + 500, stats.frequency)
    assert not np.array_equal(counts.scores(terms, other), first)
    monkeypatch.setattr(sparse, "_SCORED_BYTES", 1)
    again = counts.scores(terms, sparse.KeywordStats(stats.texts + 20, stats.terms + 900, stats.frequency))
    assert len(counts._scored_cache) == 1, "over the budget, only the last term's postings are kept"
    assert np.array_equal(counts.scores(terms, stats), first) and again.any()
