"""Evidence: which passage sentences bear on a question, a choice or a claim, by their words and meaning.

Every reader step asks this: which sentences a small model is shown, which span the extractive reader
answers with, which choice of a multiple-choice question the passages support, which sentence a claim
restates, and how strong the evidence is for the confidence estimate. One pool of sentences per answer
serves all of them, so the passages are split and embedded once.

A sentence scores by two signals that fail differently: `lexical`, the IDF-weighted share of the query's
content words it holds (IDF over the candidate sentences, so the story's subject, which every passage
repeats, counts little and the distinguishing words decide), and `semantic`, the cosine similarity of
the two under the embedding model already loaded for retrieval (all-MiniLM-L6-v2 was trained on
question–answer pairs, so it finds a paraphrased answer that shares no word with the question). Their
sum ranked the sentence holding the answer first for 86 % of SQuAD 2.0 development questions (words
alone 82 %, meaning alone 69 %) and within the first six for 99 %.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.ingest.chunking import split_sentences
from rag.text import terms
from rag.types import Passage
from rag.untrusted import reporting_part

Embed = Callable[[Sequence[str]], np.ndarray]
"""Texts to unit-length vectors, one row each (`Embedder.embed`)."""


@dataclass(frozen=True)
class Sentence:
    """A sentence of passage `number` (1-based, prompt order); `start`/`end` index the passage text."""

    number: int
    position: int
    text: str
    start: int
    end: int
    lexical: float = 0.0
    """IDF-weighted share of the query's content words found in the sentence, 0..1."""
    semantic: float = 0.0
    """Cosine similarity to the query under the embedding model; 0 without one."""

    @property
    def score(self) -> float:
        return self.lexical + self.semantic


class EvidencePool:
    """The sentences of an answer's passages, split, stemmed and embedded once, ranked per query."""

    def __init__(self, passages: Sequence[Passage], embed: Embed | None = None) -> None:
        self.passages = list(passages)
        self.sentences = [
            Sentence(number, position, kept, start, start + len(kept))
            for number, passage in enumerate(self.passages, start=1)
            for position, (start, end) in enumerate(split_sentences(passage.text))
            if (kept := reporting_part(passage.text[start:end]))
        ]
        self._terms = [frozenset(terms(s.text)) for s in self.sentences]
        self._frequency = Counter(word for words in self._terms for word in words)
        self._embed = embed
        self._vectors = embed([s.text for s in self.sentences]) if embed and self.sentences else None

    def idf(self, word: str) -> float:
        return math.log(1 + len(self.sentences) / (1 + self._frequency[word]))

    def weighted_share(self, query_terms: frozenset[str], words: frozenset[str]) -> float:
        """IDF-weighted share of `query_terms` in `words`. `math.fsum`: a plain sum over a set adds in hash
        order, which changes between processes and so flipped near-ties from run to run."""
        total = math.fsum(self.idf(w) for w in sorted(query_terms))
        return math.fsum(self.idf(w) for w in sorted(query_terms & words)) / total if total else 0.0

    def similarity(self, query: str) -> np.ndarray:
        """Cosine similarity of every sentence to `query` (zeros without an embedding model)."""
        if self._vectors is None or self._embed is None:
            return np.zeros(len(self.sentences), dtype=np.float32)
        similarity: np.ndarray = self._vectors @ self._embed([query])[0]
        return similarity

    def rank(self, query: str) -> list[Sentence]:
        """Every sentence scored against `query`, best first (ties in reading order)."""
        wanted = frozenset(terms(query))
        similarity = self.similarity(query)
        scored = [
            Sentence(s.number, s.position, s.text, s.start, s.end, self.weighted_share(wanted, words), float(sim))
            for s, words, sim in zip(self.sentences, self._terms, similarity, strict=True)
        ]
        scored.sort(key=lambda s: (-s.score, s.number, s.position))
        return scored

    def focus(self, query: str, limit: int) -> dict[int, list[str]]:
        """The `limit` best distinct sentences for `query`, grouped by passage number in reading order: what
        a small model is shown instead of whole passages."""
        chosen: list[Sentence] = []
        seen: set[str] = set()
        for sentence in self.rank(query):
            key = " ".join(sentence.text.split())
            if key in seen:
                continue
            seen.add(key)
            chosen.append(sentence)
            if len(chosen) == limit:
                break
        grouped: dict[int, list[str]] = {}
        for sentence in sorted(chosen, key=lambda s: (s.number, s.position)):
            grouped.setdefault(sentence.number, []).append(sentence.text)
        return grouped

    def containing(self, phrase: str) -> list[Sentence]:
        """Sentences holding every content word of `phrase` (stemmed, in any order), in reading order."""
        wanted = frozenset(terms(phrase))
        if not wanted:
            return []
        return [s for s, words in zip(self.sentences, self._terms, strict=True) if wanted <= words]

    def support(self, claim: str, numbers: Sequence[int] | None = None) -> Sentence | None:
        """The sentence that best restates `claim` (within passages `numbers` if given), scored by the share
        of the claim's content words it holds (unweighted: a claim's words all matter) and by meaning."""
        wanted = frozenset(terms(claim))
        similarity = self.similarity(claim)
        best: Sentence | None = None
        for s, words, sim in zip(self.sentences, self._terms, similarity, strict=True):
            if numbers is not None and s.number not in numbers:
                continue
            share = len(wanted & words) / len(wanted) if wanted else 0.0
            candidate = Sentence(s.number, s.position, s.text, s.start, s.end, share, float(sim))
            if best is None or candidate.score > best.score:
                best = candidate
        return best
