"""The time-sharded archive without Ray: BM25 with archive-wide statistics, the catalog's pruning, the
writer's re-runs, and the sharded search ranking exactly as one index over the same articles does."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import bm25s
import numpy as np
import pytest

from rag import RAG, Settings
from rag.archive.catalog import Catalog, PartitionInfo, partition_of
from rag.archive.ingest import ArchiveWriter, Prints, split
from rag.dates import DateRange
from rag.errors import ConfigError, IndexDirError
from rag.store.index import ArticleIndex
from rag.store.sparse import TermCounts
from rag.text import index_terms, query_terms
from rag.types import Document
from tests.conftest import free_port
from tests.news_archive import Subset, needs_corpus, subset, top_articles

TEXTS = [
    "The president of France met the German chancellor in Paris on Monday.",
    "France won the world cup final in football after extra time.",
    "Germany's chancellor spoke about energy prices and the winter.",
    "Football news: the cup draw, France and Germany in one group.",
    "Energy prices rose again in France, the ministry said.",
]


@pytest.mark.parametrize("question", ["France football cup", "chancellor Germany energy", "France France", "zebra"])
def test_term_counts_score_as_bm25s_and_add_up_across_partitions(question: str) -> None:
    terms = query_terms(question)
    model = bm25s.BM25()
    model.index(index_terms(TEXTS, return_ids=True), show_progress=False)
    known = [term for term in terms if term in model.vocab_dict]
    whole = np.asarray(model.get_scores(known), np.float32) if known else np.zeros(len(TEXTS), np.float32)
    alone = TermCounts.build(TEXTS)
    np.testing.assert_array_equal(alone.scores(terms, alone.stats(terms)), whole)  # bm25s's to the last bit
    first, second = TermCounts.build(TEXTS[:2]), TermCounts.build(TEXTS[2:])
    stats = first.stats(terms) + second.stats(terms)
    split = np.concatenate([first.scores(terms, stats), second.scores(terms, stats)])
    np.testing.assert_array_equal(split, whole)
    if any(whole):  # the partitions' own statistics rank differently: what summing them is for
        assert not np.allclose(first.scores(terms, first.stats(terms)), whole[:2]) or not np.allclose(
            second.scores(terms, second.stats(terms)), whole[2:]
        )


def test_catalog_prunes_months_outside_the_dates_but_never_undated() -> None:
    catalog = Catalog("m", "int8", 3, 180, 30, "t")
    for number, (name, first, last) in enumerate(
        [("2022-05", "2022-05-02", "2022-05-30"), ("2022-06", "2022-06-01", "2022-06-28"), ("undated", None, None)]
    ):
        catalog.partitions[name] = PartitionInfo(name, number, first, last, 1, 1, 1)
    assert catalog.partitions_for(DateRange()) == ["2022-05", "2022-06", "undated"]
    assert catalog.partitions_for(DateRange(until=dt.date(2022, 5, 31))) == ["2022-05", "undated"]
    assert catalog.partitions_for(DateRange(since=dt.date(2022, 5, 31))) == ["2022-06", "undated"]
    assert catalog.partitions_for(DateRange(dt.date(2022, 5, 31), dt.date(2022, 5, 31))) == ["undated"]
    assert partition_of(dt.date(2022, 1, 9)) == "2022-01" and partition_of(None) == "undated"


def _doc(doc_id: str, text: str, published: dt.date | None) -> Document:
    return Document(doc_id, text, doc_id.title(), published)


def test_writer_adds_only_what_changed_and_moves_redated_articles(tmp_path: Path, pipeline: RAG) -> None:
    root = tmp_path / "archive"
    chunker = pipeline.chunker(pipeline.new_manifest())

    def run(docs: list[Document]) -> tuple[list[str], list[str], list[str]]:
        writer = ArchiveWriter(root, pipeline.new_manifest())
        todo, report = writer.plan(docs)
        for doc in todo:
            chunks = chunker.split(doc)
            writer.add(doc, chunks, pipeline.embedder.embed([c.text for c in chunks]))
        writer.save()
        return report.added, report.updated, report.unchanged

    may, june = dt.date(2022, 5, 3), dt.date(2022, 6, 7)
    docs = [_doc("a", TEXTS[0], may), _doc("b", TEXTS[1], june), _doc("c", TEXTS[2], None)]
    assert run(docs) == (["a", "b", "c"], [], [])
    catalog = Catalog.load(root)
    assert sorted(catalog.partitions) == ["2022-05", "2022-06", "undated"]
    assert catalog.partitions["2022-05"].first == "2022-05-03" and catalog.documents == 3

    assert run(docs) == ([], [], ["a", "b", "c"])
    moved = [_doc("a", TEXTS[0], june), docs[1], _doc("c", TEXTS[3], None)]
    assert run(moved) == ([], ["a", "c"], ["b"])
    catalog = Catalog.load(root)
    assert sorted(catalog.partitions) == ["2022-06", "undated"], "May lost its only article to June"
    assert set(ArticleIndex.load(root / "partitions" / "2022-06").documents) == {"a", "b"}

    writer = ArchiveWriter(root, pipeline.new_manifest())
    _, report = writer.plan([_doc("copy", TEXTS[1], may)])  # b's text again, in another month
    assert report.duplicates == [("copy", "b")], "a copy is kept once across months, as in one index"

    writer = ArchiveWriter(root, pipeline.new_manifest(), ann_min_chunks=1)  # each of June's segments qualifies
    writer.touched.add("2022-06")
    writer.partitions["2022-06"].version += 1  # saved again, as a run that changed it would
    writer.save()
    june = ArticleIndex.load(root / "partitions" / "2022-06")
    june.configure(1)
    assert june.searched_ivfs(), "a partition past ann_min_chunks searches an IVF, as one index does"


def test_a_writer_finds_what_it_added_before_any_save_and_keeps_fingerprints_of_the_rest(
    tmp_path: Path, pipeline: RAG
) -> None:
    """The writer keeps no map of every stored article: what it added is found in the partitions before
    they are saved (a copy of it is a duplicate, a new date moves it), and what was stored when it opened
    is 8-byte fingerprints (`Prints`), the workers' list of what to skip among them."""
    root = tmp_path / "archive"
    chunker = pipeline.chunker(pipeline.new_manifest())
    may, june = dt.date(2022, 5, 3), dt.date(2022, 6, 7)
    writer = ArchiveWriter(root, pipeline.new_manifest())

    def add(doc: Document) -> None:
        chunks = chunker.split(doc)
        writer.add(doc, chunks, pipeline.embedder.embed([c.text for c in chunks]))

    a = _doc("a", TEXTS[0], may)
    add(a)
    _, report = writer.plan([_doc("copy", TEXTS[0], june)])
    assert report.duplicates == [("copy", "a")], "unsaved, and still found"
    todo, report = writer.plan([_doc("a", TEXTS[0], june)])
    assert report.updated == ["a"] and writer.home("a") == "2022-05"
    add(todo[0])
    assert writer.home("a") == "2022-06" and "a" not in writer.partitions["2022-05"].documents
    writer.save()

    reopened = ArchiveWriter(root, pipeline.new_manifest())
    assert len(reopened.known) == 1 and ("a", "2022-06", a.content_hash) in reopened.known
    assert ("a", "2022-05", a.content_hash) not in reopened.known
    assert reopened.home("a", "2022-05") == "2022-06" and reopened.home("b") is None
    assert reopened.plan([_doc("a", TEXTS[0], june)])[1].unchanged == ["a"]


def test_fingerprints_find_every_member_and_nothing_else() -> None:
    keys = [(f"article-{i}", f"{i % 7:04d}-01") for i in range(20_000)]
    prints = Prints(Prints.of(keys[::2]))
    assert len(prints) == 10_000
    assert all(key in prints for key in keys[::2])
    assert not any(key in prints for key in keys[1::2])


def test_single_index_commands_refuse_an_archive(tmp_path: Path, pipeline: RAG) -> None:
    root = tmp_path / "archive"
    writer = ArchiveWriter(root, pipeline.new_manifest())
    writer.save()
    rag = RAG(Settings(index_dir=root, progress=False), embedder=pipeline.embedder)
    with pytest.raises(IndexDirError, match="archive of monthly partitions") as caught:
        rag.add_documents([_doc("a", TEXTS[0], None)])
    assert "--ray" in str(caught.value.hint)


@pytest.fixture(scope="module")
def one_and_sharded(tmp_path_factory: pytest.TempPathFactory, _cache_home: Path) -> tuple[RAG, Path, Subset]:
    """One index over 150 RealTime QA articles, and an archive of the same articles and vectors."""
    base = tmp_path_factory.mktemp("archive")
    data = subset(base, 150)
    one = RAG(Settings(index_dir=base / "one", progress=False, cache_dir=_cache_home / "rag"))
    one.index([data.corpus])
    split(one.open_index(), base / "archive")
    return one, base / "archive", data


@needs_corpus
@pytest.mark.parametrize(
    "options",
    [{}, {"article_ranking": False}, {"retrieval_mode": "dense"}, {"retrieval_mode": "bm25"}],
    ids=["hybrid-articles", "hybrid-chunks", "dense", "bm25"],
)
def test_sharded_search_ranks_as_one_index(
    one_and_sharded: tuple[RAG, Path, Subset], options: dict[str, object]
) -> None:
    one, archive, data = one_and_sharded
    catalog = Catalog.load(archive)
    assert len(catalog.partitions) >= 5, "the subset spans several months"
    single = RAG(one.settings.model_copy(update=options), embedder=one.embedder)
    sharded = RAG(one.settings.model_copy(update={"index_dir": archive, **options}), embedder=one.embedder)
    questions = data.questions[::3]
    same = [a == b for a, b in zip(top_articles(sharded, questions), top_articles(single, questions), strict=True)]
    # The bar. Exact here for all but chunk ranking, where chunks tied at the 100th BM25 place are
    # picked arbitrarily by one index too (numpy's argpartition): one question of 110 swaps two places.
    assert sum(same) / len(same) >= 0.99
    for question, when in questions[:20]:
        expected = single.search(question, as_of=when).passages
        found = sharded.search(question, as_of=when).passages
        assert [(p.chunk.doc_id, p.chunk.text, p.also_in) for p in found] == [
            (p.chunk.doc_id, p.chunk.text, p.also_in) for p in expected
        ]


def test_an_unreachable_ray_cluster_is_one_clear_error(tmp_path: Path, pipeline: RAG) -> None:
    if not os.environ.get("CI"):
        pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'rag[ray]'")
    root = tmp_path / "archive"
    ArchiveWriter(root, pipeline.new_manifest()).save()
    address = f"127.0.0.1:{free_port()}"
    rag = RAG(Settings(index_dir=root, progress=False, ray_address=address), embedder=pipeline.embedder)
    with pytest.raises(ConfigError, match=f"cannot reach the Ray cluster at {address}") as caught:
        rag.search("Who won?")
    assert "ray start --head" in str(caught.value.hint)
