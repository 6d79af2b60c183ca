"""Answer spans: the words of an evidence sentence that could answer a question, of the kind it asks for.

A "who" question is answered by a person's name, "where" by a place, "how many" by a number, "what"
by a noun phrase. The sentences are parsed by spaCy's English pipeline (`rag.answering.nlp`), whose entity types
and noun phrases decide which spans are candidates: the local model may only choose among them (a
grammar), the extractive reader ranks them, and how well the chosen span's type fits the question is one
of the confidence's signals. The pipeline makes mistakes ("Armenia" tagged as an organisation, an
adjective "Azerbaijani" as a person), so each kind accepts its own entity types first and a few
neighbouring ones at a lower fit, and a name must hold a proper noun.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.answering.nlp import parse
from rag.answering.question import Kind, Question
from rag.text import terms

if TYPE_CHECKING:
    from spacy.tokens import Doc, Token
    from spacy.tokens import Span as SpacySpan

SECONDARY_FIT = 0.5
"""The fit of a span of a type the question accepts at second hand (`Question.near_types`)."""
NAMES = frozenset({"PERSON", "ORG", "GPE", "LOC", "FAC", "NORP", "PRODUCT", "WORK_OF_ART", "EVENT", "LAW"})
"""Entity types that are names: one without a proper noun (an adjective tagged PERSON) is dropped."""
_REASON = re.compile(r"\b(?:because|since|as|due to|so that|in order to)\b\s+(.+?)(?:[.;]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    text: str
    start: int
    end: int
    """Character offsets in the sentence it was found in."""
    fit: float = 1.0
    """How well its type fits the question's kind: 1 for the kind's own entity types (and for any phrase
    when the question asks for no type), `SECONDARY_FIT` for a neighbouring type."""


def spans(sentence: str, question: Question) -> list[Span]:
    """Candidate answers to `question` in `sentence`, in reading order."""
    return candidates_in([sentence], question)[0]


def candidates_in(sentences: Sequence[str], question: Question) -> list[list[Span]]:
    """`spans` of each sentence, the sentences parsed together (and kept parsed, `rag.answering.nlp`)."""
    kind = question.kind
    if kind is Kind.REASON:
        return [list(_reasons(sentence)) for sentence in sentences]
    if kind in (Kind.YES_NO, Kind.DESCRIPTION) or not sentences:
        return [[] for _ in sentences]
    return [_dedupe(_typed(doc, question)) for doc in parse(list(sentences))]


def _typed(doc: Doc, question: Question) -> Iterator[Span]:
    kind, wanted = question.kind, question.answer_types
    if wanted:
        entities = [e for e in doc.ents if _usable(e)]
        for entity in entities:
            if entity.label_ in wanted:
                yield _span(entity, 1.0)
            elif entity.label_ in question.near_types and (kind is not Kind.NUMBER or any(t.like_num for t in entity)):
                yield _span(entity, SECONDARY_FIT)
        if question.plural:
            yield from _lists(doc, [e for e in entities if e.label_ in wanted])
        if kind in (Kind.ORGANIZATION, Kind.PLACE):
            # The names the tagger types worst ("Yellowstone National Park" as "Yellowstone", "Daily Harvest"
            # untyped): a noun phrase with a proper noun of no entity, or headed by one, stands too.
            yield from (_span(c, SECONDARY_FIT) for c in doc.noun_chunks if _named(c, wanted))
        return
    # a thing: noun phrases, with what a preposition attaches to them ("an attack on all members"), and names
    for chunk in doc.noun_chunks:
        if chunk.root.pos_ == "PRON" or not any(t.is_alpha or t.like_num for t in chunk):
            continue
        yield _span(chunk, 1.0)
        extended = _with_attachment(chunk)
        if extended is not None:
            yield _span(extended, 1.0)
    yield from (_span(e, 1.0) for e in doc.ents if _usable(e))


def _named(chunk: SpacySpan, wanted: frozenset[str]) -> bool:
    """A name the tagger missed, never one it typed as something else ("Azerbaijani Foreign Minister Jeyhun
    Bayramov" is no place)."""
    if any(t.ent_type_ and t.ent_type_ not in wanted for t in chunk):
        return False
    return chunk.root.pos_ == "PROPN" or any(t.pos_ == "PROPN" and not t.ent_type_ for t in chunk)


def _usable(entity: SpacySpan) -> bool:
    return entity.label_ not in NAMES or any(t.pos_ == "PROPN" for t in entity)


def _span(span: SpacySpan, fit: float) -> Span:
    """The span without a leading determiner or trailing possessive ("the group's" -> "group")."""
    tokens = list(span)
    while tokens and tokens[0].pos_ in ("DET", "PRON") and tokens[0].dep_ in ("det", "poss"):
        tokens = tokens[1:]
    while tokens and tokens[-1].tag_ == "POS":
        tokens = tokens[:-1]
    if not tokens:
        return Span("", span.start_char, span.start_char, fit)
    start, end = tokens[0].idx, tokens[-1].idx + len(tokens[-1])
    return Span(span.doc.text[start:end], start, end, fit)


def _with_attachment(chunk: SpacySpan) -> SpacySpan | None:
    """The noun phrase with the prepositional phrase right after it that modifies its head."""
    doc = chunk.doc
    if chunk.end >= len(doc):
        return None
    prep = doc[chunk.end]
    if prep.dep_ != "prep" or prep.head != chunk.root:
        return None
    last = max(t.i for t in prep.subtree)
    return doc[chunk.start : last + 1] if last - chunk.start < 12 else None


def _lists(doc: Doc, entities: list[SpacySpan]) -> Iterator[Span]:
    """Entities of the asked type joined by commas and "and" ("the United States, Russia and France"), for a
    question that asks for several."""
    run: list[SpacySpan] = []
    for entity in [*entities, None]:
        if entity is not None and run and _joined(doc, run[-1], entity):
            run.append(entity)
            continue
        if len(run) > 1:
            yield _span(doc[run[0].start : run[-1].end], 1.0)
        run = [entity] if entity is not None else []


def _joined(doc: Doc, first: SpacySpan, second: SpacySpan) -> bool:
    between = [t.text.lower() for t in doc[first.end : second.start]]
    return between in ([","], ["and"], [",", "and"], ["or"], [",", "or"])


def _reasons(sentence: str) -> Iterator[Span]:
    for match in _REASON.finditer(sentence):
        yield Span(match.group(1).strip(), match.start(1), match.end(1))


def _dedupe(found: Iterable[Span]) -> list[Span]:
    """Each text once, at its best fit, in reading order."""
    best: dict[str, Span] = {}
    for span in found:
        if span.text and (span.text not in best or span.fit > best[span.text].fit):
            best[span.text] = span
    return sorted(best.values(), key=lambda s: (s.start, -s.end))


def is_new(span: str, question: str) -> bool:
    """A span whose content words all appear in the question restates it ("the CSTO" to "Who heads the
    CSTO?"), and so does one the question names by its initials ("Collective Security Treaty
    Organization"); an answer brings something the question did not say."""
    asked = set(terms(question))
    words = set(terms(span))
    initials = "".join(w[0] for w in span.split() if w[:1].isupper()).lower()
    if len(initials) >= 2 and initials in {w.lower() for w in re.findall(r"\b[A-Z]{2,}\b", question)}:
        return False
    return bool(words - asked) or (not words and bool(span.strip()))


_BOUND = frozenset({"GPE", "NORP", "LOC", "ORG"})
"""Entity types that bind a title to one country, people or organisation ("Russian President")."""
_ATTACHED = frozenset({"compound", "amod", "poss", "appos", "nmod", "flat", "case", "det"})
"""Dependencies that keep a word inside the answer's own noun phrase: its title, nationality, owner or
apposition, not a clause about it."""


def foreign(answer: str, sentence: str, question: str) -> bool:
    """Whether the sentence ties the answer to a country, people or organisation the question does not
    name: "Russian President Vladimir Putin" answers no question about the president of Azerbaijan, though
    the sentence may mention Azerbaijan elsewhere. A question that names none constrains nothing."""
    asked_doc, doc = parse([question, sentence])
    targets = [t for t in asked_doc if t.pos_ in ("NOUN", "PROPN") and not t.ent_type_ and _asked_for(t)]
    titles = {i for t in targets for i in _attached(t, frozenset({"compound"})) if not asked_doc[i].ent_type_}
    within = set().union(*(_attached(t, _ATTACHED | {"prep", "pobj"}) for t in targets)) - titles
    asked = [t.text for t in asked_doc if t.i in within and (t.pos_ == "PROPN" or t.ent_type_ in _BOUND)]
    start = sentence.find(answer) if answer else -1
    found = doc.char_span(start, start + len(answer), alignment_mode="expand") if start >= 0 else None
    if not asked or found is None:
        return False
    attached = _attached(found.root, _ATTACHED)
    answer_words = set(range(found.start, found.end))
    bound = [
        e.text
        for e in doc.ents
        if e.label_ in _BOUND
        and attached & set(range(e.start, e.end))
        and not answer_words & set(range(e.start, e.end))
    ]
    return bool(bound) and not any(_same_name(b, a) for b in bound for a in asked)


def _asked_for(noun: Token) -> bool:
    """The noun a question asks for: the one its wh-word determines ("which official"), or what "who" or
    "what" is equated with ("Who is the President of Azerbaijan?")."""
    if any(t.tag_ in ("WDT", "WP$") for t in noun.doc[max(0, noun.i - 3) : noun.i]):
        return True  # "which official", "which NATO official", however the parser attached "which"
    head = noun.head
    equated = noun.dep_ in ("attr", "nsubj") and head.pos_ == "AUX" and head.dep_ == "ROOT"
    return equated and any(c.tag_ == "WP" for c in head.children)


def _attached(token: Token, dependencies: frozenset[str]) -> set[int]:
    """Positions of the words hanging off `token` by `dependencies`, transitively, and of `token` itself."""
    found, todo = {token.i}, [token]
    while todo:
        for child in todo.pop().children:
            if child.dep_ in dependencies and child.i not in found:
                found.add(child.i)
                todo.append(child)
    return found


def _same_name(name: str, other: str) -> bool:
    """One name, spelt as a demonym, in full or by its initials: "Azerbaijani" and "Azerbaijan", "Russian"
    and "Russia", "Collective Security Treaty Organization" and "CSTO"."""
    if _initials(name) == other or _initials(other) == name:
        return True
    for a in name.lower().split():
        for b in other.lower().split():
            shorter = min(len(a), len(b))
            if shorter >= 4 and a[: shorter - 1] == b[: shorter - 1]:
                return True
    return False


def _initials(name: str) -> str:
    return "".join(w[0] for w in name.split() if w[:1].isupper())
