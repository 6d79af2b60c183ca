"""A timeline from a search's passages: each article's sentence nearest the topic, dated, grouped into
events, in date order.

Quoting keeps every line true to its source: the event's text is a sentence of the cited passage, so the
claims check that flags an answer's unsupported sentences has nothing to flag. An article's sentence is
the one nearest the topic that reports something (a statement with a finite main verb, parsed by spaCy),
dated by the day it states when it is in the past tense ("made landfall on Tuesday" read against the
article's publication date, as questions' dates are read by `rag.dates`), else by its publication date.
Two articles report the same event when their sentences say nearly the same thing (`event_similarity`)
within a few days (`event_days`); near-copies were folded by the search already and count as sources of
their article.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.answering.nlp import parse
from rag.config import StorySettings
from rag.dates import resolve
from rag.ingest.chunking import split_sentences
from rag.text import query_terms
from rag.types import Citation, Event, Passage

if TYPE_CHECKING:
    from spacy.tokens import Doc, Token

Embed = Callable[[Sequence[str]], np.ndarray]
_READ = 3
"""Sentences of a passage, nearest the topic first, parsed to find one that reports something."""
_AUX = ("aux", "auxpass")
_BATCH = 8
"""Articles read between two lists of a timeline being built (`reading`): the search's best eight articles'
events show after about a fifth of the work of forty."""


@dataclass
class _Report:
    """One article as a timeline reads it: its best passage's sentence nearest the topic."""

    passage: Passage
    start: int
    end: int
    vector: np.ndarray
    similarity: float
    date: dt.date
    dated_by: str

    @property
    def sentence(self) -> str:
        return self.passage.chunk.text[self.start : self.end]


@dataclass
class _Group:
    lead: _Report
    reports: list[_Report]


def reading(
    topic: str,
    passages: Sequence[Passage],
    embed: Embed,
    settings: StorySettings,
    *,
    copies: float | None,
    named: str | None,
    since: dt.date | None = None,
) -> Iterator[list[Event]]:
    """The events the passages report about `topic`, oldest first (equal dates: most sources first), as
    their articles are read `_BATCH` at a time in the search's order: each list holds the events of the
    articles read so far, grouped anew (grouping is cheap; reading, embedding and parsing sentences, is the
    work), so a page can show the best articles' events while the rest are read; the last list is final.

    Each article counts once, by its first passage (the search's best). Left out: undated articles, those
    whose passages found (with the title) lack `named`, the topic's most specific word (the one fewest
    articles hold: "Abe" of "Shinzo Abe shot", not "shot"), and those whose sentence is not about the topic
    (`timeline_min_similarity`), and events dated before `since` (an article published after it telling
    of an earlier day: old news). A sentence at least `copies` similar to an event's (the search's
    `near_duplicate_similarity`) is a copy of its report, however many days later it was published again."""
    words: dict[str, set[str]] = {}
    for passage in passages:
        words.setdefault(passage.chunk.doc_id, set()).update(_words(passage))
    kept = [p for p in _first_per_article(passages) if named is None or named in words[p.chunk.doc_id]]
    reports: list[_Report] = []
    about = _unit(embed([topic]))[0]
    for at in range(0, len(kept), _BATCH):
        reports += _reports(about, kept[at : at + _BATCH], embed)
        yield _grouped(reports, settings, copies, since)
    if not kept:
        yield []


def _grouped(
    reports: list[_Report], settings: StorySettings, copies: float | None, since: dt.date | None
) -> list[Event]:
    """Reports of one event in one group, led by the report nearest the topic; groups in date order."""
    groups: list[_Group] = []
    relevant = (r for r in reports if r.similarity >= settings.timeline_min_similarity)
    for report in sorted(relevant, key=lambda r: (-r.similarity, r.date)):
        group = next((g for g in groups if _same_event(g.lead, report, settings, copies)), None)
        if group is None:
            groups.append(_Group(report, [report]))
        else:
            group.reports.append(report)
    groups.sort(key=lambda g: (g.lead.date, -len(g.reports)))
    after = [g for g in groups if since is None or g.lead.date >= since]
    return [_event(number, group) for number, group in enumerate(after, start=1)]


def _first_per_article(passages: Sequence[Passage]) -> list[Passage]:
    seen: dict[str, Passage] = {}
    for passage in passages:
        if passage.chunk.published is not None:
            seen.setdefault(passage.chunk.doc_id, passage)
    return list(seen.values())


def _words(passage: Passage) -> set[str]:
    return set(query_terms(f"{passage.chunk.title}\n{passage.chunk.text}"))


def _reports(about: np.ndarray, passages: list[Passage], embed: Embed) -> list[_Report]:
    """Each passage's sentence nearest the topic (its unit vector `about`) among those that report
    something (`_reporting`), if any of its `_READ` nearest does; the sentences are embedded in one batch."""
    spans = [split_sentences(p.chunk.text) or [(0, len(p.chunk.text))] for p in passages]
    sentences = [p.chunk.text[s:e] for p, found in zip(passages, spans, strict=True) for s, e in found]
    vectors = _unit(embed(sentences))
    similarity = vectors @ about
    nearest, at = [], 0
    for found in spans:
        order = np.argsort(-similarity[at : at + len(found)], kind="stable")[:_READ]
        nearest.append([at + int(i) for i in order])
        at += len(found)
    read = sorted({i for candidates in nearest for i in candidates})
    parsed = dict(zip(read, parse([sentences[i] for i in read]), strict=True))
    starts = [span for found in spans for span in found]
    reports = []
    for passage, candidates in zip(passages, nearest, strict=True):
        chosen = next((i for i in candidates if _reporting(parsed[i])), None)
        if chosen is None:
            continue
        published = passage.chunk.published
        assert published is not None
        date, dated_by = _dated(parsed[chosen], published)
        start, end = starts[chosen]
        reports.append(_Report(passage, start, end, vectors[chosen], float(similarity[chosen]), date, dated_by))
    return reports


def _reporting(sentence: Doc) -> bool:
    """Whether the sentence says that something happened or is so: a statement (not a question) whose main
    verb is finite. Headlines such as "Hurricane Ian", bylines and "Follow us on Twitter" are not."""
    if sentence.text.rstrip().endswith("?"):
        return False
    return any(token.dep_ == "ROOT" and _finite(token) for token in sentence)


def _finite(verb: Token) -> bool:
    return any("Fin" in t.morph.get("VerbForm", []) for t in _with_auxiliaries(verb))


def _with_auxiliaries(verb: Token) -> tuple[Token, ...]:
    """The verb and its auxiliaries ("has" of "has died", "was" of "was flooded"): what carries its form."""
    return (verb, *(c for c in verb.children if c.dep_ in _AUX))


def _dated(sentence: Doc, published: dt.date) -> tuple[dt.date, str]:
    """The one day a past-tense sentence names, read against its publication date ("made landfall on
    Wednesday": the Wednesday before); else the publication date. A weekday in the present or future tense
    ("could reach the coast on Friday") is a day ahead, not yet an event, and dated as published."""
    mention = resolve(sentence.text, published)
    past = any(
        token.dep_ == "ROOT" and any("Past" in t.morph.get("Tense", []) for t in _with_auxiliaries(token))
        for token in sentence
    )
    if past and mention is not None and mention.range.since is not None and mention.range.since == mention.range.until:
        return mention.range.since, mention.phrase
    return published, "published"


def _same_event(lead: _Report, report: _Report, settings: StorySettings, copies: float | None) -> bool:
    similarity = float(lead.vector @ report.vector)
    if copies is not None and similarity >= copies:
        return True
    return abs((lead.date - report.date).days) <= settings.event_days and similarity >= settings.event_similarity


def _event(number: int, group: _Group) -> Event:
    lead = group.lead
    sources = tuple(dict.fromkeys(d for r in group.reports for d in (r.passage.chunk.doc_id, *r.passage.also_in)))
    offset = lead.passage.chunk.start  # quotes are placed in the article, as an answer's are
    citation = Citation(number, lead.passage, lead.sentence, lead.sentence, offset + lead.start, offset + lead.end)
    return Event(lead.date, lead.dated_by, citation, sources)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return unit
