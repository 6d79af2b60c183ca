"""The reader: from retrieved passages to the answer a user reads.

1. Evidence: the passage sentences are ranked for the question by words and meaning (`rag.answering.evidence`).
2. A draft: an LLM is asked for the short answer. A small local model reads the best sentences only, and
   a grammar holds its reply to one of the spans there that could answer the question — the names, dates
   or numbers of the asked type, or noun phrases, as spaCy's English pipeline finds them (`rag.answering.spans`) —
   to "yes"/"no", or to "unknown"; the extractive reader ranks the same spans itself.
3. The text: the short answer first, cited to the sentence that holds it, then that sentence quoted; a
   multi-part question quotes the best sentence for each part.
4. Checks: every sentence is matched to the passage sentence it cites (`Answer.claims`), and the signals
   gathered on the way — the local model's own check of its answer among them — give the probability
   that the answer is right (`rag.answering.confidence`). Below `min_confidence` the answer is withheld: the draft
   is shown as "not sure", with its source, or, without one, the refusal says what was searched and which
   article came closest.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from rag.answering.citations import CitationStreamFilter, attribute, check_claims, extract_citations, tidy
from rag.answering.confidence import confidence, family_of, level
from rag.answering.evidence import EvidencePool, Sentence
from rag.answering.nlp import parse
from rag.answering.question import Kind, Question
from rag.answering.spans import candidates_in, foreign, is_new, spans
from rag.ingest.chunking import split_sentences
from rag.prompts import DECLINE, NOT_SURE, REFUSAL, chat_messages, is_refusal, short_answer_messages, verify_messages
from rag.text import terms
from rag.types import (
    Answer,
    Capabilities,
    GenerationRequest,
    Generator,
    Passage,
    Retrieval,
    TokenCounter,
    TokenLogprob,
    TokenUsage,
)
from rag.untrusted import CITATION, inert

SHORT_ANSWER_TOKENS = 40
"""A short answer is a few words; a copied span that runs on is trimmed (`rag.answering.spans.trim`)."""
_END = re.compile(r"[.;:!?”\"]+$")


@dataclass
class Draft:
    """What a backend proposed, before it is grounded, checked and either shown or withheld."""

    short: str | None
    text: str | None = None
    """A capable model's own cited text; None when the reader composes it from the short answer."""
    declined: bool = False
    logprobs: tuple[TokenLogprob, ...] | None = None
    prompt_tokens: int = 0
    invalid_citations: list[int] = field(default_factory=list)

    def kept_decline(self, caps: Capabilities) -> bool:
        """A capable model's refusal is its own judgement of whole passages, and kept; a small model's
        "unknown" came as often on answerable questions as on unanswerable ones (the fitted model gives it
        no weight), so the reader's own span stands in and the confidence decides."""
        return self.declined and caps.llm and not caps.focused_prompt


@dataclass(frozen=True)
class Asked:
    """What the reader answers: the question as the user asked it, as it was searched (with its kind and
    parts), and the search behind it."""

    question: str
    standalone: Question
    retrieval: Retrieval
    retrieved: int
    """Passages found, before packing under the token budget."""
    started: float
    """`time.perf_counter()` when answering began (the search included), for the total."""


@dataclass(frozen=True)
class ReaderOptions:
    focus_sentences: int
    """Evidence sentences a small model is shown (split across the parts of a multi-part question)."""
    max_tokens: int
    temperature: float
    min_confidence: float
    attribute_citations: bool


CHOSEN = frozenset({Kind.PERSON, Kind.ORGANIZATION, Kind.PLACE, Kind.DATE, Kind.NUMBER, Kind.OTHER})
"""Kinds answered by a span the language pipeline finds (`rag.answering.spans`): a name, date or number of the asked
type, or a noun phrase; the model chooses among those spans."""


def candidates(sentences: Sequence[str], question: Question) -> list[str]:
    """The spans that could answer `question` in `sentences` and say something it does not. A name or
    number comes in its fullest form ("Zas" gives way to "Stanislav Zas" where that appears); noun phrases
    keep both ("attack", "attack on all members"), as either may be the answer."""
    found = (span.text for spans in candidates_in(sentences, question) for span in spans)
    new = list(dict.fromkeys(text for text in found if is_new(text, question.text)))
    if not question.answer_types or question.plural:
        return new
    return [text for text in new if not any(text != other and _within(text, other) for other in new)]


def _within(part: str, whole: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(part)}(?!\w)", whole) is not None


def copy_grammar(sentences: Sequence[str], question: Question) -> str:
    """GBNF for the small model's reply: `unknown`; "Yes" or "No" to a yes/no question; one of the spans
    of the asked kind (a name, date, number) when the excerpts have any, so a "who" question is not
    answered with a place or with the question's own words; otherwise a run of words copied from one
    sentence, ending where a sentence or quotation ends. The copy rules chain word to word, so the
    grammar grows with the words shown, not with the number of possible spans."""
    decline = f'"{DECLINE}"'
    if question.kind is Kind.YES_NO:
        return f'root ::= "Yes" | "No" | {decline}\n'
    typed = candidates(sentences, question) if question.kind in CHOSEN else []
    if typed:
        return "root ::= " + " | ".join([decline, *(f'"{_gbnf(text)}"' for text in typed)]) + "\n"
    rules: list[str] = []
    starts: list[str] = []
    index = 0
    for sentence in sentences:
        words = sentence.split()
        for position, word in enumerate(words):
            core = _END.sub("", word) or word
            goes_on = position + 1 < len(words) and core == word
            rules.append(f'w{index} ::= "{_gbnf(core)}"' + (f' (" " w{index + 1})?' if goes_on else ""))
            starts.append(f"w{index}")
            index += 1
    return f"root ::= {decline} | " + " | ".join(starts) + "\n" + "\n".join(rules) + "\n"


def _nearness(sentence: str, start: int, end: int, asked: frozenset[str]) -> float:
    """1 / (1 + words between the span and the nearest of the question's content words in the sentence)."""
    before = terms(sentence[:start])[-8:]
    after = terms(sentence[end:])[:8]
    gaps = [len(before) - i for i, w in enumerate(before) if w in asked] + [
        i + 1 for i, w in enumerate(after) if w in asked
    ]
    return 1.0 / (1.0 + min(gaps)) if gaps else 0.0


def _gbnf(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class Reader:
    def __init__(self, pool: EvidencePool, question: Question, options: ReaderOptions) -> None:
        self.pool = pool
        self.question = question
        self.options = options
        self.passages = pool.passages
        self.ranked = pool.rank(question.evidence_query)

    # -- drafts --------------------------------------------------------------------------------------

    def focus(self) -> dict[int, list[str]]:
        """The evidence a small model reads: the best sentences for the question, and for each part of a
        multi-part question its own best ones, so every part's evidence is in front of it."""
        limit = self.options.focus_sentences
        queries = [self.question.evidence_query, *self.question.parts]
        share = max(1, limit // len(queries))
        grouped: dict[int, list[str]] = {}
        chosen: set[tuple[int, str]] = set()
        for query in queries:
            for number, texts in self.pool.focus(query, share if len(queries) > 1 else limit).items():
                for text in texts:
                    if (number, text) not in chosen:
                        chosen.add((number, text))
                        grouped.setdefault(number, []).append(text)
        order = {(s.number, s.text): s.position for s in self.pool.sentences}
        return {n: sorted(texts, key=lambda t: order.get((n, t), 0)) for n, texts in sorted(grouped.items())}

    def draft_llm(self, generator: Generator, as_of: dt.date, count: TokenCounter) -> Iterator[str | Draft]:
        """Ask the model. A small one (`focused_prompt`) gets the focused excerpts and, where the backend
        honours grammars, may only copy; a capable one gets whole passages and writes its own cited text,
        streamed as it comes."""
        caps = generator.capabilities
        if caps.focused_prompt:
            focus = self.focus()
            messages = short_answer_messages(self.question.text, self.passages, focus, as_of)
            sentences = [text for texts in focus.values() for text in texts]
            request = GenerationRequest(
                self.question.text,
                self.passages,
                messages,
                SHORT_ANSWER_TOKENS,
                self.options.temperature,
                stop=("\n",),
                top_logprobs=_TOP_LOGPROBS if caps.logprobs else 0,
                grammar=copy_grammar(sentences, self.question) if caps.grammar else None,
            )
            completion = generator.complete(request)
            reply = completion.text.strip().strip("\"'“”").strip()
            declined = not reply or reply.lower().rstrip(".") == DECLINE or is_refusal(reply)
            short = None if declined else trim(reply, self.question)
            yield Draft(
                short,
                declined=declined,
                logprobs=completion.logprobs,
                prompt_tokens=sum(count(m["content"]) for m in messages),
            )
            return
        messages = chat_messages(self.question.text, self.passages, as_of)
        request = GenerationRequest(
            self.question.text, self.passages, messages, self.options.max_tokens, self.options.temperature
        )
        filt = CitationStreamFilter(len(self.passages))
        pieces: list[str] = []
        for raw in generator.stream(request):
            piece = filt.feed(raw)
            if piece:
                pieces.append(piece)
                yield piece
        tail = filt.flush()
        if tail:
            pieces.append(tail)
            yield tail
        text = tidy("".join(pieces)).strip()
        declined = is_refusal(text)
        said = split_sentences(text)
        first = text[slice(*said[0])] if said else ""
        opening = tidy(CITATION.sub("", first)).strip().rstrip(".")
        # "Stanislav Zas is the Secretary General of the CSTO." answers "Stanislav Zas", as a small model's
        # copied reply would be cut: the signals then mean the same for both kinds of model.
        short = trim(opening, self.question) if opening else None
        yield Draft(
            None if declined else short,
            text=None if declined else text,
            declined=declined,
            prompt_tokens=sum(count(m["content"]) for m in messages),
            invalid_citations=filt.invalid,
        )

    def ranked_spans(self) -> list[str]:
        """Spans that could answer the question among the best sentences, best first: by the sentence's
        evidence score, its nearness there to the question's own words (the answer to "Who is the Secretary
        General?" stands next to "Secretary General"), how well its type fits the question, and the number
        of articles that give it (redundancy across reports is evidence in news)."""
        asked = frozenset(terms(self.question.evidence_query))
        scores: dict[str, float] = {}
        documents: dict[str, set[str]] = {}
        best = self.ranked[: max(6, self.options.focus_sentences)]
        for sentence, found in zip(best, candidates_in([s.text for s in best], self.question), strict=True):
            for span in found:
                if not is_new(span.text, self.question.text):
                    continue
                score = sentence.score + _nearness(sentence.text, span.start, span.end, asked) + span.fit - 1
                scores[span.text] = max(scores.get(span.text, score), score)
                documents.setdefault(span.text, set()).add(self.passages[sentence.number - 1].doc_id)
        total = {text: score + 0.25 * math.log(len(documents[text])) for text, score in scores.items()}
        return sorted(total, key=lambda text: (-total[text], -len(text)))

    def draft_extractive(self) -> Draft:
        """The best span; without a form to look for ("What did he say …?") the answer is the best
        sentence, quoted."""
        if self.question.kind not in CHOSEN and self.question.kind is not Kind.REASON:
            return Draft(None)
        ranked = self.ranked_spans()
        return Draft(ranked[0] if ranked else None)

    def fit(self, short: str | None) -> float:
        """How well the short answer's type fits the question (`rag.answering.spans.Span.fit`): its best fit as a
        candidate in the sentences that hold it, 0 when it is no candidate there (a copied run of words)."""
        if not short or not self.question.answer_types:
            return 0.0
        holding = [s.text for s in self.pool.containing(short)][:_FIT_SENTENCES]
        found = [span.fit for spans in candidates_in(holding, self.question) for span in spans if span.text == short]
        return max(found, default=0.0)

    def covered(self, quoted: Sequence[Sentence]) -> float:
        """Share of what the question pins down (its names, numbers and dates) that the quoted sentence, or
        the one before it in its passage, says: "the President of Azerbaijan" is not answered by a sentence
        about Russia's president, however well its other words match."""
        wanted = pinned(self.question.evidence_query)
        if not wanted:
            return 1.0
        if not quoted:
            return 0.0
        near = {(q.number, q.position) for q in quoted} | {(q.number, q.position - 1) for q in quoted}
        words = frozenset(w for s in self.pool.sentences if (s.number, s.position) in near for w in terms(s.text))
        return len(wanted & words) / len(wanted)

    def verify(self, generator: Generator, short: str, sentence: str) -> float:
        """The model's own check of its answer: how much more likely it finds "yes" than "no" when asked
        whether the quoted sentence answers the question with exactly this answer (log-odds, read off the
        first token's probabilities; the reply itself is not used, `rag.prompts.VERIFY_PROMPT`). A 0.5B
        model that picks a wrong candidate under the grammar still often says "no" to it when asked."""
        request = GenerationRequest(
            self.question.text, [], verify_messages(self.question.text, short, sentence), 1, 0.0, top_logprobs=20
        )
        completion = generator.complete(request)
        top = completion.logprobs[0].top if completion.logprobs else ()
        return _log_odds(top, _YES, _NO)

    # -- the answer ----------------------------------------------------------------------------------

    def quotes(self, short: str | None) -> list[Sentence]:
        """The sentences to quote: the best one holding the short answer, or for a multi-part question (and
        when no sentence holds the answer) the best one for the question and for each part, each from
        another passage where possible."""
        if short and self.question.kind is not Kind.YES_NO:
            holding = self.pool.containing(short)
            if holding:
                best = max(holding, key=lambda s: self._score(s))
                return [best]
        chosen: list[Sentence] = []
        for query in self.question.parts or (self.question.evidence_query,):
            ranked = self.pool.rank(query)
            numbers = {c.number for c in chosen}
            pick = next((s for s in ranked if s.number not in numbers), ranked[0] if ranked else None)
            if pick is not None and pick.text not in {c.text for c in chosen}:
                chosen.append(pick)
        return chosen

    def _score(self, sentence: Sentence) -> float:
        return next(
            (s.score for s in self.ranked if s.number == sentence.number and s.position == sentence.position), 0.0
        )

    def compose(self, draft: Draft) -> str:
        """Short answer first, cited, then the quoted evidence. A capable model writes its own text, which
        is kept as written and checked like any other."""
        if draft.text is not None:
            return draft.text
        quotes = self.quotes(draft.short)
        body = " ".join(f"“{_nested(inert(q.text))}” [{q.number}]" for q in quotes)
        if not draft.short:
            return body
        markers = "".join(f"[{n}]" for n in dict.fromkeys(q.number for q in quotes))
        short = draft.short[0].upper() + draft.short[1:] if self.question.kind is Kind.YES_NO else draft.short
        return f"{short} {markers}. {body}".strip()

    def signals(self, draft: Draft, generator: Generator) -> dict[str, float]:
        """What the confidence is estimated from (`rag.answering.confidence.SIGNALS` says what each measures)."""
        best = self.ranked[0] if self.ranked else None
        holding = self.pool.containing(draft.short) if draft.short else []
        documents = {p.doc_id for p in self.passages}
        supporting = {self.passages[s.number - 1].doc_id for s in holding}
        quoted = self.quotes(draft.short)
        tokens = [t.logprob for t in draft.logprobs or ()]
        first = draft.logprobs[0].top if draft.logprobs else ()
        caps = generator.capabilities
        # "Is the answer exactly Yes?" asks nothing a yes/no answer's own probability does not already say
        yes_no = self.question.kind is Kind.YES_NO
        checked = bool(draft.short and quoted and caps.logprobs and caps.focused_prompt and not yes_no)
        verified = self.verify(generator, draft.short or "", quoted[0].text) if checked else 0.0
        bound_elsewhere = bool(draft.short and quoted) and foreign(
            draft.short or "", quoted[0].text, self.question.text
        )
        return {
            "agrees": float(bool(caps.llm and draft.short) and draft.short == self.draft_extractive().short),
            "fit": self.fit(draft.short),
            "typed": float(bool(self.question.answer_types)),
            "covered": self.covered(quoted),
            "foreign": float(bound_elsewhere),
            "verified": verified,
            "checked": float(checked),
            "decline_prob": math.exp(max((lp for token, lp in first if token.strip().lower() == DECLINE), default=-99)),
            "evidence": best.score if best else 0.0,
            "lexical": max((s.lexical for s in self.ranked), default=0.0),
            "semantic": max((s.semantic for s in self.ranked), default=0.0),
            "support": max((self._score(s) for s in quoted), default=0.0),
            "grounded": float(bool(holding) or (yes_no and bool(draft.short))),
            "agreement": len(supporting) / len(documents) if documents else 0.0,
            "new": float(bool(draft.short) and is_new(draft.short or "", self.question.text)),
            "yes_no": float(yes_no),
            "declined": float(draft.declined),
            "logprob": math.fsum(tokens) / len(tokens) if tokens else 0.0,
            "first_logprob": tokens[0] if tokens else 0.0,
        }


_TOP_LOGPROBS = 10
"""Alternatives read at each token of a small model's answer: at the first, the chance it gave "unknown"."""
_FIT_SENTENCES = 6
"""Sentences holding the answer that are parsed to find its type."""
_YES = frozenset({"yes", "Yes", " yes", " Yes", "YES"})
_NO = frozenset({"no", "No", " no", " No", "NO"})
_ODDS_FLOOR = -20.0
"""The log-probability given to an answer the model's top tokens do not list."""


def _log_odds(top: Sequence[tuple[str, float]], yes: frozenset[str], no: frozenset[str]) -> float:
    """log P(yes) - log P(no) over the listed first tokens, each side summed over its spellings."""

    def side(tokens: frozenset[str]) -> float:
        found = [math.exp(lp) for token, lp in top if token in tokens]
        return math.log(math.fsum(found)) if found else _ODDS_FLOOR

    return max(-10.0, min(10.0, side(yes) - side(no)))


def pinned(question: str) -> frozenset[str]:
    """The question's names, numbers and dates as index terms: what an answer's sentence must be about."""
    doc = parse([question])[0]
    words = " ".join(t.text for t in doc if t.pos_ in ("PROPN", "NUM") or t.ent_type_)
    return frozenset(terms(words))


def trim(answer: str, question: Question) -> str:
    """A copied reply that ran on past the answer (more than four words) cut to the first new span of the
    asked type inside it ("Tuesday, Prime Minister Nikol Pashinyan said" to a "when" question); short
    replies, and replies without such a span, are kept as they are."""
    answer = _POSSESSIVE.sub("", answer)
    if len(answer.split()) <= 4 or not question.answer_types:
        return answer
    return next((span.text for span in spans(answer, question) if is_new(span.text, question.text)), answer)


_POSSESSIVE = re.compile(r"['’]s?$")


def _nested(quote: str) -> str:
    """A quote inside the answer's quotation marks takes single ones, as in print: “‘We agreed,’ she
    said.” rather than ““We agreed,” she said.”. Straight quotes stay as written: they may be the
    article's literal text (code, markup), which a quote must not alter."""
    return quote.translate(_INNER_QUOTES)


_INNER_QUOTES = str.maketrans({"“": "‘", "”": "’"})


def refusal_text(passages: Sequence[Passage], searched: str) -> str:
    """The refusal sentence, what was searched, and the closest article, so the user can look further."""
    if not passages:
        return f"{REFUSAL} No article matched ({searched})."
    chunk = passages[0].chunk
    date = chunk.published.isoformat() if chunk.published else "undated"
    return f"{REFUSAL} Searched {searched}; the closest article was “{inert(chunk.title or chunk.doc_id)}” ({date})."


def read(
    asked: Asked,
    passages: Sequence[Passage],
    generator: Generator,
    *,
    pool: EvidencePool,
    options: ReaderOptions,
    count: TokenCounter,
    before: Mapping[str, float],
) -> Iterator[str | Answer]:
    """Yield text pieces (a capable model's as it writes them), then the final `Answer`, its timings those
    of the steps `before` it (rewriting, searching) and the reader's own."""
    start = time.perf_counter()
    timings = dict(before)
    question, retrieval = asked.standalone, asked.retrieval
    reader = Reader(pool, question, options)
    caps = generator.capabilities
    draft = Draft(None, declined=True)
    for item in _drafted(reader, passages, generator, retrieval.as_of, count):
        if isinstance(item, Draft):
            draft = item
        else:
            timings.setdefault("first_token", time.perf_counter() - start)
            yield item
    kept_decline = draft.kept_decline(caps)
    timings["generate"] = time.perf_counter() - start
    text = reader.compose(draft) if passages else ""
    inferred = False
    if text and not CITATION.search(text) and options.attribute_citations:
        text = attribute(text, pool)
        inferred = bool(CITATION.search(text))
    signals = reader.signals(draft, generator)
    family = family_of(caps.llm, caps.logprobs)
    probability = confidence(signals, family)
    refused = not text or kept_decline or probability < options.min_confidence
    # Below the threshold a draft is still shown, as what it is: unverified, with the source it came from.
    unsure = refused and bool(text) and not kept_decline
    final = f"{NOT_SURE} {text}" if unsure else refusal_text(passages, retrieval.searched_dates) if refused else text
    if not caps.llm or caps.focused_prompt or refused:
        yield final
    shown = "" if refused and not unsure else text
    citations = extract_citations(shown, pool) if shown else []
    offset = len(final) - len(shown)
    claims = (
        [replace(c, start=c.start + offset, end=c.end + offset) for c in check_claims(shown, pool)] if shown else []
    )
    timings["check"] = time.perf_counter() - start - timings["generate"]
    timings["total"] = time.perf_counter() - asked.started
    yield Answer(
        question=asked.question,
        text=final,
        citations=citations,
        passages=list(passages),
        refused=refused,
        backend=generator.name,
        model=generator.model,
        tokens=TokenUsage(
            prompt=draft.prompt_tokens,
            completion=count(draft.short or draft.text or ""),
            context=sum(count(p.text) for p in passages),
        ),
        timings=timings,
        invalid_citations=draft.invalid_citations,
        inferred_citations=inferred and not refused,
        retrieved=asked.retrieved,
        standalone_question=question.text if question.text != asked.question else None,
        as_of=retrieval.as_of,
        since=retrieval.dates.since,
        until=retrieval.dates.until,
        date_mention=retrieval.mention,
        date_mention_filtered=retrieval.mention_filtered,
        short=None if refused else draft.short,
        confidence=probability,
        confidence_level=level(probability, family, options.min_confidence),
        claims=claims,
        signals=signals,
        draft=text if refused and text else None,
        draft_short=draft.short if refused and text else None,
        parts=list(question.parts),
    )


def _drafted(
    reader: Reader, passages: Sequence[Passage], generator: Generator, as_of: dt.date, count: TokenCounter
) -> Iterator[str | Draft]:
    """The model's text as it writes it, then the draft; nothing without passages."""
    caps = generator.capabilities
    draft: Draft | None = None
    if passages and caps.llm:
        for item in reader.draft_llm(generator, as_of, count):
            if isinstance(item, Draft):
                draft = item
            else:
                yield item
    elif passages:
        draft = reader.draft_extractive()
    if draft is None:
        return
    if draft.declined and draft.text is None and not draft.kept_decline(caps):
        draft.short = reader.draft_extractive().short  # the reader's own span (or best sentence) stands in
    yield draft
