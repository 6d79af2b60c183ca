"""Eval sets: a directory with `set.toml` (name, corpus, defaults) and `questions.jsonl`.

A question set is data someone will trust numbers from, so a malformed line is an error that names its
line, never a silently skipped question.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rag.errors import RagError

SET_FILE = "set.toml"


class EvalSetError(RagError):
    """The eval set's files cannot be read as a set."""


class EvalQuestion(BaseModel):
    """One question. Unknown keys (a converter's `type`, `source`, ...) are kept for per-type breakdowns."""

    model_config = ConfigDict(extra="allow")

    id: str
    question: str = Field(min_length=1)
    question_date: dt.date | None = None
    answers: list[str] = Field(default_factory=list)
    choices: list[str] | None = None
    answer_idx: int | None = None
    gold_doc_ids: list[str] = Field(default_factory=list)
    gold_evidence: list[str] = Field(default_factory=list)
    answerable: bool = True

    @model_validator(mode="after")
    def _choice_in_range(self) -> EvalQuestion:
        if self.answer_idx is not None and not (self.choices and 0 <= self.answer_idx < len(self.choices)):
            raise ValueError("answer_idx must index into choices")
        return self

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SetDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(5, ge=1, le=100)
    use_question_date: bool = False


class SetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    questions: str = "questions.jsonl"
    corpus: list[str]
    """Files and directories indexed for the set; empty for questions about the configured index."""
    complete: bool = True
    """The corpus holds the answer to every answerable question. False for a set gathered from a search
    engine's results (RealTime QA): refusing a question whose answer the passages lack is then honest, not
    a wrong refusal."""
    defaults: SetDefaults = Field(default_factory=SetDefaults)


@dataclass(frozen=True)
class EvalSet:
    path: Path
    config: SetConfig
    questions: list[EvalQuestion]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def corpus(self) -> list[Path]:
        return [(self.path / entry).resolve() for entry in self.config.corpus]


def _read_config(path: Path) -> SetConfig:
    try:
        return SetConfig.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise EvalSetError(f"{path}: cannot read the set file: {exc}", hint="fix the TOML syntax") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise EvalSetError(f"{path}: {problems}", hint="see README, section Evaluation, for the keys") from exc


def read_questions(path: Path) -> list[EvalQuestion]:
    """All questions, or one error listing every bad line (first 20) so a broken set is fixed in one go."""
    questions: list[EvalQuestion] = []
    problems: list[str] = []
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalSetError(f"{path}: cannot read questions: {exc}", hint="a UTF-8 JSONL file is expected") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            question = EvalQuestion.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: malformed JSON ({exc.msg})")
            continue
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors())
            problems.append(f"line {number}: {detail}")
            continue
        if question.id in seen:
            problems.append(f"line {number}: duplicate id {question.id!r}")
        seen.add(question.id)
        questions.append(question)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise EvalSetError(f"{path}: {len(problems)} bad line(s):\n  {shown}{more}", hint="fix or remove them")
    if not questions:
        raise EvalSetError(f"{path}: no questions", hint="one JSON object per line")
    return questions


def load_set(path: Path | str) -> EvalSet:
    """`path` is the set directory or its `set.toml`, or a bare questions file (`rag feedback export`
    writes one): questions users asked of their own index, which is what they are asked of again."""
    path = Path(path)
    if path.suffix == ".jsonl" and path.is_file():
        config = SetConfig(name=path.stem, questions=path.name, corpus=[], defaults=SetDefaults(use_question_date=True))
        return EvalSet(path.parent, config, read_questions(path))
    set_file = path / SET_FILE if path.is_dir() else path
    if not set_file.is_file():
        raise EvalSetError(
            f"no eval set at {path} (expected {SET_FILE})",
            hint="give a directory such as evals/seed, or convert one with `rag eval convert NAME`",
        )
    config = _read_config(set_file)
    directory = set_file.parent
    questions = read_questions(directory / config.questions)
    missing = [entry for entry in config.corpus if not (directory / entry).exists()]
    if missing:
        raise EvalSetError(f"{set_file}: corpus path(s) not found: {', '.join(missing)}", hint="fix `corpus`")
    return EvalSet(directory, config, questions)
