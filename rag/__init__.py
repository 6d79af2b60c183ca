"""rag: question answering over news articles, with every claim cited to the passage it came from.

>>> import rag
>>> result = rag.answer("Who is the Secretary General of the CSTO?")
>>> result.text, [c.to_json()["title"] for c in result.citations]
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rag.answer import Answer, TokenUsage
from rag.citations import Citation
from rag.config import Settings
from rag.documents import Document, load_paths
from rag.errors import RagError
from rag.evaluation.runner import evaluate
from rag.pipeline import RAG, IndexReport
from rag.prompts import REFUSAL
from rag.retrieval import Passage

__all__ = [
    "RAG",
    "REFUSAL",
    "Answer",
    "Citation",
    "Document",
    "IndexReport",
    "Passage",
    "RagError",
    "Settings",
    "TokenUsage",
    "answer",
    "answer_stream",
    "evaluate",
    "load_paths",
]

_pipelines: dict[str, RAG] = {}


def _pipeline(settings: Settings | None) -> RAG:
    """Reuse loaded models across calls: the second question must not pay for loading them again."""
    settings = settings or Settings()
    key = settings.model_dump_json()
    if key not in _pipelines:
        _pipelines[key] = RAG(settings)
    return _pipelines[key]


def answer(question: str, *, settings: Settings | None = None, **options: Any) -> Answer:
    """Answer `question` from the configured index (built from the seed articles if none exists).

    Options: `k`, `since`, `until`, `as_of` (dates), `backend` (`local` | `openai` | `extractive`),
    `model` (overrides the backend's configured model) and `history` (earlier `rag.conversation.Turn`s,
    to rewrite a follow-up question into a standalone one).
    """
    return _pipeline(settings).answer(question, **options)


def answer_stream(question: str, *, settings: Settings | None = None, **options: Any) -> Iterator[str | Answer]:
    """Like `answer`, but yields the text as it is generated and the final `Answer` last."""
    return _pipeline(settings).answer_stream(question, **options)
