"""The `extractive` backend: no LLM, the answer is the passage sentences that best match the question,
quoted verbatim with their citations. Deterministic, instant, and a floor every LLM must beat."""

from __future__ import annotations

from collections.abc import Iterator

from rag.evidence import rank_sentences, terms
from rag.llm import GenerationRequest
from rag.prompts import REFUSAL


class Extractive:
    name = "extractive"
    model = "extractive"

    def __init__(self, min_coverage: float = 0.5) -> None:
        """`min_coverage`: share of the question's (IDF-weighted) content words a sentence must contain
        to count as an answer; below it the backend refuses."""
        self.min_coverage = min_coverage

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        yield self.answer(request)

    def answer(self, request: GenerationRequest) -> str:
        ranked = rank_sentences(request.question, request.passages)
        if not ranked or ranked[0].coverage < self.min_coverage:
            return REFUSAL
        best = ranked[0]
        chosen = [best]
        missing = set(terms(request.question)) - set(terms(best.text))
        for candidate in ranked[1:]:
            adds = missing & set(terms(candidate.text))
            if adds and candidate.coverage >= self.min_coverage and candidate.text != best.text:
                chosen.append(candidate)
                break
        return " ".join(f"“{c.text}” [{c.number}]" for c in chosen)
