"""Multiple choice: which of the offered answers the retrieved passages support.

Measured on RealTime QA's development split (329 questions, the same passages): the evidence match
below picked the right choice for 68.1 %; Qwen2.5-Coder-0.5B's letter, read off its log-probabilities
after the same evidence, for 37.1 %, and adding its letter log-probabilities to the evidence at any
weight from 0.02 to 1 scored 63.5–67.2 %, never better than the evidence alone. So a small model
(`focused_prompt`) and the extractive reader choose by the evidence; a capable model (an OpenAI-
compatible endpoint) answers with a letter, as in RealTime QA's own GPT-3 baseline, and the evidence
decides when its reply names no choice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from rag.answering.evidence import EvidencePool
from rag.prompts import choice_messages
from rag.text import terms
from rag.types import GenerationRequest, Generator

_LEADING_LETTER = re.compile(r"^\W*([A-Z])\s*(?:[.):]|$)")
_LETTER = re.compile(r"\b([A-Z])\b")


def evidence_scores(question: str, choices: Sequence[str], pool: EvidencePool) -> list[float]:
    """Per choice: the best sentence holding the choice's distinguishing words (those the question does
    not use), weighted by how well it bears on the question, plus the best cosine similarity of a sentence
    to the question and the choice together."""
    if not pool.sentences:
        return [0.0] * len(choices)
    asked = frozenset(terms(question))
    in_order = sorted(pool.rank(question), key=lambda s: (s.number, s.position))
    relevance = np.array([s.score for s in in_order])
    sentence_terms = [frozenset(terms(s.text)) for s in in_order]
    scores = []
    for choice in choices:
        own = frozenset(terms(choice)) - asked or frozenset(terms(choice))
        holds = np.array([pool.weighted_share(own, words) for words in sentence_terms])
        meaning = float(pool.similarity(f"{question} {choice}").max())
        scores.append(float((holds * relevance).max()) + meaning)
    return scores


def letter(reply: str, n_choices: int) -> int | None:
    """The choice a reply names: a letter opening it ("B", "b.", "(C) Zas"), else the last capital letter
    standing alone ("The answer is B", "I think B"). Taking the first standalone letter instead read the
    pronoun "I" (or an article "A") as the answer; None when no letter names one of the choices."""
    lead = _LEADING_LETTER.match(reply.strip().upper())
    letters = [lead.group(1)] if lead else [m.group(1) for m in reversed(list(_LETTER.finditer(reply)))]
    for candidate in letters:
        if 0 <= ord(candidate) - ord("A") < n_choices:
            return ord(candidate) - ord("A")
    return None


def choose(question: str, choices: Sequence[str], pool: EvidencePool, generator: Generator) -> int:
    """The index of the best-supported choice (ties go to the earlier choice)."""
    caps = generator.capabilities
    if caps.llm and not caps.focused_prompt:
        messages = choice_messages(question, choices, pool.passages)
        request = GenerationRequest(question, pool.passages, messages, 8, 0.0)
        picked = letter("".join(generator.stream(request)), len(choices))
        if picked is not None:
            return picked
    scores = evidence_scores(question, choices, pool)
    return max(range(len(choices)), key=lambda i: (scores[i], -i)) if choices else 0
