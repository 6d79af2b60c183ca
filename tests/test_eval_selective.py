"""Selective answering: the risk–coverage curve, its area, coverage at a precision, and the metrics a run
reports from them."""

from __future__ import annotations

import pytest

from rag.evaluation import selective
from rag.evaluation.scoring import summarize

RIGHT_FIRST = [(0.9, True), (0.8, True), (0.3, False), (0.2, False)]
WRONG_FIRST = [(0.9, False), (0.8, False), (0.3, True), (0.2, True)]


def test_the_curve_answers_the_most_confident_first() -> None:
    assert selective.risk_coverage(RIGHT_FIRST) == [(0.25, 0.0), (0.5, 0.0), (0.75, 1 / 3), (1.0, 0.5)]


def test_aurc_is_the_mean_risk_and_rewards_ranking_right_answers_first() -> None:
    assert selective.aurc(RIGHT_FIRST) == pytest.approx((0 + 0 + 1 / 3 + 0.5) / 4)
    assert selective.aurc(WRONG_FIRST) == pytest.approx((1 + 1 + 2 / 3 + 0.5) / 4)
    constant = [(0.5, right) for _, right in RIGHT_FIRST]  # no ranking: the run's order must not count
    assert selective.aurc(constant) == pytest.approx(0.5)
    assert selective.aurc(list(reversed(constant))) == pytest.approx(0.5)
    assert selective.aurc([]) is None


def test_excess_aurc_is_what_the_ranking_adds_to_the_best_possible() -> None:
    assert selective.excess_aurc(RIGHT_FIRST) == pytest.approx(0.0)
    assert selective.excess_aurc(WRONG_FIRST) == pytest.approx(
        selective.aurc(WRONG_FIRST) - selective.aurc(RIGHT_FIRST)
    )  # type: ignore[operator]
    assert selective.excess_aurc([(0.3, True)] * 3) == pytest.approx(0.0)


def test_coverage_at_a_precision_is_the_longest_good_enough_prefix() -> None:
    assert selective.coverage_at(RIGHT_FIRST, 0.9) == 0.5
    assert selective.coverage_at(RIGHT_FIRST, 0.6) == 0.75
    assert selective.coverage_at(WRONG_FIRST, 0.5) == 1.0
    assert selective.coverage_at(WRONG_FIRST, 0.9) == 0.0


def test_precision_of_the_most_confident_share() -> None:
    assert selective.precision_of_top(RIGHT_FIRST, 0.5) == 1.0
    assert selective.precision_of_top(WRONG_FIRST, 0.5) == 0.0
    assert selective.precision_of_top(RIGHT_FIRST, 1.0) == 0.5
    assert selective.precision_of_top([(0.1, True)], 0.1) == 1.0  # at least one question


def record(confidence: float, right: bool | None, *, refused: bool = False, answerable: bool = True) -> dict:  # type: ignore[type-arg]
    scores = {"draft_correct": None if right is None else float(right), "citations": 0, "citations_valid": 0}
    scores["citations_invalid_raw"] = 0
    return {
        "confidence": confidence,
        "refused": refused,
        "answerable": answerable,
        "scores": scores,
        "timings": {},
        "tokens": {"prompt": 0, "completion": 0},
    }


def test_a_run_reports_precision_coverage_and_the_curve() -> None:
    records = [
        record(0.95, True),
        record(0.9, True),
        record(0.7, False),
        record(0.4, False, refused=True),
        record(0.3, False, refused=True, answerable=False),
        record(0.5, None),  # answerable without gold answers: not judged
    ]
    metrics = summarize(records)
    assert metrics["answered_precision"] == pytest.approx(2 / 3)
    assert metrics["coverage"] == pytest.approx(3 / 5)
    assert metrics["aurc"] == pytest.approx((0 + 0 + 1 / 3 + 2 / 4 + 3 / 5) / 5)
    assert metrics["coverage_at_90"] == pytest.approx(2 / 5)
    # the gain is over the answerable questions: halves of 4 are the 2 most confident (both right) vs 2 of 4
    assert metrics["confident_half_gain"] == pytest.approx(1.0 - 0.5)


def test_an_honest_refusal_where_the_corpus_lacks_the_answer_is_not_a_wrong_refusal() -> None:
    lacking = record(0.2, False, refused=True)
    lacking["scores"]["reachable"] = 0.0
    found = record(0.2, False, refused=True)
    found["scores"]["reachable"] = 1.0
    answered = record(0.9, True)
    answered["scores"]["reachable"] = 1.0
    metrics = summarize([lacking, found, answered])
    assert metrics["wrong_refusal_rate"] == pytest.approx(1 / 2)
    assert metrics["wrong_refusal_rate_any"] == pytest.approx(2 / 3)
