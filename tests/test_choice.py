"""Multiple choice: the evidence match (every backend) and a capable model's letter."""

from __future__ import annotations

import pytest

from rag.answering.choice import choose, evidence_scores, letter
from rag.answering.evidence import EvidencePool
from rag.backends.extractive import Extractive
from rag.prompts import choice_messages
from rag.store.embedding import Embedder
from rag.types import Capabilities, Chunk, Passage
from tests.conftest import Scripted

TEXT = "Stanislav Zas is the Secretary General of the CSTO. Nikol Pashinyan is the prime minister of Armenia."
CHOICES = ["Nikol Pashinyan", "Ilham Aliyev", "Stanislav Zas"]
QUESTION = "Who is the Secretary General of the CSTO?"


@pytest.fixture
def pool(embedder: Embedder) -> EvidencePool:
    chunk = Chunk("a", 0, TEXT, 0, len(TEXT), len(TEXT.split()), title="a")
    return EvidencePool([Passage(chunk, 1.0, 1)], embedder.embed)


def test_evidence_picks_the_supported_choice(pool: EvidencePool) -> None:
    assert choose(QUESTION, CHOICES, pool, Extractive()) == 2
    assert choose("Who is the prime minister of Armenia?", CHOICES, pool, Extractive()) == 0
    scores = evidence_scores(QUESTION, CHOICES, pool)
    assert scores[2] > scores[0] > scores[1]


def test_a_small_model_chooses_by_the_evidence_without_being_asked(pool: EvidencePool) -> None:
    small = Scripted("A", capabilities=Capabilities(llm=True, focused_prompt=True))
    assert choose(QUESTION, CHOICES, pool, small) == 2 and small.requests == []


def test_a_capable_model_answers_with_a_letter(pool: EvidencePool) -> None:
    generator = Scripted("B")
    assert choose(QUESTION, CHOICES, pool, generator) == 1
    (request,) = generator.requests
    assert request.messages == choice_messages(QUESTION, CHOICES, pool.passages)
    assert "C. Stanislav Zas" in request.messages[1]["content"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("c", 2), ("(A) Nikol Pashinyan", 0), ("B.", 1), ("The answer is B.", 1), ("I think B", 1), ("Z", None)],
)
def test_letter_forms(reply: str, expected: int | None) -> None:
    assert letter(reply, 3) == expected


@pytest.mark.parametrize("reply", ["no idea", "", "Z", "I cannot tell"])
def test_reply_without_a_usable_letter_falls_back_to_the_evidence(pool: EvidencePool, reply: str) -> None:
    assert choose(QUESTION, CHOICES, pool, Scripted(reply)) == 2
