"""Figures of a story that changed, and figures its sources disagree on: "killed at least 12 people" on
29 September, "the death toll rose to 45" on 30 September.

A wrong "the toll fell from 45 to 8" is worse than no line, so two figures are paired only when they
count the same thing in the same place about the same story, read from the parse (spaCy):
- what is counted: the noun the number counts ("45 people"), or the subject of the verb it is the
  object of ("the toll rose to 45"), with the deed counting it ("killed", "deaths", "death toll" are one
  deed: people killed);
- where and whose: what narrows it ("eight people in Collier County" is a county's count, not the storm's;
  "cases among children"), and the country or agency holding it ("the United States has 5,000 cases");
- about the story: the clause holding the figure (its verb and all below it) names the topic's most
  specific word, so "the deadliest since Katrina, which killed 1,800" is not Ian's toll;
- whole: a figure given with a breakdown or a comparison in its clause ("eight in Collier, five in
  Volusia", "past Italy (80,589)") is left out, as is a count told before ("some of the nine cases");
- recent: figures more than `figure_days` apart are not compared (a 2015 earthquake's toll is not a 2022
  one's).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from text_to_num import text2num

from rag.ingest.chunking import split_sentences
from rag.text import query_terms
from rag.types import Citation, Figure, FigureChange, Passage

if TYPE_CHECKING:
    from spacy.tokens import Doc, Span, Token

Parse = Callable[[list[str]], list["Doc"]]

_WITHIN = {"in", "among", "across", "throughout"}
"""Prepositions narrowing what is counted: "deaths in Collier County", "cases among children"."""
_BACK = {"the", "these", "those", "this", "that"}
"""Determiners of a count told before ("some of the nine cases", "in addition to the 42 deaths")."""
_HOLDERS = {"GPE", "ORG", "NORP"}
"""Subjects that say whose count it is: a country, an agency."""
_HEDGES = {"about", "almost", "around", "approximately", "estimated", "least", "more", "most", "nearly", "over",
           "roughly", "some", "than", "up", "fewer", "less", "under"}  # fmt: skip
_RANGE = re.compile(r"\d\s*[-–]\s*\d|\bto\b|\bor\b")
_SCALES = {"hundred": 1e2, "thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12, "dozen": 12.0}
_DEEDS = {
    "killed": {"kill", "kills", "killed", "killing", "die", "died", "dies", "dead", "death", "deaths", "toll",
               "fatality", "fatalities"},
    "injured": {"injure", "injured", "injuring", "wound", "wounded", "wounding", "hurt", "injury", "injuries"},
    "missing": {"missing"},
    "evacuated": {"evacuate", "evacuated", "evacuating", "evacuation", "evacuations", "evacuee", "evacuees"},
    "arrested": {"arrest", "arrested", "arresting", "arrests", "detain", "detained", "detaining"},
    "cases": {"case", "cases", "infection", "infections", "infected"},
}  # fmt: skip
"""The measures followed, by the words that name them as written (the reader's pipeline has no
lemmatizer): "killed 45 people", "45 deaths" and "a death toll of 45" count the same. Other numbers (votes,
prices, scores) are left out: their scope (whose votes, which round) is not read reliably enough."""
_PEOPLE = {"people", "person", "persons", "death", "deaths", "toll", "count", "tally", "fatality", "fatalities",
           "life", "lives", "victim", "victims", "resident", "residents"}  # fmt: skip
"""What a deed's count is of when it names no one in particular: people."""
QUERY = " ".join(["death toll", *_DEEDS])
"""Added to a topic to search for its figures: the passages a timeline quotes say what happened, and
often not how many."""
_DIGITS = re.compile(
    r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|\w+teen|\w+ty|dozen|hundred|"
    r"thousand|million|billion)\b",
    re.IGNORECASE,
)
"""A sentence that may state a number, before it is parsed to see whether it does."""


def figures(passages: Sequence[Passage], named: str | None, parse: Parse) -> list[Figure]:
    """The figures the passages state about the story whose most specific word is `named` (none without
    it), each once per article and measure, dated by its article."""
    if named is None:
        return []
    found: list[tuple[Passage, int, int]] = []
    for passage in passages:
        text = passage.chunk.text
        for start, end in split_sentences(text) or [(0, len(text))]:
            sentence = text[start:end]
            if passage.chunk.published and _DIGITS.search(sentence) and named in query_terms(sentence):
                found.append((passage, start, end))
    stated: dict[tuple[str, str], Figure] = {}
    for (passage, start, _end), doc in zip(found, parse([p.chunk.text[s:e] for p, s, e in found]), strict=True):
        for figure in _stated(doc, passage, start, named):
            stated.setdefault((passage.chunk.doc_id, figure.measure), figure)
    return sorted(stated.values(), key=lambda f: (f.date, f.measure))


def _stated(sentence: Doc, passage: Passage, start: int, named: str) -> list[Figure]:
    """The figures of one sentence (starting at `start` in the passage); none of a measure it gives
    several values of ("eight in Collier County, five in Volusia County": a breakdown)."""
    published = passage.chunk.published
    assert published is not None
    naming = {t.i for t in sentence if named in query_terms(t.text)}  # the words naming the story
    numbers = (e for e in sentence.ents if e.label_ == "CARDINAL")
    measures = [m for m in (_measure(e, named, naming, published.year) for e in numbers) if m]
    values = defaultdict(set)
    for measure, value, _, _ in measures:
        values[measure].add(value)
    at = passage.chunk.start + start  # quotes are placed in the article, as an answer's are
    citation = Citation(0, passage, sentence.text, sentence.text, at, at + len(sentence.text))
    return [
        Figure(measure, value, text, hedged, published, citation)
        for measure, value, text, hedged in measures
        if len(values[measure]) == 1
    ]


def changes(stated: Sequence[Figure], days: int, since: dt.date | None = None) -> list[FigureChange]:
    """Per measure, from its latest figure back: the figure it had before `since` (its latest then;
    without `since`, its first) at most `days` older, when they differ (changed); and two sources stating
    different exact figures the same day from `since` on (they disagree: hedged ones, "at least 12" and "at
    least 14", may both be true)."""
    by_measure: dict[str, list[Figure]] = defaultdict(list)
    for figure in stated:
        by_measure[figure.measure].append(figure)
    found = []
    for measure, listed in by_measure.items():
        latest = listed[-1]
        followed = [f for f in listed if (latest.date - f.date).days <= days]
        before = [f for f in followed if since is None or f.date < since]
        old = before[-1] if since is not None and before else followed[0]
        if latest.date > old.date and latest.value != old.value:
            found.append(FigureChange(measure, old, latest, disagree=False))
        for day in sorted({f.date for f in listed if since is None or f.date >= since}):
            exact = {f.value: f for f in listed if f.date == day and not f.hedged}
            if len(exact) > 1:
                found.append(FigureChange(measure, exact[min(exact)], exact[max(exact)], disagree=True))
    return sorted(found, key=lambda c: (c.new.date, c.measure))


def figure_line(change: FigureChange) -> str:
    """One line for a person: "people killed: at least 17 (2022-09-29) → 32 (2022-10-01)", or, when
    sources disagree, "people killed, 2023-03-11: the sources disagree, twelve or fourteen"."""
    old, new = change.old, change.new
    if change.disagree:
        return f"{change.measure}, {new.date.isoformat()}: the sources disagree, {old.text} or {new.text}"
    return f"{change.measure}: {old.text} ({old.date.isoformat()}) → {new.text} ({new.date.isoformat()})"


def _measure(span: Span, named: str, naming: set[int], year: int) -> tuple[str, float, str, bool] | None:
    """What the number counts (`_counted`) and where, its value, its text and whether it is hedged ("at
    least"); none unless it counts a deed of `_DEEDS` in a clause about the story (holding one of the
    words `naming` it, by position), in its article's year."""
    value = _value(span)
    counted = _counted(span.root) if value is not None else None
    if value is None or counted is None:
        return None
    noun, verb = counted
    deed = next((d for d, words in _DEEDS.items() if {noun.lower_, *_compounds(noun), verb.lower_} & words), None)
    clause = _clause(span.root)
    if any(_bare(e, clause) for e in span.doc.ents if e != span):
        return None  # "12 people in Lee County, five in Volusia County", "past Italy (80,589)": a breakdown
    if deed is None or not any(t.i in naming for t in clause.subtree) or _other_year(clause, year):
        return None
    what = "people" if noun.lower_ in _PEOPLE else noun.lower_
    scope = [p for p in _scope(noun, verb) if named not in query_terms(p)]
    measure = " ".join([what, deed, *scope]) if what != deed else " ".join([deed, *scope])
    hedged = any(t.lower_ in _HEDGES for t in span.doc[max(span.start - 2, 0) : span.end])
    return measure, value, span.text, hedged


def _bare(number: Span, clause: Token) -> bool:
    """A number of the clause counting no noun of its own ("five in Volusia County", "Italy (80,589)"):
    part of a breakdown or a comparison. Vague ones ("left thousands without shelter") are no figure."""
    inside = clause.left_edge.i <= number.root.i <= clause.right_edge.i
    return inside and number.label_ == "CARDINAL" and number.root.dep_ != "nummod" and _value(number) is not None


def _scope(noun: Token, verb: Token) -> list[str]:
    """What narrows a count: "in Collier County", "cases diagnosed among children" (in the noun's phrase or
    on its verb), and who holds it when that is a place or a body ("the United States has 5,000 cases",
    "the WHO has received reports of 257"). Parts naming the story itself ("deaths in connection with Ian")
    narrow nothing."""
    narrowing = [c for c in (*noun.subtree, *verb.children) if c.dep_ == "prep" and c.lower_ in _WITHIN]
    holders = [c for c in verb.children if c.dep_ in ("nsubj", "nsubjpass") and c.ent_type_ in _HOLDERS]
    if verb.ent_type_ in _HOLDERS:
        holders.append(verb)  # "the U.S. with 82,404 infections"
    return [c.doc[c.left_edge.i : c.right_edge.i + 1].text.strip(" ,") for c in (*holders, *narrowing)]


def _clause(token: Token) -> Token:
    """The head of the clause a word is in, climbing to the sentence's root except out of a clause that
    may be about something else ("Katrina, which killed 1,800", "after a storm that killed 12")."""
    while token.head.i != token.i and token.dep_ not in ("relcl", "acl", "advcl"):
        token = token.head
    return token


def _other_year(clause: Token, year: int) -> bool:
    """Whether the clause dates itself to a year other than its article's ("In 2003, 47 cases")."""
    return any(
        t.ent_type_ == "DATE" and re.fullmatch(r"(19|20)\d\d", t.text) and int(t.text) != year for t in clause.subtree
    )


def _counted(number: Token) -> tuple[Token, Token] | None:
    """The noun a number counts and the word that governs that noun: "45 people" killed, "the toll" rose
    (to 45); none for a number counting nothing named (a year, a score)."""
    if number.dep_ == "nummod" and number.head.pos_ in ("NOUN", "PROPN"):
        noun = number.head
        if any(c.dep_ == "det" and c.lower_ in _BACK for c in noun.children):
            return None  # "the nine cases": a count given before, referred to
        governor = noun.head
        while governor.dep_ == "prep" and governor.head.i != governor.i:
            governor = governor.head  # "the deaths of eight people": deaths
        return noun, governor
    if number.dep_ == "pobj" and number.head.dep_ == "prep":
        holder = number.head.head  # "a toll of 45", "rose to 45"
        if holder.pos_ == "NOUN":
            return holder, holder.head
        if holder.pos_ == "VERB":
            subject = next((c for c in holder.children if c.dep_ in ("nsubj", "nsubjpass")), None)
            if subject is not None and subject.pos_ == "NOUN":
                return subject, holder
    return None


def _compounds(noun: Token) -> list[str]:
    return [c.lower_ for c in noun.children if c.dep_ == "compound"]


def _value(span: Span) -> float | None:
    """The number a figure states ("at least 45", "1.5 million", "thirty-one", "a dozen"), none for a vague
    one ("dozens", "hundreds") or a range ("40-50")."""
    words = [t.lower_ for t in span if t.lower_ not in _HEDGES and t.lower_ not in ("a", "an", "at", "-")]
    if not words or any(w.rstrip("s") in _SCALES and w.endswith("s") for w in words) or _RANGE.search(span.text):
        return None
    digits = [w for w in words if re.fullmatch(r"\d[\d,]*(\.\d+)?", w)]
    scale = math.prod(_SCALES.get(w, 1.0) for w in words)
    if len(digits) == 1 and all(w in _SCALES for w in words if w not in digits):
        return float(digits[0].replace(",", "")) * scale  # "1,300", "1.5 million"
    if words == ["dozen"]:
        return 12.0
    try:
        return float(text2num(" ".join(words), "en"))  # "thirty-one", "two hundred"
    except ValueError:
        return None
