"""Relative date expressions in questions, resolved against the as-of date (pure logic: no model)."""

from __future__ import annotations

import datetime as dt

import pytest

from rag.dates import DateRange, resolve
from rag.errors import QuestionError


def d(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


# (question, as-of date, phrase found, since, until). 2022-03-03 is a Thursday; 2021-01-01 a Friday;
# 2024-02-29 a leap day (Thursday); 2023-01-02 a Monday.
CASES = [
    ("What happened today?", "2022-03-03", "today", "2022-03-03", "2022-03-03"),
    ("Who resigned yesterday?", "2022-03-03", "yesterday", "2022-03-02", "2022-03-02"),
    ("Who resigned yesterday?", "2021-01-01", "yesterday", "2020-12-31", "2020-12-31"),  # across a year
    ("Who resigned yesterday?", "2022-03-01", "yesterday", "2022-02-28", "2022-02-28"),  # across a month
    ("Which team won this week?", "2022-03-03", "this week", "2022-02-25", "2022-03-03"),  # seven days
    ("Which team won this week?", "2021-01-01", "this week", "2020-12-26", "2021-01-01"),
    ("What did the Fed do last week?", "2022-03-03", "last week", "2022-02-21", "2022-02-27"),  # Mon..Sun
    ("What did the Fed do last week?", "2021-01-01", "last week", "2020-12-21", "2020-12-27"),
    ("What did the Fed do last week?", "2023-01-02", "last week", "2022-12-26", "2023-01-01"),
    ("Any news this month?", "2022-03-03", "this month", "2022-03-01", "2022-03-03"),
    ("What changed last month?", "2022-03-03", "last month", "2022-02-01", "2022-02-28"),
    ("What changed last month?", "2021-01-01", "last month", "2020-12-01", "2020-12-31"),  # across a year
    ("What changed last month?", "2024-03-15", "last month", "2024-02-01", "2024-02-29"),  # leap February
    ("Who won this year?", "2022-03-03", "this year", "2022-01-01", "2022-03-03"),
    ("Who won last year?", "2021-01-01", "last year", "2020-01-01", "2020-12-31"),
    ("What happened in March?", "2022-03-03", "in March", "2022-03-01", "2022-03-03"),  # this March so far
    ("What happened in March?", "2022-02-10", "in March", "2021-03-01", "2021-03-31"),  # last year's March
    ("What happened in December?", "2021-01-01", "in December", "2020-12-01", "2020-12-31"),
    ("What happened in May?", "2022-03-03", "in May", "2021-05-01", "2021-05-31"),
    ("Who won in February 2020?", "2022-03-03", "in February 2020", "2020-02-01", "2020-02-29"),
    ("Who won in 2021?", "2022-03-03", "in 2021", "2021-01-01", "2021-12-31"),
    ("What happened on March 5, 2021?", "2022-03-03", "on March 5, 2021", "2021-03-05", "2021-03-05"),
    ("What happened on March 5?", "2022-03-03", "on March 5", "2021-03-05", "2021-03-05"),  # not yet this year
    ("What happened on February 29?", "2024-02-29", "on February 29", "2024-02-29", "2024-02-29"),
    ("What was announced on Tuesday?", "2022-03-03", "on Tuesday", "2022-03-01", "2022-03-01"),
    ("What was announced on Thursday?", "2022-03-03", "on Thursday", "2022-03-03", "2022-03-03"),  # today
    ("What was announced last Thursday?", "2022-03-03", "last Thursday", "2022-02-24", "2022-02-24"),
    ("What was announced on Friday?", "2021-01-01", "on Friday", "2021-01-01", "2021-01-01"),
    ("What was announced on Saturday?", "2021-01-01", "on Saturday", "2020-12-26", "2020-12-26"),
    ("Who played this weekend?", "2022-03-03", "this weekend", "2022-02-26", "2022-02-27"),
    ("Who played last weekend?", "2022-03-06", "last weekend", "2022-02-26", "2022-02-27"),  # on a Sunday
    ("What happened 3 days ago?", "2021-01-02", "3 days ago", "2020-12-30", "2020-12-30"),
    ("What happened two weeks ago?", "2022-03-03", "two weeks ago", "2022-02-14", "2022-02-20"),
    ("What happened a month ago?", "2021-01-15", "a month ago", "2020-12-01", "2020-12-31"),
    ("What happened in the past 3 months?", "2022-03-03", "the past 3 months", "2021-12-04", "2022-03-03"),
    ("What happened in the last 7 days?", "2021-01-03", "the last 7 days", "2020-12-28", "2021-01-03"),
    ("What happened over the past week?", "2022-03-03", "the past week", "2022-02-25", "2022-03-03"),
    ("WHO RESIGNED LAST WEEK?", "2022-03-03", "LAST WEEK", "2022-02-21", "2022-02-27"),  # any case
    ("In 2020, who won? And last week?", "2022-03-03", "In 2020", "2020-01-01", "2020-12-31"),  # first wins
]


@pytest.mark.parametrize(("question", "as_of", "phrase", "since", "until"), CASES)
def test_relative_dates_resolve_against_the_as_of_date(
    question: str, as_of: str, phrase: str, since: str, until: str
) -> None:
    found = resolve(question, d(as_of))
    assert found is not None
    assert found.phrase == phrase
    assert found.range == DateRange(d(since), d(until))


@pytest.mark.parametrize(
    "question",
    [
        "Who is the Secretary General of the CSTO?",
        "What are the latest Black Friday deals?",  # a weekday that is a name
        "They may raise rates. What did the bank say recently?",  # "may" the verb; "recently" is vague
        "The March on Washington drew how many people?",  # a month name that is a noun
        "Which company sold 2021 units?",  # a number that is no year phrase
    ],
)
def test_phrases_without_a_definite_date_resolve_to_nothing(question: str) -> None:
    assert resolve(question, d("2022-03-03")) is None


def test_a_range_never_ends_after_the_as_of_date() -> None:
    for question in ("this week", "this month", "this year", "in March"):
        found = resolve(question, d("2022-03-03"))
        assert found is not None and found.range.until == d("2022-03-03"), question


def test_a_reversed_range_is_a_question_error_naming_both_dates() -> None:
    with pytest.raises(QuestionError) as info:
        DateRange(d("2022-01-02"), d("2022-01-01"))
    assert "2022-01-02" in info.value.message and "2022-01-01" in info.value.message and info.value.hint
    assert DateRange(d("2022-01-01"), d("2022-01-01")).since == d("2022-01-01")  # one day is a range


def test_only_relative_phrases_are_stripped_for_matching_passage_words() -> None:
    """ "last week" is in no article; "on Friday" is how an article dates what happened, so it stays a word
    the evidence must hold (the seed set's "What did the OSCE say on Friday?" is unanswerable)."""
    relative = resolve("Who resigned last week in Rome?", d("2022-03-03"))
    assert relative is not None and relative.strip_from("Who resigned last week in Rome?") == "Who resigned in Rome?"
    for question in ("What did the OSCE say on Friday?", "Who won in March 2021?", "Who won in 2021?"):
        absolute = resolve(question, d("2022-03-03"))
        assert absolute is not None and not absolute.relative and absolute.strip_from(question) == question
