"""Eval sets: the shipped seed set loads as documented, and every way a set can be broken is one
actionable `EvalSetError` rather than a silently shorter set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.evaluation.sets import EvalSetError, load_set, read_questions
from tests.conftest import ROOT, SEEDS

SEED_SET = ROOT / "evals" / "seed"


def _write_set(directory: Path, toml: str, lines: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "corpus").mkdir(exist_ok=True)
    (directory / "set.toml").write_text(toml, encoding="utf-8")
    (directory / "questions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


GOOD_TOML = 'name = "t"\ncorpus = ["corpus"]\n'
GOOD_LINE = json.dumps({"id": "q1", "question": "Who?", "answers": ["Zas"]})


class TestSeedSet:
    def test_loads_all_questions_with_documented_defaults(self) -> None:
        eval_set = load_set(SEED_SET)
        assert eval_set.name == "seed"
        assert len(eval_set.questions) == 55
        assert len({q.id for q in eval_set.questions}) == 55
        assert sum(not q.answerable for q in eval_set.questions) == 12
        assert eval_set.corpus == [SEEDS.resolve()]
        assert eval_set.config.defaults.k == 5
        assert eval_set.config.defaults.use_question_date is True

    def test_set_toml_path_works_like_the_directory(self) -> None:
        assert [q.id for q in load_set(SEED_SET / "set.toml").questions] == [q.id for q in load_set(SEED_SET).questions]

    def test_extra_question_keys_are_kept(self) -> None:
        first = load_set(SEED_SET).questions[0]
        assert first.id == "seed-001"
        assert first.extra["type"] == "who"
        assert first.question_date is not None and first.question_date.isoformat() == "2020-10-10"

    def test_custom_extra_keys_survive(self, tmp_path: Path) -> None:
        line = json.dumps({"id": "x", "question": "Q?", "type": "when", "source": "wire", "hops": 2})
        set_dir = _write_set(tmp_path / "s", GOOD_TOML, [line])
        question = load_set(set_dir).questions[0]
        assert question.extra == {"type": "when", "source": "wire", "hops": 2}


class TestBadQuestions:
    def test_every_bad_line_is_listed_in_one_error(self, tmp_path: Path) -> None:
        lines = [
            GOOD_LINE,  # 1: fine
            "",  # 2: blank lines are skipped but still counted
            '{"id": "q2", "question": "Why?"',  # 3: malformed JSON
            json.dumps({"id": "q3", "answers": ["x"]}),  # 4: no question
            json.dumps({"id": "q4", "question": "Which?", "choices": ["a", "b"], "answer_idx": 2}),  # 5
            json.dumps({"id": "q1", "question": "Again?"}),  # 6: duplicate id
            json.dumps({"id": "q5", "question": "Fine?"}),  # 7: fine
        ]
        set_dir = _write_set(tmp_path / "s", GOOD_TOML, lines)
        with pytest.raises(EvalSetError) as caught:
            load_set(set_dir)
        message = caught.value.message
        assert "4 bad line(s)" in message
        assert "line 3: malformed JSON" in message
        assert "line 4: question" in message
        assert "line 5:" in message and "answer_idx" in message
        assert "line 6: duplicate id 'q1'" in message
        assert "line 1:" not in message and "line 2:" not in message and "line 7:" not in message
        assert caught.value.hint

    def test_answer_idx_without_choices_is_rejected(self, tmp_path: Path) -> None:
        path = tmp_path / "q.jsonl"
        path.write_text(json.dumps({"id": "a", "question": "Q?", "answer_idx": 0}) + "\n", encoding="utf-8")
        with pytest.raises(EvalSetError, match=r"line 1: .*answer_idx"):
            read_questions(path)

    def test_empty_question_file_is_an_error(self, tmp_path: Path) -> None:
        path = tmp_path / "q.jsonl"
        path.write_text("\n\n", encoding="utf-8")
        with pytest.raises(EvalSetError, match="no questions"):
            read_questions(path)

    def test_more_than_twenty_bad_lines_are_summarised(self, tmp_path: Path) -> None:
        path = tmp_path / "q.jsonl"
        path.write_text("not json\n" * 25, encoding="utf-8")
        with pytest.raises(EvalSetError) as caught:
            read_questions(path)
        assert "25 bad line(s)" in caught.value.message
        assert "line 20:" in caught.value.message and "line 21:" not in caught.value.message
        assert "and 5 more" in caught.value.message


class TestBadSetFile:
    def test_unknown_key_is_named_with_a_hint(self, tmp_path: Path) -> None:
        set_dir = _write_set(tmp_path / "s", GOOD_TOML + "top_k = 3\n", [GOOD_LINE])
        with pytest.raises(EvalSetError) as caught:
            load_set(set_dir)
        assert "top_k" in caught.value.message
        assert caught.value.hint and "Evaluation" in caught.value.hint

    def test_unknown_default_is_named(self, tmp_path: Path) -> None:
        set_dir = _write_set(tmp_path / "s", GOOD_TOML + "[defaults]\nkk = 3\n", [GOOD_LINE])
        with pytest.raises(EvalSetError, match=r"defaults\.kk"):
            load_set(set_dir)

    def test_toml_syntax_error(self, tmp_path: Path) -> None:
        set_dir = _write_set(tmp_path / "s", 'name = "t\ncorpus = ["corpus"]\n', [GOOD_LINE])
        with pytest.raises(EvalSetError) as caught:
            load_set(set_dir)
        assert "set.toml" in caught.value.message
        assert caught.value.hint == "fix the TOML syntax"

    def test_missing_corpus_path(self, tmp_path: Path) -> None:
        set_dir = _write_set(tmp_path / "s", 'name = "t"\ncorpus = ["corpus", "../nowhere"]\n', [GOOD_LINE])
        with pytest.raises(EvalSetError) as caught:
            load_set(set_dir)
        assert "corpus path(s) not found: ../nowhere" in caught.value.message
        assert caught.value.hint and "corpus" in caught.value.hint

    def test_missing_set_directory(self, tmp_path: Path) -> None:
        with pytest.raises(EvalSetError) as caught:
            load_set(tmp_path / "no-such-set")
        assert "no eval set at" in caught.value.message
        assert caught.value.hint and "rag eval convert" in caught.value.hint

    def test_directory_without_set_toml(self, tmp_path: Path) -> None:
        (tmp_path / "empty").mkdir()
        with pytest.raises(EvalSetError, match=r"expected set\.toml"):
            load_set(tmp_path / "empty")

    def test_missing_questions_file(self, tmp_path: Path) -> None:
        set_dir = _write_set(tmp_path / "s", GOOD_TOML + 'questions = "other.jsonl"\n', [GOOD_LINE])
        with pytest.raises(EvalSetError, match="cannot read questions"):
            load_set(set_dir)
