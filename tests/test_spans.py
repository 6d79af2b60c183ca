"""Answer spans by kind, and trimming a copied answer that ran on past the answer."""

from __future__ import annotations

from rag.question import Kind
from rag.spans import is_new, spans, trim

SEED = (
    "The Collective Security Treaty Organization will provide Armenia with military assistance, said the "
    "group’s Secretary General Stanislav Zas on Thursday."
)


def texts(sentence: str, kind: Kind) -> list[str]:
    return [s.text for s in spans(sentence, kind)]


def test_names_are_capitalised_runs_without_titles() -> None:
    found = texts(SEED, Kind.PERSON)
    assert "Stanislav Zas" in found and "Collective Security Treaty Organization" in found
    assert texts("Remarks by Russian President Vladimir Putin were echoed.", Kind.PERSON) == ["Vladimir Putin"]


def test_a_sentence_opening_word_is_not_a_name() -> None:
    assert "The" not in texts("The summit ended.", Kind.ORGANIZATION)
    assert texts("However, Armenia’s territory was attacked.", Kind.PLACE) == ["Armenia"]


def test_dates_and_days() -> None:
    found = texts("The vote on March 3, 2017 followed talks on Thursday and in July 2020.", Kind.DATE)
    assert found == ["March 3, 2017", "Thursday", "July 2020"]


def test_numbers_with_units_and_qualifiers_but_not_inside_names() -> None:
    found = texts("On Russia-1 Putin said nearly 2 million people, $5 and 10% and six members.", Kind.NUMBER)
    assert found == ["nearly 2 million people", "$5", "10%", "six members"]


def test_reasons_are_the_clause_after_because() -> None:
    found = texts("Yerevan will not receive help because Artsakh is not part of Armenia.", Kind.REASON)
    assert found == ["Artsakh is not part of Armenia"]


def test_is_new_rejects_a_span_that_restates_the_question() -> None:
    assert not is_new("the CSTO", "Who heads the CSTO?")
    assert is_new("Stanislav Zas", "Who heads the CSTO?")


def test_trim_keeps_the_span_of_the_asked_kind() -> None:
    copied = "Tuesday, Prime Minister Nikol Pashinyan said that he was confident"
    assert trim(copied, Kind.DATE, "When did Pashinyan give the interview?") == "Tuesday"
    assert trim("Stanislav Zas", Kind.PERSON, "Who?") == "Stanislav Zas"
    assert trim("Armenia’s", Kind.PLACE, "Whose territory?") == "Armenia"
    assert trim("the events were of a tragic nature", Kind.OTHER, "How?") == "the events were of a tragic nature"
