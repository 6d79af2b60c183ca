"""Question analysis: the kind of answer asked for, and the parts of a multi-part question."""

from __future__ import annotations

import pytest

from rag.answering.question import Kind, analyze, kind_of


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Who is the Secretary General of the CSTO?", Kind.PERSON),
        ("Whose earlier remarks did the CSTO chief's statement echo?", Kind.PERSON),
        ("Which official heads the six-nation security bloc?", Kind.PERSON),
        ("Which company announced layoffs this week?", Kind.ORGANIZATION),
        ("In which Armenian province did Azerbaijan attack?", Kind.PLACE),
        ("Where was the summit held?", Kind.PLACE),
        ("When did Putin give the interview?", Kind.DATE),
        ("On what day did the spokesperson hold the briefing?", Kind.DATE),
        ("How many member states does the bloc have?", Kind.NUMBER),
        ("What percentage of voters backed the measure?", Kind.NUMBER),
        ("Why is Yerevan not expected to get help?", Kind.REASON),
        ("Did the Fortune article report the fraud?", Kind.YES_NO),
        ("Is there consistency between the two reports?", Kind.YES_NO),
        ("How did the alliance respond?", Kind.DESCRIPTION),
        ("What did Putin say about the talks?", Kind.DESCRIPTION),
        ("What did Putin urge the sides to agree to?", Kind.OTHER),
        ("What is initiated in cases of aggression?", Kind.OTHER),
    ],
)
def test_kind(question: str, kind: Kind) -> None:
    assert kind_of(question) is kind


class TestAnswerTypes:
    def test_a_named_role_accepts_only_its_own_type(self) -> None:
        """ "Who is the foreign minister?" is a person: an organisation ("Russia's Foreign Ministry") or a
        nationality ("Armenian") must not be a candidate."""
        for question in ("Who is Armenia's foreign minister?", "Which official heads the bloc?"):
            asked = analyze(question)
            assert asked.answer_types == {"PERSON"} and not asked.near_types, question

    def test_an_open_who_question_accepts_organisations_and_groups_too(self) -> None:
        asked = analyze("Who won the 2020 election?")
        assert asked.answer_types == {"PERSON"} and {"ORG", "NORP"} <= asked.near_types

    def test_places_dates_numbers_and_durations(self) -> None:
        assert analyze("In which city did they meet?").answer_types == {"GPE", "LOC", "FAC"}
        assert analyze("When did he speak?").answer_types == {"DATE", "TIME"}
        assert "MONEY" in analyze("How much did it cost?").answer_types
        assert "DATE" in analyze("How many days did the strike last?").answer_types
        assert "DATE" not in analyze("How many troops are there?").answer_types

    def test_a_plural_head_asks_for_several(self) -> None:
        assert analyze("Which three countries chair the group?").plural
        assert not analyze("Which country chairs the group?").plural

    def test_untyped_kinds_have_no_entity_types(self) -> None:
        for question in ("Why did it fail?", "Did it fail?", "How did they respond?", "What is initiated?"):
            assert analyze(question).answer_types == frozenset(), question


def test_the_clause_that_asks_decides_the_kind() -> None:
    """A leading clause is context: the yes/no auxiliary after it is what is asked."""
    question = "Between the report from The Verge on 2023-11-24 and the report from Wired, is there consistency?"
    assert kind_of(question) is Kind.YES_NO
    assert kind_of("According to the CSTO head, how many members does it have?") is Kind.NUMBER
    assert kind_of("Which company, reported by TechCrunch, was sued?") is Kind.ORGANIZATION


class TestParts:
    def test_a_comparison_splits_at_while(self) -> None:
        question = analyze(
            "Does the article from Fortune claim that the practices were legal, while the article from The Verge "
            "suggests that the balance was negative?"
        )
        assert question.multipart and question.kind is Kind.YES_NO
        assert question.parts[0].startswith("Does the article from Fortune claim")
        assert question.parts[1].startswith("the article from The Verge suggests")

    def test_between_two_reports_gives_each_report_the_question(self) -> None:
        question = analyze("Between the report from The Verge and the report from Wired, was the focus the same?")
        assert question.parts == (
            "the report from The Verge was the focus the same",
            "the report from Wired was the focus the same",
        )

    def test_a_simple_question_has_no_parts(self) -> None:
        question = analyze("Who won the election and the runoff?")
        assert not question.multipart and question.parts == ()

    def test_the_topic_without_a_date_phrase_is_what_evidence_matches(self) -> None:
        question = analyze("Who resigned last week?", topic="Who resigned?")
        assert question.text == "Who resigned last week?" and question.evidence_query == "Who resigned?"
        assert analyze("Who resigned?").evidence_query == "Who resigned?"
