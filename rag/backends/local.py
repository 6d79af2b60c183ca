"""The `local` backend: a GGUF model run in-process by llama.cpp through xllamacpp, whose prebuilt wheels
need no compiler. Which models, and how they get onto disk: `rag.local_models`."""

from __future__ import annotations

import collections.abc
import contextlib
import os
import queue
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AliasChoices, Field, field_validator

from rag import deadline
from rag.errors import LLMError
from rag.local_models import CATALOG, DEFAULT_LOCAL_MODEL, install_command, installed_parts, resolve
from rag.paths import default_cache_dir
from rag.section import EMPTY_IS_NONE, Section
from rag.types import Backend, Capabilities, Completion, GenerationRequest, Generator, TokenLogprob

if TYPE_CHECKING:
    from rag.config import Settings

# llama.cpp's OpenMP threads spin between tokens by default, burning the cores that the rest of the pipeline
# (and any other process) needs; on a busy machine that costs more than the spinning saves. libgomp reads
# the variable once, when xllamacpp loads it, so it is set at import; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


_SLOTS_PER_ANSWER = 2


@dataclass(frozen=True)
class _Runtime:
    server: Any
    turns: threading.Semaphore
    """Generations running at once: `parallel`, each decoded in the same batch as the others."""


@lru_cache(maxsize=2)
def _load_server(path: str, n_ctx: int, n_threads: int, parallel: int) -> _Runtime:
    """One llama.cpp server per model and settings per process, shared by every `LocalLLM`: a second copy
    would double memory for nothing."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = path
    # Two slots per generation running at once, each of n_ctx and keeping its last prompt's KV cache
    # (below): the reader's draft and its check of the draft alternate, and in one slot each would evict
    # the other's cached prefix, costing a full prompt evaluation per call. A request takes the slot whose
    # cache holds at least half its prompt, else the least recently used one: the chat template's few
    # opening tokens must not draw a check into the drafts' slot (llama.cpp's default threshold, 10 %,
    # lets a short prompt be drawn).
    slots = _SLOTS_PER_ANSWER * parallel
    params.n_parallel = slots
    params.slot_prompt_similarity = 0.5
    params.n_ctx = n_ctx * slots
    params.warmup = False
    params.cpuparams.n_threads = n_threads
    params.cpuparams_batch.n_threads = n_threads
    # llama.cpp logs to stderr, errors included; the errors raised here say what went wrong instead.
    params.verbosity = 0
    # The slot keeps the last prompt's KV cache, so a repeated prefix (the system prompt) is not evaluated
    # again (cache_prompt); the extra host-RAM prompt cache, 8 GiB by default, would only hold other
    # conversations. fit_params sizes GPU offload, and there is no GPU.
    params.cache_prompt = True
    params.cache_ram_mib = 0
    params.fit_params = False
    # The library also serves its HTTP API on a random 127.0.0.1 port. Nothing here uses it, so it is shut
    # to other local users with a key nobody knows, without the web UI or slot endpoints.
    params.api_keys = [secrets.token_urlsafe(32)]
    params.ui = False
    params.endpoint_slots = False
    return _Runtime(xllamacpp.Server(params), threading.Semaphore(parallel))


_DONE = object()


class LocalLLM:
    """A GGUF model run in-process by llama.cpp through xllamacpp, whose prebuilt wheels need no compiler.

    Decoding is plain (no repetition penalty), so the log-probabilities `complete()` reports are the
    model's own; where an answer should end is the caller's `request.stop`.
    """

    name = "local"
    capabilities = Capabilities(llm=True, logprobs=True, focused_prompt=True, grammar=True)

    def __init__(
        self,
        model: str | Path = DEFAULT_LOCAL_MODEL,
        *,
        cache_dir: Path | None = None,
        context_window: int = 4096,
        threads: int | None = None,
        parallel: int = 1,
        progress: bool = False,
    ) -> None:
        """`model` is a catalog name (see `rag.local_models`), assembled into `cache_dir` on first use, or
        the path of a GGUF file."""
        self.path = resolve(str(model), cache_dir or default_cache_dir(), progress=progress)
        self.model = str(model) if str(model) in CATALOG else self.path.name
        self.context_window = context_window
        self.threads = threads or os.cpu_count() or 2
        self.parallel = parallel
        with open(self.path, "rb") as file:
            if file.read(4) != b"GGUF":
                raise LLMError(
                    f"{self.path} is not a GGUF model file (it lacks the GGUF signature)", hint=self._fix_hint()
                )

    def _fix_hint(self) -> str:
        if self.model in CATALOG:
            return f"reinstall it with `{install_command(CATALOG[self.model])} --force`"
        return "check the file (a partial download?), or set RAG_LOCAL_MODEL to a model from `rag models`"

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        for chunk in self._chunks(request, logprobs=False):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                yield piece

    def complete(self, request: GenerationRequest) -> Completion:
        text: list[str] = []
        tokens: list[TokenLogprob] = []
        for chunk in self._chunks(request, logprobs=True):
            choice = chunk["choices"][0]
            text.append(choice["delta"].get("content") or "")
            for item in (choice.get("logprobs") or {}).get("content") or ():
                top = tuple((alt["token"], alt["logprob"]) for alt in item.get("top_logprobs", ()))
                tokens.append(TokenLogprob(item["token"], item["logprob"], top[: request.top_logprobs]))
        return Completion("".join(text), tuple(tokens))

    def _chunks(self, request: GenerationRequest, *, logprobs: bool) -> Iterator[dict[str, Any]]:
        """The server's streamed chat-completion chunks that carry a choice; errors become `LLMError`."""
        body: dict[str, Any] = {
            "messages": request.messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
            "cache_prompt": True,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if request.grammar:
            body["grammar"] = request.grammar
        if logprobs:
            # llama.cpp reports a token's own log-probability only alongside at least one alternative.
            body["logprobs"] = True
            body["top_logprobs"] = max(1, request.top_logprobs)
        # The stream is closed (its worker joined) before the lock is released, also when the caller stops early.
        runtime = self._runtime()
        with runtime.turns, contextlib.closing(_stream_chunks(runtime.server, body)) as chunks:
            for chunk in chunks:
                self._raise_for_error(chunk)
                if chunk.get("choices"):
                    yield chunk

    def _runtime(self) -> _Runtime:
        try:
            return _load_server(str(self.path), self.context_window, self.threads, self.parallel)
        except RuntimeError as exc:
            raise LLMError(
                f"llama.cpp cannot load the GGUF model {self.path}: it is damaged or truncated, or its "
                "architecture is one this llama.cpp does not know",
                hint=self._fix_hint(),
            ) from exc

    @staticmethod
    def _raise_for_error(chunk: dict[str, Any]) -> None:
        """llama.cpp reports a failure as a chunk `{"error": {...}}`; xllamacpp's own failures (a chunk it
        cannot parse) come as a bare `{"code", "message"}`."""
        error = chunk.get("error")
        if not isinstance(error, dict):
            error = chunk if "message" in chunk and "choices" not in chunk else None
        if error is None:
            return
        message = str(error.get("message") or error)
        if error.get("type") == "exceed_context_size_error":
            raise LLMError(
                f"the prompt is too long for the local model: {message}",
                hint="lower RAG_CONTEXT_TOKENS or RAG_TOP_K, or raise RAG_LOCAL_CONTEXT_WINDOW",
            )
        raise LLMError(
            f"the local model failed: {message}", hint="retry; if it persists, try another model from `rag models`"
        )


def _stream_chunks(server: Any, body: dict[str, Any]) -> collections.abc.Generator[dict[str, Any], None, None]:
    """xllamacpp streams by calling back once per chunk from inside a blocking call, so a worker thread makes
    the call and hands the chunks over as they come. Closing the generator early stops generation at the
    next token (a callback returning True ends it), and so does the caller's deadline (`rag.deadline`)
    passing; evaluating the prompt, before the first token, cannot be interrupted."""
    chunks: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    def on_chunk(chunk: dict[str, Any]) -> bool:
        chunks.put(chunk)
        return stop.is_set()

    def work() -> None:
        try:
            server.handle_chat_completions(body, on_chunk)
        except Exception as exc:
            chunks.put(exc)
        finally:
            chunks.put(_DONE)

    worker = threading.Thread(target=work, name="rag-local-llm", daemon=True)
    worker.start()
    try:
        while True:
            left = deadline.remaining()
            try:
                item = chunks.get(timeout=None if left is None else max(left, 0.0))
            except queue.Empty:
                item = None
            if item is _DONE:
                break
            deadline.check("the local model's answer")
            if item is None:
                continue
            if isinstance(item, Exception):
                raise LLMError(
                    f"the local model failed: {item}", hint="retry; if it persists, check the model"
                ) from item
            yield item
    finally:
        stop.set()
        worker.join()


class LocalSettings(Section):
    """The `local` backend's own settings."""

    local_model: str = Field(
        DEFAULT_LOCAL_MODEL,
        validation_alias=AliasChoices("local_model", "local_model_path"),
        description="Model of the `local` backend: " + ", ".join(f"`{name}`" for name in CATALOG) + " (installed "
        "from PyPI by `rag models install NAME`, see `rag models`) or the path of a GGUF file. Also read from "
        "RAG_LOCAL_MODEL_PATH.",
    )
    local_context_window: int = Field(4096, ge=512, le=1_048_576, description="llama.cpp context window (n_ctx).")
    local_threads: Annotated[int | None, EMPTY_IS_NONE] = Field(
        None,
        ge=1,
        le=1024,
        json_schema_extra={"shown": "(cores)"},
        description="llama.cpp CPU threads; empty means one per core.",
    )
    local_parallel: int = Field(
        1,
        ge=1,
        le=64,
        description="Answers the local model writes at once, decoded in one batch (llama.cpp's parallel slots); "
        "`rag serve` lets as many questions be answered at a time. Each holds its own context window in memory.",
    )

    @field_validator("local_model", mode="before")
    @classmethod
    def _name_or_path(cls, value: object) -> object:
        if value in ("", None):
            return DEFAULT_LOCAL_MODEL
        return os.fspath(value) if isinstance(value, os.PathLike) else value


def _build(settings: Settings, model: str | None) -> Generator:
    own = settings.section(LocalSettings)
    return LocalLLM(
        model or own.local_model,
        cache_dir=settings.cache_dir,
        context_window=own.local_context_window,
        threads=own.local_threads,
        parallel=own.local_parallel,
        progress=settings.progress,
    )


def _installed(settings: Settings) -> list[str]:
    """The configured model first, then every catalog model whose packages are installed."""
    configured = settings.section(LocalSettings).local_model
    others = [m.name for m in CATALOG.values() if m.name != configured and installed_parts(m) == len(m.parts)]
    return [configured, *others]


BACKEND = Backend(
    "local",
    "an embedded GGUF model run in-process by llama.cpp (offline)",
    LocalLLM.capabilities,
    _build,
    model_setting="local_model",
    model_choices=_installed,
    settings=LocalSettings,
)
