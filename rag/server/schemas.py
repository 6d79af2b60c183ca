"""Request bodies the server accepts, as pydantic models: FastAPI validates them (a wrong type is a 400
naming the field) and lists them in the OpenAPI docs at `/docs`.

The chat-completions body is OpenAI's, with extra fields clients can pass through `extra_body` (`as_of`,
`since`, `until`, `k`, `conversation_id`); fields of OpenAI's that do not apply here are accepted and
ignored, so existing clients work unchanged."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.conversation_store import RATINGS


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


class DateScope(BaseModel):
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


class DocumentsIn(BaseModel):
    documents: list[dict[str, Any]] = Field(
        min_length=1,
        description="Articles with the fields of `rag index`'s JSON Lines records: `text` (or `body`), `id`, "
        "`title`, `published` (or `date`), `url`, `source`; each is checked on its own.",
    )


class FeedbackIn(BaseModel):
    turn_id: str = Field(description="The `rag.turn_id` of the answer being rated.")
    rating: str = Field(description=f"One of: {', '.join(RATINGS)}.")
    comment: str = Field("", max_length=10_000)


class RenameIn(BaseModel):
    title: str = Field(min_length=1, max_length=500)
