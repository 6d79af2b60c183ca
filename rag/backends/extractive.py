"""The `extractive` backend: no LLM. The reader answers with the best span of the kind the question asks
for and quotes the sentence it comes from (`rag.answering.reader`). Deterministic, instant, and a floor every LLM
must beat."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from rag.errors import ConfigError
from rag.types import Backend, Capabilities, Completion, GenerationRequest, Generator

if TYPE_CHECKING:
    from rag.config import Settings


class Extractive:
    name = "extractive"
    model = "extractive"
    capabilities = Capabilities(llm=False)

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        raise ConfigError(
            "the extractive backend generates no text from prompts",
            hint="use a local or openai backend for this (e.g. as the citation judge)",
        )

    def complete(self, request: GenerationRequest) -> Completion:
        return Completion("".join(self.stream(request)))


def _build(settings: Settings, model: str | None) -> Generator:
    return Extractive()


BACKEND = Backend("extractive", "quotes passage sentences, no LLM", Extractive.capabilities, _build)
