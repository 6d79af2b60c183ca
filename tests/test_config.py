"""Settings: defaults, RAG_* environment variables, the TOML file, and the README staying in sync."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field, ValidationError

import rag.backends
from rag import Settings
from rag.backends.local import LocalSettings
from rag.backends.openai_chat import OpenAISettings
from rag.config import RetrievalSettings, sections, settings_table
from rag.errors import ConfigError
from rag.section import Section

README = Path(__file__).resolve().parent.parent / "README.md"
RAG_BIN = str(Path(sys.executable).with_name("rag"))


class TestSettings:
    def test_defaults_are_the_offline_setup(self) -> None:
        s = Settings()
        assert s.backend == "local" and s.index.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"
        assert s.retrieval.top_k == 5 and s.index_dir.name == "index"

    def test_environment_variables(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("RAG_BACKEND", "extractive")
        monkeypatch.setenv("RAG_TOP_K", "7")
        monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "idx"))
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        s = Settings()
        assert (s.backend, s.retrieval.top_k, s.index_dir) == ("extractive", 7, tmp_path / "idx")
        assert s.section(OpenAISettings).openai_base_url == "http://127.0.0.1:9/v1"

    def test_toml_file_with_env_taking_precedence(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        config = tmp_path / "conf.toml"
        config.write_text('backend = "openai"\ntop_k = 3\nopenai_model = "m1"\n')
        monkeypatch.setenv("RAG_CONFIG", str(config))
        monkeypatch.setenv("RAG_TOP_K", "9")
        s = Settings()
        assert (s.backend, s.retrieval.top_k, s.section(OpenAISettings).openai_model) == ("openai", 9, "m1")

    def test_a_toml_file_may_group_settings_in_section_tables(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        config = tmp_path / "conf.toml"
        config.write_text("[retrieval]\ntop_k = 3\ncandidates = 40\n\n[local]\nlocal_threads = 1\n")
        monkeypatch.setenv("RAG_CONFIG", str(config))
        monkeypatch.setenv("RAG_TOP_K", "9")  # the environment still wins over the file, setting by setting
        s = Settings()
        assert (s.retrieval.top_k, s.retrieval.candidates, s.section(LocalSettings).local_threads) == (9, 40, 1)
        config.write_text("[retrieval]\ntop_kk = 3\n")
        with pytest.raises(ValidationError, match="top_kk"):
            Settings()

    def test_flat_names_sections_and_copies_reach_the_same_setting(self) -> None:
        assert Settings(top_k=3).retrieval.top_k == 3
        assert Settings(retrieval=RetrievalSettings(top_k=4)).retrieval.top_k == 4
        assert Settings(retrieval={"top_k": 6}, top_k=2).retrieval.top_k == 6  # the section given whole wins
        copy = Settings(candidates=50).model_copy(update={"top_k": 8, "reranker": ""})
        assert (copy.retrieval.top_k, copy.retrieval.candidates, copy.retrieval.reranker) == (8, 50, None)
        assert copy.retrieval.model_fields_set == {"top_k", "candidates", "reranker"}
        with pytest.raises(ValidationError, match="less than or equal to 100"):
            Settings().model_copy(update={"top_k": 1000})  # a copy is validated, as pydantic's own is not
        with pytest.raises(ValidationError, match="top_kk"):
            Settings().model_copy(update={"top_kk": 1})
        assert Settings.model_validate_json(Settings(top_k=7).model_dump_json()).retrieval.top_k == 7

    def test_rag_toml_in_the_working_directory(self, tmp_path: Path) -> None:
        (tmp_path / "rag.toml").write_text("top_k = 4\n")
        assert Settings().retrieval.top_k == 4

    def test_missing_config_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("RAG_CONFIG", str(tmp_path / "missing.toml"))
        with pytest.raises(ConfigError, match="does not exist"):
            Settings()

    @pytest.mark.parametrize("content", [b"top_k = [\n", b"top_k = 4\ntop_k = 5\n", b"\xff\xfe top_k = 4"])
    def test_a_config_file_that_is_not_toml_is_one_clear_line(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: bytes
    ) -> None:
        config = tmp_path / "rag.toml"
        config.write_bytes(content)
        monkeypatch.setenv("RAG_CONFIG", str(config))
        with pytest.raises(ConfigError, match=f"config file {config} is not valid TOML"):
            Settings()
        done = subprocess.run([RAG_BIN, "info"], capture_output=True, text=True, timeout=120, env=dict(os.environ))
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.startswith(f"error: config file {config} is not valid TOML")

    @pytest.mark.parametrize(("name", "value"), [("RAG_BACKEND", "gpt"), ("RAG_TOP_K", "0"), ("RAG_TOP_K", "x")])
    def test_invalid_values_are_rejected(self, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            Settings()

    def test_unknown_keys_in_the_file_are_rejected(self, tmp_path: Path) -> None:
        (tmp_path / "rag.toml").write_text("top_kk = 4\n")
        with pytest.raises(ValidationError, match="top_kk"):
            Settings()

    def test_every_field_is_described_sectioned_and_the_readme_table_is_generated(self) -> None:
        listed = [name for fields in sections().values() for name, _ in fields]
        assert len(listed) == len(set(listed)) > 70, "a flat name is one setting"
        for section in sections().values():
            for name, field in section:
                assert field.description, name
        for name, field in Settings.model_fields.items():
            assert field.description, name
        assert settings_table() in README.read_text(), "regenerate the README table: rag settings --markdown"

    def test_a_backend_section_may_not_take_a_name_another_section_has(self) -> None:
        class Clashing(Section):
            top_k: int = Field(3, description="the same flat name as the retrieval setting")

        backend = dataclasses.replace(rag.backends.BACKENDS["extractive"], name="clashing", settings=Clashing)
        rag.backends.register(backend)
        try:
            with pytest.raises(ConfigError, match="'top_k' is declared by both the retrieval and the clashing"):
                Settings()
        finally:
            rag.backends.BACKENDS.unregister(backend)
        assert Settings().retrieval.top_k == 5

    def test_a_preset_sets_defaults_but_never_what_the_user_set(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert Settings(preset="fast").backend == "extractive"
        assert Settings(preset="fast", backend="local").backend == "local"
        monkeypatch.setenv("RAG_PRESET", "accurate")
        assert Settings().section(LocalSettings).local_model == "qwen2.5-coder-1.5b"
        monkeypatch.setenv("RAG_LOCAL_MODEL_PATH", "smollm2-135m")  # the setting under another of its names
        assert Settings().section(LocalSettings).local_model == "smollm2-135m"
        with pytest.raises(ConfigError, match="unknown preset 'nope'"):
            Settings(preset="nope")
