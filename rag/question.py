"""Question analysis: what kind of answer a question asks for, and the parts of a multi-part question.

The reader needs both before it reads a passage. The kind decides what a short answer can be (a yes/no
question is answered "Yes" or "No", a "when" question by a date or day) and which spans the extractive
reader considers. A comparison or temporal question ("Did X report A, while Y reported B?", "Between the
report from X and the one from Y, ...") needs evidence from two or more articles, so each part is
searched for on its own and must be supported before the answer can be "Yes".

Rules, not a model: question words are a closed class, so a few patterns cover them exactly and run in
microseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    PERSON = "person"
    ORGANIZATION = "organization"
    PLACE = "place"
    DATE = "date"
    NUMBER = "number"
    YES_NO = "yes/no"
    REASON = "reason"
    OTHER = "other"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_AUXILIARY = _words("is are was were am do does did has have had can could will would should shall may might must")
_HEADS: dict[Kind, frozenset[str]] = {
    Kind.PERSON: _words(
        "person people man woman official leader player actor actress singer author writer president "
        "minister senator lawmaker governor mayor judge chief executive ceo founder spokesperson "
        "spokesman spokeswoman candidate star celebrity athlete coach director diplomat individual "
        "member host"
    ),
    Kind.ORGANIZATION: _words(
        "company companies organization organisation group agency network party team firm brand bank "
        "newspaper outlet channel body institution university school club league union alliance bloc "
        "retailer airline automaker carrier manufacturer publisher studio platform service app"
    ),
    Kind.PLACE: _words(
        "country countries city cities state states continent province region place venue capital "
        "town island nation county location site area border park stadium airport"
    ),
    Kind.DATE: _words("day date year month time week decade century season"),
    Kind.NUMBER: _words(
        "number percentage percent amount share price cost total rate age size figure revenue sales profit "
        "income salary population score budget valuation worth loss fee fine tax debt"
    ),
}
_HOW_MUCH = _words("many much long old far big large often")
_WH = re.compile(r"\b(who|whom|whose|when|where|why|how|which|what)\b")
_PART_SPLIT = re.compile(
    r",?\s+(?:while|whereas|and (?=(?:the|a|an|in|did|does|do|is|was|has|have)\b[^,]*?\b(?:article|report|"
    r"piece|story|coverage|review)\b))\s+",
    re.IGNORECASE,
)
_BETWEEN = re.compile(r"^\s*(?:between|after|before)\s+(.+?)\s+and\s+(.+?),\s*(.+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Question:
    text: str
    kind: Kind
    parts: tuple[str, ...] = ()
    """Two or more statements the answer depends on, each searched for on its own; empty for a simple
    question."""
    topic: str = ""
    """What evidence must match: the question without a date phrase already used to search ("last week"
    is in no passage); the text itself when empty."""

    @property
    def evidence_query(self) -> str:
        return self.topic or self.text

    @property
    def multipart(self) -> bool:
        return len(self.parts) > 1


def kind_of(question: str) -> Kind:
    """The first clause that opens with a question word or an auxiliary decides: "Between the report from
    X and the one from Y, is there ...?" is a yes/no question, "Which company, reported by X, ...?" is not."""
    text = " ".join(question.lower().split())
    for clause in re.split(r",\s+", text):
        words = clause.split()
        if not words:
            continue
        if words[0] in _AUXILIARY:
            return Kind.YES_NO
        if _WH.fullmatch(words[0]):
            return _wh_kind(words[0], words[1:])
    match = _WH.search(text)
    return _wh_kind(match.group(1), text[match.end() :].split()) if match else Kind.OTHER


def _wh_kind(word: str, after: list[str]) -> Kind:
    if word in ("who", "whom", "whose"):
        return Kind.PERSON
    if word == "when":
        return Kind.DATE
    if word == "where":
        return Kind.PLACE
    if word == "why":
        return Kind.REASON
    if word == "how":
        following = after[0] if after else ""
        return (
            Kind.NUMBER if following in ("many", "much", "long", "old", "far", "big", "large", "often") else Kind.OTHER
        )
    # which / what: the head noun within the next few words decides
    for noun in after[:4]:
        noun = noun.strip(",.?'’\"")
        for kind, heads in _HEADS.items():
            if noun in heads:
                return kind
    return Kind.OTHER


def analyze(question: str, topic: str | None = None) -> Question:
    """The question's kind and, for a question that joins statements about several reports, its parts."""
    return Question(question, kind_of(question), _parts(topic or question), topic or "")


def _parts(question: str) -> tuple[str, ...]:
    text = " ".join(question.split()).rstrip("?").strip()
    between = _BETWEEN.match(text)
    if between:
        first, second, rest = between.groups()
        return (f"{first} {rest}", f"{second} {rest}")
    pieces = [p.strip(" ,") for p in _PART_SPLIT.split(text) if p.strip(" ,")]
    return tuple(pieces) if len(pieces) > 1 else ()
