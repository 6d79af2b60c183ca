"""Runs: the seed set end to end through the real pipeline (shared embedding model), resuming after an
interruption, per-question scoring on hand-made answers, multiple choice and the citation judge."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag import Settings
from rag.answering.citations import extract_citations
from rag.answering.evidence import EvidencePool
from rag.dates import DateRange
from rag.evaluation.runfolder import RunError
from rag.evaluation.runner import (
    eval_index_dir,
    evaluate,
    judge_citations,
)
from rag.evaluation.scoring import Scored, score_question
from rag.evaluation.sets import EvalQuestion, load_set
from rag.pipeline.answerer import Answerer
from rag.prompts import REFUSAL
from rag.store.embedding import Embedder
from rag.types import Answer, ArticleHit, Chunk, Citation, GenerationRequest, Passage, Retrieval, TokenUsage
from tests.conftest import ROOT
from tests.openai_server import FakeOpenAIServer, Reply

SEED_SET = ROOT / "evals" / "seed"


def score(
    q: EvalQuestion, found: Retrieval, answer: Answer, picked: int | None, aliases: dict[str, str] | None = None
) -> dict[str, Any]:
    return score_question(Scored(q, found, answer, picked, aliases or {}))


SEED_IDS = [q.id for q in load_set(SEED_SET).questions]
PNG = b"\x89PNG\r\n\x1a\n"


def _passage(doc_id: str, text: str, rank: int = 1) -> Passage:
    chunk = Chunk(doc_id, 0, text, 0, len(text), len(text.split()), title=doc_id)
    return Passage(chunk, 1.0 / rank, rank)


def _answer(
    text: str,
    passages: list[Passage],
    citations: list[Citation] | None = None,
    *,
    refused: bool = False,
    invalid: list[int] | None = None,
) -> Answer:
    return Answer(
        question="q",
        text=text,
        citations=citations if citations is not None else extract_citations(text, EvidencePool(passages)),
        passages=passages,
        refused=refused,
        backend="test",
        model="test",
        tokens=TokenUsage(0, 0, 0),
        invalid_citations=invalid or [],
    )


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def shared_embedder(monkeypatch: pytest.MonkeyPatch, embedder: Embedder) -> Embedder:
    """Every RAG the runner builds uses the session's model instead of loading its own."""
    monkeypatch.setattr("rag.pipeline.store.Embedder", lambda *args, **kwargs: embedder)
    return embedder


@pytest.fixture
def eval_settings(tmp_path: Path, shared_embedder: Embedder) -> Settings:
    return Settings(index_dir=tmp_path / "index", progress=False)


def _run(settings: Settings, out: Path, **options: Any) -> Path:
    options = {"backend": "extractive", "limit": 12, "progress": False, **options}
    return evaluate(SEED_SET, settings=settings, out_dir=out, **options)


class TestEvaluateEndToEnd:
    def test_seed_run_writes_a_complete_run_folder(self, eval_settings: Settings, tmp_path: Path) -> None:
        run_dir = _run(eval_settings, tmp_path / "run")
        assert run_dir == tmp_path / "run"
        for name in ("run.json", "results.jsonl", "summary.json", "report.md"):
            assert (run_dir / name).is_file(), name
        for plot in ("metrics.png", "latency.png"):
            data = (run_dir / plot).read_bytes()
            assert data.startswith(PNG) and len(data) > 1000, plot

        config = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        assert (config["set"], config["backend"], config["k"], config["questions"]) == ("seed", "extractive", 5, 55)
        assert config["use_question_date"] is True

        records = [json.loads(line) for line in _lines(run_dir / "results.jsonl")]
        assert [r["id"] for r in records] == SEED_IDS[:12]
        assert all(r["retrieved_doc_ids"] == ["000_a70998bae516c7bb.txt"] for r in records)

        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        m = summary["metrics"]
        for name in ("hit@1", "hit@3", "hit@5", "hit@10", "mrr@10", "passage_hit@5", "em", "f1", "refusal_recall"):
            assert name in m, name
        assert m["hit@5"] == 1.0  # a single-article corpus: the article is always found
        assert m["mrr@10"] == 1.0
        assert 0.0 <= m["passage_hit@5"] <= 1.0 and 0.0 <= m["f1"] <= 1.0
        assert summary["counts"]["questions"] == 12
        assert summary["counts"]["citations"] > 0
        assert m["citation_validity"] == 1.0  # the extractive backend only cites passages it was given
        assert m["refusal_recall"] is None  # the first 12 seed questions are all answerable
        assert summary["counts"]["answerable"] == 12
        report = (run_dir / "report.md").read_text(encoding="utf-8")
        assert report.startswith("# Eval report: seed — extractive")
        assert "![metrics](metrics.png)" in report

    def test_eval_indexes_are_cached_per_set(self, eval_settings: Settings, tmp_path: Path) -> None:
        index_dir = eval_index_dir(eval_settings, "seed")
        assert index_dir == tmp_path / "eval-indexes" / "seed--sentence-transformers-all-minilm-l6-v2-int8--c180-o30"
        _run(eval_settings, tmp_path / "first", limit=1)
        manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
        stamp = (index_dir / "manifest.json").stat().st_mtime_ns
        assert manifest["n_documents"] == 1

        _run(eval_settings, tmp_path / "second", limit=1)
        again = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
        assert again["generation"] == manifest["generation"]
        assert again["next_id"] == manifest["next_id"]  # no chunk was embedded again
        assert (index_dir / "manifest.json").stat().st_mtime_ns == stamp
        assert not (tmp_path / "index").exists()  # the user's own index is never touched


class TestResume:
    def test_interrupted_run_resumes_where_it_stopped(
        self, eval_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        out = tmp_path / "run"
        original = Answerer.answer
        calls = 0

        def interrupted(self: Answerer, question: str, **options: Any) -> Answer:
            nonlocal calls
            calls += 1
            if calls == 6:
                raise KeyboardInterrupt
            return original(self, question, **options)

        monkeypatch.setattr(Answerer, "answer", interrupted)
        with pytest.raises(KeyboardInterrupt):
            _run(eval_settings, out)
        before = (out / "results.jsonl").read_bytes()
        assert len(before.splitlines()) == 5
        assert not (out / "summary.json").exists()

        monkeypatch.setattr(Answerer, "answer", original)
        _run(eval_settings, out)
        after = (out / "results.jsonl").read_bytes()
        assert after.startswith(before)  # the finished questions were not redone or rewritten
        ids = [json.loads(line)["id"] for line in _lines(out / "results.jsonl")]
        assert ids == SEED_IDS[:12]

        # A crash mid-write leaves a torn last line: it is dropped and its question answered again.
        lines = _lines(out / "results.jsonl")
        torn = "\n".join(lines[:11]) + "\n" + lines[11][:30]
        (out / "results.jsonl").write_text(torn, encoding="utf-8")
        _run(eval_settings, out)
        redone = _lines(out / "results.jsonl")
        assert redone[:11] == lines[:11]
        assert [json.loads(line)["id"] for line in redone] == SEED_IDS[:12]
        assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["counts"]["questions"] == 12

        # A torn line that is not even a known question is dropped too.
        with open(out / "results.jsonl", "a", encoding="utf-8") as handle:
            handle.write('{"id": "broken')
        _run(eval_settings, out)
        assert _lines(out / "results.jsonl") == redone

    def test_resuming_with_another_configuration_is_refused(self, eval_settings: Settings, tmp_path: Path) -> None:
        out = tmp_path / "run"
        _run(eval_settings, out, limit=1)
        results = (out / "results.jsonl").read_bytes()
        run_json = (out / "run.json").read_bytes()
        other = eval_settings.model_copy(update={"openai_api_key": "sk-test"})  # builds, never called
        with pytest.raises(RunError) as caught:
            _run(other, out, limit=1, backend="openai", k=3)
        assert "(backend, family, k, model differ)" in caught.value.message
        assert caught.value.hint and "--out" in caught.value.hint
        assert (out / "results.jsonl").read_bytes() == results
        assert (out / "run.json").read_bytes() == run_json


# Hand-made retrieval: doc "b" first, then two chunks of the gold doc "a"; evidence is in rank 2.
P_B = _passage("b", "Armenia is a member of the CSTO.", 1)
P_A1 = _passage("a", "The Secretary General Stanislav Zas spoke on Thursday.", 2)
P_A2 = _passage("a", "Zas said the bloc would help Armenia.", 3)
P_C = _passage("c", "In 2010 it was cold in Moscow.", 4)
RANKED = Retrieval(
    [P_B, P_A1, P_A2, P_C],
    [ArticleHit("b", 3.0, 1), ArticleHit("a", 2.0, 2), ArticleHit("c", 1.0, 3)],
    dt.date(2020, 10, 9),
    DateRange(),
)
QUESTION = EvalQuestion(
    id="q",
    question="Who is the CSTO Secretary General?",
    answers=["Stanislav Zas", "Zas"],
    gold_doc_ids=["a"],
    gold_evidence=["Secretary General Stanislav Zas"],
)


class TestScoreQuestion:
    def test_retrieval_scores(self) -> None:
        s = score(QUESTION, RANKED, _answer("Zas [2].", [P_B, P_A1]), None)
        # Doc ranking deduped: [b, a, c]; gold a at rank 2.
        assert (s["hit@1"], s["hit@3"], s["hit@10"]) == (0.0, 1.0, 1.0)
        assert s["mrr@10"] == 0.5
        assert s["ndcg@3"] == pytest.approx(0.6309297535714575)  # 1 / log2(3)
        assert s["map@10"] == 0.5
        # Passage level: the evidence is in the rank-2 passage only.
        assert (s["passage_hit@1"], s["passage_hit@3"], s["passage_mrr@10"]) == (0.0, 1.0, 0.5)
        assert s["passage_recall@5"] == 1.0

    def test_answer_scores_ignore_citation_markers(self) -> None:
        answer = _answer("Zas leads the bloc [2].", [P_B, P_A1], invalid=[7])
        s = score(QUESTION, RANKED, answer, None)
        assert s["em"] == 0.0
        # Tokens [zas, leads, bloc] against "zas": P = 1/3, R = 1, F1 = 0.5 (the marker is not a token).
        assert s["f1"] == pytest.approx(0.5)
        assert s["contains"] == 1.0
        assert s["mc_accuracy"] is None
        assert (s["citations"], s["citations_valid"], s["citations_invalid_raw"]) == (1, 1, 1)
        assert s["cited_support"] == 1.0  # passage 2 holds "Stanislav Zas"

    def test_exact_answer_with_a_citation_is_an_exact_match(self) -> None:
        s = score(QUESTION, RANKED, _answer("Stanislav Zas [2].", [P_B, P_A1]), None)
        assert (s["em"], s["f1"], s["contains"]) == (1.0, 1.0, 1.0)

    def test_citing_the_wrong_passage_is_unsupported(self) -> None:
        s = score(QUESTION, RANKED, _answer("Zas is the Secretary General [1].", [P_B, P_A1]), None)
        assert s["cited_support"] == 0.0
        assert s["contains"] == 1.0

    def test_cited_support_matches_whole_tokens(self) -> None:
        question = EvalQuestion(id="n", question="How many?", answers=["10"], gold_doc_ids=["c"])
        s = score(question, RANKED, _answer("It was cold [1].", [P_C]), None)
        assert s["cited_support"] == 0.0  # "10" is not in "In 2010 ..."

    def test_unanswerable_question_refused(self) -> None:
        question = EvalQuestion(id="u", question="Who won the election?", answerable=False)
        s = score(question, RANKED, _answer(REFUSAL, [P_B], [], refused=True), None)
        for name in ("em", "f1", "contains", "mc_accuracy", "cited_support"):
            assert s[name] is None, name
        assert not any(name.startswith(("hit@", "passage_")) for name in s)  # no gold, no evidence
        assert (s["citations"], s["citations_valid"], s["citations_invalid_raw"]) == (0, 0, 0)

    def test_answerable_question_refused_scores_zero(self) -> None:
        s = score(QUESTION, RANKED, _answer(REFUSAL, [P_B], [], refused=True), None)
        assert (s["em"], s["f1"], s["contains"]) == (0.0, 0.0, 0.0)
        assert s["cited_support"] is None  # nothing cited

    def test_multiple_choice(self) -> None:
        question = QUESTION.model_copy(update={"choices": ["Pashinyan", "Zas"], "answer_idx": 1})
        answer = _answer("Zas [2].", [P_B, P_A1])
        assert score(question, RANKED, answer, 1)["mc_accuracy"] == 1.0
        assert score(question, RANKED, answer, 0)["mc_accuracy"] == 0.0

    def test_nothing_to_support_is_not_applicable(self) -> None:
        question = EvalQuestion(id="n", question="What happened?", gold_doc_ids=["a"])
        s = score(question, RANKED, _answer("Zas spoke [2].", [P_B, P_A1]), None)
        assert (s["em"], s["f1"], s["contains"], s["cited_support"]) == (None, None, None, None)
        assert s["citations"] == 1

    def test_aliases_credit_a_duplicate_gold_article(self) -> None:
        question = QUESTION.model_copy(update={"gold_doc_ids": ["a-copy"]})
        answer = _answer("Zas [2].", [P_B, P_A1])
        assert score(question, RANKED, answer, None)["hit@3"] == 0.0
        assert score(question, RANKED, answer, None, {"a-copy": "a"})["hit@3"] == 1.0

    def test_a_near_copy_folded_into_a_listed_article_counts_as_found(self) -> None:
        question = QUESTION.model_copy(update={"gold_doc_ids": ["a-wire"]})
        answer = _answer("Zas [2].", [P_B, P_A1])
        folded = Retrieval(
            RANKED.passages,
            [ArticleHit("b", 3.0, 1), ArticleHit("a", 2.0, 2, also_in=("a-wire",)), ArticleHit("c", 1.0, 3)],
            RANKED.as_of,
            RANKED.dates,
        )
        assert score(question, RANKED, answer, None)["hit@3"] == 0.0
        s = score(question, folded, answer, None)
        assert (s["hit@1"], s["hit@3"], s["mrr@10"]) == (0.0, 1.0, 0.5)


class RuleJudge:
    """Entailment by rule: yes iff the claim names at least one keyword and the premise holds all of them."""

    name = "openai"
    model = "judge"
    KEYWORDS = ("zas", "armenia", "paris")

    def __init__(self) -> None:
        self.claims: list[str] = []

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        match = re.fullmatch(
            r"Premise: (.*)\n\nClaim: (.*)\n\nDoes the premise entail the claim\?", request.messages[1]["content"], re.S
        )
        assert match, request.messages
        premise, claim = match.group(1).lower(), match.group(2)
        self.claims.append(claim)
        keys = [k for k in self.KEYWORDS if k in claim.lower()]
        yield "Yes" if keys and all(k in premise for k in keys) else "No"


J1 = _passage("a", "Stanislav Zas is the Secretary General of the CSTO.", 1)
J2 = _passage("b", "Armenia is a member of the CSTO.", 2)
J3 = _passage("c", "It was cold in Moscow on Thursday.", 3)


class TestJudgeCitations:
    def test_alce_recall_and_precision(self) -> None:
        text = (
            "Zas leads the CSTO [1][3]. Zas pledged help to Armenia [1][2]. Paris is in France [1]. "
            "The bloc has six members."
        )
        judge = RuleJudge()
        recall, precision = judge_citations(_answer(text, [J1, J2, J3]), judge)
        # Sentence 1: [1][3] together entail it; [3] alone does not and [1] without it does: irrelevant.
        # Sentence 2: needs both [1] and [2]; neither alone entails it, neither is redundant: 2 relevant.
        # Sentence 3: [1] does not entail it: unsupported, and its citation is not precise (ALCE).
        # Sentence 4: uncited, unsupported.
        assert recall == pytest.approx(2 / 4)
        assert precision == pytest.approx(3 / 5)
        assert judge.claims and not any("[" in claim for claim in judge.claims)  # markers are not the claim

    def test_marker_after_the_full_stop_belongs_to_its_sentence(self) -> None:
        # The extractive backend's shape: the quote's full stop comes before the marker.
        text = "“Stanislav Zas is the Secretary General of the CSTO.” [1]"
        assert judge_citations(_answer(text, [J1]), RuleJudge()) == (1.0, 1.0)

    def test_uncited_answer_has_no_precision(self) -> None:
        assert judge_citations(_answer("Zas leads the CSTO.", [J1], []), RuleJudge()) == (0.0, None)

    def test_refusal_is_not_judged(self) -> None:
        judge = RuleJudge()
        assert judge_citations(_answer(REFUSAL, [J1], [], refused=True), judge) == (None, None)
        assert judge.claims == []


class TestJudgeOverHttp:
    def test_alce_metrics_with_an_openai_compatible_judge(
        self, eval_settings: Settings, tmp_path: Path, openai_server: FakeOpenAIServer
    ) -> None:
        """The judge path end to end: real HTTP to a local OpenAI-compatible server that entails everything,
        so every cited sentence is supported and no citation is irrelevant."""
        openai_server.default = Reply("yes")
        settings = eval_settings.model_copy(
            update={"openai_base_url": openai_server.base_url, "openai_api_key": "sk-test", "openai_max_retries": 0}
        )
        run_dir = _run(settings, tmp_path / "run", limit=4, judge="openai")
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        assert summary["config"]["judge"] == "openai"
        assert summary["metrics"]["citation_recall"] == 1.0 and summary["metrics"]["citation_precision"] == 1.0
        assert openai_server.completions, "the judge was asked over HTTP"
        assert "judge: openai" in (run_dir / "report.md").read_text(encoding="utf-8")
