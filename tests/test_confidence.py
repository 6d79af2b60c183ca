"""The confidence (the probability that the answer is right): the committed logistic models, the level
words, and fitting them from run folders."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rag.answering.confidence import SIGNALS, Family, confidence, family_of, level, load
from rag.errors import ConfigError
from rag.evaluation.calibration import Example, calibrate, fit
from rag.evaluation.runfolder import RunError


def test_committed_coefficients_cover_every_family_and_only_known_signals() -> None:
    families = load()
    assert {"extractive", "llm", "llm-logprobs"} <= set(families)
    for family in families.values():
        assert set(family.weights) <= set(SIGNALS)


def test_probability_is_a_logistic_of_the_signals() -> None:
    family = Family({"evidence": 2.0, "declined": -5.0}, bias=-1.0)
    assert family.probability({"evidence": 0.5}) == pytest.approx(0.5)
    assert family.probability({"evidence": 2.0}) > 0.9 > 0.2 > family.probability({"evidence": 2.0, "declined": 1})
    assert family.probability({"evidence": 1e9}) == pytest.approx(1.0)


def test_family_follows_capabilities_and_unknown_ones_fall_back() -> None:
    assert family_of(llm=False, logprobs=False) == "extractive"
    assert family_of(llm=True, logprobs=True) == "llm-logprobs"
    assert 0.0 <= confidence({"evidence": 1.0}, "no-such-family") <= 1.0


def test_unreadable_coefficients_are_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "confidence.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="confidence coefficients"):
        load(str(bad))


def _run(
    folder: Path, name: str, family: str, rows: list[tuple[float, bool, bool]], min_confidence: float = 0.0
) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(
        json.dumps({"set": name, "family": family, "min_confidence": min_confidence}), encoding="utf-8"
    )
    with open(folder / "results.jsonl", "w", encoding="utf-8") as handle:
        for evidence, answerable, right in rows:
            record = {
                "answerable": answerable,
                "signals": {"evidence": evidence, "new": 1.0},
                "scores": {"draft_correct": float(right) if answerable or not right else 0.0},
            }
            handle.write(json.dumps(record) + "\n")
    return folder


def test_calibrate_fits_rightness_per_family_reports_left_out_sets_and_writes_provenance(tmp_path: Path) -> None:
    """The label is whether the draft was right: an answerable question with a wrong draft counts against the
    confidence as much as an unanswerable one."""
    rng = random.Random(0)

    def rows(n: int, share: float) -> list[tuple[float, bool, bool]]:
        out = []
        for _ in range(n):
            answerable = rng.random() < share
            right = answerable and rng.random() < 0.7
            out.append((rng.gauss(1.2 if right else 0.4, 0.2), answerable, right))
        return out

    runs = [
        _run(tmp_path / "a", "a", "llm-logprobs", rows(200, 0.5)),
        _run(tmp_path / "b", "b", "llm-logprobs", rows(200, 0.8)),
        _run(tmp_path / "c", "c", "extractive", rows(100, 0.5)),
    ]
    out = tmp_path / "confidence.json"
    out.write_text(json.dumps({"families": {"llm": {"weights": {}, "bias": 0.0}}}), encoding="utf-8")
    report = calibrate(runs, out)
    assert report["llm-logprobs"]["signals"] == ["evidence"]  # "new" never varies: the bias covers it
    for rows_of_set in report["llm-logprobs"]["sets"].values():
        left_out = rows_of_set["left_out"]
        # a random order would leave AURC near the share of wrong drafts, 0.6 to 0.7 here
        assert left_out["answered_precision"] > 0.9 and left_out["aurc"] < 0.45 and left_out["refusal_recall"] > 0.8
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["families"]["llm-logprobs"]["weights"]["evidence"] > 0
    assert "llm" in written["families"]  # families not refitted are kept
    assert written["fitted_on"]["llm-logprobs"]["sets"] == ["a", "b"]
    assert written["fitted_on"]["label"].startswith("draft_correct")
    fitted = load(str(out))["llm-logprobs"]
    assert fitted.probability({"evidence": 1.2}) > 0.5 > fitted.probability({"evidence": 0.4})
    # "high" starts where the answers above it stop being right at least 90 % of the time
    examples = [(fitted.probability({"evidence": e}), right) for run in runs[:2] for e, right in _labels(run)]
    above = [right for p, right in examples if p >= fitted.high]
    assert sum(above) / len(above) >= 0.9
    below = sorted((p, right) for p, right in examples if p < fitted.high)
    assert (sum(above) + below[-1][1]) / (len(above) + 1) < 0.9 or len(above) == len(examples)


def _labels(run: Path) -> list[tuple[float, bool]]:
    records = [json.loads(line) for line in (run / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    return [(r["signals"]["evidence"], bool(r["scores"]["draft_correct"])) for r in records]


def test_runs_that_withheld_drafts_are_refused_for_calibration(tmp_path: Path) -> None:
    run = _run(tmp_path / "a", "a", "extractive", [(1.0, True, True), (0.2, False, False)], min_confidence=0.5)
    with pytest.raises(RunError, match="min_confidence=0"):
        calibrate([run], None)


def test_levels_in_words() -> None:
    high = load()["extractive"].high
    assert level(0.1, "extractive", 0.5) == "not sure"
    assert level(max(0.5, high - 0.01), "extractive", 0.5) in ("medium", "high")
    assert level(max(high, 0.5), "extractive", 0.5) == "high"
    assert level(0.99, "extractive", 1.0) == "not sure"  # the threshold comes first


def test_every_set_weighs_the_same_in_the_fit_however_many_questions_it_has() -> None:
    rng = random.Random(3)

    def drawn(name: str, n: int, sign: float) -> list[Example]:
        out = []
        for _ in range(n):
            right = rng.random() < 0.5
            value = sign * (1.0 if right else -1.0) + rng.gauss(0, 1.5)
            out.append(Example(name, "extractive", {"evidence": value}, True, right))
        return out

    big, small = drawn("big", 60, -1.0), drawn("small", 60, 1.0)
    once = fit([*big, *small], ["evidence"])
    tenfold = fit([*big * 10, *small], ["evidence"])
    # the same fit up to the ridge, whose pull is spread over more questions in the second
    assert tenfold.weights["evidence"] == pytest.approx(once.weights["evidence"], abs=1e-3)
    assert tenfold.bias == pytest.approx(once.bias, abs=1e-3)
