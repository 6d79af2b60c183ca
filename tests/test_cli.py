"""The `rag` command as a user runs it: a real subprocess of the installed entry point, hermetic data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SEED_FILE, SEEDS

RAG = str(Path(sys.executable).with_name("rag"))
QUESTION = "Who is the Secretary General of the CSTO?"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAG, *args], capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}, cwd=cwd
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_DATA_HOME": str(tmp_path / "data"), "RAG_PROGRESS": "false"}


class TestAsk:
    def test_extractive_names_zas_and_cites_the_seed(self, env: dict[str, str], tmp_path: Path) -> None:
        result = run("ask", QUESTION, "--backend", "extractive", env=env)
        assert result.returncode == 0, result.stderr
        assert "Stanislav Zas" in result.stdout
        assert "Sources:" in result.stdout and SEED_FILE.name in result.stdout
        assert "2020-10-08" in result.stdout
        assert "indexing the seed articles" in result.stderr
        assert (tmp_path / "data" / "rag" / "index" / "manifest.json").is_file()

    def test_a_withheld_draft_says_not_sure_and_shows_its_source(self, env: dict[str, str]) -> None:
        result = run("ask", QUESTION, "--backend", "extractive", env={**env, "RAG_MIN_CONFIDENCE": "0.99"})
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Not sure (unverified): Stanislav Zas")
        assert "Confidence: not sure" in result.stdout
        assert "Sources:" in result.stdout and "*[1] " in result.stdout and SEED_FILE.name in result.stdout

    def test_a_question_over_the_length_limit_is_one_clear_line(self, env: dict[str, str]) -> None:
        result = run("ask", "Who? " * 1000, "--backend", "extractive", env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "over the 2,000 allowed" in result.stderr and "RAG_MAX_QUESTION_CHARS" in result.stderr

    def test_json_output(self, env: dict[str, str]) -> None:
        result = run("ask", QUESTION, "--backend", "extractive", "--json", "-k", "3", env=env)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert {"text", "citations", "passages", "refused"} <= set(data)
        assert data["refused"] is False and "Stanislav Zas" in data["text"]
        assert len(data["passages"]) <= 3
        for citation in data["citations"]:
            passage = data["passages"][citation["number"] - 1]
            assert citation["chunk_id"] == passage["chunk_id"]
            assert citation["quote"] in passage["text"]
            assert citation["doc_id"] == SEED_FILE.name

    def test_as_of_before_the_article_refuses_and_says_what_was_searched(self, env: dict[str, str]) -> None:
        before = run("ask", QUESTION, "--backend", "extractive", "--as-of", "2020-10-01", "--json", env=env)
        assert before.returncode == 0, before.stderr
        data = json.loads(before.stdout)
        assert data["refused"] is True and (data["as_of"], data["until"]) == ("2020-10-01", "2020-10-01")
        after = run("ask", f"{QUESTION[:-1]} last week?", "--backend", "extractive", "--as-of", "2020-10-12", env=env)
        assert after.returncode == 0, after.stderr
        assert "Stanislav Zas" in after.stdout
        assert (
            'Searched articles published up to 2020-10-12; as of 2020-10-12; "last week" read as 2020-10-05 to '
            "2020-10-11 (preferred)." in after.stdout
        )

    def test_since_after_the_article_refuses(self, env: dict[str, str]) -> None:
        result = run("ask", QUESTION, "--backend", "extractive", "--since", "2021-01-01", "--json", env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["refused"] is True

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["ask", "  "], "the question is empty"),
            (["ask", QUESTION, "--since", "2021-13-01"], "is not a date"),
            (["ask", QUESTION, "--since", "2021-02-01", "--until", "2021-01-01"], "date range is empty"),
        ],
    )
    def test_bad_input_is_one_clear_line(self, env: dict[str, str], args: list[str], message: str) -> None:
        result = run(*args, "--backend", "extractive", env=env)
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr

    def test_invalid_setting(self, env: dict[str, str]) -> None:
        result = run("ask", QUESTION, env={**env, "RAG_TOP_K": "zero"})
        assert result.returncode == 2 and "invalid settings" in result.stderr and "top_k" in result.stderr


class TestIndexInfoDelete:
    def test_index_info_delete_cycle(self, env: dict[str, str], tmp_path: Path) -> None:
        index_dir = tmp_path / "idx"
        built = run("--index-dir", str(index_dir), "index", str(SEEDS), env=env)
        assert built.returncode == 0, built.stderr
        assert "1 added" in built.stdout
        again = run("--index-dir", str(index_dir), "index", str(SEEDS), env=env)
        assert "1 unchanged" in again.stdout and "0 chunks embedded" in again.stdout
        info = run("--index-dir", str(index_dir), "info", "--docs", env=env)
        assert info.returncode == 0
        assert (
            "documents: 1" in info.stdout and "embedding_model: sentence-transformers/all-MiniLM-L6-v2" in info.stdout
        )
        assert f"{SEED_FILE.name}\t2020-10-08" in info.stdout
        deleted = run("--index-dir", str(index_dir), "delete", SEED_FILE.name, env=env)
        assert deleted.returncode == 0, deleted.stderr
        assert "documents: 0" in run("--index-dir", str(index_dir), "info", env=env).stdout

    def test_info_without_index(self, env: dict[str, str], tmp_path: Path) -> None:
        result = run("--index-dir", str(tmp_path / "none"), "info", env=env)
        assert result.returncode == 2 and "no index at" in result.stderr and "rag index" in result.stderr
