"""The `openai` backend: any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, llama.cpp's server,
Ollama, LM Studio, ...), streamed, with a timeout and retries; every failure is one clear `LLMError`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, cast

from pydantic import Field

from rag.errors import ConfigError, LLMError
from rag.section import EMPTY_IS_NONE, Section
from rag.types import Backend, Capabilities, Completion, GenerationRequest, Generator

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

    from rag.config import Settings


class OpenAIChat:
    name = "openai"
    capabilities = Capabilities(llm=True, rewrites_follow_ups=True)

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
    ) -> None:
        import openai

        if not api_key and not base_url:
            raise ConfigError(
                "the openai backend needs an API key",
                hint="set OPENAI_API_KEY, or OPENAI_BASE_URL for a local OpenAI-compatible server",
            )
        self.model = model
        self.base_url = base_url
        self._client = openai.OpenAI(
            api_key=api_key or "not-needed", base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Stream the completion's text deltas. Every failure, including ones that only surface while the
        stream is being read (an SSE error event, a malformed event), becomes an `LLMError`: callers and
        the CLI handle nothing else."""
        import openai

        where = self.base_url or "api.openai.com"
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                # cast, not `type: ignore`: with a typed argument mypy picks the streaming overload
                messages=cast("list[ChatCompletionMessageParam]", request.messages),
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                stop=list(request.stop) if request.stop else openai.omit,
                stream=True,
            )
            events = 0
            for chunk in response:
                events += 1
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
            if not events:
                # A 200 without one SSE event is not an empty answer (that would silently become a
                # refusal): the URL serves something else, e.g. a web page, or ignores `stream`.
                raise LLMError(
                    f"the endpoint {where} returned no completion stream",
                    hint="check that OPENAI_BASE_URL is the API root (usually ending in /v1) and the "
                    "server supports streaming chat completions",
                )
        except openai.APITimeoutError as exc:
            raise LLMError(
                f"the endpoint {where} did not answer in time",
                hint="raise RAG_OPENAI_TIMEOUT or check the server",
            ) from exc
        except openai.APIConnectionError as exc:
            raise LLMError(
                f"cannot reach the endpoint {where}: {exc.__cause__ or exc}",
                hint="check OPENAI_BASE_URL and that the server is running",
            ) from exc
        except openai.RateLimitError as exc:
            raise LLMError(
                f"the endpoint {where} is rate limiting (HTTP 429) after retries",
                hint="wait and retry, or raise RAG_OPENAI_MAX_RETRIES",
            ) from exc
        except openai.AuthenticationError as exc:
            raise LLMError(
                f"the endpoint {where} rejected the API key (HTTP 401)", hint="check OPENAI_API_KEY"
            ) from exc
        except openai.APIStatusError as exc:
            raise LLMError(
                f"the endpoint {where} failed with HTTP {exc.status_code}: {exc.message}",
                hint=f"check that model {self.model!r} exists there (RAG_OPENAI_MODEL)",
            ) from exc
        except openai.APIError as exc:
            # After the 200, OpenAI reports failures (overload, content filter) as an SSE error event.
            raise LLMError(
                f"the endpoint {where} failed while answering: {exc.message}",
                hint="retry; if it persists, check the server's logs",
            ) from exc
        except ValueError as exc:
            # An event whose data is not JSON (or not a chunk): a proxy or server that is not
            # OpenAI-compatible. The client lets json/pydantic errors through as they are.
            raise LLMError(
                f"the endpoint {where} sent a malformed stream event: {exc}",
                hint="check that OPENAI_BASE_URL points at an OpenAI-compatible server",
            ) from exc

    def complete(self, request: GenerationRequest) -> Completion:
        """The whole streamed text; log-probabilities are not asked for, as not every OpenAI-compatible
        server reports them."""
        return Completion("".join(self.stream(request)))


class OpenAISettings(Section):
    """The `openai` backend's own settings."""

    openai_model: str = Field("gpt-4o-mini", description="Model name sent to the OpenAI-compatible endpoint.")
    openai_base_url: Annotated[str | None, EMPTY_IS_NONE] = Field(
        None,
        json_schema_extra={"env": "OPENAI_BASE_URL"},
        description="Endpoint URL (e.g. http://127.0.0.1:8000/v1); also read from `OPENAI_BASE_URL`.",
    )
    openai_api_key: Annotated[str | None, EMPTY_IS_NONE] = Field(
        None,
        json_schema_extra={"env": "OPENAI_API_KEY"},
        description="API key; also read from `OPENAI_API_KEY`. Local servers usually accept any value.",
    )
    openai_timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds before a request to the endpoint is abandoned."
    )
    openai_max_retries: int = Field(
        2, ge=0, le=20, description="Retries on connection errors, 429 and 5xx, with exponential back-off."
    )


def _build(settings: Settings, model: str | None) -> Generator:
    own = settings.section(OpenAISettings)
    return OpenAIChat(
        model or own.openai_model,
        base_url=own.openai_base_url,
        api_key=own.openai_api_key,
        timeout=own.openai_timeout,
        max_retries=own.openai_max_retries,
    )


BACKEND = Backend(
    "openai",
    "any OpenAI-compatible endpoint",
    OpenAIChat.capabilities,
    _build,
    model_setting="openai_model",
    settings=OpenAISettings,
)
