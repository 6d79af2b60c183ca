"""Answer spans from the real English pipeline (spaCy's en_core_web_sm): typed entities for typed questions,
noun phrases for things, and the pipeline's own mistakes tolerated."""

from __future__ import annotations

from rag.answering.question import analyze
from rag.answering.spans import SECONDARY_FIT, foreign, is_new, spans

SEED = (
    "The Collective Security Treaty Organization will provide Armenia with military assistance, said the "
    "group’s Secretary General Stanislav Zas on Thursday."
)
GENEVA = "Azerbaijani Foreign Minister Jeyhun Bayramov is scheduled to meet the Minsk Group co-chairmen in Geneva."


def texts(sentence: str, question: str) -> list[str]:
    return [s.text for s in spans(sentence, analyze(question))]


def test_a_person_question_gets_names_without_titles_or_nationalities() -> None:
    assert texts(SEED, "Who is the Secretary General?") == ["Stanislav Zas"]
    # spaCy tags the adjective "Azerbaijani" a PERSON here: a name must hold a proper noun
    assert texts(GENEVA, "Who is the foreign minister?") == ["Jeyhun Bayramov"]
    assert texts("Remarks by Russian President Vladimir Putin were echoed.", "Whose remarks?") == ["Vladimir Putin"]


def test_a_place_question_gets_places_not_demonyms() -> None:
    assert texts(GENEVA, "In which city was the meeting?") == ["Geneva"]


def test_an_open_question_takes_neighbouring_types_at_a_lower_fit() -> None:
    found = {s.text: s.fit for s in spans(SEED, analyze("Who will help Armenia?"))}
    assert found["Stanislav Zas"] == 1.0 and found["Collective Security Treaty Organization"] == SECONDARY_FIT


def test_dates_and_numbers() -> None:
    assert texts("The vote on March 3, 2017 followed talks on Thursday.", "When was the vote?") == [
        "March 3, 2017",
        "Thursday",
    ]
    found = texts("Putin said nearly 2 million people live there, and $5 billion was spent.", "How many live there?")
    assert "nearly 2 million" in found and "$5 billion" in found


def test_a_question_for_several_gets_the_list_too() -> None:
    sentence = "The Minsk Group is co-chaired by the United States, Russia and France."
    assert "United States, Russia and France" in texts(sentence, "Which three countries chair the group?")
    assert "United States, Russia and France" not in texts(sentence, "Which country chairs the group?")


def test_a_thing_is_a_noun_phrase_or_one_with_its_attachment() -> None:
    sentence = "Aggression against one member state is regarded as an attack on all members."
    found = texts(sentence, "How is aggression regarded, according to the treaty?")
    assert found == []  # a "how" question is answered by copied words, not a noun phrase
    found = texts(sentence, "What is aggression against one member state regarded as?")
    assert "attack on all members" in found and "attack" in found


def test_reasons_are_the_clause_after_because() -> None:
    found = texts("Yerevan will not receive help because Artsakh is not part of Armenia.", "Why no help?")
    assert found == ["Artsakh is not part of Armenia"]


def test_is_new_rejects_a_span_that_restates_the_question() -> None:
    assert not is_new("the CSTO", "Who heads the CSTO?")
    assert not is_new("Collective Security Treaty Organization", "Who heads the CSTO?")
    assert is_new("Stanislav Zas", "Who heads the CSTO?")


PUTIN = (
    "Zas’ statement, which echoed similar remarks made by Russian President Vladimir Putin, suggests that the "
    "six-member security bloc will not act on its mandate unless Azerbaijan strikes at Armenian proper."
)
MINISTERS = "Russian Foreign Minister Sergei Lavrov spoke with Armenia’s foreign minister Zohrab Mnatsakanyan."
TAVUSH = "Azerbaijan launched a brazen attack on civilian and military targets in the Tavush Province."


def test_an_answer_bound_to_another_country_than_the_one_asked_about_is_foreign() -> None:
    assert foreign("Vladimir Putin", PUTIN, "Who is the President of Azerbaijan?")
    assert foreign("Sergei Lavrov", MINISTERS, "Who is Armenia's foreign minister?")


def test_the_asked_country_its_demonym_or_no_country_at_all_is_not_foreign() -> None:
    assert not foreign("Vladimir Putin", PUTIN, "Who is the President of Russia?")
    assert not foreign("Zohrab Mnatsakanyan", MINISTERS, "Who is Armenia's foreign minister?")
    # a name elsewhere in the question binds nothing about the answer
    assert not foreign("Vladimir Putin", PUTIN, "Whose earlier remarks did the CSTO chief's statement echo?")
    # the answer's own name is no binding of it
    assert not foreign("Tavush Province", TAVUSH, "In which Armenian province did Azerbaijan attack targets?")
    assert not foreign("Sergei Lavrov", MINISTERS, "Who spoke with the foreign minister?")
