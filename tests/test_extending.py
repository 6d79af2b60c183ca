"""The README's "Extending rag" examples, run exactly as printed: each is a new file plus one
registration, and each must then work through the real pipeline (real model, real index)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import rag.backends
import rag.cli
import rag.evaluation.scoring
import rag.ingest.loaders
import rag.retrieval
from rag import RAG, Settings
from rag.errors import ConfigError
from rag.store.embedding import Embedder
from tests.conftest import cli_env

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_SET = ROOT / "evals" / "seed"
RAG_BIN = str(Path(sys.executable).with_name("rag"))


def _examples() -> dict[str, str]:
    """The section's python blocks by the file name their first line gives (`# my_backend.py`)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Extending rag", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return {block.splitlines()[0].removeprefix("# ").strip(): block for block in blocks}


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Writes a README example to its file and imports it as a module, as a user would."""
    monkeypatch.syspath_prepend(str(tmp_path))
    examples = _examples()
    loaded: list[str] = []

    def load(file_name: str) -> ModuleType:
        (tmp_path / file_name).write_text(examples[file_name], encoding="utf-8")
        name = file_name.removesuffix(".py")
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


def test_the_section_has_one_example_of_each_kind() -> None:
    assert sorted(_examples()) == ["my_backend.py", "my_csv.py", "my_metric.py", "my_stage.py"]


def test_a_backend_is_one_file_and_one_registration(example, tmp_path: Path, embedder: Embedder) -> None:  # type: ignore[no-untyped-def]
    module = example("my_backend.py")
    with pytest.raises(ValueError, match="first-sentence"):
        Settings(backend="first-sentence")
    rag.backends.register(module.BACKEND)
    try:
        pipeline = RAG(
            Settings(index_dir=tmp_path / "index", progress=False, backend="first-sentence"), embedder=embedder
        )
        pipeline.index([SEEDS])
        answer = pipeline.answer("Who is the Secretary General of the CSTO?")
        first = answer.passages[0].text.split(". ")[0]
        assert answer.text.startswith(first) and [c.number for c in answer.citations] == [1]
        pipeline.settings = pipeline.settings.model_copy(update={"first_sentence_words": 3})  # its own setting
        pipeline.generators.clear()
        short = pipeline.answer("Who is the Secretary General of the CSTO?")
        assert short.text.startswith(" ".join(first.split()[:3]) + " [1]")
    finally:
        rag.backends.BACKENDS.unregister(module.BACKEND)


def test_a_backend_from_another_package_is_found_through_its_entry_point(tmp_path: Path) -> None:
    """The README's backend, packaged apart with an entry point and installed with pip: `rag` finds it
    with no edit of its own, as an `llm` plugin is found."""
    package = tmp_path / "rag-first-sentence"
    (package / "rag_first_sentence").mkdir(parents=True)
    (package / "rag_first_sentence" / "__init__.py").write_text(_examples()["my_backend.py"], encoding="utf-8")
    (package / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "rag-first-sentence"\nversion = "0.1"\n\n'
        '[project.entry-points."rag.backends"]\nfirst-sentence = "rag_first_sentence:BACKEND"\n',
        encoding="utf-8",
    )
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, "--target", str(site), str(package)], check=True, capture_output=True)
    env = {**cli_env(tmp_path), "PYTHONPATH": str(site)}
    asked = subprocess.run(
        [RAG_BIN, "ask", "--backend", "first-sentence", "Who is the Secretary General of the CSTO?"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.startswith("The Collective Security Treaty Organization")  # the seed's first sentence
    config = tmp_path / "first-sentence.toml"
    config.write_text("[first-sentence]\nfirst_sentence_words = 4\n", encoding="utf-8")
    shorter = subprocess.run(
        [RAG_BIN, "ask", "--backend", "first-sentence", "Who is the Secretary General of the CSTO?"],
        capture_output=True, text=True, env={**env, "RAG_CONFIG": str(config)}, timeout=600,
    )  # fmt: skip
    assert shorter.stdout.startswith("The Collective Security Treaty [1]"), shorter.stderr  # its own setting
    listed = subprocess.run([RAG_BIN, "settings"], capture_output=True, text=True, env=env, timeout=600)
    assert "[first-sentence]\n  first_sentence_words = 0" in listed.stdout
    unknown = subprocess.run([RAG_BIN, "ask", "--backend", "first-sentence", "Who?"], capture_output=True,
                             text=True, env=cli_env(tmp_path), timeout=600)  # fmt: skip
    assert unknown.returncode == 2 and "first-sentence" in unknown.stderr  # without the package: not there


def test_a_second_extension_under_a_taken_name_is_refused() -> None:
    """A loader used to replace another on the same suffix without a word."""
    taken = rag.ingest.loaders.FORMATS[".txt"]
    imitation = dataclasses.replace(taken, description="another reader of .txt")
    with pytest.raises(ConfigError, match=r"two document formats are registered as '\.txt'"):
        rag.ingest.loaders.register(imitation)
    assert rag.ingest.loaders.FORMATS[".txt"] is taken
    with pytest.raises(ConfigError, match="two backends are registered as 'local'"):
        rag.backends.register(dataclasses.replace(rag.backends.BACKENDS["local"]))


def test_a_format_is_one_file_and_one_registration(example, tmp_path: Path, embedder: Embedder) -> None:  # type: ignore[no-untyped-def]
    module = example("my_csv.py")
    articles = tmp_path / "articles.csv"
    articles.write_text(
        "title,date,text\n"
        'Harbour bridge opens,2024-05-02,"Mayor Zorblat Quennick opened the harbour bridge on Thursday."\n'
        'Council votes,,"The council voted to rename the square."\n',
        encoding="utf-8",
    )
    pipeline = RAG(Settings(index_dir=tmp_path / "index", progress=False, backend="extractive"), embedder=embedder)
    refused = pipeline.index([articles])  # not a format yet
    assert [e.problem for e in refused.errors] == ["unsupported file type .csv"]
    rag.ingest.loaders.register(module.FORMAT)
    try:
        assert pipeline.index([articles]).report.added == ["articles.csv#1", "articles.csv#2"]
        dates = {d.id: d.published for d in pipeline.documents()}
        assert str(dates["articles.csv#1"]) == "2024-05-02" and dates["articles.csv#2"] is None
        assert "Zorblat Quennick" in pipeline.answer("Who opened the harbour bridge?").text
    finally:
        rag.ingest.loaders.FORMATS.unregister(module.FORMAT)


def test_a_retrieval_stage_is_one_file_and_one_registration(example, tmp_path: Path, embedder: Embedder) -> None:  # type: ignore[no-untyped-def]
    module = example("my_stage.py")
    articles = tmp_path / "articles"
    articles.mkdir()
    (articles / "wire.txt").write_text("The port strike ended on Monday, Reuters reported.\n", encoding="utf-8")
    (articles / "local.txt").write_text("The port strike ended on Monday, the mayor said.\n", encoding="utf-8")
    settings = Settings(index_dir=tmp_path / "index", progress=False, backend="extractive", recency_weight=0.0)
    pipeline = RAG(settings, embedder=embedder)
    pipeline.index([articles])
    before = {hit.doc_id: hit.score for hit in pipeline.search("When did the port strike end?").articles}
    rag.retrieval.register(module.WirePrior, before="order")
    try:
        names = [stage.name for stage in rag.retrieval.stages_for(settings.retrieval)]
        assert names.index("wire prior") == names.index("order") - 1
        after = {hit.doc_id: hit.score for hit in pipeline.search("When did the port strike end?").articles}
        assert after["wire.txt"] == pytest.approx(before["wire.txt"] + 0.2)
        assert after["local.txt"] == before["local.txt"]
    finally:
        rag.retrieval.unregister(module.WirePrior)


def test_a_metric_is_one_file_and_one_registration(example, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    module = example("my_metric.py")
    rag.evaluation.scoring.register(module.METRIC)
    try:
        out = tmp_path / "run"
        args = ["--index-dir", str(tmp_path / "index"), "-q", "eval", str(SEED_SET), "--limit", "3"]
        assert rag.cli.run([*args, "--backend", "extractive", "--out", str(out), "--fail-under", "answer_words=1"]) == 0
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        assert summary["metrics"]["answer_words"] > 1
        assert "answer_words" in (out / "report.md").read_text(encoding="utf-8")
    finally:
        rag.evaluation.scoring.METRICS.unregister(module.METRIC)
