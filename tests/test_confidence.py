"""Answerability: the committed logistic models, and fitting them from run folders."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rag.confidence import SIGNALS, Family, confidence, family_of, load
from rag.errors import ConfigError
from rag.evaluation.calibration import calibrate


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


def _run(folder: Path, name: str, family: str, rows: list[tuple[float, bool]]) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"set": name, "family": family}), encoding="utf-8")
    with open(folder / "results.jsonl", "w", encoding="utf-8") as handle:
        for evidence, answerable in rows:
            handle.write(json.dumps({"answerable": answerable, "signals": {"evidence": evidence, "new": 1.0}}) + "\n")
    return folder


def test_calibrate_fits_per_family_reports_left_out_sets_and_writes_provenance(tmp_path: Path) -> None:
    rng = random.Random(0)

    def rows(n: int, share: float) -> list[tuple[float, bool]]:
        out = []
        for _ in range(n):
            answerable = rng.random() < share
            out.append((rng.gauss(1.2 if answerable else 0.4, 0.2), answerable))
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
        assert rows_of_set["left_out"]["refusal_recall"] > 0.8 and rows_of_set["fitted"]["wrong_refusal_rate"] < 0.2
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["families"]["llm-logprobs"]["weights"]["evidence"] > 0
    assert "llm" in written["families"]  # families not refitted are kept
    assert written["fitted_on"]["llm-logprobs"]["sets"] == ["a", "b"]
    fitted = load(str(out))["llm-logprobs"]
    assert fitted.probability({"evidence": 1.2}) > 0.5 > fitted.probability({"evidence": 0.4})
