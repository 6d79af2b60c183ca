"""Reports: summaries of hand-written run records (every expected number worked out in a comment),
comparisons, the CI gate, and the `rag eval` command as CI calls it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import rag.cli
from rag.evaluation.ablation import LADDER
from rag.evaluation.ablation import METRICS as ABLATION_METRICS
from rag.evaluation.report import compare, gate, markdown, summarize, write_report
from rag.evaluation.runfolder import RunError, read_results
from rag.evaluation.scoring import METRICS, headline
from rag.store.embedding import Embedder
from tests.conftest import ROOT

SEED_SET = ROOT / "evals" / "seed"
CONFIG: dict[str, Any] = {
    "set": "t",
    "backend": "extractive",
    "model": "extractive",
    "k": 5,
    "retrieval_depth": 10,
    "embedding_model": "m",
    "chunk_tokens": 180,
    "chunk_overlap": 30,
}


def _record(
    qid: str,
    *,
    answerable: bool,
    refused: bool,
    gold: list[str],
    picked: int | None,
    scores: dict[str, float | None],
    citations: tuple[int, int, int] = (0, 0, 0),
    timings: dict[str, float],
    tokens: tuple[int, int],
) -> dict[str, Any]:
    total, valid, raw_invalid = citations
    return {
        "id": qid,
        "answerable": answerable,
        "refused": refused,
        "gold_doc_ids": gold,
        "picked": picked,
        "scores": {**scores, "citations": total, "citations_valid": valid, "citations_invalid_raw": raw_invalid},
        "timings": timings,
        "tokens": {"prompt": tokens[0], "completion": tokens[1]},
    }


# Five questions: r1, r2, r5 answerable (r2 wrongly refused); r3, r4 unanswerable and refused.
RECORDS = [
    _record(
        "r1", answerable=True, refused=False, gold=["a"], picked=None,
        scores={"hit@5": 1.0, "em": 1.0, "f1": 1.0, "mc_accuracy": None, "cited_support": 1.0},
        citations=(2, 2, 1), timings={"retrieve": 0.1, "generate": 1.0, "total": 1.0}, tokens=(100, 10),
    ),
    _record(
        "r2", answerable=True, refused=True, gold=["b"], picked=1,
        scores={"hit@5": 0.0, "em": 0.0, "f1": 0.5, "mc_accuracy": 1.0, "cited_support": None},
        timings={"retrieve": 0.2, "generate": 2.0, "total": 2.0}, tokens=(200, 20),
    ),
    _record(
        "r3", answerable=False, refused=True, gold=[], picked=None,
        scores={"em": None, "f1": None, "mc_accuracy": None, "cited_support": None},
        timings={"retrieve": 0.3, "total": 3.0}, tokens=(300, 30),
    ),
    _record(
        "r4", answerable=False, refused=True, gold=[], picked=0,
        scores={"em": None, "f1": None, "mc_accuracy": 0.0, "cited_support": None},
        timings={"retrieve": 0.4, "generate": 10.0, "total": 10.0}, tokens=(400, 40),
    ),
    _record(
        "r5", answerable=True, refused=False, gold=["c"], picked=None,
        scores={"hit@5": 1.0, "em": 0.0, "f1": 0.0, "mc_accuracy": None, "cited_support": 0.0},
        citations=(2, 1, 3), timings={"retrieve": 0.5, "generate": 4.0, "total": 4.0}, tokens=(500, 50),
    ),
]  # fmt: skip


def _write_run(run_dir: Path, records: list[dict[str, Any]], config: dict[str, Any] | None = None) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(config or CONFIG), encoding="utf-8")
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return run_dir


def _write_summary(run_dir: Path, values: dict[str, float | None]) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps({"config": CONFIG, "metrics": values}), encoding="utf-8")
    return run_dir


class TestSummarize:
    def test_means_skip_questions_a_metric_does_not_apply_to(self) -> None:
        m = summarize(CONFIG, RECORDS)["metrics"]
        assert m["hit@5"] == pytest.approx(2 / 3)  # r1, r2, r5 have gold: (1 + 0 + 1) / 3
        assert m["em"] == pytest.approx(1 / 3)  # (1 + 0 + 0) / 3; r3, r4 are None
        assert m["f1"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
        assert m["mc_accuracy"] == pytest.approx(0.5)  # r2 right, r4 wrong
        assert m["cited_support"] == pytest.approx(0.5)  # r1 1, r5 0

    def test_citation_validity_and_raw(self) -> None:
        m = summarize(CONFIG, RECORDS)["metrics"]
        assert m["citation_validity"] == pytest.approx(3 / 4)  # valid 2 + 1 of 2 + 2 kept citations
        assert m["citation_validity_raw"] == pytest.approx(3 / 7)  # 3 valid, 1 + 3 invalid ones removed
        assert not any(name.startswith("citations") for name in m)

    def test_refusal_metrics(self) -> None:
        m = summarize(CONFIG, RECORDS)["metrics"]
        assert m["refusal_precision"] == pytest.approx(2 / 3)  # refused r2, r3, r4; r3 and r4 rightly
        assert m["refusal_recall"] == pytest.approx(1.0)  # both unanswerable ones refused
        assert m["wrong_refusal_rate"] == pytest.approx(1 / 3)  # r2 of r1, r2, r5

    def test_latency_percentiles_and_tokens(self) -> None:
        m = summarize(CONFIG, RECORDS)["metrics"]
        # total, sorted [1, 2, 3, 4, 10]: p50 at position 2 -> 3; p95 at 3.8 -> 4 + 0.8 * 6 = 8.8.
        assert m["latency_total_p50"] == pytest.approx(3.0)
        assert m["latency_total_p95"] == pytest.approx(8.8)
        assert m["latency_total_mean"] == pytest.approx(4.0)
        # generate (r3 has none), sorted [1, 2, 4, 10]: p50 at 1.5 -> 3; p95 at 2.85 -> 4 + 0.85 * 6 = 9.1.
        assert m["latency_generate_p50"] == pytest.approx(3.0)
        assert m["latency_generate_p95"] == pytest.approx(9.1)
        assert m["latency_generate_mean"] == pytest.approx(4.25)
        assert m["tokens_prompt_mean"] == pytest.approx(300.0)
        assert m["tokens_completion_mean"] == pytest.approx(30.0)

    def test_counts(self) -> None:
        assert summarize(CONFIG, RECORDS)["counts"] == {
            "questions": 5,
            "answerable": 3,
            "with_gold_docs": 3,
            "multiple_choice": 2,
            "refused": 3,
            "citations": 4,
        }

    def test_a_set_of_several_question_types_is_also_scored_by_type(self) -> None:
        kinds = ["temporal_query", "inference_query", "temporal_query", "null_query", "inference_query"]
        typed = [{**record, "type": kind} for record, kind in zip(RECORDS, kinds, strict=True)]
        summary = summarize(CONFIG, typed)
        parts = summary["by_type"]
        assert {kind: part["questions"] for kind, part in parts.items()} == {
            "inference_query": 2, "null_query": 1, "temporal_query": 2,
        }  # fmt: skip
        assert parts["temporal_query"]["metrics"]["hit@5"] == pytest.approx(1.0)  # r1 1; r3 has no gold
        assert parts["inference_query"]["metrics"]["f1"] == pytest.approx(0.25)  # r2 0.5, r5 0
        report = markdown(summary)
        assert "## By question type" in report and "| temporal_query | 2 | 1.000 |" in report  # hit@5 first
        assert "by_type" not in summarize(CONFIG, RECORDS), "one kind of question: no breakdown"

    def test_no_citations_means_no_validity(self) -> None:
        m = summarize(CONFIG, RECORDS[1:4])["metrics"]
        assert m["citation_validity"] is None
        assert m["citation_validity_raw"] is None

    def test_markdown_tables(self) -> None:
        text = markdown(summarize(CONFIG, RECORDS))
        assert text.startswith("# Eval report: t — extractive (extractive)")
        assert "5 questions (3 answerable, 3 with gold articles, 2 multiple choice); k = 5" in text
        assert "| document | hit | – | – | 0.667 | – |" in text
        assert "| em | 0.333 |" in text
        assert "| citation_validity | 0.750 |" in text
        assert "| total | 3.000 | 8.800 | 4.000 |" in text


class TestRunFolder:
    def test_write_report_rebuilds_everything_from_the_records(self, tmp_path: Path) -> None:
        run_dir = _write_run(tmp_path / "run", RECORDS)
        summary = write_report(run_dir)
        assert json.loads((run_dir / "summary.json").read_text(encoding="utf-8")) == summary
        assert (run_dir / "report.md").read_text(encoding="utf-8") == markdown(summary)
        for plot in ("metrics.png", "latency.png"):
            assert (run_dir / plot).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    def test_read_results_skips_a_torn_line(self, tmp_path: Path) -> None:
        run_dir = _write_run(tmp_path / "run", RECORDS[:2])
        with open(run_dir / "results.jsonl", "a", encoding="utf-8") as handle:
            handle.write('{"id": "r3", "answ')
        config, records = read_results(run_dir)
        assert config == CONFIG
        assert [r["id"] for r in records] == ["r1", "r2"]

    def test_not_a_run_folder(self, tmp_path: Path) -> None:
        with pytest.raises(RunError, match="is not a run folder"):
            read_results(tmp_path)


class TestCompare:
    def test_table_with_deltas(self, tmp_path: Path) -> None:
        a = _write_summary(tmp_path / "a", {"hit@5": 0.5, "em": 0.25, "only_a": 1.0, "mc_accuracy": None})
        b = _write_summary(tmp_path / "b", {"hit@5": 0.75, "em": 0.125, "only_b": 0.0, "mc_accuracy": None})
        assert compare(a, b).splitlines() == [
            "| metric | A: a | B: b | B − A |",
            "| --- | --- | --- | --- |",
            "| em | 0.250 | 0.125 | -0.125 |",
            "| hit@5 | 0.500 | 0.750 | +0.250 |",
            "| mc_accuracy | – | – | – |",
            "| only_a | 1.000 | – | – |",
            "| only_b | – | 0.000 | – |",
        ]

    def test_folder_without_summary(self, tmp_path: Path) -> None:
        a = _write_summary(tmp_path / "a", {"hit@5": 0.5})
        (tmp_path / "b").mkdir()
        with pytest.raises(RunError, match=r"has no summary\.json"):
            compare(a, tmp_path / "b")


class TestGate:
    SUMMARY: dict[str, Any] = {"metrics": {"hit@5": 0.8, "em": 0.25, "mc_accuracy": None}}  # noqa: RUF012

    def test_passing_thresholds(self) -> None:
        assert gate(self.SUMMARY, []) == []
        assert gate(self.SUMMARY, ["hit@5=0.5", "em=0.25"]) == []  # equal to the threshold passes

    def test_below_threshold_reports_the_value(self) -> None:
        assert gate(self.SUMMARY, ["hit@5=0.9"]) == ["hit@5 = 0.800 is below 0.9"]

    def test_unknown_metric_lists_the_measured_ones(self) -> None:
        (failure,) = gate(self.SUMMARY, ["recall@99=0.1"])
        assert failure == "recall@99: not measured by this run (known: em, hit@5)"

    def test_metric_not_applicable_to_the_run(self) -> None:
        (failure,) = gate(self.SUMMARY, ["mc_accuracy=0.5"])
        assert failure.startswith("mc_accuracy: not measured by this run")

    def test_malformed_spec(self) -> None:
        assert gate(self.SUMMARY, ["hit@5"]) == ["'hit@5': write METRIC=VALUE, e.g. hit@5=0.8"]
        assert gate(self.SUMMARY, ["hit@5=high"]) == ["'hit@5=high': write METRIC=VALUE, e.g. hit@5=0.8"]
        assert gate(self.SUMMARY, ["hit@5=nan"]) == ["'hit@5=nan': write METRIC=VALUE, e.g. hit@5=0.8"]

    def test_spaces_around_the_name_are_ignored(self) -> None:
        assert gate(self.SUMMARY, [" hit@5 =0.9"]) == ["hit@5 = 0.800 is below 0.9"]

    def test_every_failure_is_reported(self) -> None:
        assert len(gate(self.SUMMARY, ["hit@5=0.9", "em=0.5", "x=1", "bad"])) == 4

    def test_ceilings_fail_above_the_value(self) -> None:
        assert gate(self.SUMMARY, [], ["em=0.25", "hit@5=0.9"]) == []  # equal to the ceiling passes
        assert gate(self.SUMMARY, [], ["em=0.2"]) == ["em = 0.250 is above 0.2"]
        assert gate(self.SUMMARY, ["hit@5=0.9"], ["em=0.2"]) == [
            "hit@5 = 0.800 is below 0.9",
            "em = 0.250 is above 0.2",
        ]


class TestCli:
    @pytest.fixture(autouse=True)
    def _shared_embedder(self, monkeypatch: pytest.MonkeyPatch, embedder: Embedder) -> None:
        monkeypatch.setattr("rag.pipeline.store.Embedder", lambda *args, **kwargs: embedder)

    def test_eval_with_gate(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        out = tmp_path / "run"
        base = ["--index-dir", str(tmp_path / "index"), "-q", "eval", str(SEED_SET), "--backend", "extractive"]
        base += ["--limit", "6", "--out", str(out)]
        assert rag.cli.run([*base, "--fail-under", "hit@5=0.5"]) == 0
        captured = capsys.readouterr()
        assert "# Eval report: seed — extractive (extractive)" in captured.out
        assert f"run folder: {out}" in captured.out
        assert "gate failed" not in captured.err
        assert len((out / "results.jsonl").read_text(encoding="utf-8").splitlines()) == 6
        assert (tmp_path / "eval-indexes").is_dir()  # next to the index dir, so inside tmp_path

        # Same folder again: nothing left to answer, only the gate differs.
        assert rag.cli.run([*base, "--fail-under", "hit@5=1.01"]) == 1
        captured = capsys.readouterr()
        assert "gate failed: hit@5 = 1.000 is below 1.01" in captured.err
        assert len((out / "results.jsonl").read_text(encoding="utf-8").splitlines()) == 6

    def test_set_overrides_a_setting_for_the_run(self, tmp_path: Path) -> None:
        out = tmp_path / "run"
        args = ["--index-dir", str(tmp_path / "index"), "-q", "eval", str(SEED_SET), "--backend", "extractive"]
        args += ["--limit", "2", "--out", str(out), "--set", "recency_weight=0", "--set", "near_duplicate_similarity="]
        assert rag.cli.run(args) == 0
        config = json.loads((out / "run.json").read_text(encoding="utf-8"))
        assert (config["recency_weight"], config["near_duplicate_similarity"]) == (0.0, None)
        assert config["retrieval_mode"] == "hybrid"  # untouched settings keep their values

    @pytest.mark.parametrize("bad", ["recency_weight", "no_such_setting=1"])
    def test_a_bad_set_is_an_error_line(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
        with pytest.raises(SystemExit) as caught:
            rag.cli.main(["eval", str(SEED_SET), "--set", bad])
        assert caught.value.code == 2
        assert capsys.readouterr().err.startswith(f"error: --set {bad!r} is not SETTING=VALUE")

    def test_a_bad_set_value_names_the_setting_and_the_fix(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as caught:
            rag.cli.main(["eval", str(SEED_SET), "--set", "recency_weight=abc"])
        assert caught.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: invalid settings: recency_weight:") and "--set" in err

    def test_ablate_runs_the_ladder_and_writes_the_table(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out = tmp_path / "ablation"
        args = ["--index-dir", str(tmp_path / "index"), "-q", "eval", "ablate", str(SEED_SET), "--limit", "3"]
        assert rag.cli.run([*args, "--out", str(out)]) == 0
        table = (out / "ablation.md").read_text(encoding="utf-8")
        assert table in capsys.readouterr().out
        rows = [line for line in table.splitlines() if line.startswith("| ")][2:]  # past the header rows
        steps = [row.split(" | ")[0].removeprefix("| ") for row in rows]
        assert steps == [name for name, _ in LADDER]
        first = json.loads((out / "01" / "run.json").read_text(encoding="utf-8"))
        last = json.loads((out / f"{len(LADDER):02d}" / "run.json").read_text(encoding="utf-8"))
        assert (first["retrieval_mode"], first["article_ranking"], first["recency_weight"]) == ("dense", False, 0.0)
        assert (last["retrieval_mode"], last["article_ranking"], last["recency_weight"]) == ("hybrid", True, 1.0)
        stages = [row.split(" | ")[1].split(", ") for row in rows]
        assert stages[0] == ["dense", "fuse", "order", "passages"]
        assert stages[1] == ["bm25", "fuse", "order", "passages"]
        assert stages[-1] == ["dense", "bm25", "fuse", "recency", "question dates", "order", "diversity", "passages"]
        for row in rows:  # a one-article corpus: every step finds it first
            assert row.split(" | ")[2] == "1.000"

    def test_compare_prints_the_table(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        a = _write_summary(tmp_path / "a", {"hit@5": 0.5})
        b = _write_summary(tmp_path / "b", {"hit@5": 0.75})
        assert rag.cli.run(["eval", "compare", str(a), str(b)]) == 0
        assert "| hit@5 | 0.500 | 0.750 | +0.250 |" in capsys.readouterr().out

    def test_compare_needs_two_runs(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as caught:
            rag.cli.main(["eval", "compare", str(tmp_path / "onlyone")])
        assert caught.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: compare takes two run folders")
        assert "rag eval compare RUN_A RUN_B" in err

    def test_missing_set_is_an_error_line(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as caught:
            rag.cli.main(["eval", str(tmp_path / "nope")])
        assert caught.value.code == 2
        assert capsys.readouterr().err.startswith("error: no eval set at")


class TestRegistry:
    def test_the_ablation_and_the_headline_name_registered_metrics(self) -> None:
        assert set(ABLATION_METRICS) <= set(METRICS)
        assert {"hit@5", "contains", "claim_support", "wrong_refusal_rate"} <= set(headline())

    def test_every_metric_has_a_description_and_one_way_to_be_computed(self) -> None:
        for metric in METRICS.values():
            assert metric.description, metric.name
            assert not (metric.per_question and metric.from_records), metric.name
