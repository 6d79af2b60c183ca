"""Follow-up questions: deciding that a question leans on the conversation, rewriting it into a standalone
one (deterministically, or with an LLM that falls back to the rule when it rambles), and the pipeline
searching for the rewritten question while reporting the one the user asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag import RAG
from rag.answering.conversation import Turn, condense, needs_context, rewrite_heuristic
from tests.conftest import Scripted

QUESTION = "Who is the Secretary General of the CSTO?"
FOLLOW_UP = "What did he say about military assistance?"
ZAS_TURN = Turn(QUESTION, "Stanislav Zas is the Secretary General of the CSTO [1].")


class TestNeedsContext:
    @pytest.mark.parametrize(
        ("question", "expected"),
        [
            (QUESTION, False),
            ("When did Armenia ask the CSTO for military assistance?", False),
            ("What did Vladimir Putin say about Nagorno-Karabakh?", False),
            ("Which theme park did the council approve?", False),  # "the"/"theme" are not "he"
            ("Andrew Jones resigned from which committee?", False),  # "Andrew" is not "and"
            (FOLLOW_UP, True),
            ("What did HE promise?", True),
            ("What is her role?", True),
            ("Where is his office?", True),
            ("Did they agree?", True),
            ("What happened then?", True),
            ("Is that true?", True),
            ("And in July?", True),
            ("what about Azerbaijan?", True),
            ("How about the summit", True),
            ("But why?", True),
            ("Why?", True),  # a single content word is too little to search with
            ("Azerbaijan?", True),
        ],
    )
    def test_table(self, question: str, expected: bool) -> None:
        assert needs_context(question) is expected


class TestRewriteHeuristic:
    def test_pronoun_becomes_the_person_the_answer_named(self) -> None:
        assert rewrite_heuristic(FOLLOW_UP, [ZAS_TURN]) == "What did Stanislav Zas say about military assistance?"

    def test_contracted_pronoun_becomes_name_is(self) -> None:
        assert rewrite_heuristic("Is he's still in office?", [ZAS_TURN]) == "Is Stanislav Zas is still in office?"

    def test_sentence_initial_words_are_not_names(self) -> None:
        turn = Turn("Who chairs the talks?", "The envoy Maria Lopez chairs them. In Geneva talks continue.")
        assert rewrite_heuristic("What did she say?", [turn]) == "What did Maria Lopez say?"

    def test_his_becomes_possessive(self) -> None:
        assert rewrite_heuristic("What is his job?", [ZAS_TURN]) == "What is Stanislav Zas's job?"

    def test_only_the_first_pronoun_is_replaced(self) -> None:
        rewritten = rewrite_heuristic("Did he say his country would help?", [ZAS_TURN])
        assert rewritten == "Did Stanislav Zas say his country would help?"

    def test_uses_the_last_name_the_question_did_not_mention(self) -> None:
        turn = Turn(
            "What did Nikol Pashinyan discuss?",
            "Nikol Pashinyan spoke with Vladimir Putin, and Sergey Lavrov met Zohrab Mnatsakanyan [1]. "
            "Nikol Pashinyan thanked them [2].",
        )
        assert rewrite_heuristic("What did he promise?", [turn]) == "What did Zohrab Mnatsakanyan promise?"

    def test_title_the_question_asked_about_is_not_part_of_the_name(self) -> None:
        turn = Turn(QUESTION, "“... said the group’s Secretary General Stanislav Zas on Thursday.” [2]")
        assert rewrite_heuristic(FOLLOW_UP, [turn]) == "What did Stanislav Zas say about military assistance?"

    def test_name_the_question_already_used_is_skipped(self) -> None:
        turn = Turn("What did Stanislav Zas say?", "Stanislav Zas said the CSTO would help [1].")
        assert rewrite_heuristic("Did he mean it?", [turn]) == "Did he mean it? (context: What did Stanislav Zas say?)"

    def test_only_the_latest_turn_counts(self) -> None:
        older = Turn("Who leads Russia?", "Vladimir Putin [1].")
        assert "Stanislav Zas" in rewrite_heuristic(FOLLOW_UP, [older, ZAS_TURN])
        assert "Vladimir Putin" in rewrite_heuristic(FOLLOW_UP, [ZAS_TURN, older])

    @pytest.mark.parametrize("question", ["And in July?", "What happened then?", "what about Azerbaijan?", "Why?"])
    def test_elliptical_and_deictic_questions_carry_the_previous_question(self, question: str) -> None:
        assert rewrite_heuristic(question, [ZAS_TURN]) == f"{question} (context: {QUESTION})"

    def test_context_is_the_previous_question_as_it_was_searched(self) -> None:
        turn = Turn("And in July?", "Azerbaijan attacked [1].", standalone="And in July? (context: Who attacked?)")
        assert rewrite_heuristic("Why then?", [turn]) == "Why then? (context: And in July? (context: Who attacked?))"

    def test_pronoun_and_deictic_get_both(self) -> None:
        rewritten = rewrite_heuristic("What did he say about that?", [ZAS_TURN])
        assert rewritten == f"What did Stanislav Zas say about that? (context: {QUESTION})"

    def test_pronoun_without_a_name_to_resolve_carries_the_question(self) -> None:
        refused = Turn(QUESTION, "I cannot answer this from the provided articles.")
        assert rewrite_heuristic(FOLLOW_UP, [refused]) == f"{FOLLOW_UP} (context: {QUESTION})"

    @pytest.mark.parametrize(
        "question", [QUESTION, "When did Armenia ask the CSTO for military assistance?", "Who is Stanislav Zas?"]
    )
    def test_standalone_questions_are_untouched(self, question: str) -> None:
        assert rewrite_heuristic(question, [ZAS_TURN]) == question

    def test_empty_history_leaves_the_question_alone(self) -> None:
        assert rewrite_heuristic(FOLLOW_UP, []) == FOLLOW_UP
        assert condense(FOLLOW_UP, []) == FOLLOW_UP


class TestCondense:
    def test_without_a_generator_uses_the_heuristic(self) -> None:
        assert condense(FOLLOW_UP, [ZAS_TURN]) == rewrite_heuristic(FOLLOW_UP, [ZAS_TURN])

    def test_generator_rewrite_is_used(self) -> None:
        llm = Scripted("What did Stanislav Zas, head of the CSTO, say about military assistance?")
        assert condense(FOLLOW_UP, [ZAS_TURN], llm) == llm.reply
        [request] = llm.requests
        prompt = request.messages[-1]["content"]
        assert FOLLOW_UP in prompt and ZAS_TURN.answer in prompt and QUESTION in prompt
        assert request.passages == [] and request.temperature == 0.0

    def test_generator_sees_the_searched_form_of_the_last_three_turns(self) -> None:
        turns = [Turn(f"Question number {i}?", f"Answer number {i}.") for i in range(5)]
        turns[-1] = Turn("And then?", "Answer number 4.", standalone="What happened in July?")
        llm = Scripted("What did the CSTO say in July?")
        condense(FOLLOW_UP, turns, llm)
        prompt = llm.requests[0].messages[-1]["content"]
        assert "What happened in July?" in prompt and "And then?" not in prompt
        assert "Question number 2?" in prompt and "Question number 1?" not in prompt

    def test_first_line_without_quotes(self) -> None:
        llm = Scripted('\n"What did Stanislav Zas say about military assistance?"\nI replaced "he" with the name.')
        assert condense(FOLLOW_UP, [ZAS_TURN], llm) == "What did Stanislav Zas say about military assistance?"

    @pytest.mark.parametrize("reply", ["", "   \n ", '""', "word " * 200])
    def test_empty_or_rambling_reply_falls_back_to_the_heuristic(self, reply: str) -> None:
        llm = Scripted(reply)
        assert condense(FOLLOW_UP, [ZAS_TURN], llm) == "What did Stanislav Zas say about military assistance?"
        assert llm.requests, "the generator was asked first"

    def test_standalone_question_is_not_sent_to_the_generator(self) -> None:
        llm = Scripted("something else entirely")
        assert condense(QUESTION, [ZAS_TURN], llm) == QUESTION
        assert condense(FOLLOW_UP, [], llm) == FOLLOW_UP
        assert llm.requests == []


class TestFollowUpThroughThePipeline:
    """The extractive backend over the real index, with a second article in which another man talks
    about military assistance: only the rewritten question finds what Zas said."""

    @pytest.fixture
    def rag(self, seeded: RAG, tmp_path: Path) -> RAG:
        other = tmp_path / "other"
        other.mkdir()
        (other / "nato.txt").write_text(
            "date 2020-10-09\nA NATO spokesman, Piet Van Dam, said on Friday that the alliance will not send "
            "military assistance to the region. He said military assistance from the alliance was never requested.\n",
            encoding="utf-8",
        )
        seeded.index([other])
        return seeded

    def test_follow_up_is_searched_as_the_rewritten_question(self, rag: RAG) -> None:
        # The rewrite is the point, not whether the answer clears the threshold: "what did he say" has no
        # short answer, which the fitted model scores low (README, Reading).
        rag.settings = rag.settings.model_copy(update={"min_confidence": 0.0})
        first = rag.answer(QUESTION, k=3)
        assert "Stanislav Zas" in first.text and first.standalone_question is None
        history = [Turn(first.question, first.text, first.standalone_question or "")]

        answer = rag.answer(FOLLOW_UP, k=3, history=history)

        assert answer.question == FOLLOW_UP
        assert answer.standalone_question == "What did Stanislav Zas say about military assistance?"
        expected = [p.chunk.id for p in rag.retrieve(answer.standalone_question, k=3)]
        assert [p.chunk.id for p in answer.passages] == expected
        assert answer.passages[0].doc_id != "nato.txt"
        assert not answer.refused and answer.citations
        quote = answer.citations[0].quote
        assert "Zas" in quote and "military assistance" in quote
        assert answer.to_json()["standalone_question"] == answer.standalone_question

    def test_without_history_the_same_words_find_the_other_man(self, rag: RAG) -> None:
        """The control: if the rewrite did nothing, the test above would see this instead."""
        answer = rag.answer(FOLLOW_UP, k=3)
        assert answer.standalone_question is None
        assert answer.passages[0].doc_id == "nato.txt"
        assert not any("Zas" in c.quote for c in answer.citations)

    def test_standalone_question_with_history_is_not_rewritten(self, rag: RAG) -> None:
        answer = rag.answer(QUESTION, history=[ZAS_TURN])
        assert answer.standalone_question is None and answer.question == QUESTION
        assert "Stanislav Zas" in answer.text

    def test_streamed_answer_carries_the_rewrite(self, rag: RAG) -> None:
        items = list(rag.answer_stream("What is his title?", history=[ZAS_TURN]))
        final = items[-1]
        assert not isinstance(final, str)
        assert final.question == "What is his title?"
        assert final.standalone_question == "What is Stanislav Zas's title?"
