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

from rag.errors import QuestionError


class Kind(str, Enum):
    PERSON = "person"
    ORGANIZATION = "organization"
    PLACE = "place"
    DATE = "date"
    NUMBER = "number"
    YES_NO = "yes/no"
    REASON = "reason"
    DESCRIPTION = "description"
    """What happened or how: answered by words copied from a sentence ("did not intervene")."""
    OTHER = "other"
    """A thing, by "what" or "which" and a noun no other kind claims: answered by a noun phrase."""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_AUXILIARY = _words("is are was were am do does did has have had can could will would should shall may might must")
_HEADS: dict[Kind, frozenset[str]] = {
    Kind.PERSON: _words(
        "person people man woman official leader player actor actress singer author writer president "
        "minister senator lawmaker governor mayor judge chief executive ceo founder spokesperson "
        "spokesman spokeswoman candidate star celebrity athlete coach director diplomat individual "
        "member host secretary chairman chairwoman chair head commander envoy ambassador king queen prince "
        "princess pope premier chancellor speaker rapper musician artist scientist doctor victim suspect "
        "winner owner journalist reporter anchor prosecutor general"
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
_DURATION = _words(
    "long old often day days week weeks month months year years hour hours minute minutes decade decades"
)
"""A "how many/long" question these words ask is answered by what spaCy tags a DATE or TIME ("nine days")."""
_CLAUSE_VERBS = _words(
    "say said tell told do does did happen happened mean meant think announce announced claim claimed "
    "describe described explain explained report reported write wrote warn warned reveal revealed"
)
"""'What did X say?' asks for what was said, not for a noun phrase."""
ANSWER_TYPES: dict[Kind, tuple[frozenset[str], frozenset[str]]] = {
    Kind.PERSON: (frozenset({"PERSON"}), frozenset({"ORG", "NORP", "GPE"})),
    Kind.ORGANIZATION: (
        frozenset({"ORG"}),
        frozenset({"GPE", "FAC", "NORP", "PRODUCT", "WORK_OF_ART", "PERSON"}),
    ),
    Kind.PLACE: (frozenset({"GPE", "LOC", "FAC"}), frozenset({"ORG", "NORP"})),
    Kind.DATE: (frozenset({"DATE", "TIME"}), frozenset()),
    Kind.NUMBER: (frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT"}), frozenset({"DATE", "TIME", "ORDINAL"})),
}
"""The named-entity types (OntoNotes, as spaCy tags them) that answer each kind of question, and the
neighbouring ones that may too ("Who won?" may be a party) or that the tagger gives the right answer by
mistake (a country tagged ORG). A question that names its answer's role ("Which official", "Who is the
foreign minister?") accepts its own types only."""
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
    answer_types: frozenset[str] = frozenset()
    """The entity types that answer it (`ANSWER_TYPES`); empty for a kind without a type."""
    near_types: frozenset[str] = frozenset()
    """Entity types that may answer it too, at a lower fit."""
    plural: bool = False
    """It asks for several ("Which three countries"): a list of names is a candidate."""

    @property
    def evidence_query(self) -> str:
        return self.topic or self.text

    @property
    def multipart(self) -> bool:
        return len(self.parts) > 1


def kind_of(question: str) -> Kind:
    """The first clause that opens with a question word or an auxiliary decides: "Between the report from
    X and the one from Y, is there ...?" is a yes/no question, "Which company, reported by X, ...?" is not."""
    return _asks(question)[0]


def _asks(question: str) -> tuple[Kind, str | None]:
    """The kind, and the noun that named it ("official" in "Which official ...?"), if one did."""
    text = " ".join(question.lower().split())
    for clause in re.split(r",\s+", text):
        words = clause.split()
        if not words:
            continue
        if words[0] in _AUXILIARY:
            return Kind.YES_NO, None
        if _WH.fullmatch(words[0]):
            return _wh_kind(words[0], words[1:])
    match = _WH.search(text)
    return _wh_kind(match.group(1), text[match.end() :].split()) if match else (Kind.OTHER, None)


def _wh_kind(word: str, after: list[str]) -> tuple[Kind, str | None]:
    after = [w.strip(",.?'’\"") for w in after]
    if word in ("who", "whom", "whose"):
        role = next((w for w in after if w in _HEADS[Kind.PERSON]), None)  # "Who is the foreign minister?"
        return Kind.PERSON, role
    if word == "when":
        return Kind.DATE, None
    if word == "where":
        return Kind.PLACE, None
    if word == "why":
        return Kind.REASON, None
    if word == "how":
        following = after[0] if after else ""
        if following in _HOW_MUCH:
            return Kind.NUMBER, next((w for w in after[:3] if w in _DURATION), None)
        return Kind.DESCRIPTION, None
    # which / what: the head noun within the next few words decides, singular or plural ("schools")
    for noun in after[:4]:
        for kind, heads in _HEADS.items():
            if noun in heads or _singular(noun) in heads:
                return kind, noun
    if word == "what" and after and after[0] in _AUXILIARY and _CLAUSE_VERBS & set(after[1:]):
        return Kind.DESCRIPTION, None
    return Kind.OTHER, None


def _singular(noun: str) -> str:
    """A regular English plural's singular ("schools", "cities", "churches"); other words as they are."""
    if noun.endswith("ies") and len(noun) > 4:
        return noun[:-3] + "y"
    if noun.endswith(("ches", "shes", "sses", "xes")):
        return noun[:-2]
    return noun[:-1] if noun.endswith("s") and not noun.endswith("ss") else noun


def analyze(question: str, topic: str | None = None) -> Question:
    """The question's kind, the entity types that answer it, and for a question that joins statements about
    several reports, its parts."""
    kind, head = _asks(question)
    types, near = ANSWER_TYPES.get(kind, (frozenset(), frozenset()))
    if kind is Kind.NUMBER and head is not None:  # "how long", "how many days": a duration
        types = types | {"DATE", "TIME"}
    if head is not None and kind is not Kind.NUMBER:
        near = frozenset()
    plural = head is not None and (_singular(head) != head or head == "people")
    return Question(question, kind, _parts(topic or question), topic or "", types, near, plural)


def _parts(question: str) -> tuple[str, ...]:
    text = " ".join(question.split()).rstrip("?").strip()
    between = _BETWEEN.match(text)
    if between:
        first, second, rest = between.groups()
        return (f"{first} {rest}", f"{second} {rest}")
    pieces = [p.strip(" ,") for p in _PART_SPLIT.split(text) if p.strip(" ,")]
    return tuple(pieces) if len(pieces) > 1 else ()


def check_question(question: str, limit: int, *, kind: str = "question", example: str = 'rag ask "Who is ...?"') -> str:
    """The question (or a timeline's topic, `kind`) stripped, or what is wrong with it and how to ask."""
    if not isinstance(question, str) or not question.strip():
        raise QuestionError(f"the {kind} is empty", hint=f"ask something, e.g. `{example}`")
    if len(question.strip()) > limit:
        raise QuestionError(
            f"the {kind} is {len(question.strip()):,} characters long, over the {limit:,} allowed",
            hint="ask it in a sentence or two (RAG_MAX_QUESTION_CHARS sets the limit)",
        )
    return question.strip()
