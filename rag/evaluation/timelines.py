"""Timelines checked: what the issue asks of every timeline, counted per timeline so a fixture can be
measured and regenerated (`python -m rag.evaluation.timelines INDEX OUT`).

- supported: each event's line passes the claims check (`rag.answering.citations.check_claims`) against
  the passage it cites, as an answer's sentence would;
- ordered: no event is dated before the one listed above it;
- dated: each event's date is its cited article's publication date, or the one day its line states in
  the past tense read against that date;
- copies: pairs of events whose lines are near-copies (`near_duplicate_similarity`) left unfolded.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.answering.citations import check_claims
from rag.answering.evidence import EvidencePool
from rag.dates import resolve
from rag.pipeline import RAG
from rag.stories.figures import figure_line
from rag.stories.timeline import Embed
from rag.types import Timeline

TOPICS: tuple[tuple[str, str], ...] = (
    ("Hurricane Ian", "2022-10-15"),
    ("Queen Elizabeth II death and funeral", "2022-09-30"),
    ("Artemis I moon rocket launch", "2022-11-30"),
    ("Nord Stream pipeline leaks", "2022-10-31"),
    ("Liz Truss as prime minister", "2022-10-31"),
    ("Iran protests over the death of Mahsa Amini", "2022-10-31"),
    ("Elon Musk and Twitter", "2022-11-30"),
    ("Uvalde school shooting", "2022-07-31"),
    ("Supreme Court overturns Roe v. Wade", "2022-07-31"),
    ("Shinzo Abe shot", "2022-07-31"),
    ("Sri Lanka economic crisis and protests", "2022-07-31"),
    ("Monkeypox outbreak", "2022-08-31"),
)
"""Stories of RealTime QA's development weeks (2022), each asked as of the end of its weeks: a storm, a
death and funeral, a launch, an attack on infrastructure, a resignation, protests, a takeover, a mass
shooting, a court ruling, an assassination, an economic crisis and an outbreak."""


@dataclass(frozen=True)
class Checked:
    topic: str
    events: int
    supported: int
    ordered: bool
    dated: int
    """Events whose date is their article's or the one day their line states."""
    stated: int
    """Of those, dated by the line rather than the publication date."""
    copies: int
    seconds: float


def check(timeline: Timeline, embed: Embed, copies: float) -> Checked:
    supported = dated = stated = 0
    for event in timeline.events:
        passage = event.citation.passage
        claims = check_claims(f"{event.citation.quote} [1]", EvidencePool([passage], embed))
        supported += bool(claims) and all(claim.supported for claim in claims)
        published = passage.chunk.published
        assert published is not None
        mention = resolve(event.citation.quote, published)
        if event.dated_by == "published":
            dated += event.date == published
        elif mention is not None and mention.phrase == event.dated_by and mention.range.since == event.date:
            dated += 1
            stated += 1
    dates = [event.date for event in timeline.events]
    lines = [event.citation.quote for event in timeline.events]
    vectors = embed(lines) if lines else np.zeros((0, 1), dtype=np.float32)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similar = np.triu(vectors @ vectors.T, k=1) >= copies
    return Checked(
        timeline.topic,
        len(timeline.events),
        supported,
        dates == sorted(dates),
        dated,
        stated,
        int(similar.sum()),
        timeline.seconds,
    )


def fixture(timeline: Timeline) -> dict[str, object]:
    """What a committed timeline keeps: each event's date, line and sources, and where its line is; each
    figure that changed, with both figures' sentences."""
    return {
        "topic": timeline.topic,
        "as_of": timeline.as_of.isoformat(),
        "events": [
            {
                "date": event.date.isoformat(),
                "dated_by": event.dated_by,
                "text": event.citation.quote,
                "doc_id": event.citation.passage.chunk.doc_id,
                "published": (event.citation.passage.chunk.published or event.date).isoformat(),
                "sources": list(event.sources),
            }
            for event in timeline.events
        ],
        "figures": [
            {
                "line": figure_line(change),
                "kind": change.kind,
                **{
                    side: {
                        "text": figure.text,
                        "date": figure.date.isoformat(),
                        "doc_id": figure.citation.passage.chunk.doc_id,
                        "quote": figure.citation.quote,
                    }
                    for side, figure in (("old", change.old), ("new", change.new))
                },
            }
            for change in timeline.figures
        ],
    }


def build(rag: RAG) -> tuple[list[dict[str, object]], list[Checked]]:
    """Every topic's timeline as of its date, as a fixture, and its checks."""
    copies = rag.settings.retrieval.near_duplicate_similarity or 1.0
    rag.timeline(TOPICS[0][0], as_of=dt.date.fromisoformat(TOPICS[0][1]))  # load the models first
    timelines = [rag.timeline(topic, as_of=dt.date.fromisoformat(as_of)) for topic, as_of in TOPICS]
    return [fixture(t) for t in timelines], [check(t, rag.embedder.embed, copies) for t in timelines]


LABELS = ("event", "context", "off")
"""A person's judgement of a timeline's line (`evals/timelines/event-labels.json`): a development of the
story ("Ian made its second landfall near Georgetown"); about the story but no development of it (a
forecast, background, a profile, a quote); or not the story's (another storm, a caption of other photos,
"Musk tweeted.")."""


def judged(fixtures: list[dict[str, Any]], labels: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per topic and in all, how many of the timelines' events were judged each of `LABELS`, and how many
    were not judged (an event the labels do not hold: judge it before trusting the counts)."""
    held = {(t["topic"], e["doc_id"], e["date"]): e["label"] for t in labels for e in t["events"]}
    counts: dict[str, dict[str, int]] = {"all": dict.fromkeys((*LABELS, "unjudged"), 0)}
    for timeline in fixtures:
        topic = counts.setdefault(timeline["topic"], dict.fromkeys((*LABELS, "unjudged"), 0))
        for event in timeline["events"]:
            label = held.get((timeline["topic"], event["doc_id"], event["date"]), "unjudged")
            topic[label] += 1
            counts["all"][label] += 1
    return counts


if __name__ == "__main__":
    index, out = Path(sys.argv[1]), Path(sys.argv[2])
    fixtures, checks = build(RAG(index_dir=index, progress=False, backend="extractive"))
    out.write_text(json.dumps(fixtures, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for checked in checks:
        print(json.dumps(asdict(checked)))
    labels = json.loads((out.parent / "event-labels.json").read_text(encoding="utf-8"))
    for topic, count in judged(fixtures, labels).items():
        print(json.dumps({"topic": topic, **count}))
