"""Calibration: fit the confidence model (`rag.answering.confidence`) on development runs.

The confidence is the probability that the answer shown is right. Each run records, per question, the
reader's signals and whether its draft answer was right (`draft_correct`: it holds a gold answer; any
answer to an unanswerable question is wrong). A logistic regression per reader family, over every run of
that family together, predicts it; pooling the sets lets one model see SQuAD 2.0's unanswerable questions
(worded like their passages), MultiHop-RAG's (about articles that are not there), and the right and wrong
answers to RealTime QA's and RGB's answerable ones. Runs must be made with `--set min_confidence=0`, so
every draft is recorded. The fit is checked set by set the hard way too: leave one set out, fit on the
others, score the one left out, which is how a set never seen (the held-out weeks) would fare.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.answering.confidence import HIGH_PRECISION, SIGNALS, Family
from rag.evaluation import metrics, selective
from rag.evaluation.runfolder import RunError, read_results

RIDGE = 1e-2
"""L2 penalty: keeps weights finite when a signal separates a small set perfectly."""


@dataclass(frozen=True)
class Example:
    set: str
    family: str
    signals: dict[str, float]
    answerable: bool
    right: bool
    """The draft answer is right (the label)."""


LIKELIHOOD = ("logprob", "first_logprob", "decline_prob", "verified", "checked")
"""Signals only a backend with log-probabilities has."""


def examples(run_dirs: Sequence[Path]) -> list[Example]:
    """Every answered question's signals. A run of a model with log-probabilities also stands for an
    endpoint without them (family `llm`), its likelihood signals left out: no such endpoint runs here,
    and the other signals mean the same for any model."""
    out = []
    for run_dir in run_dirs:
        config, records = read_results(Path(run_dir))
        if config.get("min_confidence", 0) > 0:
            raise RunError(
                f"{run_dir} was run with min_confidence={config['min_confidence']}: withheld drafts are not judged",
                hint="run the calibration runs with `--set min_confidence=0`",
            )
        family = config.get("family", "")
        for record in records:
            signals, right = record.get("signals"), record["scores"].get("draft_correct")
            if not signals or right is None:
                continue
            example = Example(config["set"], family, signals, bool(record["answerable"]), bool(right))
            out.append(example)
            if family == "llm-logprobs":
                plain = {k: v for k, v in signals.items() if k not in LIKELIHOOD}
                out.append(replace(example, family="llm", signals=plain))
    return out


def fit(data: Sequence[Example], names: Sequence[str]) -> Family:
    """Logistic regression by Newton's method (IRLS) with a small ridge on the weights, not the bias. Every
    set weighs the same in the fit, however many questions it has: the 500 SQuAD 2.0 questions, written to
    look answerable when they are not, would otherwise teach every reader that a well-matching sentence is
    a bad sign, and new weeks of news are not SQuAD."""
    x = np.array([[e.signals.get(n, 0.0) for n in names] + [1.0] for e in data], dtype=np.float64)
    y = np.array([float(e.right) for e in data])
    sizes = Counter(e.set for e in data)
    weight = np.array([len(data) / (len(sizes) * sizes[e.set]) for e in data])
    w = np.zeros(x.shape[1])
    penalty = np.eye(x.shape[1]) * RIDGE
    penalty[-1, -1] = 0.0
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -60, 60)))
        gradient = x.T @ (weight * (p - y)) + penalty @ w
        hessian = x.T @ (x * (weight * p * (1 - p))[:, None]) + penalty + np.eye(x.shape[1]) * 1e-9
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return Family({n: float(v) for n, v in zip(names, w[:-1], strict=True)}, float(w[-1]))


def _used(data: Sequence[Example]) -> list[str]:
    """Signals that vary in this family's data (a constant one is the bias's job)."""
    return [n for n in SIGNALS if len({e.signals.get(n, 0.0) for e in data}) > 1]


def scores(model: Family, data: Sequence[Example], threshold: float) -> dict[str, float | None]:
    """How the model ranks and refuses `data`: selective answering (precision of what it answers, AURC,
    the confident half's gain) and refusals as `rag eval` reports them."""
    pairs = [(model.probability(e.signals), e.right) for e in data]
    refused = [p < threshold for p, _ in pairs]
    shown = [right for (_, right), no in zip(pairs, refused, strict=True) if not no]
    # the gain over the answerable questions, as `rag eval` reports it (`confident_half_gain`)
    answerable = [pair for pair, e in zip(pairs, data, strict=True) if e.answerable]
    half, every = selective.precision_of_top(answerable, 0.5), selective.precision_of_top(answerable, 1.0)
    return {
        "answered_precision": sum(shown) / len(shown) if shown else None,
        "coverage": len(shown) / len(pairs) if pairs else None,
        "aurc": selective.aurc(pairs),
        "confident_half_gain": half - every if half is not None and every is not None else None,
        **metrics.refusal_metrics([e.answerable for e in data], refused),
    }


def high_threshold(pairs: Sequence[selective.Pair], precision: float = HIGH_PRECISION) -> float:
    """The lowest confidence from which the answers, taken most confident first, are still right at least
    `precision` of the time: where the word "high" starts. 1.0 when even the most confident answers fall
    short (then nothing is called high)."""
    ranked = sorted(pairs, key=lambda pair: -pair[0])
    right, best = 0, 1.0
    for i, (probability, correct) in enumerate(ranked, start=1):
        right += correct
        if right / i >= precision:
            best = probability
    return best


def calibrate(run_dirs: Sequence[Path], out: Path | None, threshold: float = 0.5) -> dict[str, Any]:
    """Fit every family found in the runs, report in-sample and leave-one-set-out metrics per set, and
    write the coefficients and each family's "high" threshold to `out` (merged with the families already
    there), with what they were fitted on."""
    by_family: dict[str, list[Example]] = defaultdict(list)
    for example in examples(run_dirs):
        by_family[example.family].append(example)
    report: dict[str, Any] = {}
    fitted: dict[str, Family] = {}
    for family, data in sorted(by_family.items()):
        names = _used(data)
        model = fit(data, names)
        sets = sorted({e.set for e in data})
        rows = {}
        for name in sets:
            inside = [e for e in data if e.set == name]
            others = [e for e in data if e.set != name]
            held_out = fit(others, names) if len({e.right for e in others}) > 1 else model
            rows[name] = {"fitted": scores(model, inside, threshold), "left_out": scores(held_out, inside, threshold)}
        high = high_threshold([(model.probability(e.signals), e.right) for e in data])
        fitted[family] = replace(model, high=high)
        report[family] = {"signals": names, "sets": rows, "examples": len(data), "high": high}
    if out is not None:
        existing: dict[str, Any] = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
        families = existing.get("families", {})
        for family, model in fitted.items():
            families[family] = {"weights": model.weights, "bias": model.bias, "high": model.high}
        existing["families"] = families
        existing["fitted_on"] = {
            "date": dt.date.today().isoformat(),
            "runs": sorted({str(Path(r)) for r in run_dirs}),
            "label": "draft_correct: the answer drafted holds a gold answer (none is right if unanswerable)",
            **{f: {"examples": r["examples"], "sets": sorted(r["sets"])} for f, r in report.items()},
        }
        out.write_text(json.dumps(existing, indent=2) + "\n", encoding="utf-8")
    return report
