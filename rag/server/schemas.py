"""Request bodies the server accepts, as pydantic models: FastAPI validates them (a wrong type is a 400
naming the field) and lists them in the OpenAPI docs at `/docs`.

The chat-completions body is OpenAI's, with extra fields clients can pass through `extra_body` (`as_of`,
`since`, `until`, `k`, `conversation_id`); fields of OpenAI's that do not apply here are accepted and
ignored, so existing clients work unchanged."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rag.server.conversations import RATINGS

MAX_DEPTH = 32
"""Deepest nesting of objects and lists a request may have: articles' metadata is flat in practice, and
every later step (storage, JSON output) would otherwise recurse as deep as a client likes."""
_INT_RANGE = (-(2**63), 2**64 - 1)


def _sane(value: Any, where: str, depth: int = 0) -> None:
    """What JSON allows but nothing after the request can keep: a lone surrogate (no UTF-8 encodes it), an
    integer beyond 64 bits, nesting without end. Each is the client's error, named with where it is."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where or 'body'}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"{where or 'body'}: text with a lone surrogate (\\ud800-\\udfff) is not Unicode"
            ) from None
    elif isinstance(value, bool):
        return
    elif isinstance(value, int) and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        raise ValueError(f"{where or 'body'}: an integer beyond 64 bits")
    elif isinstance(value, dict):
        for key, item in value.items():
            _sane(key, where, depth + 1)
            _sane(item, f"{where}.{key}" if where else str(key), depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _sane(item, f"{where}.{i}" if where else str(i), depth + 1)


class RequestBody(BaseModel):
    """A request body: checked whole for what JSON allows and nothing downstream can hold (`_sane`)."""

    @model_validator(mode="before")
    @classmethod
    def _whole(cls, data: Any) -> Any:
        _sane(data, "")
        return data


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None

    @property
    def text(self) -> str:
        """The message's text; an image or audio part carries none."""
        if isinstance(self.content, list):
            return "\n".join(part.text for part in self.content if part.type == "text" and part.text)
        return self.content or ""


class DateScope(RequestBody):
    """The publication dates to search, as everywhere in `rag`: `as_of` is the day the question is asked
    (default today; later articles are left out), `since`/`until` an explicit range."""

    as_of: dt.date | None = Field(None, description="The date the question is asked; default today.")
    since: dt.date | None = Field(None, description="Only articles published on or after this date.")
    until: dt.date | None = Field(None, description="Only articles published on or before this date.")
    k: int | None = Field(None, ge=1, le=100, description="Passages to retrieve; default `RAG_TOP_K`.")


class ChatRequest(DateScope):
    model_config = ConfigDict(extra="allow")

    model: str = Field(description="`rag-local`, `rag-extractive`, `rag-openai`, `rag-<backend>:<model>` or `rag`.")
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    n: int = Field(1, ge=1, le=1, description="Only one answer per question.")
    conversation_id: str | None = Field(
        None, description="Continue this stored conversation; without it, one is found or started (see README)."
    )


class SearchRequest(DateScope):
    question: str = Field(min_length=1, max_length=10_000)


class DocumentsIn(RequestBody):
    documents: list[dict[str, Any]] = Field(
        min_length=1,
        description="Articles with the fields of `rag index`'s JSON Lines records: `text` (or `body`), `id`, "
        "`title`, `published` (or `date`), `url`, `source`; each is checked on its own.",
    )


class FeedbackIn(RequestBody):
    turn_id: str = Field(description="The `rag.turn_id` of the answer being rated.")
    rating: str = Field(description=f"One of: {', '.join(RATINGS)}.")
    comment: str = Field("", max_length=10_000)


class FollowIn(RequestBody):
    question: str = Field(min_length=1, max_length=10_000, description="The question to ask again after every sync.")
    webhook: str | None = Field(None, max_length=2_000, description="POST each change of its answer here as JSON.")


class TimelineRequest(RequestBody):
    topic: str = Field(min_length=1, max_length=10_000, description="A story, in a few words or as a question.")
    as_of: dt.date | None = Field(None, description="The date it is asked; default today.")
    since: dt.date | None = Field(None, description="Only articles published on or after this date.")
    until: dt.date | None = Field(None, description="Only articles published on or before this date.")
    stream: bool = Field(
        False,
        description="Send the timeline as it is built, one JSON object a line (application/x-ndjson): the "
        "events of the articles read so far, then of more; the last line has `complete` true.",
    )


class RenameIn(RequestBody):
    title: str = Field(min_length=1, max_length=500)
