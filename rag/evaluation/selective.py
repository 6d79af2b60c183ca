"""Selective answering: how well the confidence tells right answers from wrong ones.

A reader that may decline is judged by two things at once: how many questions it answers (coverage) and
how often those answers are right (precision, or its complement, the selective risk). Ranking every
question by the confidence and answering the most confident first traces the risk–coverage curve (El-Yaniv
& Wiener, 2010; Geifman & El-Yaniv, 2017); its area (AURC) is low when the confidence puts right answers
first, whatever threshold is chosen later. Each question contributes its draft, the answer it would show,
right or wrong: an unanswerable question's draft is always wrong.

Pure functions over (confidence, right) pairs, so the curve is recomputed from a run's saved records.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

Pair = tuple[float, bool]
"""(confidence, whether the draft answer is right)."""


def _ranked(pairs: Sequence[Pair]) -> list[float]:
    """Rightness in order of falling confidence. Questions of equal confidence cannot be told apart, so
    each counts as their group's share of right answers: otherwise a constant confidence would be credited
    with whatever order the questions happened to be run in."""
    ordered = sorted(pairs, key=lambda pair: -pair[0])
    ranked: list[float] = []
    for _, group in itertools.groupby(ordered, key=lambda pair: pair[0]):
        rights = [right for _, right in group]
        ranked.extend([sum(rights) / len(rights)] * len(rights))
    return ranked


def risk_coverage(pairs: Sequence[Pair]) -> list[tuple[float, float]]:
    """(coverage, risk) after answering the i most confident questions, for i = 1..n; risk is the share of
    wrong answers among them."""
    ranked = _ranked(pairs)
    curve, wrong = [], 0.0
    for i, right in enumerate(ranked, start=1):
        wrong += 1 - right
        curve.append((i / len(ranked), wrong / i))
    return curve


def aurc(pairs: Sequence[Pair]) -> float | None:
    """Area under the risk–coverage curve: the mean selective risk over every coverage 1/n..n/n. 0 when every
    right answer is more confident than every wrong one and all are right; it rises with each wrong answer
    ranked above a right one. None without questions."""
    curve = risk_coverage(pairs)
    return sum(risk for _, risk in curve) / len(curve) if curve else None


def excess_aurc(pairs: Sequence[Pair]) -> float | None:
    """AURC above the best any confidence could reach with these answers (every right one ranked first;
    Geifman et al., 2019): what is left is the ranking's fault alone. AURC itself also falls when the
    answers get better, and a set where few drafts are right has a high AURC however good the ranking."""
    found = aurc(pairs)
    if found is None:
        return None
    best = aurc([(float(right), right) for _, right in pairs])
    return found - (best or 0.0)


def coverage_at(pairs: Sequence[Pair], precision: float) -> float | None:
    """The largest share of questions that can be answered, most confident first, with at least
    `precision` of them right; 0 when not even the most confident answer is right. None without questions."""
    curve = risk_coverage(pairs)
    if not curve:
        return None
    return max((coverage for coverage, risk in curve if 1 - risk >= precision - 1e-12), default=0.0)


def precision_of_top(pairs: Sequence[Pair], share: float) -> float | None:
    """Share of right answers among the `share` most confident (at least one question)."""
    ranked = _ranked(pairs)
    if not ranked:
        return None
    top = ranked[: max(1, round(len(ranked) * share))]
    return sum(top) / len(top)
