"""Answer: pack retrieved passages under a token budget, generate, and turn the text into a checked,
cited `Answer`. Streaming is the primitive; the blocking form just drains the stream."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from rag.citations import Citation, CitationStreamFilter, attribute, extract_citations, tidy
from rag.dates import DateMention, DateRange
from rag.evidence import terms
from rag.llm import GenerationRequest, Generator
from rag.prompts import REFUSAL
from rag.retrieval import Passage

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

    @property
    def searched_dates(self) -> str:
        """One line saying which publication dates were searched and why, for the CLI and the chat page:
        a reader must be able to tell that "last week" was read as a given week, and from which day."""
        parts = [f"articles published {DateRange(self.since, self.until)}"]
        if self.as_of is not None:
            parts.append(f"as of {self.as_of.isoformat()}")
        mention = self.date_mention
        if mention is not None:
            use = "only these" if self.date_mention_filtered else "preferred"
            parts.append(f'"{mention.phrase}" read as {mention.range} ({use})')
        return "; ".join(parts)

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


def generate(
    question: str,
    passages: Sequence[Passage],
    generator: Generator,
    *,
    messages: list[dict[str, str]],
    count: TokenCounter,
    max_tokens: int,
    temperature: float,
    timings: dict[str, float],
    refuse: bool = False,
    cite_uncited: bool = True,
) -> Iterator[str | Answer]:
    """Yield cleaned text pieces, then the final `Answer`. With no passages, or `refuse`, nothing is
    generated: refusing costs nothing and cannot hallucinate."""
    prompt_tokens = sum(count(m["content"]) for m in messages)
    start = time.perf_counter()
    pieces: list[str] = []
    filt = CitationStreamFilter(len(passages))
    if passages and not refuse:
        request = GenerationRequest(question, passages, messages, max_tokens, temperature)
        for raw in generator.stream(request):
            if "first_token" not in timings:
                timings["first_token"] = time.perf_counter() - start
            piece = filt.feed(raw)
            if piece:
                pieces.append(piece)
                yield piece
        tail = filt.flush()
        if tail:
            pieces.append(tail)
            yield tail
    timings["generate"] = time.perf_counter() - start
    text = tidy("".join(pieces)).strip()
    refused = is_refusal(text)
    if refused and not text:
        text = REFUSAL
        yield text
    citations = [] if refused else extract_citations(text, passages)
    inferred = False
    if not refused and not citations and cite_uncited:
        text = attribute(text, passages)
        citations = extract_citations(text, passages)
        inferred = bool(citations)
    yield Answer(
        question=question,
        text=text,
        citations=citations,
        passages=list(passages),
        refused=refused,
        backend=generator.name,
        model=generator.model,
        tokens=TokenUsage(prompt=prompt_tokens, completion=count(text), context=sum(count(p.text) for p in passages)),
        timings=timings,
        invalid_citations=filt.invalid,
        inferred_citations=inferred,
    )
