"""The data that flows through `rag`, apart from the stages that make it: a `Document` is split into
`Chunk`s, a search returns a `Retrieval` of `Passage`s and `ArticleHit`s, and the reader builds an
`Answer` with its `Citation`s and `Claim`s. Nothing here imports a model, an index or a server, so a
module that only handles answers (the prompts, the citations, the page) stays light.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypedDict

from rag.dates import DateMention, DateRange
from rag.errors import DocumentError

TokenCounter = Callable[[str], int]
"""Tokens in a text, as the prompt budget counts them (tiktoken)."""


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def content_hash(text: str) -> str:
    """Whitespace-insensitive, so re-saving a file with other line endings is not a "change"."""
    normalized = " ".join(text.split())
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class AskOptions:
    """How a question is asked: what the CLI, the page and the server take from their users, what
    `RAG.answer` takes as keyword arguments, and what a conversation keeps with each answer. None means
    the setting's default."""

    k: int | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    as_of: dt.date | None = None
    backend: str | None = None
    model: str | None = None

    def arguments(self) -> dict[str, Any]:
        """As keyword arguments of `RAG.answer` and `RAG.answer_stream`."""
        return asdict(self)


class SearchOptions(TypedDict, total=False):
    """What a search may be given beside the question (`RAG.search`, `RAG.answer`)."""

    k: int | None
    """Passages wanted; the `top_k` setting when absent."""
    since: dt.date | None
    until: dt.date | None
    """Publication dates searched, both ends included."""
    as_of: dt.date | None
    """The date the question is asked (default today): later articles are left out."""


@dataclass(frozen=True)
class Document:
    """One article. `text` is what chunk spans point into; `content_hash` detects changed content."""

    id: str
    text: str
    title: str = ""
    published: dt.date | None = None
    url: str | None = None
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


@dataclass(frozen=True)
class Chunk:
    """A passage of one document. `start`/`end` index into the document's text; `id` is set by the index."""

    doc_id: str
    ordinal: int
    text: str
    start: int
    end: int
    n_tokens: int
    title: str = ""
    published: dt.date | None = None
    source: str | None = None
    url: str | None = None
    id: int = -1
    added: str = ""
    """Who added the article through the API and when ("key:… on 2026-12-06"); empty otherwise."""


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk; `rank` is 1-based in retrieval order and `score` is what its article (or, with
    article ranking off, the chunk itself) was ranked by. `also_in` lists other articles whose matching
    passage is a near-copy of this one."""

    chunk: Chunk
    score: float
    rank: int
    also_in: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return self.chunk.text

    @property
    def doc_id(self) -> str:
        return self.chunk.doc_id

    def to_json(self) -> dict[str, object]:
        c = self.chunk
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "chunk_id": c.id,
            "doc_id": c.doc_id,
            "title": c.title,
            "published": c.published.isoformat() if c.published else None,
            "source": c.source,
            "url": c.url,
            "start": c.start,
            "end": c.end,
            "text": c.text,
            "also_in": list(self.also_in),
            **({"added": c.added} if c.added else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Passage:
        """A stored passage; the chunk's `ordinal` and `n_tokens` are not stored and come back as 0."""
        chunk = Chunk(
            doc_id=data["doc_id"], ordinal=0, text=data["text"], start=data["start"], end=data["end"], n_tokens=0,
            title=data["title"], published=_date(data["published"]), source=data["source"], url=data["url"],
            id=data["chunk_id"], added=str(data.get("added", "")),
        )  # fmt: skip
        return cls(chunk, data["score"], data["rank"], tuple(data["also_in"]))


@dataclass(frozen=True)
class ArticleHit:
    doc_id: str
    score: float
    rank: int
    also_in: tuple[str, ...] = ()


@dataclass
class Retrieval:
    """What a search found, and the dates it searched: `dates` is the filter applied (explicit range capped
    at `as_of`), `mention` the date phrase found in the question, if any."""

    passages: list[Passage]
    articles: list[ArticleHit]
    as_of: dt.date
    dates: DateRange
    mention: DateMention | None = None
    mention_filtered: bool = False
    seconds: float = 0.0
    """How long the search took: charged to an answer that reuses this retrieval."""

    @property
    def searched_dates(self) -> str:
        return searched_dates(self.as_of, self.dates, self.mention, self.mention_filtered)


@dataclass(frozen=True)
class Citation:
    """Citation `[number]` in the answer: the passage it names and the sentence of it that supports the claim."""

    number: int
    passage: Passage
    claim: str
    quote: str
    quote_start: int
    quote_end: int

    def to_json(self) -> dict[str, object]:
        chunk = self.passage.chunk
        return {
            "number": self.number,
            "doc_id": chunk.doc_id,
            "title": chunk.title,
            "published": chunk.published.isoformat() if chunk.published else None,
            "url": chunk.url,
            "source": chunk.source,
            "chunk_id": chunk.id,
            "claim": self.claim,
            "quote": self.quote,
            "quote_start": self.quote_start,
            "quote_end": self.quote_end,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], passages: Sequence[Passage]) -> Citation:
        """A stored citation, pointing at `passages[number - 1]` as the answer's text does. A citation
        whose chunk is not there (an answer stored without its passages) gets a passage rebuilt from what
        the citation itself records, so its source can still be listed."""
        number = data["number"]
        if 0 < number <= len(passages) and passages[number - 1].chunk.id == data["chunk_id"]:
            passage = passages[number - 1]
        else:
            chunk = Chunk(
                doc_id=data["doc_id"], ordinal=0, text="", start=0, end=0, n_tokens=0, title=data["title"],
                published=_date(data["published"]), source=data["source"], url=data["url"], id=data["chunk_id"],
            )  # fmt: skip
            passage = Passage(chunk, 0.0, number)
        return cls(number, passage, data["claim"], data["quote"], data["quote_start"], data["quote_end"])


@dataclass(frozen=True)
class Claim:
    """One sentence of an answer, the passages it cites, and whether they say it."""

    text: str
    citations: tuple[int, ...]
    support: float
    """The best of the share of the claim's content words in one cited sentence, and its cosine similarity
    to that sentence; 0 for an uncited claim."""
    supported: bool
    quote: str = ""
    """The cited sentence that supports it best."""
    start: int = 0
    end: int = 0
    """Where the sentence, with its markers, is in the answer text."""

    def to_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "citations": list(self.citations),
            "support": round(self.support, 3),
            "supported": self.supported,
            "quote": self.quote,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Claim:
        return cls(
            data["text"], tuple(data["citations"]), data["support"], data["supported"], data["quote"],
            data["start"], data["end"],
        )  # fmt: skip


@dataclass(frozen=True)
class TokenUsage:
    """Counted with tiktoken for every backend, so numbers compare across backends."""

    prompt: int
    completion: int
    context: int


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


@dataclass(frozen=True)
class Event:
    """One development of a story: what happened, quoted from the passage that says it, and when."""

    date: dt.date
    """When it happened: the date the quoted sentence states ("on Tuesday", read against its article's
    date), else the article's publication date."""
    dated_by: str
    """The phrase the date was read from, or "published" for the publication date."""
    citation: Citation
    """The sentence (`quote`, as `claim` too: quoted, so the passage says it) and the passage it is in."""
    sources: tuple[str, ...]
    """The articles reporting it, the cited one first, near-copies folded into them included."""

    def to_json(self) -> dict[str, object]:
        return {
            "date": self.date.isoformat(),
            "dated_by": self.dated_by,
            "text": self.citation.quote,
            "citation": self.citation.to_json(),
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class Figure:
    """A number a source states about a story (`rag.stories.figures`): "at least 45" people killed."""

    measure: str
    """What it counts, where: "people killed", "people killed in Collier County", "cases the United States"."""
    value: float
    text: str
    """As written: "at least 45", "thirty-one"."""
    hedged: bool
    """Stated as a bound or an estimate ("at least", "about"): a later, higher one is no contradiction."""
    date: dt.date
    """Its article's publication date."""
    citation: Citation
    """The sentence stating it and the passage it is in."""

    def to_json(self) -> dict[str, object]:
        return {
            "value": self.value,
            "text": self.text,
            "hedged": self.hedged,
            "date": self.date.isoformat(),
            "citation": self.citation.to_json(),
        }


@dataclass(frozen=True)
class FigureChange:
    """A figure of the story that changed from `old` to `new`, or, `disagree`, two sources stating
    different figures the same day."""

    measure: str
    old: Figure
    new: Figure
    disagree: bool

    @property
    def kind(self) -> str:
        return "disagree" if self.disagree else "changed"

    def to_json(self) -> dict[str, object]:
        return {
            "measure": self.measure,
            "kind": self.kind,
            "old": self.old.to_json(),
            "new": self.new.to_json(),
        }


@dataclass
class Timeline:
    """A story's events in date order, as of a date, over the publication dates searched."""

    topic: str
    events: list[Event]
    as_of: dt.date
    dates: DateRange
    articles: int
    """Articles read to build it (after near-copies were folded)."""
    seconds: float = 0.0
    complete: bool = True
    """False for a timeline being built (`RAG.timeline_stream`): the events of the articles read so far."""
    figures: list[FigureChange] = field(default_factory=list)
    """Figures that changed over the story, or that sources disagree on (read once it is complete)."""

    def to_json(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "as_of": self.as_of.isoformat(),
            "dates": str(self.dates),
            "articles": self.articles,
            "seconds": self.seconds,
            "complete": self.complete,
            "events": [event.to_json() for event in self.events],
            "figures": [change.to_json() for change in self.figures],
        }


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
    """Estimated probability that the answer is right (`rag.answering.confidence`); below `min_confidence` it is
    withheld: `refused`, and the text shows the draft as unverified ("Not sure"), or the refusal."""
    confidence_level: str = ""
    """The confidence in words, each backed by a measured precision on the development sets (README):
    "high", "medium", or "not sure" below `min_confidence`; "quoted" for a what-changed answer, whose every
    line is its passage's own sentence (`rag.stories.changes`: the confidence model is not applied)."""
    claims: list[Claim] = field(default_factory=list)
    """Every sentence of the text, matched to the passage sentence it cites."""
    signals: dict[str, float] = field(default_factory=dict)
    """What the confidence was computed from."""
    draft: str | None = None
    """The answer the reader would have given, kept when it was withheld as a refusal."""
    draft_short: str | None = None
    """The short answer of that withheld draft."""
    parts: list[str] = field(default_factory=list)
    """The parts a multi-part question was split into, each searched for on its own."""

    @property
    def unsupported(self) -> list[Claim]:
        """Claims no cited passage sentence says: shown flagged, never silently kept."""
        return [c for c in self.claims if not c.supported]

    @property
    def confidence_label(self) -> str:
        """The confidence as every front end shows it: "Confidence: high (0.93)"."""
        return f"Confidence: {self.confidence_level} ({self.confidence:.2f})"

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
            "confidence_level": self.confidence_level,
            "claims": [c.to_json() for c in self.claims],
            "signals": {k: round(v, 4) for k, v in self.signals.items()},
            "draft": self.draft,
            "draft_short": self.draft_short,
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
                    "relative": self.date_mention.relative,
                }
                if self.date_mention
                else None
            ),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Answer:
        """An answer as `to_json` wrote it (a kept conversation, a `rag ask --json` file): `from_json(a.to_json())`
        writes the same JSON again. Floats come back rounded as they were written."""
        passages = [Passage.from_json(p) for p in data["passages"]]
        mention = data.get("date_mention")
        tokens = data["tokens"]
        return cls(
            question=data["question"],
            text=data["text"],
            citations=[Citation.from_json(c, passages) for c in data["citations"]],
            passages=passages,
            refused=data["refused"],
            backend=data["backend"],
            model=data["model"],
            tokens=TokenUsage(tokens["prompt"], tokens["completion"], tokens["context"]),
            timings=dict(data["timings"]),
            invalid_citations=list(data["invalid_citations"]),
            inferred_citations=data["inferred_citations"],
            retrieved=data["retrieved"],
            standalone_question=data["standalone_question"],
            as_of=_date(data["as_of"]),
            since=_date(data["since"]),
            until=_date(data["until"]),
            date_mention=(
                DateMention(
                    mention["phrase"],
                    DateRange(_date(mention["since"]), _date(mention["until"])),
                    mention.get("relative", True),
                )
                if mention
                else None
            ),
            date_mention_filtered=bool(mention and mention["filtered"]),
            short=data["short"],
            confidence=data["confidence"],
            confidence_level=data.get("confidence_level", ""),  # kept by a rag before levels were measured
            claims=[Claim.from_json(c) for c in data["claims"]],
            signals=dict(data["signals"]),
            draft=data["draft"],
            draft_short=data.get("draft_short"),
            parts=list(data["parts"]),
        )


@dataclass(frozen=True)
class GenerationRequest:
    question: str
    passages: Sequence[Passage]
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float
    stop: tuple[str, ...] = ()
    """Generation ends before any of these strings; they are not part of the text."""
    top_logprobs: int = 0
    """With `Capabilities.logprobs`, how many alternatives `complete()` reports for each generated token."""
    grammar: str | None = None
    """With `Capabilities.grammar`, a GBNF grammar the reply must follow (llama.cpp's format)."""


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, its natural-log probability, and the most likely alternatives at that step."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    text: str
    logprobs: tuple[TokenLogprob, ...] | None = None
    """Per generated token; None when the backend does not report them."""


@dataclass(frozen=True)
class Capabilities:
    """What the rest of the pipeline may rely on, declared by each backend instead of checked by name."""

    llm: bool = True
    """Generates text from a prompt; False for the extractive reader, which quotes the passages."""
    logprobs: bool = False
    """`complete()` returns token log-probabilities (used for confidence and multiple choice)."""
    rewrites_follow_ups: bool = False
    """Follow-up questions are rewritten by this model rather than by the deterministic rules."""
    focused_prompt: bool = False
    """A small model: its prompt carries the question's evidence sentences instead of whole passages."""
    grammar: bool = False
    """Honours `GenerationRequest.grammar`, so a reply can be held to spans copied from the passages."""


class Generator(Protocol):
    """Yields answer text pieces as they are produced; raises `LLMError` with an actionable message."""

    name: str
    model: str
    capabilities: Capabilities

    def stream(self, request: GenerationRequest) -> Iterator[str]: ...

    def complete(self, request: GenerationRequest) -> Completion: ...


@dataclass(frozen=True)
class Backend:
    """An answer backend as the registry (`rag.backends`) knows it: what it is called, what it can do, and
    how to build one from the settings. The CLI, the page and the evaluation read this, never a name."""

    name: str
    description: str
    capabilities: Capabilities
    build: Callable[[Any, str | None], Generator]
    """(settings, model override) -> a generator; the settings are a `rag.config.Settings`."""
    model_setting: str | None = None
    """The setting naming its model, for a backend that has one (the page offers to change it)."""
    model_choices: Callable[[Any], list[str]] | None = None
    """The models to offer, given the settings; None when any name goes (an endpoint's)."""
    settings: type[Any] | None = None
    """Its own section of settings (a `rag.section.Section`), read with `settings.section(...)`: the
    settings table, `RAG_*` variables and TOML keys pick it up with no edit elsewhere."""


@dataclass
class LoadResult:
    """Documents read successfully plus one error per file or line that was not."""

    documents: list[Document] = field(default_factory=list)
    errors: list[DocumentError] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        self.documents.extend(other.documents)
        self.errors.extend(other.errors)
        self.skipped.extend(other.skipped)


@dataclass(frozen=True)
class Source:
    """One input file as a loader receives it: open, with what error messages and limits need."""

    file: BinaryIO
    """The file, open for reading in binary. Reading it as you go (line by line, row by row) is what lets a
    many-gigabyte feed export stream through the indexer in bounded memory, with progress as it is read."""
    path: Path
    """Where it came from, for error messages."""
    doc_id: str
    """The document id of a one-article file; many-article formats derive theirs from it (`name#line`)."""
    max_bytes: int | None = None
    """Largest article to read; a loader that reads records should skip longer ones without holding them."""


@dataclass(frozen=True)
class Format:
    """A document format as the loader registry (`rag.ingest.loaders`) knows it."""

    suffixes: tuple[str, ...]
    description: str
    """What is read from such a file (the README's table of formats)."""
    load: Callable[[Source], Iterable[Document | DocumentError]]
    """The documents of a file, lazily. A record that cannot be read is yielded as a `DocumentError` and the
    file goes on; an exception ends the file (what was yielded before it is kept)."""
    many: bool = False
    """A file holds many articles (a feed export): the size limit applies to each, not to the file."""
    isolated: bool = False
    """Parsed by a library whose time is not bounded by the input's size (markup, PDF): read in a worker
    process within the time budget (`rag.ingest.loaders.budget`)."""
    media_types: tuple[str, ...] = ()
    """The MIME types a web page of this format is served as: `rag index URL` and feeds read such a page
    with this format (none: files only)."""
