"""Answer: what a user reads, with its citations, claims, confidence and the dates searched; and the
packing of retrieved passages under the prompt's token budget. `rag.reader` produces it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rag.citations import Citation, Claim
from rag.dates import DateMention, DateRange
from rag.prompts import REFUSAL
from rag.retrieval import Passage
from rag.words import terms

TokenCounter = Callable[[str], int]
_REFUSAL_TERMS = frozenset(terms(REFUSAL))


@dataclass(frozen=True)
class TokenUsage:
    """Counted with tiktoken for every backend, so numbers compare across backends."""

    prompt: int
    completion: int
    context: int


@dataclass
class Answer:
    question: str
    text: str
    citations: list[Citation]
    passages: list[Passage]
    """Passages in prompt order: `[n]` in the text is `passages[n - 1]`."""
    refused: bool
    backend: str
    model: str
    tokens: TokenUsage
    timings: dict[str, float] = field(default_factory=dict)
    invalid_citations: list[int] = field(default_factory=list)
    inferred_citations: bool = False
    """True when the generator cited nothing and the markers were added by matching sentences to passages."""
    retrieved: int = 0
    standalone_question: str | None = None
    """The question as searched, when a follow-up was rewritten using the conversation."""
    as_of: dt.date | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    """The publication dates searched: the explicit range, capped at the as-of date."""
    date_mention: DateMention | None = None
    """A date the question names ("last week") and the range it was resolved to."""
    date_mention_filtered: bool = False
    """True when that range filtered the search; False when it was only preferred."""
    short: str | None = None
    """The direct answer the text opens with ("Stanislav Zas", "Yes"); None for a refusal, or when the
    reader could only quote the passages."""
    confidence: float = 0.0
    """Estimated probability that the passages answer the question (`rag.confidence`); below
    `min_confidence` the answer is refused."""
    claims: list[Claim] = field(default_factory=list)
    """Every sentence of the text, matched to the passage sentence it cites."""
    signals: dict[str, float] = field(default_factory=dict)
    """What the confidence was computed from."""
    draft: str | None = None
    """The answer the reader would have given, kept when it was withheld as a refusal."""
    parts: list[str] = field(default_factory=list)
    """The parts a multi-part question was split into, each searched for on its own."""

    @property
    def unsupported(self) -> list[Claim]:
        """Claims no cited passage sentence says: shown flagged, never silently kept."""
        return [c for c in self.claims if not c.supported]

    @property
    def searched_dates(self) -> str:
        return searched_dates(
            self.as_of, DateRange(self.since, self.until), self.date_mention, self.date_mention_filtered
        )

    @property
    def cited_passages(self) -> list[Passage]:
        numbers = sorted({c.number for c in self.citations})
        return [self.passages[n - 1] for n in numbers]

    def to_json(self) -> dict[str, object]:
        return {
            "question": self.question,
            "standalone_question": self.standalone_question,
            "text": self.text,
            "refused": self.refused,
            "citations": [c.to_json() for c in self.citations],
            "passages": [p.to_json() for p in self.passages],
            "invalid_citations": self.invalid_citations,
            "inferred_citations": self.inferred_citations,
            "short": self.short,
            "confidence": round(self.confidence, 4),
            "claims": [c.to_json() for c in self.claims],
            "signals": {k: round(v, 4) for k, v in self.signals.items()},
            "draft": self.draft,
            "parts": self.parts,
            "backend": self.backend,
            "model": self.model,
            "tokens": {
                "prompt": self.tokens.prompt,
                "completion": self.tokens.completion,
                "context": self.tokens.context,
            },
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "retrieved": self.retrieved,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "date_mention": (
                {
                    "phrase": self.date_mention.phrase,
                    "since": self.date_mention.range.since.isoformat() if self.date_mention.range.since else None,
                    "until": self.date_mention.range.until.isoformat() if self.date_mention.range.until else None,
                    "filtered": self.date_mention_filtered,
                }
                if self.date_mention
                else None
            ),
        }


def searched_dates(as_of: dt.date | None, dates: DateRange, mention: DateMention | None, mention_filtered: bool) -> str:
    """One line saying which publication dates were searched and why, for the CLI, the chat page and a
    refusal: a reader must be able to tell that "last week" was read as a given week, and from which day."""
    parts = [f"articles published {dates}"]
    if as_of is not None:
        parts.append(f"as of {as_of.isoformat()}")
    if mention is not None:
        use = "only these" if mention_filtered else "preferred"
        parts.append(f'"{mention.phrase}" read as {mention.range} ({use})')
    return "; ".join(parts)


def pack_passages(passages: Sequence[Passage], budget: int, count: TokenCounter) -> list[Passage]:
    """Best passages first until the budget is spent; exact duplicates (the same wire copy indexed twice)
    are skipped. The first passage always goes in, so a tiny budget degrades instead of refusing."""
    packed: list[Passage] = []
    seen: set[str] = set()
    used = 0
    for passage in passages:
        key = " ".join(passage.text.split())
        if key in seen:
            continue
        cost = count(passage.text) + 16
        if packed and used + cost > budget:
            continue
        packed.append(passage)
        seen.add(key)
        used += cost
    return packed


def is_refusal(text: str) -> bool:
    """True when the answer is (or opens with) the refusal sentence; small models paraphrase punctuation."""
    words = terms(text)
    head = set(words[: len(_REFUSAL_TERMS) + 2])
    return not words or head >= _REFUSAL_TERMS
