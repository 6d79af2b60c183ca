"""What the server does, apart from HTTP: which backend a model name means, which conversation a request
continues, answering, and keeping the answer. The routes only translate between this and JSON.

An OpenAI client resends the whole conversation with every request and knows no conversation ids, so a
request without `conversation_id` continues the stored API conversation whose questions and answers its
earlier messages repeat, and starts a new one when none does: a chat front-end's conversation is kept as
one conversation, not one per request."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rag.answering.conversation import Turn
from rag.backends import BACKENDS
from rag.backends.local import LocalSettings
from rag.pipeline import RAG
from rag.server.admission import Admission
from rag.server.conversations import ConversationStore, StoredTurn
from rag.server.errors import APIError
from rag.server.metrics import Metrics
from rag.server.schemas import ChatRequest
from rag.types import Answer, AskOptions

DEFAULT_MODEL = "rag"
PREFIX = "rag-"


@dataclass(frozen=True)
class ModelChoice:
    """A model name resolved to the backend (and model override) that answers it."""

    name: str
    backend: str
    model: str | None


def model_names(pipeline: RAG) -> list[str]:
    """`rag` (the configured backend), `rag-<backend>` for each, and `rag-<backend>:<model>` for the models a
    backend offers (the installed local models)."""
    names = [DEFAULT_MODEL]
    for name, spec in BACKENDS.items():
        names.append(PREFIX + name)
        if spec.model_choices is not None:
            names.extend(f"{PREFIX}{name}:{model}" for model in spec.model_choices(pipeline.settings))
    return list(dict.fromkeys(names))


def resolve_model(pipeline: RAG, name: str) -> ModelChoice:
    if name == DEFAULT_MODEL:
        return ModelChoice(name, pipeline.settings.backend, None)
    backend, _, model = name.removeprefix(PREFIX).partition(":")
    spec = BACKENDS.get(backend) if name.startswith(PREFIX) else None
    # A backend that lists its models (the installed local ones) serves only those: a client's model name is
    # never a path on the server ("rag-local:../../etc/passwd" is an unknown model, not a failed load).
    listed = spec.model_choices(pipeline.settings) if spec is not None and spec.model_choices is not None else None
    if spec is None or (model and (spec.model_setting is None or (listed is not None and model not in listed))):
        raise APIError(
            404,
            f"the model {name!r} does not exist; use one of: {', '.join(model_names(pipeline))}",
            code="model_not_found",
            param="model",
        )
    return ModelChoice(name, backend, model or None)


def _exchanges(request: ChatRequest) -> tuple[str, list[tuple[str, str]]]:
    """The question (the last user message) and the earlier (question, answer) pairs; system messages are
    not instructions to the reader, whose prompts are fixed, and are left out."""
    said = [m for m in request.messages if m.role in ("user", "assistant")]
    if not said or said[-1].role != "user" or not said[-1].text.strip():
        raise APIError(400, "the last message must be the user's question", code="invalid_request", param="messages")
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    for message in said[:-1]:
        if message.role == "user":
            question = message.text
        elif question is not None:
            pairs.append((question, message.text))
            question = None
    return said[-1].text, pairs


@dataclass
class Chat:
    """One chat request being answered: the stream of text pieces, then the stored turn."""

    id: str
    created: int
    model: ModelChoice
    question: str
    conversation_id: str
    pieces: Iterator[str | Answer]
    store: ConversationStore
    """The conversations as the caller sees them: where the turn is kept."""
    options: AskOptions


class Service:
    def __init__(self, pipeline: RAG, store: ConversationStore, metrics: Metrics) -> None:
        self.pipeline, self.store, self.metrics = pipeline, store, metrics
        settings = pipeline.settings
        self.admission = Admission(
            settings.server.serve_queue, settings.server.serve_deadline, settings.section(LocalSettings).local_parallel
        )
        metrics.watch(self.admission)

    def start_chat(self, request: ChatRequest, store: ConversationStore) -> Chat:
        """Resolve everything a request names before answering, so a bad model or conversation id is a
        clean error status, not a broken stream. `store` is the caller's view: another key's conversation
        is not found, and identical histories sent with two keys continue two conversations."""
        choice = resolve_model(self.pipeline, request.model)
        question, pairs = _exchanges(request)
        if request.conversation_id:
            conversation = store.get(request.conversation_id)
            conversation_id, history = conversation.summary.id, conversation.history()
        else:
            found = store.find_continuation(pairs) if pairs else None
            conversation_id = found or store.create(origin="api").id
            history = store.get(found).history() if found else [Turn(q, a) for q, a in pairs]
        options = AskOptions(request.k, request.since, request.until, request.as_of, choice.backend, choice.model)
        pieces = self.pipeline.answer_stream(question, **options.arguments(), history=history)
        if choice.backend == "local":  # the model's turn is taken now, so a refusal is a status, not a stream
            pieces = self.admission.admit(pieces)
        chat_id = f"chatcmpl-{uuid.uuid4().hex}"
        return Chat(chat_id, int(time.time()), choice, question, conversation_id, pieces, store, options)

    def keep(self, chat: Chat, answer: Answer) -> StoredTurn:
        self.metrics.answered(answer.backend, answer.refused, answer.timings)
        return chat.store.add_turn(chat.conversation_id, chat.question, answer, chat.options.arguments())


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def rag_fields(answer: Answer, turn: StoredTurn) -> dict[str, Any]:
    """What an OpenAI client ignores and a `rag`-aware one reads: the citations with their quoted spans, the
    dates searched, whether the answer was refused, and where it is stored."""
    return {
        "conversation_id": turn.conversation_id,
        "turn_id": turn.id,
        "refused": answer.refused,
        "short": answer.short,
        "confidence": round(answer.confidence, 4),
        "confidence_level": answer.confidence_level,
        "draft_short": answer.draft_short,
        "citations": [c.to_json() for c in answer.citations],
        "searched_dates": answer.searched_dates,
        "as_of": _iso(answer.as_of),
        "since": _iso(answer.since),
        "until": _iso(answer.until),
        "standalone_question": answer.standalone_question,
        "backend": answer.backend,
        "model": answer.model,
        "timings": {stage: round(seconds, 4) for stage, seconds in answer.timings.items()},
    }


def usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.tokens.prompt,
        "completion_tokens": answer.tokens.completion,
        "total_tokens": answer.tokens.prompt + answer.tokens.completion,
    }
