"""Retriever over a real FAISS index embedded with the real all-MiniLM-L6-v2."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from rag import RAG, Settings
from rag.documents import load_paths
from rag.embedding import Embedder
from rag.errors import QuestionError
from rag.index import ArticleIndex, Manifest
from rag.retrieval import DateRange, Passage, Retriever

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
CSTO_QUESTION = "Who is the Secretary General of the CSTO?"

# one short article per date, all on the same theme so that every one is a plausible hit for the query
DATED: dict[str, str | None] = {
    "2020-01-10.txt": "2020-01-10",
    "2021-03-01.txt": "2021-03-01",
    "2021-09-15.txt": "2021-09-15",
    "2022-05-20.txt": "2022-05-20",
    "undated.txt": None,
}
QUERY = "the city council voted on the transport budget"


def d(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


@pytest.fixture
def dated(pipeline: RAG, tmp_path: Path) -> RAG:
    folder = tmp_path / "dated"
    folder.mkdir()
    for name, date in DATED.items():
        label = date or "an unknown day"
        text = (
            f"On {label} the city council voted on the transport budget. "
            f"Council members discussed bus lines and tram repairs for the meeting of {label}."
        )
        (folder / name).write_text(f"date {date}\n{text}\n" if date else f"{text}\n", encoding="utf-8")
    pipeline.index([folder])
    return pipeline


def doc_ids(passages: list[Passage]) -> set[str]:
    return {p.doc_id for p in passages}


class TestRetriever:
    def test_top_k_passages_carry_score_text_metadata_and_span(self, seeded: RAG, embedder: Embedder) -> None:
        index = seeded.open_index()
        passages = Retriever(index, embedder).retrieve(CSTO_QUESTION, 4)

        assert len(passages) == min(4, len(index.chunks))
        assert [p.rank for p in passages] == list(range(1, len(passages) + 1))
        scores = [p.score for p in passages]
        assert scores == sorted(scores, reverse=True)
        query = embedder.embed_query(CSTO_QUESTION)
        source_doc = load_paths([SEEDS]).documents[0]
        for passage in passages:
            chunk = passage.chunk
            # cosine similarity: vectors are normalized, so the score is the dot product of the embeddings
            expected = float(np.dot(query, embedder.embed_query(chunk.text)))
            assert passage.score == pytest.approx(expected, abs=1e-4)
            assert -1.0 <= passage.score <= 1.0
            assert passage.text == chunk.text and chunk.text.strip()
            assert chunk.title == source_doc.title and chunk.title
            assert chunk.published == dt.date(2020, 10, 8)
            assert chunk.source == source_doc.source == SEEDS.joinpath(source_doc.id).name
            assert chunk.doc_id == source_doc.id
            assert index.documents[chunk.doc_id].text[chunk.start : chunk.end] == chunk.text
            assert source_doc.text[chunk.start : chunk.end] == chunk.text
            data = passage.to_json()
            assert data["published"] == "2020-10-08"
            assert (data["start"], data["end"], data["text"]) == (chunk.start, chunk.end, chunk.text)
            assert data["chunk_id"] == chunk.id

    def test_csto_secretary_general_is_in_the_top_3(self, seeded: RAG) -> None:
        passages = seeded.retrieve(CSTO_QUESTION, k=3)
        assert len(passages) == 3
        assert any("Stanislav Zas" in p.text for p in passages)

    def test_k_beyond_the_corpus_returns_every_chunk_once(self, seeded: RAG) -> None:
        index = seeded.open_index()
        passages = seeded.retrieve(CSTO_QUESTION, k=100)
        assert len(passages) == len(index.chunks)
        assert {p.chunk.id for p in passages} == set(index.chunks)

    @pytest.mark.parametrize(
        ("since", "until", "expected"),
        [
            ("2021-06-01", None, {"2021-09-15.txt", "2022-05-20.txt"}),
            (None, "2021-03-01", {"2020-01-10.txt", "2021-03-01.txt"}),
            ("2021-01-01", "2021-12-31", {"2021-03-01.txt", "2021-09-15.txt"}),
            ("2021-09-15", "2021-09-15", {"2021-09-15.txt"}),  # both bounds inclusive
            ("2023-01-01", None, set()),
        ],
    )
    def test_date_range_keeps_only_documents_in_range_and_undated_ones(
        self, dated: RAG, since: str | None, until: str | None, expected: set[str]
    ) -> None:
        passages = dated.retrieve(QUERY, k=50, since=d(since) if since else None, until=d(until) if until else None)
        assert doc_ids(passages) == expected | {"undated.txt"}
        for passage in passages:
            published = passage.chunk.published
            if published is not None:
                assert (since is None or published >= d(since)) and (until is None or published <= d(until))
        scores = [p.score for p in passages]
        assert scores == sorted(scores, reverse=True)

    def test_without_a_range_every_document_is_a_candidate(self, dated: RAG) -> None:
        assert doc_ids(dated.retrieve(QUERY, k=50)) == set(DATED)

    def test_undated_documents_can_be_excluded(self, dated: RAG, embedder: Embedder) -> None:
        retriever = Retriever(dated.open_index(), embedder, include_undated=False)
        passages = retriever.retrieve(QUERY, 50, DateRange(since=d("2021-06-01")))
        assert doc_ids(passages) == {"2021-09-15.txt", "2022-05-20.txt"}
        # with no range at all nothing is filtered, dated or not
        assert doc_ids(retriever.retrieve(QUERY, 50)) == set(DATED)

    def test_filter_applies_before_top_k(self, dated: RAG) -> None:
        """k=1 must return the best passage *in range*, not the best overall dropped by the filter."""
        best_overall = dated.retrieve("a council meeting on 2020-01-10", k=1)
        assert best_overall[0].doc_id == "2020-01-10.txt"
        in_range = dated.retrieve("a council meeting on 2020-01-10", k=1, since=d("2022-01-01"))
        assert len(in_range) == 1
        assert in_range[0].doc_id in {"2022-05-20.txt", "undated.txt"}

    def test_since_after_until_is_a_question_error(self, dated: RAG) -> None:
        with pytest.raises(QuestionError) as info:
            dated.retrieve(QUERY, since=d("2022-01-01"), until=d("2021-01-01"))
        assert "2022-01-01" in info.value.message and "2021-01-01" in info.value.message
        assert info.value.hint
        with pytest.raises(QuestionError):
            DateRange(since=d("2021-01-02"), until=d("2021-01-01"))
        DateRange(since=d("2021-01-01"), until=d("2021-01-01"))  # a single day is a valid range

    def test_empty_index_returns_nothing(self, pipeline: RAG, settings: Settings, embedder: Embedder) -> None:
        pipeline.index([])
        assert ArticleIndex.exists(settings.index_dir)
        assert pipeline.retrieve(CSTO_QUESTION) == []
        assert pipeline.retrieve(CSTO_QUESTION, since=d("2020-01-01"), until=d("2020-12-31")) == []
        reloaded = ArticleIndex.load(settings.index_dir)
        assert len(reloaded.chunks) == 0
        assert Retriever(reloaded, embedder).retrieve(CSTO_QUESTION, 5) == []

    def test_in_memory_empty_index_returns_nothing(self, tmp_path: Path, embedder: Embedder) -> None:
        index = ArticleIndex.create(
            tmp_path / "fresh",
            Manifest(embedding_model=embedder.name, dimension=384, chunk_tokens=180, chunk_overlap=30, tokenizer="x"),
        )
        assert Retriever(index, embedder).retrieve(CSTO_QUESTION, 5) == []
        assert Retriever(index, embedder).retrieve(CSTO_QUESTION, 5, DateRange(since=d("2020-01-01"))) == []
