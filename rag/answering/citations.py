"""Citations: parse `[n]` markers, drop the ones that point nowhere, and tie each to the quoted span.

Small models invent passage numbers; a citation that points at nothing is worse than none, so invalid
numbers are removed from the text (and reported) rather than shown to the user.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rag.answering.evidence import EvidencePool
from rag.ingest.chunking import split_sentences
from rag.text import terms
from rag.types import Citation, Claim
from rag.untrusted import CITATION

_OPEN_TAIL = re.compile(r"\[[\d,;\s]*$")


def numbers_in(marker: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", marker)]


def clean_citations(text: str, n_passages: int) -> tuple[str, list[int]]:
    """Rewrite each marker keeping only numbers in 1..n_passages; returns the text and the dropped numbers."""
    invalid: list[int] = []

    def fix(match: re.Match[str]) -> str:
        numbers = numbers_in(match.group(1))
        valid = [n for n in dict.fromkeys(numbers) if 1 <= n <= n_passages]
        invalid.extend(n for n in numbers if not 1 <= n <= n_passages)
        return "".join(f"[{n}]" for n in valid)

    cleaned = CITATION.sub(fix, text)
    return (tidy(cleaned) if invalid else cleaned), invalid


def tidy(text: str) -> str:
    """Close the gaps a removed marker leaves: doubled spaces and a space before punctuation."""
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text))


class CitationStreamFilter:
    """Applies `clean_citations` to streamed text, holding back only an unfinished `[...` marker, so the
    user never sees a citation that will be removed. The final answer text can still differ in spacing
    (a removed marker's gap is closed) and in citations added by `attribute`."""

    def __init__(self, n_passages: int) -> None:
        self.n_passages = n_passages
        self.invalid: list[int] = []
        self._pending = ""

    def feed(self, piece: str) -> str:
        text = self._pending + piece
        tail = _OPEN_TAIL.search(text)
        cut = tail.start() if tail else len(text)
        self._pending = text[cut:]
        return self._clean(text[:cut])

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return self._clean(text)

    def _clean(self, text: str) -> str:
        cleaned, invalid = clean_citations(text, self.n_passages)
        self.invalid.extend(invalid)
        return cleaned


def _claims(text: str) -> Iterator[tuple[str, list[int]]]:
    """Each citation marker with the claim it closes: the last sentence before it. Adjacent markers
    (`[1][3]`) share one claim."""
    previous, claim = 0, ""
    for match in CITATION.finditer(text):
        before = text[previous : match.start()]
        sentences = [s for s in split_sentences(before) if before[s[0] : s[1]].strip(" .,;")]
        if sentences:
            claim = before[sentences[-1][0] : sentences[-1][1]].strip()
        previous = match.end()
        yield claim, numbers_in(match.group(1))


def extract_citations(text: str, pool: EvidencePool) -> list[Citation]:
    """Citations in order of first appearance, one per (claim, passage) pair, each quoting the sentence of
    its passage that best restates the claim (`EvidencePool.support`, the one scorer for the sentence
    behind a claim); `text` is already cleaned."""
    citations: list[Citation] = []
    seen: set[tuple[str, int]] = set()
    passages = pool.passages
    for claim, numbers in _claims(text):
        for number in numbers:
            if not 1 <= number <= len(passages) or (claim, number) in seen:
                continue
            seen.add((claim, number))
            passage = passages[number - 1]
            best = pool.support(claim, (number,))
            start, end = (best.start, best.end) if best else (0, len(passage.text))
            offset = passage.chunk.start
            citations.append(Citation(number, passage, claim, passage.text[start:end], offset + start, offset + end))
    return citations


def attribute(text: str, pool: EvidencePool, min_support: float = 0.6) -> str:
    """Add `[n]` to answer sentences that carry no citation but restate a passage sentence (at least
    `min_support` of their content words appear in it). Models often answer correctly from the passages
    yet forget to cite; an unsupported sentence stays uncited, which is the honest signal."""
    out: list[str] = []
    previous = 0
    for start, end in split_sentences(text):
        sentence = text[start:end]
        out.append(text[previous:start])
        previous = end
        best = None if CITATION.search(sentence) else pool.support(sentence)
        if best is None or best.lexical < min_support:
            out.append(sentence)
            continue
        body = sentence.rstrip(".!?")
        out.append(f"{body} [{best.number}]{sentence[len(body) :]}")
    out.append(text[previous:])
    return "".join(out)


_VERDICTS = {"yes", "no"}
_LEADING_MARKERS = re.compile(r"(?:\s*\[[\d,;\s]+\])+\s*")
SUPPORT_SHARE = 0.6
"""A claim is supported when one sentence of a passage it cites holds this share of its content words…"""
SUPPORT_SIMILARITY = 0.75
"""…or says the same in other words (cosine similarity under the embedding model). Neither was fitted:
0.6 is the share `attribute` has always used, and MiniLM pairs above 0.75 are paraphrases."""


def check_claims(text: str, pool: EvidencePool) -> list[Claim]:
    """Every sentence of `text` with words in it, matched to the best sentence of the passages it cites.
    Markers after a sentence's full stop belong to it; a sentence without one cites nothing and is
    unsupported."""
    sentences: list[tuple[str, list[int], int, int]] = []
    for start, end in split_sentences(text):
        # Markers right after a full stop can open the next "sentence" ("… Thursday.” [1] “Putin …"):
        # they close the one before.
        lead = _LEADING_MARKERS.match(text, start, end)
        if lead and sentences:
            claim, earlier, first, _ = sentences[-1]
            sentences[-1] = (claim, earlier + numbers_in(lead.group(0)), first, start + len(lead.group(0).rstrip()))
            start = lead.end()
        raw = text[start:end]
        words = CITATION.sub("", raw).strip()
        numbers = [n for m in CITATION.finditer(raw) for n in numbers_in(m.group(1))]
        if not words.strip(" .,;:!?\"“”'"):
            if sentences:
                claim, earlier, first, _ = sentences[-1]
                sentences[-1] = (claim, earlier + numbers, first, end)
            continue
        sentences.append((tidy(words), numbers, start, end))
    claims = []
    for claim, numbers, start, end in sentences:
        cited = tuple(dict.fromkeys(n for n in numbers if 1 <= n <= len(pool.passages)))
        if cited and set(terms(claim)) <= _VERDICTS:
            # "Yes [1][3]." says nothing a sentence could restate; the quotes after it carry the evidence.
            claims.append(Claim(claim, cited, 1.0, True, start=start, end=end))
            continue
        best = pool.support(claim, cited) if cited else None
        if best is None:
            claims.append(Claim(claim, cited, 0.0, False, start=start, end=end))
            continue
        supported = best.lexical >= SUPPORT_SHARE or best.semantic >= SUPPORT_SIMILARITY
        claims.append(Claim(claim, cited, max(best.lexical, best.semantic), supported, best.text, start, end))
    return claims
