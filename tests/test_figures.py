"""Figures that changed and figures sources disagree on (`rag.stories.figures`), read with the real English
pipeline: a pair is made only of counts of the same thing, in the same place, about the story. Each case
below is a wrong line the rules exist to prevent, or a right one they must keep."""

from __future__ import annotations

import datetime as dt

import pytest

from rag.answering.nlp import parse
from rag.config import StorySettings
from rag.stories.figures import _value, changes, figure_line, figures
from rag.types import Chunk, Passage

NAMED = "nadia"  # the story's most specific word, as the index's terms spell it
DAYS = StorySettings().figure_days


def article(doc_id: str, day: int, text: str) -> Passage:
    chunk = Chunk(
        doc_id, 0, text, 0, len(text), 0, f"Report {doc_id}", dt.date(2023, 3, day), url=f"https://x/{doc_id}"
    )
    return Passage(chunk, 1.0, 1)


def lines(*passages: Passage, since: dt.date | None = None) -> list[str]:
    return [figure_line(c) for c in changes(figures(passages, NAMED, parse), DAYS, since)]


def test_a_toll_that_rose_is_one_line_citing_both_articles() -> None:
    first = article("a", 11, "Storm Nadia killed at least twelve people, rescuers said.")
    later = article("b", 15, "The death toll from Storm Nadia rose to thirty-one on Tuesday, officials said.")
    found = changes(figures([first, later], NAMED, parse), DAYS)
    assert [figure_line(c) for c in found] == ["people killed: at least twelve (2023-03-11) → thirty-one (2023-03-15)"]
    change = found[0]
    assert (change.old.citation.passage.doc_id, change.new.citation.passage.doc_id) == ("a", "b")
    assert change.old.hedged and not change.new.hedged
    assert change.new.citation.quote in later.text, "the figure's sentence is quoted from its article"


def test_a_county_count_is_not_the_storm_toll() -> None:
    """Pairing "45 people" with "eight people in Collier County" would say the toll fell from 45 to 8."""
    toll = article("a", 11, "Storm Nadia has killed at least 45 people, officials said.")
    county = article("b", 14, "Storm Nadia caused the deaths of eight people in Collier County.")
    breakdown = article("c", 15, "Storm Nadia caused the deaths of 12 people in Lee County, five in Volusia County.")
    assert lines(toll, county, breakdown) == []
    assert [f.measure for f in figures([county], NAMED, parse)] == ["people killed in Collier County"]
    assert figures([breakdown], NAMED, parse) == [], "a sentence giving one measure two values is a breakdown"


def test_counts_of_other_stories_other_years_and_told_before_are_left_out() -> None:
    toll = article("a", 11, "Storm Nadia killed twelve people.")
    assert (
        lines(toll, article("b", 14, "Storm Nadia was weaker than Hurricane Katrina, which killed 1,800 people.")) == []
    )
    assert lines(toll, article("c", 14, "In 2005, a storm like Storm Nadia killed 1,800 people.")) == []
    assert lines(toll, article("d", 14, "Some of the nine people killed by Storm Nadia were children.")) == []


def test_sources_that_state_different_exact_figures_the_same_day_disagree() -> None:
    one = article("a", 11, "Storm Nadia killed twelve people, the police said.")
    other = article("b", 11, "Storm Nadia killed fourteen people, the mayor said.")
    assert lines(one, other) == ["people killed, 2023-03-11: the sources disagree, twelve or fourteen"]
    hedged = article("c", 11, "Storm Nadia killed at least fourteen people, the mayor said.")
    assert lines(one, hedged) == [], "'at least fourteen' does not contradict 'twelve'"


def test_since_a_date_the_change_is_from_the_last_figure_before_it() -> None:
    stated = [
        article("a", 10, "Storm Nadia killed three people."),
        article("b", 12, "Storm Nadia killed twelve people."),
        article("c", 15, "Storm Nadia killed thirty-one people."),
    ]
    assert lines(*stated, since=dt.date(2023, 3, 14)) == [
        "people killed: twelve (2023-03-12) → thirty-one (2023-03-15)"
    ]
    assert lines(*stated) == ["people killed: three (2023-03-10) → thirty-one (2023-03-15)"]
    assert lines(*stated[:2], since=dt.date(2023, 3, 14)) == [], "nothing new since then"


@pytest.mark.parametrize(
    ("sentence", "value"),
    [
        ("It killed thirty-one people.", 31.0),
        ("It killed at least 1,300 people.", 1300.0),
        ("It displaced 1.5 million people.", 1_500_000.0),
        ("It killed one hundred and five people.", 105.0),
        ("It killed a dozen people.", 12.0),
        ("It killed between 40-50 people.", None),
        ("It killed hundreds of people.", None),
        ("It killed dozens of people.", None),
    ],
)
def test_values_are_read_as_written(sentence: str, value: float | None) -> None:
    (doc,) = parse([sentence])
    (number,) = [e for e in doc.ents if e.label_ == "CARDINAL"]
    assert _value(number) == value
