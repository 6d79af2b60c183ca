"""Calibration: fit the answerability model (`rag.confidence`) on development runs.

Each run records, per question, the reader's signals and whether the question is answerable. A logistic
regression per reader family, over every run of that family together, predicts "answerable"; pooling
the sets lets one model see both SQuAD 2.0's unanswerable questions (worded like their passages) and
MultiHop-RAG's (about articles that are not there) beside RealTime QA's and RGB's answerable ones. The
fit is checked set by set the hard way too: leave one set out, fit on the others, score the one left
out, which is how a set never seen (the held-out weeks) would fare.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.confidence import SIGNALS, Family
from rag.evaluation import metrics
from rag.evaluation.runfolder import read_results

RIDGE = 1e-2
"""L2 penalty: keeps weights finite when a signal separates a small set perfectly."""


@dataclass(frozen=True)
class Example:
    set: str
    family: str
    signals: dict[str, float]
    answerable: bool


LIKELIHOOD = ("logprob", "first_logprob")
"""Signals only a backend with log-probabilities has."""


def examples(run_dirs: Sequence[Path]) -> list[Example]:
    """Every answered question's signals. A run of a model with log-probabilities also stands for an
    endpoint without them (family `llm`), its likelihood signals left out: no such endpoint runs here,
    and the other signals mean the same for any model."""
    out = []
    for run_dir in run_dirs:
        config, records = read_results(Path(run_dir))
        family = config.get("family", "")
        for record in records:
            signals = record.get("signals")
            if not signals:
                continue
            out.append(Example(config["set"], family, signals, bool(record["answerable"])))
            if family == "llm-logprobs":
                plain = {k: v for k, v in signals.items() if k not in LIKELIHOOD}
                out.append(Example(config["set"], "llm", plain, bool(record["answerable"])))
    return out


def fit(data: Sequence[Example], names: Sequence[str]) -> Family:
    """Logistic regression by Newton's method (IRLS) with a small ridge on the weights, not the bias."""
    x = np.array([[e.signals.get(n, 0.0) for n in names] + [1.0] for e in data], dtype=np.float64)
    y = np.array([float(e.answerable) for e in data])
    w = np.zeros(x.shape[1])
    penalty = np.eye(x.shape[1]) * RIDGE
    penalty[-1, -1] = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -60, 60)))
        gradient = x.T @ (p - y) + penalty @ w
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + penalty + np.eye(x.shape[1]) * 1e-9
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return Family({n: float(v) for n, v in zip(names, w[:-1], strict=True)}, float(w[-1]))


def _used(data: Sequence[Example]) -> list[str]:
    """Signals that vary in this family's data (a constant one is the bias's job)."""
    return [n for n in SIGNALS if len({e.signals.get(n, 0.0) for e in data}) > 1]


def scores(model: Family, data: Sequence[Example], threshold: float) -> dict[str, float | None]:
    refused = [model.probability(e.signals) < threshold for e in data]
    return metrics.refusal_metrics([e.answerable for e in data], refused)


def calibrate(run_dirs: Sequence[Path], out: Path | None, threshold: float = 0.5) -> dict[str, Any]:
    """Fit every family found in the runs, report in-sample and leave-one-set-out refusal metrics per set,
    and write the coefficients to `out` (merged with the families already there)."""
    by_family: dict[str, list[Example]] = defaultdict(list)
    for example in examples(run_dirs):
        by_family[example.family].append(example)
    report: dict[str, Any] = {}
    fitted: dict[str, Family] = {}
    for family, data in sorted(by_family.items()):
        names = _used(data)
        model = fit(data, names)
        fitted[family] = model
        sets = sorted({e.set for e in data})
        rows = {}
        for name in sets:
            inside = [e for e in data if e.set == name]
            others = [e for e in data if e.set != name]
            held_out = fit(others, names) if any(not e.answerable for e in others) else model
            rows[name] = {"fitted": scores(model, inside, threshold), "left_out": scores(held_out, inside, threshold)}
        report[family] = {"signals": names, "sets": rows, "examples": len(data)}
    if out is not None:
        existing: dict[str, Any] = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
        families = existing.get("families", {})
        for family, model in fitted.items():
            families[family] = {"weights": model.weights, "bias": model.bias}
        existing["families"] = families
        existing["fitted_on"] = {
            "date": dt.date.today().isoformat(),
            "runs": sorted({str(Path(r)) for r in run_dirs}),
            **{f: {"examples": r["examples"], "sets": sorted(r["sets"])} for f, r in report.items()},
        }
        out.write_text(json.dumps(existing, indent=2) + "\n", encoding="utf-8")
    return report
