"""The `extractive` backend: no LLM, the answer is the passage sentences that best match the question,
quoted verbatim with their citations. Deterministic, instant, and a floor every LLM must beat."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from rag.chunking import split_sentences
from rag.citations import terms
from rag.llm import GenerationRequest
from rag.prompts import REFUSAL

MIN_COVERAGE = 0.5
"""Share of the question's (IDF-weighted) content words a sentence must contain to count as an answer."""


@dataclass(frozen=True)
class _Candidate:
    number: int
    position: int
    text: str
    words: frozenset[str]


class Extractive:
    name = "extractive"
    model = "extractive"

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        yield self.answer(request)

    def answer(self, request: GenerationRequest) -> str:
        candidates = [
            _Candidate(number, position, passage.text[start:end], frozenset(terms(passage.text[start:end])))
            for number, passage in enumerate(request.passages, start=1)
            for position, (start, end) in enumerate(split_sentences(passage.text))
        ]
        wanted = set(terms(request.question))
        if not candidates or not wanted:
            return REFUSAL
        frequency = Counter(word for c in candidates for word in c.words)
        idf = {w: math.log(1 + len(candidates) / (1 + frequency[w])) for w in wanted}
        total = sum(idf.values())

        def coverage(words: frozenset[str], among: set[str]) -> float:
            return sum(idf[w] for w in among & words) / total

        ranked = sorted(candidates, key=lambda c: (-coverage(c.words, wanted), c.number, c.position))
        best = ranked[0]
        if coverage(best.words, wanted) < MIN_COVERAGE:
            return REFUSAL
        chosen = [best]
        missing = wanted - best.words
        for candidate in ranked[1:]:
            if (
                missing
                and coverage(candidate.words, missing) > 0
                and coverage(candidate.words, wanted) >= MIN_COVERAGE
                and candidate.text != best.text
            ):
                chosen.append(candidate)
                break
        return " ".join(f"“{c.text}” [{c.number}]" for c in chosen)
