"""The OpenAI-compatible routes: `POST /v1/chat/completions` (streamed or not) and `GET /v1/models`, so
any OpenAI client or chat front-end can ask the archive. The answer's `[n]` markers stay in `content`; the
citations, dates searched and refusal ride in an extra `rag` field that OpenAI clients ignore."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from rag.errors import RagError
from rag.server.conversations import ConversationStore
from rag.server.errors import error_body, rag_error_message, rag_error_status
from rag.server.schemas import ChatRequest
from rag.server.security import Caller
from rag.server.service import Chat, Service, model_names, rag_fields, usage
from rag.types import Answer

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])


def service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[Service, Depends(service)]


def conversations(request: Request) -> ConversationStore:
    """The conversations the caller may see: its key's own, or all of them for an admin key. The guard that
    runs before every route has put the caller on the request."""
    who: Caller = request.state.caller
    return service(request).store.for_key(who.key, sees_all=who.oversees)


StoreDep = Annotated[ConversationStore, Depends(conversations)]


@router.get("/models", summary="The models (answer backends) this server offers")
def models(svc: ServiceDep) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "rag"} for name in model_names(svc.pipeline)
        ],
    }


@router.post("/chat/completions", summary="Answer the last user message from the archive, with citations")
def chat_completions(body: ChatRequest, svc: ServiceDep, store: StoreDep) -> Any:
    chat = svc.start_chat(body, store)
    # The first piece is computed here, before any byte is sent: retrieval and a generator that fails at
    # once (endpoint down, missing model) become an error status, not a broken stream.
    first = next(chat.pieces)
    if body.stream:
        return StreamingResponse(_events(svc, chat, body, first), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip
    answer = first if isinstance(first, Answer) else next(p for p in chat.pieces if isinstance(p, Answer))
    turn = svc.keep(chat, answer)
    return {
        "id": chat.id,
        "object": "chat.completion",
        "created": chat.created,
        "model": chat.model.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage(answer),
        "rag": rag_fields(answer, turn),
    }


def _events(svc: Service, chat: Chat, body: ChatRequest, first: str | Answer) -> Iterator[bytes]:
    """Server-sent events as OpenAI sends them. The text streams as the model writes it; when the checked
    answer differs from what was streamed (a withheld low-confidence draft, citations added afterwards) the
    final event appends it after a blank line, and its `rag.text` is the answer that counts."""

    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        chunk = {
            "id": chat.id,
            "object": "chat.completion.chunk",
            "created": chat.created,
            "model": chat.model.name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    yield event({"role": "assistant", "content": ""})
    streamed = ""
    try:
        item = first
        for item in itertools.chain([first], chat.pieces):
            if isinstance(item, str):
                streamed += item
                yield event({"content": item})
        assert isinstance(item, Answer)
        answer = item
        turn = svc.keep(chat, answer)
    except RagError as exc:
        # Headers are sent: the error travels as an event, which the OpenAI client raises as an APIError.
        yield b"data: " + orjson.dumps(error_body(rag_error_status(exc), rag_error_message(exc))) + b"\n\n"
        return
    text = answer.text
    rest = text[len(streamed) :] if text.startswith(streamed) else f"\n\n{text}" if streamed.strip() else text
    extra: dict[str, Any] = {"rag": {**rag_fields(answer, turn), "text": text}}
    options = (body.model_extra or {}).get("stream_options") or {}
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    yield event({"content": rest} if rest else {}, "stop", **extra)
    if include_usage:
        tail = {"id": chat.id, "object": "chat.completion.chunk", "created": chat.created, "model": chat.model.name}
        yield b"data: " + orjson.dumps({**tail, "choices": [], "usage": usage(answer)}) + b"\n\n"
    yield b"data: [DONE]\n\n"
