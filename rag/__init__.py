"""rag: question answering over news articles, with every claim cited to the passage it came from.

>>> import rag
>>> result = rag.answer("Who is the Secretary General of the CSTO?")
>>> result.text, [c.to_json()["title"] for c in result.citations]
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rag.errors import RagError
from rag.prompts import NOT_SURE, REFUSAL
from rag.types import Answer, Citation, Document, Event, Passage, Timeline, TokenUsage

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.evaluation.runner import evaluate
    from rag.ingest.loaders import load_paths
    from rag.pipeline import RAG, IndexReport

_LAZY = {
    "RAG": "rag.pipeline",
    "IndexReport": "rag.pipeline",
    "Settings": "rag.config",
    "evaluate": "rag.evaluation.runner",
    "load_paths": "rag.ingest.loaders",
}
"""Imported on first use: `import rag.types` (or the CLI's `--help`) must not load FAISS, numpy and the
model runtimes that the pipeline needs."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rag' has no attribute {name!r}")


__all__ = [
    "NOT_SURE",
    "RAG",
    "REFUSAL",
    "Answer",
    "Citation",
    "Document",
    "Event",
    "IndexReport",
    "Passage",
    "RagError",
    "Settings",
    "Timeline",
    "TokenUsage",
    "answer",
    "answer_stream",
    "evaluate",
    "load_paths",
    "timeline",
    "timeline_stream",
]

_pipelines: dict[str, RAG] = {}


def _pipeline(settings: Settings | None) -> RAG:
    """Reuse loaded models across calls: the second question must not pay for loading them again."""
    from rag.config import Settings
    from rag.pipeline import RAG

    settings = settings or Settings()
    key = settings.model_dump_json()
    if key not in _pipelines:
        _pipelines[key] = RAG(settings)
    return _pipelines[key]


def answer(question: str, *, settings: Settings | None = None, **options: Any) -> Answer:
    """Answer `question` from the configured index (built from the seed articles if none exists).

    Options: `k`, `since`, `until`, `as_of` (dates), `backend` (`local` | `openai` | `extractive`),
    `model` (overrides the backend's configured model) and `history` (earlier `rag.answering.conversation.Turn`s,
    to rewrite a follow-up question into a standalone one).
    """
    return _pipeline(settings).answer(question, **options)


def answer_stream(question: str, *, settings: Settings | None = None, **options: Any) -> Iterator[str | Answer]:
    """Like `answer`, but yields the text as it is generated and the final `Answer` last."""
    return _pipeline(settings).answer_stream(question, **options)


def timeline(topic: str, *, settings: Settings | None = None, **options: Any) -> Timeline:
    """The events the index reports about `topic`, oldest first, each quoted from a cited passage.

    Options: `since`, `until` (publication dates, inclusive) and `as_of` (the date it is asked: later
    articles are left out)."""
    return _pipeline(settings).timeline(topic, **options)


def timeline_stream(topic: str, *, settings: Settings | None = None, **options: Any) -> Iterator[Timeline]:
    """Like `timeline`, as it is built: the events of the articles read so far, then of more; the last
    timeline is `complete`."""
    return _pipeline(settings).timeline_stream(topic, **options)
