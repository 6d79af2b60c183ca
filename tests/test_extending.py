"""The README's "Extending rag" examples, run exactly as printed: each is a new file plus one
registration, and each must then work through the real pipeline (real model, real index)."""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import rag.backends
import rag.cli
import rag.evaluation.scoring
import rag.loaders
import rag.retrieval
from rag import RAG, Settings
from rag.embedding import Embedder

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_SET = ROOT / "evals" / "seed"


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
    finally:
        rag.backends.BACKENDS.pop("first-sentence")


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
    rag.loaders.register(module.FORMAT)
    try:
        assert pipeline.index([articles]).report.added == ["articles.csv#1", "articles.csv#2"]
        dates = {d.id: d.published for d in pipeline.documents()}
        assert str(dates["articles.csv#1"]) == "2024-05-02" and dates["articles.csv#2"] is None
        assert "Zorblat Quennick" in pipeline.answer("Who opened the harbour bridge?").text
    finally:
        rag.loaders.FORMATS.pop(".csv")


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
        names = [stage.name for stage in rag.retrieval.stages_for(settings)]
        assert names.index("wire prior") == names.index("order") - 1
        after = {hit.doc_id: hit.score for hit in pipeline.search("When did the port strike end?").articles}
        assert after["wire.txt"] == pytest.approx(before["wire.txt"] + 0.2)
        assert after["local.txt"] == before["local.txt"]
    finally:
        rag.retrieval.PIPELINE.remove(module.WirePrior)


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
        rag.evaluation.scoring.METRICS.pop("answer_words")
