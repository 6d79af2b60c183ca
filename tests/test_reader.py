"""The reader: grammars for the small model, drafts, composition, checked claims and the refusal, over
the real embedding model and seed index (the local model itself is exercised in test_local_llm.py)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from rag import RAG, REFUSAL
from rag.answering.confidence import load
from rag.answering.evidence import EvidencePool
from rag.answering.question import analyze
from rag.answering.reader import Draft, Reader, ReaderOptions, candidates, copy_grammar, refusal_text
from rag.prompts import NOT_SURE
from rag.store.embedding import Embedder
from rag.types import Chunk, Passage
from tests.conftest import Scripted

QUESTION = "Who is the Secretary General of the CSTO?"
OPTIONS = ReaderOptions(focus_sentences=6, max_tokens=64, temperature=0.0, min_confidence=0.5, attribute_citations=True)


def passage(text: str, doc_id: str, rank: int) -> Passage:
    chunk = Chunk(
        doc_id, 0, text, 0, len(text), len(text.split()), title=doc_id, published=dt.date(2023, 11, rank), id=rank
    )
    return Passage(chunk, 1.0 / rank, rank)


REPORTS = [
    passage("Fortune reported that the exchange's business practices were legal, its lawyers said.", "fortune", 1),
    passage("The Verge said the trading firm had a negative balance larger than the exchange's revenue.", "verge", 2),
    passage("Markets were calm on Friday as investors waited for the jobs report.", "markets", 3),
]


class TestGrammar:
    def test_a_yes_no_question_may_only_say_yes_no_or_unknown(self) -> None:
        grammar = copy_grammar(["Anything at all."], analyze("Did Zas speak on Thursday?"))
        assert grammar == 'root ::= "Yes" | "No" | "unknown"\n'

    def test_a_who_question_chooses_among_new_names(self) -> None:
        sentences = ["Remarks by Russian President Vladimir Putin were echoed by Stanislav Zas, the CSTO chief."]
        question = analyze(QUESTION)
        assert candidates(sentences, question) == ["Vladimir Putin", "Stanislav Zas"]
        assert copy_grammar(sentences, question) == 'root ::= "unknown" | "Vladimir Putin" | "Stanislav Zas"\n'

    def test_other_questions_copy_a_run_of_words_that_ends_with_its_sentence(self) -> None:
        grammar = copy_grammar(['He said "stop now." Then left.'], analyze("What did he say?"))
        assert grammar.splitlines() == [
            'root ::= "unknown" | w0 | w1 | w2 | w3 | w4 | w5',
            'w0 ::= "He" (" " w1)?',
            'w1 ::= "said" (" " w2)?',
            'w2 ::= "\\"stop" (" " w3)?',
            'w3 ::= "now"',
            'w4 ::= "Then" (" " w5)?',
            'w5 ::= "left"',
        ]


class TestCompose:
    def test_a_multi_part_yes_quotes_the_evidence_for_each_part(self, embedder: Embedder) -> None:
        question = analyze(
            "Did Fortune report that the exchange's practices were legal, while The Verge reported the trading "
            "firm had a negative balance?"
        )
        reader = Reader(EvidencePool(REPORTS, embedder.embed), question, OPTIONS)
        text = reader.compose(Draft("yes"))
        assert text.startswith("Yes [1][2]. “Fortune reported")
        assert "“The Verge said" in text and "Markets" not in text

    def test_a_short_answer_is_cited_to_the_sentence_that_holds_it(self, embedder: Embedder) -> None:
        reader = Reader(EvidencePool(REPORTS, embedder.embed), analyze("Who reported a negative balance?"), OPTIONS)
        assert reader.compose(Draft("The Verge")) == (
            "The Verge [2]. “The Verge said the trading firm had a negative balance larger than the exchange's "
            "revenue.” [2]"
        )

    def test_a_quote_inside_the_quoted_sentence_takes_single_marks(self, embedder: Embedder) -> None:
        said = [passage("“We agreed on a ceasefire,” the minister said on Friday.", "ceasefire", 1)]
        reader = Reader(EvidencePool(said, embedder.embed), analyze("Who agreed on a ceasefire?"), OPTIONS)
        assert reader.compose(Draft("the minister")) == (
            "the minister [1]. “‘We agreed on a ceasefire,’ the minister said on Friday.” [1]"
        )

    def test_the_extractive_draft_takes_the_name_beside_the_question_words(self, seeded: RAG) -> None:
        found = seeded.search(QUESTION).passages
        reader = Reader(EvidencePool(found, seeded.embedder.embed), analyze(QUESTION), OPTIONS)
        assert reader.draft_extractive().short == "Stanislav Zas"

    def test_refusal_names_what_was_searched_and_the_closest_article(self) -> None:
        text = refusal_text(REPORTS, "articles published up to 2023-11-30")
        assert text.startswith(REFUSAL)
        assert "Searched articles published up to 2023-11-30; the closest article was “fortune” (2023-11-01)." in text
        assert (
            refusal_text([], "articles published in 2020")
            == f"{REFUSAL} No article matched (articles published in 2020)."
        )


class TestCapableModel:
    def test_its_own_text_is_kept_streamed_and_its_unsupported_sentence_flagged(self, seeded: RAG) -> None:
        reply = "Stanislav Zas [1]. He was elected by the United Nations in Paris [1]."
        seeded.generators["capable"] = Scripted(reply)
        items = list(seeded.answer_stream(QUESTION, backend="capable"))
        answer = items[-1]
        assert "".join(items[:-1]) == reply and answer.text == reply
        assert answer.short == "Stanislav Zas"
        assert [c.supported for c in answer.claims] == [True, False]
        assert [c.text for c in answer.unsupported] == ["He was elected by the United Nations in Paris."]

    def test_its_refusal_is_a_refusal(self, seeded: RAG) -> None:
        seeded.generators["capable"] = Scripted(REFUSAL)
        answer = seeded.answer(QUESTION, backend="capable")
        assert answer.refused and answer.signals["declined"] == 1.0 and answer.short is None


class TestConfidence:
    def test_below_the_threshold_the_draft_is_shown_as_not_sure_with_its_source(self, seeded: RAG) -> None:
        """Neither an unqualified answer nor a bare refusal: the user sees the draft flagged, and where it
        came from, to check for themselves."""
        seeded.settings = seeded.settings.model_copy(update={"min_confidence": 1.0})
        answer = seeded.answer(QUESTION)
        assert answer.refused and answer.confidence_level == "not sure" and answer.short is None
        assert answer.text.startswith(f"{NOT_SURE} Stanislav Zas [1].")
        assert answer.draft is not None and answer.draft_short == "Stanislav Zas"
        assert [c.number for c in answer.citations] == [1, 1] and answer.citations[0].passage.chunk.doc_id
        assert answer.text[answer.claims[0].start : answer.claims[0].end].startswith("Stanislav Zas [1]")

    def test_without_passages_the_refusal_says_what_was_searched(self, seeded: RAG) -> None:
        answer = seeded.answer(QUESTION, until=dt.date(1990, 1, 1))
        assert answer.refused and answer.text.startswith(REFUSAL) and answer.citations == []
        assert answer.confidence_level == "not sure" and answer.draft_short is None

    def test_the_level_in_words_follows_the_measured_thresholds(self, seeded: RAG) -> None:
        seeded.settings = seeded.settings.model_copy(update={"min_confidence": 0.0})
        answer = seeded.answer(QUESTION)
        high = load()["extractive"].high
        assert answer.confidence_level == ("high" if answer.confidence >= high else "medium")

    @pytest.mark.parametrize("min_confidence", [0.0])
    def test_zero_never_refuses_an_answer_it_found(self, seeded: RAG, min_confidence: float) -> None:
        seeded.settings = seeded.settings.model_copy(update={"min_confidence": min_confidence})
        answer = seeded.answer("What is the capital of France?")
        assert not answer.refused and answer.text and 0.0 <= answer.confidence <= 1.0
        assert set(answer.signals) >= {"evidence", "lexical", "semantic", "grounded", "declined"}


class TestMultiPart:
    def test_each_part_is_searched_and_quoted(self, pipeline: RAG, tmp_path: object) -> None:
        from pathlib import Path

        corpus = Path(str(tmp_path)) / "reports.jsonl"
        records = [
            {"id": "fortune", "title": "Fortune", "published": "2023-11-01",
             "text": "Fortune reported that the exchange's business practices were legal, its lawyers said."},
            {"id": "verge", "title": "The Verge", "published": "2023-11-02",
             "text": "The Verge said the trading firm had a negative balance larger than the exchange's revenue."},
        ] + [
            {"id": f"other-{i}", "title": f"Markets {i}", "published": "2023-11-03",
             "text": f"Markets were calm on day {i} as investors waited for the exchange's jobs report."}
            for i in range(8)
        ]  # fmt: skip
        corpus.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
        pipeline.index([corpus])
        question = (
            "Did Fortune report that the exchange's practices were legal, while The Verge reported that the "
            "trading firm had a negative balance?"
        )
        answer = pipeline.answer(question, k=1, as_of=dt.date(2023, 11, 30))
        assert len(answer.parts) == 2
        cited = {answer.passages[c.number - 1].doc_id for c in answer.citations}
        assert cited == {"fortune", "verge"}, answer.text
        assert all(claim.supported for claim in answer.claims)
