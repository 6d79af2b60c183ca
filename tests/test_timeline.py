"""Timelines (`rag timeline`, `RAG.timeline`): a story's events in date order, each a sentence quoted from
the passage it cites, dated by the day a past-tense sentence states, near-copies folded. Real index, real
embedding model, real English pipeline."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import rag.stories.timeline
from rag import RAG
from rag.cli import run as cli_run
from rag.config import Settings
from rag.errors import QuestionError
from rag.evaluation.runner import eval_index_dir
from rag.evaluation.timelines import LABELS as JUDGEMENTS
from rag.evaluation.timelines import TOPICS, build, judged
from rag.store.embedding import Embedder
from rag.store.index import ArticleIndex
from rag.stories.changes import asks_what_changed
from rag.types import Document, Timeline

STORY = [
    ("forecast", dt.date(2023, 3, 6), "Forecasters warn that Storm Nadia could reach the coast of Port Ellis on "
     "Thursday with winds of 150 kilometres an hour. Residents of Port Ellis are stocking up on water."),
    ("landfall", dt.date(2023, 3, 10), "Storm Nadia made landfall near Port Ellis on Thursday, flattening "
     "hundreds of homes along the seafront. Power lines were torn down across the region."),
    ("landfall-copy", dt.date(2023, 3, 10), "Storm Nadia made landfall near Port Ellis on Thursday, flattening "
     "hundreds of homes along the seafront. Power lines were torn down across the region!"),
    ("toll", dt.date(2023, 3, 11), "Rescue teams in Port Ellis said Storm Nadia killed twelve people and left "
     "thousands without shelter. The army was sent to clear the roads."),
    ("rising-toll", dt.date(2023, 3, 15), "The death toll from Storm Nadia rose to thirty-one on Tuesday, "
     "officials in Port Ellis said. Many of the victims were found in collapsed houses."),
    ("library", dt.date(2023, 3, 12), "The city council approved a new budget for public libraries. Opening "
     "hours will be extended on weekends from April."),
]  # fmt: skip
TOPIC = "Storm Nadia in Port Ellis"


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> RAG:
    directory = tmp_path_factory.mktemp("timeline") / "index"
    rag = RAG(Settings(index_dir=directory, progress=False, backend="extractive"), embedder=Embedder())
    rag.add_documents([Document(doc_id, text, f"Report {doc_id}", published) for doc_id, published, text in STORY])
    return rag


def test_events_are_quoted_dated_ordered_and_folded(story: RAG) -> None:
    found = story.timeline(TOPIC, as_of=dt.date(2023, 3, 20))
    assert isinstance(found, Timeline) and found.events
    dates = [event.date for event in found.events]
    assert dates == sorted(dates), "oldest first"
    for event in found.events:
        citation = event.citation
        assert citation.quote in citation.passage.text, "the line is a sentence of the cited passage"
        assert citation.claim == citation.quote
    sources = [doc_id for event in found.events for doc_id in event.sources]
    assert "library" not in sources, "an article about something else is no event of the story"
    assert sources.count("landfall") + sources.count("landfall-copy") == 2 and len(set(sources)) == len(sources)
    landfall = next(e for e in found.events if {"landfall", "landfall-copy"} & set(e.sources))
    assert set(landfall.sources) == {"landfall", "landfall-copy"}, "the near-copy is a source of the same event"
    assert (landfall.date, landfall.dated_by) == (dt.date(2023, 3, 9), "on Thursday"), "made landfall on Thursday"
    forecast = next(e for e in found.events if "forecast" in e.sources)
    assert (forecast.date, forecast.dated_by) == (dt.date(2023, 3, 6), "published"), "a Thursday ahead is no event yet"
    rising = next(e for e in found.events if "rising-toll" in e.sources)
    assert rising.date == dt.date(2023, 3, 14), "Tuesday before the article of Wednesday 15 March"


def test_a_figure_that_changed_is_listed_with_both_sources(story: RAG) -> None:
    """The toll rose from twelve (11 March) to thirty-one (15 March): one line, each figure quoted from its
    article; since the 14th, the change is still from twelve, the last figure before then."""
    found = story.timeline(TOPIC, as_of=dt.date(2023, 3, 20))
    assert [(c.measure, c.old.text, c.new.text, c.disagree) for c in found.figures] == [
        ("people killed", "twelve", "thirty-one", False)
    ]
    change = found.figures[0]
    assert (change.old.citation.passage.doc_id, change.new.citation.passage.doc_id) == ("toll", "rising-toll")
    assert change.to_json()["kind"] == "changed" and found.to_json()["figures"]
    later = story.timeline(TOPIC, since=dt.date(2023, 3, 14), as_of=dt.date(2023, 3, 20))
    assert [(c.old.date, c.new.date) for c in later.figures] == [(dt.date(2023, 3, 11), dt.date(2023, 3, 15))]
    early = story.timeline(TOPIC, as_of=dt.date(2023, 3, 12))
    assert early.figures == [], "one figure so far: nothing changed"


def test_dates_bound_the_articles_read(story: RAG) -> None:
    early = story.timeline(TOPIC, as_of=dt.date(2023, 3, 10))
    assert {s for e in early.events for s in e.sources} <= {"forecast", "landfall", "landfall-copy"}
    later = story.timeline(TOPIC, since=dt.date(2023, 3, 11), as_of=dt.date(2023, 3, 20))
    assert {s for e in later.events for s in e.sources} == {"toll", "rising-toll"}
    since = story.timeline(TOPIC, since=dt.date(2023, 3, 10), as_of=dt.date(2023, 3, 20))
    assert all(e.date >= dt.date(2023, 3, 10) for e in since.events), "the landfall of the 9th, told on the 10th"
    assert [e.citation.number for e in since.events] == list(range(1, len(since.events) + 1))


def test_the_command_prints_the_events_and_their_sources(
    story: RAG, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = str(story.settings.index_dir)
    monkeypatch.setenv("RAG_BACKEND", "extractive")
    assert cli_run(["-q", "--index-dir", directory, "timeline", TOPIC, "--as-of", "2023-03-20"]) == 0
    printed = capsys.readouterr().out
    assert "2023-03-09 (on Thursday)  Storm Nadia made landfall" in printed and "Sources:" in printed
    assert "people killed: twelve (2023-03-11) → thirty-one (2023-03-15)" in printed
    assert cli_run(["-q", "--index-dir", directory, "timeline", TOPIC, "--as-of", "2023-03-20", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["as_of"] == "2023-03-20" and [e["date"] for e in data["events"]] == sorted(
        e["date"] for e in data["events"]
    )
    assert all(e["text"] == e["citation"]["quote"] for e in data["events"])
    with pytest.raises(QuestionError, match="the topic is empty"):
        cli_run(["-q", "--index-dir", directory, "timeline", "   "])


def test_quotes_point_into_the_article(story: RAG) -> None:
    """`quote_start`/`quote_end` place the line in its article, as an answer's citations do."""
    found = story.timeline(TOPIC, as_of=dt.date(2023, 3, 20))
    texts = {doc_id: text for doc_id, _, text in STORY}
    for event in found.events:
        c = event.citation
        assert texts[c.passage.chunk.doc_id][c.quote_start : c.quote_end] == c.quote


def test_a_timeline_streams_the_events_read_so_far(story: RAG, monkeypatch: pytest.MonkeyPatch) -> None:
    """`timeline_stream` yields the timeline of the articles read so far, then of more, the last complete
    and the same as `timeline`'s. Read two articles at a time so the story's four takes two steps."""
    monkeypatch.setattr(rag.stories.timeline, "_BATCH", 2)
    steps = list(story.timeline_stream(TOPIC, as_of=dt.date(2023, 3, 20)))
    assert [step.complete for step in steps] == [False, True]
    read = [{s for e in step.events for s in e.sources} for step in steps]
    assert read[0] and read[0] < read[1], "a step holds the articles of the one before, and more"
    whole = story.timeline(TOPIC, as_of=dt.date(2023, 3, 20))
    assert [(e.date, e.citation.quote, e.sources) for e in steps[-1].events] == [
        (e.date, e.citation.quote, e.sources) for e in whole.events
    ]
    with pytest.raises(QuestionError, match="the topic is empty"):
        story.timeline_stream("  ")  # checked before any step is built


FIXTURE = Path(__file__).resolve().parent.parent / "evals" / "timelines" / "realtimeqa.json"
REALTIMEQA_INDEX = eval_index_dir(Settings(), "realtimeqa")
"""Where `rag eval` keeps it, read when this module is imported: the tests' own data directories are empty."""


def test_the_committed_realtimeqa_timelines_hold_what_a_timeline_promises() -> None:
    """Twelve stories of RealTime QA's 2022 weeks (`rag.evaluation.timelines.TOPICS`), as `python -m
    rag.evaluation.timelines INDEX OUT` wrote them: dated in order, each event dated by its article or by
    the day its line states, no article twice."""
    timelines = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert [(t["topic"], t["as_of"]) for t in timelines] == list(TOPICS)
    for timeline in timelines:
        events = timeline["events"]
        assert events, timeline["topic"]
        assert [e["date"] for e in events] == sorted(e["date"] for e in events)
        for event in events:
            assert event["date"] <= timeline["as_of"] and event["published"] <= timeline["as_of"]
            assert event["sources"][0] == event["doc_id"] and event["text"].strip()
            if event["dated_by"] == "published":
                assert event["date"] == event["published"]
            else:
                assert event["dated_by"] in event["text"] and event["date"] <= event["published"]
        sources = [s for e in events for s in e["sources"]]
        assert len(sources) == len(set(sources)), f"an article is one event's source: {timeline['topic']}"
        for figure in timeline["figures"]:
            old, new = figure["old"], figure["new"]
            assert old["text"] in old["quote"] and new["text"] in new["quote"], "each figure quoted with its sentence"
            assert old["date"] < new["date"] <= timeline["as_of"] or figure["kind"] == "disagree"


FIGURE_LABELS = FIXTURE.parent / "figure-labels.json"
EVENT_LABELS = FIXTURE.parent / "event-labels.json"


def test_every_committed_event_was_judged_by_hand() -> None:
    """`event-labels.json` judges each committed event (a development of the story, about it, or not the
    story's); `python -m rag.evaluation.timelines` counts them. A regenerated fixture with a new event fails
    here until someone has judged it, so the counts the README gives stay counts of judged lines."""
    labels = json.loads(EVENT_LABELS.read_text(encoding="utf-8"))
    assert {e["label"] for t in labels for e in t["events"]} <= set(JUDGEMENTS)
    counts = judged(json.loads(FIXTURE.read_text(encoding="utf-8")), labels)
    assert counts["all"]["unjudged"] == 0, {t: c["unjudged"] for t, c in counts.items() if c["unjudged"]}
    assert sum(counts["all"].values()) == sum(len(t["events"]) for t in labels), "no judgement of a line not shown"


def test_every_committed_figure_line_was_judged_right_by_hand() -> None:
    """`figure-labels.json` holds a person's judgement of every figure line seen while the rules were
    written (wrong ones included, with the rule that now leaves them out); a line shown must be one judged
    right, so a change to the rules that makes a new line fails here until someone has read it."""
    labelled = {(j["topic"], j["line"]): j for j in json.loads(FIGURE_LABELS.read_text(encoding="utf-8"))}
    for timeline in json.loads(FIXTURE.read_text(encoding="utf-8")):
        for figure in timeline["figures"]:
            label = labelled.get((timeline["topic"], figure["line"]))
            assert label is not None, f"label {figure['line']!r} of {timeline['topic']!r} in {FIGURE_LABELS}"
            assert label["right"] and (label["old"], label["new"]) == (figure["old"]["doc_id"], figure["new"]["doc_id"])


def test_the_realtimeqa_timelines_are_built_again_the_same() -> None:
    """Where RealTime QA's evaluation index is built (`rag eval evals/data/realtimeqa`), the timelines come
    out as committed, and pass the claims check: a change to retrieval or to timelines shows here."""
    if not ArticleIndex.exists(REALTIMEQA_INDEX):
        pytest.skip(f"no RealTime QA index at {REALTIMEQA_INDEX}")
    fixtures, checks = build(RAG(index_dir=REALTIMEQA_INDEX, progress=False, backend="extractive"))
    assert fixtures == json.loads(FIXTURE.read_text(encoding="utf-8"))
    for checked in checks:
        assert checked.ordered and checked.supported == checked.dated == checked.events and not checked.copies


@pytest.mark.parametrize(
    ("question", "topic", "since"),
    [
        ("What is new about Storm Nadia since Monday?", "Storm Nadia", dt.date(2023, 3, 13)),
        ("What's new with Hurricane Ian since March 10?", "Hurricane Ian", dt.date(2023, 3, 10)),
        ("What has changed in the Twitter deal since yesterday?", "the Twitter deal", dt.date(2023, 3, 14)),
        ("What happened to Liz Truss in the past month?", "Liz Truss", None),
        ("What is new?", None, None),
        ("What is the new name of Twitter?", None, None),
    ],
)
def test_what_changed_questions_are_recognised(question: str, topic: str | None, since: dt.date | None) -> None:
    """Asked on Wednesday 15 March 2023."""
    found = asks_what_changed(question, dt.date(2023, 3, 15))
    assert (found.topic if found else None) == topic
    if found is not None:
        assert found.dates.until == dt.date(2023, 3, 15) and found.dates.since is not None
        assert since is None or found.dates.since == since


def test_what_is_new_since_a_date_is_answered_by_the_timeline_from_then(story: RAG) -> None:
    answer = story.answer("What is new about Storm Nadia since March 11?", as_of=dt.date(2023, 3, 20))
    assert not answer.refused and answer.model == "timeline" and answer.confidence_level == "quoted"
    lines = answer.text.splitlines()
    assert lines[0] == "Since 2023-03-11 (since March 11):"
    assert [line[:10] for line in lines[1:3]] == ["2023-03-11", "2023-03-14"], answer.text
    assert lines[3] == "people killed: twelve (2023-03-11) → thirty-one (2023-03-15) [3][4]", (
        "the toll's change, both cited"
    )
    assert [c.passage.chunk.doc_id for c in answer.citations] == ["toll", "rising-toll", "toll", "rising-toll"]
    for number, citation in enumerate(answer.citations, start=1):
        assert f"[{number}]" in lines[min(number, 3)] and citation.quote in answer.passages[number - 1].text
    assert all(claim.supported for claim in answer.claims) and len(answer.claims) == 3
    nothing = story.answer("What is new about Storm Nadia since March 18?", as_of=dt.date(2023, 3, 20))
    assert nothing.refused and not nothing.citations and "Nothing new about Storm Nadia" in nothing.text
