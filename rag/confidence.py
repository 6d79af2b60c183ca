"""Answerability: how likely the passages hold the answer to a question, from several signals at once.

One signal alone separated answerable from unanswerable questions poorly: the old rule, "refuse unless
one sentence holds half the question's words", refused 63 % of answerable RealTime QA questions and let
half of SQuAD 2.0's unanswerable ones through, whose questions are written to share the passage's words.
The reader records a handful of signals for every answer it drafts (`Signals`), and a logistic model
per reader family turns them into `Answer.confidence`. The coefficients are fitted by
`rag eval calibrate` on development runs and committed in `confidence.json` with what they were fitted
on, so the fit can be checked and redone; the refusal threshold is a setting (`min_confidence`).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

COEFFICIENTS = "confidence.json"

SIGNALS: dict[str, str] = {
    "evidence": "best sentence score for the question (lexical share + cosine similarity)",
    "lexical": "best IDF-weighted share of the question's content words in one sentence",
    "semantic": "best cosine similarity of a sentence to the question",
    "support": "score for the question of the sentence quoted for the answer",
    "grounded": "1 when every content word of the short answer is in one passage sentence",
    "agreement": "share of the passages' articles that contain the short answer",
    "new": "1 when the short answer says something the question does not",
    "yes_no": "1 for a yes/no question",
    "declined": "1 when the model itself said the passages do not answer",
    "logprob": "mean log-probability of the model's answer tokens (0 without log-probabilities)",
    "first_logprob": "log-probability of the answer's first token (0 without log-probabilities)",
}
"""Every signal a reader records, with what it measures (the README's table is this)."""


@dataclass(frozen=True)
class Family:
    """A logistic model over the signals of one kind of reader."""

    weights: dict[str, float]
    bias: float

    def probability(self, signals: Mapping[str, float]) -> float:
        z = self.bias + math.fsum(w * signals.get(name, 0.0) for name, w in sorted(self.weights.items()))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def family_of(llm: bool, logprobs: bool) -> str:
    """Readers whose signals mean the same share a model: the extractive reader has no model signals, an
    endpoint without log-probabilities has no likelihood signals."""
    if not llm:
        return "extractive"
    return "llm-logprobs" if logprobs else "llm"


@functools.cache
def load(path: str | None = None) -> dict[str, Family]:
    """The committed coefficients (or those at `path`)."""
    source = Path(path) if path else resources.files("rag").joinpath(COEFFICIENTS)
    try:
        data: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
        return {
            name: Family({k: float(v) for k, v in fam["weights"].items()}, float(fam["bias"]))
            for name, fam in data["families"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"cannot read the confidence coefficients {source}: {exc}",
            hint="reinstall rag, or refit them with `rag eval calibrate RUN_DIR...`",
        ) from exc


def confidence(signals: Mapping[str, float], family: str) -> float:
    families = load()
    model = families.get(family) or families["llm"]
    return model.probability(signals)
