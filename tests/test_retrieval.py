"""Retrieval over a real FAISS index embedded with the real all-MiniLM-L6-v2 and real BM25 (bm25s):
fusion, dates (filters, as-of, recency, dates named in questions), diversity and the rerank hook, each on
a small hand-made corpus whose right answer is known."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag import RAG, Settings
from rag.dates import DateRange
from rag.errors import ConfigError, QuestionError
from rag.ingest.loaders import load_paths
from rag.local_models import EMBEDDERS, assemble, installed_parts
from rag.retrieval import IndexSource, Retriever, rrf
from rag.store.embedding import Embedder
from rag.store.index import ArticleIndex, Manifest
from rag.store.sparse import TermCounts
from rag.types import Passage

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
CSTO_QUESTION = "Who is the Secretary General of the CSTO?"
QUERY = "the city council voted on the transport budget"
DATED: dict[str, str | None] = {
    "2020-01-10": "2020-01-10",
    "2021-03-01": "2021-03-01",
    "2021-09-15": "2021-09-15",
    "2022-05-20": "2022-05-20",
    "undated": None,
}
# Distinct topics per date, so that no two are near-copies and every one stays a separate article.
TOPICS = {
    "2020-01-10": "bus lines and the new depot",
    "2021-03-01": "tram repairs after the flood",
    "2021-09-15": "cycle lanes along the river",
    "2022-05-20": "parking fees in the old town",
    "undated": "night trains to the coast",
}


def d(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


def write_articles(folder: Path, articles: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "articles.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in articles), encoding="utf-8")
    return path


def make_rag(tmp_path: Path, embedder: Embedder, articles: list[dict[str, Any]], **overrides: Any) -> RAG:
    settings = Settings(index_dir=tmp_path / "index", progress=False, backend="extractive", **overrides)
    rag = RAG(settings, embedder=embedder)
    rag.index([write_articles(tmp_path / "articles", articles)])
    return rag


def council_articles() -> list[dict[str, Any]]:
    return [
        {
            "id": name,
            "date": date,
            "text": f"The city council voted on the transport budget. Members discussed {TOPICS[name]}.",
        }
        for name, date in DATED.items()
    ]


@pytest.fixture
def dated(tmp_path: Path, embedder: Embedder) -> RAG:
    return make_rag(tmp_path, embedder, council_articles())


def doc_ids(passages: list[Passage]) -> set[str]:
    return {p.doc_id for p in passages}


class TestRetriever:
    def test_passages_carry_rank_score_text_metadata_and_span(self, seeded: RAG) -> None:
        index = seeded.open_index()
        found = seeded.search(CSTO_QUESTION, k=4)
        passages = found.passages
        assert len(passages) == min(4, len(index.chunks))
        assert [p.rank for p in passages] == list(range(1, len(passages) + 1))
        assert [a.doc_id for a in found.articles] == [passages[0].doc_id]
        source_doc = load_paths([SEEDS]).documents[0]
        for passage in passages:
            chunk = passage.chunk
            assert passage.text == chunk.text and chunk.text.strip()
            assert chunk.title == source_doc.title and chunk.published == dt.date(2020, 10, 8)
            assert chunk.doc_id == source_doc.id
            assert index.documents[chunk.doc_id].text[chunk.start : chunk.end] == chunk.text
            data = passage.to_json()
            assert data["published"] == "2020-10-08" and data["chunk_id"] == chunk.id
            assert (data["start"], data["end"], data["text"]) == (chunk.start, chunk.end, chunk.text)

    def test_csto_secretary_general_is_the_first_passage(self, seeded: RAG) -> None:
        passages = seeded.retrieve(CSTO_QUESTION, k=3)
        assert len(passages) == 3
        assert "Stanislav Zas" in passages[0].text

    def test_k_beyond_the_corpus_returns_every_chunk_once(self, seeded: RAG) -> None:
        index = seeded.open_index()
        passages = seeded.retrieve(CSTO_QUESTION, k=100)
        assert len(passages) == len(index.chunks)
        assert {p.chunk.id for p in passages} == set(index.chunks)

    def test_empty_index_returns_nothing(self, pipeline: RAG, settings: Settings, embedder: Embedder) -> None:
        pipeline.index([])
        assert pipeline.retrieve(CSTO_QUESTION) == []
        assert pipeline.retrieve(CSTO_QUESTION, since=d("2020-01-01"), until=d("2020-12-31")) == []
        reloaded = ArticleIndex.load(settings.index_dir)
        assert Retriever(IndexSource(reloaded), embedder).retrieve(CSTO_QUESTION, 5).passages == []

    def test_in_memory_empty_index_returns_nothing(self, tmp_path: Path, embedder: Embedder) -> None:
        index = ArticleIndex.create(
            tmp_path / "fresh",
            Manifest(embedding_model=embedder.name, dimension=384, chunk_tokens=180, chunk_overlap=30, tokenizer="x"),
        )
        found = Retriever(IndexSource(index), embedder).retrieve(CSTO_QUESTION, 5, DateRange(since=d("2020-01-01")))
        assert found.passages == [] and found.articles == []

    def test_a_changed_index_is_searched_as_changed(self, dated: RAG, tmp_path: Path) -> None:
        """The BM25 view is derived from the index; adding an article must reach it without a reload."""
        question = "Which zeppelin hangar did the council inspect?"
        assert "zeppelin" not in " ".join(p.text for p in dated.retrieve(question, k=10))
        extra = [{"id": "hangar", "date": "2022-06-01", "text": "The council inspected the zeppelin hangar."}]
        dated.index([write_articles(tmp_path / "more", extra)])
        assert dated.retrieve(question, k=1)[0].doc_id == "hangar"


class TestDateFilter:
    @pytest.mark.parametrize(
        ("since", "until", "expected"),
        [
            ("2021-06-01", None, {"2021-09-15", "2022-05-20"}),
            (None, "2021-03-01", {"2020-01-10", "2021-03-01"}),
            ("2021-01-01", "2021-12-31", {"2021-03-01", "2021-09-15"}),
            ("2021-09-15", "2021-09-15", {"2021-09-15"}),  # both bounds inclusive
            ("2023-01-01", None, set()),
        ],
    )
    def test_explicit_range_keeps_articles_in_range_and_undated_ones(
        self, dated: RAG, since: str | None, until: str | None, expected: set[str]
    ) -> None:
        found = dated.search(QUERY, k=50, since=d(since) if since else None, until=d(until) if until else None)
        assert doc_ids(found.passages) == expected | {"undated"}
        assert {a.doc_id for a in found.articles} == expected | {"undated"}

    def test_without_a_range_every_article_is_a_candidate(self, dated: RAG) -> None:
        assert doc_ids(dated.retrieve(QUERY, k=50)) == set(DATED)

    def test_filter_applies_before_top_k(self, dated: RAG) -> None:
        """k=1 must return the best passage *in range*, not the best overall dropped by the filter."""
        question = "tram repairs after the flood"
        assert dated.retrieve(question, k=1)[0].doc_id == "2021-03-01"
        in_range = dated.retrieve(question, k=1, since=d("2022-01-01"))
        assert len(in_range) == 1 and in_range[0].doc_id in {"2022-05-20", "undated"}

    def test_as_of_leaves_out_later_articles_and_caps_until(self, dated: RAG) -> None:
        found = dated.search(QUERY, k=50, as_of=d("2021-06-30"))
        assert doc_ids(found.passages) == {"2020-01-10", "2021-03-01", "undated"}
        assert found.dates == DateRange(None, d("2021-06-30")) and found.as_of == d("2021-06-30")
        capped = dated.search(QUERY, k=50, until=d("2022-12-31"), as_of=d("2021-06-30"))
        assert capped.dates.until == d("2021-06-30")

    def test_as_of_defaults_to_today(self, dated: RAG) -> None:
        assert dated.search(QUERY).as_of == dt.date.today()

    def test_as_of_filter_can_be_turned_off(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, council_articles(), as_of_filter=False)
        assert doc_ids(rag.retrieve(QUERY, k=50, as_of=d("2020-06-30"))) == set(DATED)

    def test_since_after_until_is_a_question_error(self, dated: RAG) -> None:
        with pytest.raises(QuestionError) as info:
            dated.retrieve(QUERY, since=d("2022-01-01"), until=d("2021-01-01"))
        assert "2022-01-01" in info.value.message and "2021-01-01" in info.value.message


# The same event reported at three dates, worded differently enough not to be near-copies.
FLOODS = [
    ("flood-2019", "2019-04-02", "River Alder burst its banks and flooded the market square, officials said."),
    ("flood-2021", "2021-11-20", "Flood water from the Alder reached the market square again on Saturday."),
    ("flood-2022", "2022-06-10", "The market square was under water again after flooding overnight."),
]


def flood_articles() -> list[dict[str, Any]]:
    return [{"id": i, "date": date, "text": text} for i, date, text in FLOODS] + [
        {"id": "undated-flood", "text": "Residents recall the day the Alder flooded the market square."}
    ]


class TestRecencyPrior:
    QUESTION = "When did the river Alder flood the market square?"

    def test_the_newest_report_as_of_the_question_date_comes_first(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, flood_articles())
        assert rag.search(self.QUESTION, as_of=d("2022-06-12")).articles[0].doc_id == "flood-2022"
        # asked before the 2022 flood, the 2022 report does not exist yet and 2021's is the newest
        earlier = rag.search(self.QUESTION, as_of=d("2021-11-25"))
        assert earlier.articles[0].doc_id == "flood-2021"
        assert "flood-2022" not in {a.doc_id for a in earlier.articles}

    def test_without_the_prior_the_text_decides(self, tmp_path: Path, embedder: Embedder) -> None:
        with_prior = make_rag(tmp_path / "a", embedder, flood_articles())
        without = make_rag(tmp_path / "b", embedder, flood_articles(), recency_weight=0.0)
        as_of = d("2022-06-12")
        plain = [a.doc_id for a in without.search(self.QUESTION, as_of=as_of).articles]
        assert with_prior.search(self.QUESTION, as_of=as_of).articles[0].doc_id == "flood-2022"
        assert plain[0] != "flood-2022"  # the text alone prefers another report: the prior made the change

    def test_undated_articles_stay_candidates(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, flood_articles())
        found = rag.search(self.QUESTION, k=10, as_of=d("2022-06-12"), since=d("2022-01-01"))
        assert {a.doc_id for a in found.articles} == {"flood-2022", "undated-flood"}


class TestQuestionDates:
    def test_a_named_date_is_preferred(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, flood_articles())
        found = rag.search("What flooded the market square in November 2021?", as_of=d("2022-06-12"))
        assert found.mention is not None and found.mention.phrase == "in November 2021"
        assert found.mention.range == DateRange(d("2021-11-01"), d("2021-11-30"))
        assert not found.mention_filtered
        assert found.articles[0].doc_id == "flood-2021"
        assert {a.doc_id for a in found.articles} >= {"flood-2019", "flood-2022"}  # preferred, not filtered

    def test_filter_mode_keeps_only_the_named_dates_and_undated(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, flood_articles(), question_dates="filter")
        found = rag.search("What flooded the market square last year?", as_of=d("2022-06-12"))
        assert found.mention_filtered and found.dates == DateRange(d("2021-01-01"), d("2021-12-31"))
        assert {a.doc_id for a in found.articles} == {"flood-2021", "undated-flood"}

    def test_off_mode_ignores_the_named_date(self, tmp_path: Path, embedder: Embedder) -> None:
        question, as_of = "What flooded the market square in November 2021?", d("2022-06-12")
        prefer = make_rag(tmp_path / "a", embedder, flood_articles())
        off = make_rag(tmp_path / "b", embedder, flood_articles(), question_dates="off")
        assert prefer.search(question, as_of=as_of).articles[0].doc_id == "flood-2021"
        found = off.search(question, as_of=as_of)
        assert found.mention is None and found.articles[0].doc_id == "flood-2022"  # recency alone decides

    def test_the_answer_reports_the_named_date(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, flood_articles())
        answer = rag.answer("What flooded the market square last year?", as_of=d("2022-06-12"))
        data = answer.to_json()
        assert data["date_mention"] == {
            "phrase": "last year",
            "since": "2021-01-01",
            "until": "2021-12-31",
            "filtered": False,
            "relative": True,
        }
        assert data["as_of"] == "2022-06-12" and data["until"] == "2022-06-12"


# Dense finds the paraphrase; only BM25 finds the rare code name and the number.
FUSION = [
    {"id": "paraphrase", "date": "2022-01-05", "text": "Lawmakers approved more money for schools and teachers."},
    {"id": "codename", "date": "2022-01-05", "text": "Operation QX-7 Kestrel was launched at dawn by the navy."},
    {"id": "number", "date": "2022-01-05", "text": "The recall covers 2,914,300 cars sold since last spring."},
    {"id": "noise-a", "date": "2022-01-05", "text": "A bakery opened on the high street, selling rye bread."},
    {"id": "noise-b", "date": "2022-01-05", "text": "The football club signed a young goalkeeper on loan."},
]


class TestFusion:
    def test_rrf_scales_first_place_to_the_weight_and_ignores_unlisted(self) -> None:
        scores = rrf(np.array([1, 2, 0, 10]), k=60, weight=2.0)
        assert scores[0] == pytest.approx(2.0)
        assert scores[1] == pytest.approx(2.0 * 61 / 62)
        assert scores[2] == 0.0
        assert scores[0] > scores[1] > scores[3] > 0

    @pytest.mark.parametrize(
        ("question", "wanted"),
        [
            ("What is Kestrel QX-7?", "codename"),
            ("How many cars does the 2,914,300 recall cover?", "number"),
            ("Did parliament fund education?", "paraphrase"),
        ],
    )
    def test_hybrid_finds_what_either_side_finds(
        self, tmp_path: Path, embedder: Embedder, question: str, wanted: str
    ) -> None:
        rag = make_rag(tmp_path, embedder, FUSION)
        assert rag.search(question, k=1, as_of=d("2022-02-01")).articles[0].doc_id == wanted

    def test_bm25_alone_misses_a_paraphrase_that_dense_finds(self, tmp_path: Path, embedder: Embedder) -> None:
        bm25 = make_rag(tmp_path / "a", embedder, FUSION, retrieval_mode="bm25")
        dense = make_rag(tmp_path / "b", embedder, FUSION, retrieval_mode="dense")
        question = "Did parliament fund education?"
        assert "paraphrase" not in {a.doc_id for a in bm25.search(question, as_of=d("2022-02-01")).articles}
        assert dense.search(question, as_of=d("2022-02-01")).articles[0].doc_id == "paraphrase"

    def test_chunk_ranking_mode_ranks_chunks_directly(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, FUSION, article_ranking=False)
        found = rag.search("What is Kestrel QX-7?", k=3, as_of=d("2022-02-01"))
        assert found.passages[0].doc_id == "codename"
        scores = [p.score for p in found.passages]
        assert scores == sorted(scores, reverse=True)


WIRE = "Storm Ciaran closed schools across the region on Thursday as winds reached 90 mph, forecasters said."


def wire_articles() -> list[dict[str, Any]]:
    return [
        {"id": "agency", "date": "2023-11-02", "title": "Storm closes schools", "text": WIRE},
        {"id": "outlet-copy", "date": "2023-11-02", "title": "Storm closes schools", "text": WIRE + " (AP)"},
        {
            "id": "other-angle",
            "date": "2023-11-02",
            "text": "Ferries stayed in port and rail services were cut as Storm Ciaran hit the coast.",
        },
    ]


class TestDiversity:
    QUESTION = "What did Storm Ciaran close?"

    def test_near_copies_fold_into_one_place(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, wire_articles())
        found = rag.search(self.QUESTION, k=2, as_of=d("2023-11-03"))
        assert [a.doc_id for a in found.articles][:2] in (["agency", "other-angle"], ["outlet-copy", "other-angle"])
        first = found.articles[0]
        assert set(first.also_in) == {"agency", "outlet-copy"} - {first.doc_id}
        assert found.passages[0].also_in == first.also_in

    def test_with_deduplication_off_copies_take_two_places(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, wire_articles(), near_duplicate_similarity=None)
        found = rag.search(self.QUESTION, k=2, as_of=d("2023-11-03"))
        assert {a.doc_id for a in found.articles[:2]} == {"agency", "outlet-copy"}
        assert all(not a.also_in for a in found.articles)


class TestPassagesPerArticle:
    def test_each_article_gives_at_most_its_share_before_the_next(self, seeded: RAG, tmp_path: Path) -> None:
        seeded.index([write_articles(tmp_path / "more", FUSION)])
        seeded.settings.retrieval.passages_per_article = 2
        passages = seeded.retrieve(CSTO_QUESTION, k=4, as_of=d("2022-02-01"))
        seed_id = passages[0].doc_id
        assert [p.doc_id == seed_id for p in passages] == [True, True, False, False]

    def test_a_single_article_fills_k_with_its_other_passages(self, seeded: RAG) -> None:
        seeded.settings.retrieval.passages_per_article = 1
        assert len(seeded.retrieve(CSTO_QUESTION, k=3)) == 3


class TestRerank:
    def test_reranker_reorders_by_its_own_scores(self, tmp_path: Path, embedder: Embedder) -> None:
        """A real CrossEncoder (the bundled MiniLM with a fresh, saved scoring head): untrained, so its
        order is arbitrary, which makes it a fair check that the hook applies exactly that order."""
        from sentence_transformers import CrossEncoder

        from rag.retrieval.rerank import CrossEncoderReranker
        from rag.store.embedding import resolve_model

        model_dir = tmp_path / "cross-encoder"
        CrossEncoder(resolve_model("all-MiniLM-L6-v2")[1], num_labels=1).save(str(model_dir))
        question = "What did Storm Ciaran close?"
        rag = make_rag(
            tmp_path, embedder, FUSION + wire_articles(), reranker=str(model_dir), rerank_depth=3, rerank_weight=1000
        )
        plain = make_rag(tmp_path / "plain", embedder, FUSION + wire_articles())
        as_of = d("2023-11-03")
        before = plain.search(question, k=8, as_of=as_of)
        after = rag.search(question, k=8, as_of=as_of)
        head = [a.doc_id for a in before.articles[:3]]
        best = {p.doc_id: f"{p.chunk.title}\n{p.text}" for p in reversed(before.passages)}  # each one's first
        scores = CrossEncoderReranker(str(model_dir)).score(question, [best[i] for i in head])
        expected = [head[i] for i in sorted(range(3), key=lambda i: -scores[i])]
        assert [a.doc_id for a in after.articles[:3]] == expected
        assert [a.doc_id for a in after.articles[3:]] == [a.doc_id for a in before.articles[3:]]

    def test_a_sentence_transformers_embedding_folder_rescores_by_cosine(
        self, tmp_path: Path, embedder: Embedder
    ) -> None:
        """A bi-encoder folder (the bundled MiniLM: its modules pool tokens into one vector) is compared by
        cosine, not loaded as a CrossEncoder; its passage vectors land in the cache."""
        from rag.store.embedding import resolve_model

        folder = resolve_model("all-MiniLM-L6-v2")[1]
        question = "What did Storm Ciaran close?"
        rag = make_rag(
            tmp_path, embedder, FUSION + wire_articles(), reranker=folder, rerank_depth=4, rerank_weight=1000
        )
        plain = make_rag(tmp_path / "plain", embedder, FUSION + wire_articles())
        before = plain.search(question, k=8)
        head = [a.doc_id for a in before.articles[:4]]
        best = {p.doc_id: f"{p.chunk.title}\n{p.text}" if p.chunk.title else p.text for p in reversed(before.passages)}
        cosine = embedder.embed([best[doc] for doc in head]) @ embedder.embed_query(question)
        expected = [head[i] for i in np.argsort(-cosine, kind="stable")]
        assert [a.doc_id for a in rag.search(question, k=8).articles[:4]] == expected
        assert len(list((rag.settings.cache_dir / "rescore").glob("*.sqlite3"))) == 1

    def test_a_missing_reranker_is_a_config_error(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, FUSION, reranker=str(tmp_path / "no-such-model"))
        with pytest.raises(ConfigError) as info:
            rag.search("What is Kestrel QX-7?")
        assert "no-such-model" in info.value.message and "RAG_RERANKER" in (info.value.hint or "")

    def test_an_uninstalled_rescoring_model_names_the_command_that_installs_it(
        self, tmp_path: Path, embedder: Embedder
    ) -> None:
        # Indexing never reads with the second model (it cost indexing nothing), so it works without it.
        rag = make_rag(tmp_path, embedder, FUSION, reranker="nomic-embed-text-v1.5", cache_dir=tmp_path / "empty")
        assert len(rag.documents()) == len(FUSION)
        with pytest.raises(ConfigError) as info:
            rag.search("What is Kestrel QX-7?")
        assert info.value.message == "the rescoring model nomic-embed-text-v1.5 is not installed"
        assert "`rag models install nomic-embed-text-v1.5`" in (info.value.hint or "")


NOMIC = "nomic-embed-text-v1.5"


@pytest.mark.skipif(
    installed_parts(EMBEDDERS[NOMIC]) < 4 and not os.environ.get("CI"),
    reason="nomic-embed not installed (`rag models install nomic-embed-text-v1.5`; CI installs it)",
)
class TestRescoreWithNomic:
    """The second stage with the real nomic-embed-text-v1.5 (llama.cpp, in-process)."""

    QUESTION = "Which navy operation began at dawn?"

    @staticmethod
    def cache(tmp_path: Path) -> Path:
        """A cache directory of the test's own (to see the vectors kept) sharing the session's model file."""
        cache = tmp_path / "cache"
        (cache / "models").mkdir(parents=True)
        model = EMBEDDERS[NOMIC]
        (cache / "models" / model.file).symlink_to(assemble(model, Settings().cache_dir))
        return cache

    def test_a_damaged_vector_cache_costs_only_recomputing(self, tmp_path: Path, embedder: Embedder) -> None:
        cache = self.cache(tmp_path)
        rag = make_rag(tmp_path / "r", embedder, FUSION, reranker=NOMIC, cache_dir=cache)
        expected = [a.doc_id for a in rag.search(self.QUESTION).articles]
        stored = cache / "rescore" / f"{NOMIC}.sqlite3"
        with sqlite3.connect(stored) as db:
            db.execute("UPDATE vectors SET vector = x'0102030405'")  # odd length: not float16 at all
        assert [a.doc_id for a in RAG(rag.settings, embedder=embedder).search(self.QUESTION).articles] == expected
        with sqlite3.connect(stored) as db:
            db.execute("UPDATE vectors SET vector = x'01020304'")  # a vector of the wrong dimension
        assert [a.doc_id for a in RAG(rag.settings, embedder=embedder).search(self.QUESTION).articles] == expected
        for path in stored.parent.iterdir():
            path.write_bytes(b"not a database " * 100)
        assert [a.doc_id for a in RAG(rag.settings, embedder=embedder).search(self.QUESTION).articles] == expected

    def test_its_ranking_joins_the_fusion_and_its_vectors_are_cached(self, tmp_path: Path, embedder: Embedder) -> None:
        cache = self.cache(tmp_path)
        plain = make_rag(tmp_path / "plain", embedder, FUSION)
        rescored = make_rag(tmp_path / "r", embedder, FUSION, reranker=NOMIC, cache_dir=cache, rerank_depth=5)
        before = plain.search(self.QUESTION, k=5)
        after = rescored.search(self.QUESTION, k=5)
        reranker = rescored.store.reranker
        assert reranker is not None
        texts = [f"{p.chunk.title}\n{p.text}" if p.chunk.title else p.text for p in before.passages]  # as it reads
        cosine = dict(zip([p.doc_id for p in before.passages], reranker.score(self.QUESTION, texts), strict=True))
        place = {doc: i for i, doc in enumerate(sorted(cosine, key=lambda doc: -cosine[doc]), start=1)}
        first = {a.doc_id: a.score for a in before.articles}
        expected = sorted(first, key=lambda doc: -(first[doc] + 61 / (60 + place[doc])))
        assert [a.doc_id for a in after.articles] == expected
        assert after.articles[0].doc_id == "codename"
        stored = sqlite3.connect(cache / "rescore" / f"{NOMIC}.sqlite3").execute("SELECT count(*) FROM vectors")
        assert stored.fetchone()[0] == len(FUSION)

    def test_weight_zero_keeps_the_first_stage_order(self, tmp_path: Path, embedder: Embedder) -> None:
        cache = self.cache(tmp_path)
        plain = make_rag(tmp_path / "plain", embedder, FUSION + wire_articles())
        off = make_rag(
            tmp_path / "off", embedder, FUSION + wire_articles(), reranker=NOMIC, rerank_weight=0, cache_dir=cache
        )
        question = "What did Storm Ciaran close?"
        assert [a.doc_id for a in off.search(question).articles] == [a.doc_id for a in plain.search(question).articles]


class TestSavedKeywordIndex:
    """Each segment's BM25 term counts are saved beside it when it is written, so no process counts them again."""

    QUESTION = "tram repairs after the flood"

    def fresh(self, rag: RAG, embedder: Embedder) -> RAG:
        new = RAG(rag.settings, embedder=embedder)
        return new

    def test_indexing_saves_term_counts_and_a_new_process_loads_them(
        self, tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        rag = make_rag(tmp_path, embedder, council_articles())
        (number,) = [s["number"] for s in rag.open_index().manifest.segments]
        saved = tmp_path / "index" / f"terms.{number}"
        assert (saved / "chunk").is_dir() and (saved / "article").is_dir()
        expected = [p.doc_id for p in rag.retrieve(self.QUESTION, k=5)]

        def no_build(cls: type[TermCounts], texts: object) -> None:
            raise AssertionError("the saved term counts must be loaded, not counted again")

        monkeypatch.setattr(TermCounts, "build", classmethod(no_build))
        again = self.fresh(rag, embedder)
        assert [p.doc_id for p in again.retrieve(self.QUESTION, k=5)] == expected
        assert expected[0] == "2021-03-01"

    def test_a_new_segment_brings_its_own_counts(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, council_articles())
        (old,) = [s["number"] for s in rag.open_index().manifest.segments]
        rag.index([write_articles(tmp_path / "more", [{"id": "extra", "date": "2021-03-02", "text": "Tram news."}])])
        numbers = [s["number"] for s in rag.open_index().manifest.segments]
        assert numbers[0] == old and len(numbers) == 2
        assert all((tmp_path / "index" / f"terms.{n}" / "article").is_dir() for n in numbers)
        assert "extra" in doc_ids(self.fresh(rag, embedder).retrieve("tram news", k=6))

    def test_unsaved_changes_are_counted_in_memory(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, council_articles())
        index = rag.open_index()
        before = sorted(p.name for p in (tmp_path / "index").rglob("*"))
        index.remove("2021-03-01")
        assert "2021-03-01" not in doc_ids(rag.retrieve(self.QUESTION, k=5))
        assert sorted(p.name for p in (tmp_path / "index").rglob("*")) == before

    def test_damaged_or_foreign_saved_counts_are_counted_again(self, tmp_path: Path, embedder: Embedder) -> None:
        rag = make_rag(tmp_path, embedder, council_articles())
        (number,) = [s["number"] for s in rag.open_index().manifest.segments]
        saved = tmp_path / "index" / f"terms.{number}" / "chunk"
        expected = [p.doc_id for p in rag.retrieve(self.QUESTION, k=5)]
        sums = json.loads((saved / "sha256.json").read_text(encoding="utf-8"))
        (saved / "sha256.json").write_text(json.dumps({**sums, "format": "another version"}), encoding="utf-8")
        segment = self.fresh(rag, embedder).open_index().segments[0]
        assert segment.terms_problem("chunk") is None, "counts of another version are an upgrade, not damage"
        assert [p.doc_id for p in self.fresh(rag, embedder).retrieve(self.QUESTION, k=5)] == expected
        assert json.loads((saved / "sha256.json").read_text(encoding="utf-8"))["format"] != "another version"
        (saved / "vocabulary.json").write_text("{broken", encoding="utf-8")
        assert [p.doc_id for p in self.fresh(rag, embedder).retrieve(self.QUESTION, k=5)] == expected
