"""Answer spans: the names, numbers, dates and places in a sentence that could answer a question.

The extractive reader answers with the best of them, and the local model's copied span is trimmed to
one when it ran past the answer ("Tuesday, Prime Minister Nikol Pashinyan said …" to a "when"
question is "Tuesday"). Spans are found by their surface form — capitalised runs, numerals, calendar
words — because news English marks them that way and a tagger model would be one more download.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from rag.question import Kind
from rag.text import terms

_MONTH = (
    r"(?:Jan(?:uary|\.)?|Feb(?:ruary|\.)?|Mar(?:ch|\.)?|Apr(?:il|\.)?|May|June?|July?|Aug(?:ust|\.)?|"
    r"Sep(?:t(?:ember)?|\.)?|Oct(?:ober|\.)?|Nov(?:ember|\.)?|Dec(?:ember|\.)?)"
)
_WEEKDAY = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_DATE = re.compile(
    rf"\b(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}"
    rf"(?:,?\s+\d{{4}})?|{_MONTH}\s+\d{{4}}|{_WEEKDAY}|(?:early|mid|late)[- ]{_MONTH}|{_MONTH}|(?:19|20)\d{{2}}s?)\b"
)
_NUMBER_WORD = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
    r"hundred|dozens?|hundreds|thousands|millions)"
)
_NUMBER = re.compile(
    r"(?:(?:nearly|almost|about|around|roughly|more than|less than|over|under|at least|some|up to)\s+)?"
    rf"(?<![\w-])(?:[$€£¥]\s?)?(?:\d[\d,.]*\d|\d|{_NUMBER_WORD})(?:[- ](?:{_NUMBER_WORD}))?"
    r"(?:\s?(?:%|percent|per cent|million|billion|trillion|thousand|hundred))*"
    r"(?:\s(?:people|dollars|years|days|months|weeks|points|votes|seats|members|members states|troops|soldiers))?",
    re.IGNORECASE,
)
_CAPITALISED = re.compile(
    r"(?:[A-Z][\w’'.&-]*|\d+[A-Z][\w-]*)(?:\s+(?:(?:of|the|de|del|da|van|von|al|bin|for|&)\s+)*"
    r"(?:[A-Z][\w’'.&-]*|\d[\w-]*))*"
)
_REASON = re.compile(r"\b(?:because|since|as|due to|so that|in order to)\b\s+(.+?)(?:[.;]|$)", re.IGNORECASE)
_TITLES = re.compile(
    r"^(?:(?:[A-Z][a-z]+(?:an|ese|ish|i)\s+)?(?:President|Vice|Prime|Minister|Secretary|General|Foreign|Defen[cs]e|"
    r"Chief|Executive|CEO|Senator|Sen\.|Rep\.|Gov\.|Governor|Mayor|Judge|Justice|King|Queen|Prince|Princess|Pope|"
    r"Dr\.|Mr\.|Mrs\.|Ms\.|Chancellor|Speaker|Leader|Coach|Director|Commissioner|Ambassador|Spokesperson|"
    r"Spokesman|Spokeswoman)\s+)+(?=[A-Z])"
)
"""Titles before a name ("Russian President Vladimir Putin"): a "who" question is answered by the name."""
_POSSESSIVE = re.compile(r"['’]s?$")
_LEADING_SMALL = re.compile(r"^(?:The|A|An|In|On|At|But|And|However|Meanwhile|Since|After|Before|When|If)\s+")


@dataclass(frozen=True)
class Span:
    text: str
    start: int
    end: int
    """Character offsets in the sentence it was found in."""


def spans(sentence: str, kind: Kind) -> Iterator[Span]:
    """Candidate answers of `kind` in `sentence`, in reading order."""
    if kind is Kind.DATE:
        yield from _matches(_DATE, sentence)
    elif kind is Kind.NUMBER:
        # "one" is mostly a pronoun ("one of the ..."), not a count
        yield from (s for s in _matches(_NUMBER, sentence) if s.text.lower() != "one")
    elif kind is Kind.REASON:
        for match in _REASON.finditer(sentence):
            yield Span(match.group(1).strip(), match.start(1), match.end(1))
    elif kind in (Kind.PERSON, Kind.ORGANIZATION, Kind.PLACE, Kind.OTHER):
        for span in _matches(_CAPITALISED, sentence):
            text = _LEADING_SMALL.sub("", span.text).rstrip(".")
            if kind is Kind.PERSON:
                text = _TITLES.sub("", text)
            if text and (span.start > 0 or " " in text):
                offset = span.text.index(text)
                yield Span(text, span.start + offset, span.start + offset + len(text))


def _matches(pattern: re.Pattern[str], sentence: str) -> Iterator[Span]:
    for match in pattern.finditer(sentence):
        text = _POSSESSIVE.sub("", match.group(0).strip().rstrip(","))
        if text:
            yield Span(text, match.start(), match.start() + len(text))


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


def trim(answer: str, kind: Kind, question: str) -> str:
    """The first new span of the expected kind inside a copied answer that ran on past it (more than four
    words); short answers, and answers without such a span, are kept as they are."""
    answer = _POSSESSIVE.sub("", answer)
    if len(answer.split()) <= 4 or kind in (Kind.YES_NO, Kind.REASON, Kind.OTHER):
        return answer
    for span in spans(answer, kind):
        if is_new(span.text, question):
            return span.text
    return answer
