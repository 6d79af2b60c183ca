"""A RealTime QA subset spread over many months, for the archive and Ray tests: the first articles of the
corpus in ../shared (see its README), converted as the evaluation harness converts them, with the
development questions. Tests that use it skip without ../shared, except in CI, where they must run."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from rag import RAG
from rag.evaluation.converters import convert_realtimeqa
from tests.news_pages import CORPUS


@dataclass
class Subset:
    corpus: Path
    """The subset's articles, one JSON record a line (`rag index` reads it)."""
    questions: list[tuple[str, dt.date]]
    """Every development question with the date it was asked."""


needs_corpus = pytest.mark.skipif(
    not CORPUS.is_file() and not os.environ.get("CI"), reason="RealTime QA is not in ../shared/evaldata"
)


def subset(directory: Path, articles: int) -> Subset:
    convert_realtimeqa(CORPUS.parent, directory / "converted")
    lines = (directory / "converted" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:articles]
    corpus = directory / "articles.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    questions = [
        (row["question"], dt.date.fromisoformat(row["question_date"]))
        for row in map(json.loads, (directory / "converted" / "questions.jsonl").read_text().splitlines())
    ]
    return Subset(corpus, questions)


def top_articles(rag: RAG, questions: list[tuple[str, dt.date]]) -> list[list[str]]:
    """Each question's ten articles, searched as of its date."""
    return [[hit.doc_id for hit in rag.search(q, as_of=when).articles] for q, when in questions]
