"""Reranking: a sentence-transformers CrossEncoder reads question and passage together.

A cross-encoder sees both texts at once, so it judges relevance better than comparing two separately
made embeddings, at the cost of one forward pass per passage; that is why it only reorders the leading
results. No cross-encoder ships inside a PyPI package, so reranking is off unless one is configured.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rag.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder


class Reranker:
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
                    hint="set RAG_RERANKER to an installed CrossEncoder directory, or leave it empty to turn "
                    "reranking off",
                ) from exc
        return self._model

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to the question; higher is better, comparable within one call."""
        if not passages:
            return []
        scores = self.model.predict([(question, text) for text in passages], show_progress_bar=False)
        return [float(x) for x in scores]
