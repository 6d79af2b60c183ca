"""The confidence: the probability that the answer shown is right, from several signals at once.

Before, the model was fitted to say whether a question is answerable from the passages, so it scored how
on-topic they were, and on a one-topic corpus every answer was "high". Now the reader records a handful
of signals for every answer it drafts (`SIGNALS`: the evidence, whether the answer's type fits the
question, whether its sentence says what the question pins down, agreement across articles, the local
model's likelihood of its answer and its own yes/no check of it), and a logistic model per reader family
turns them into `Answer.confidence`, fitted with "the drafted answer is right" as the label. The
coefficients come from `rag eval calibrate` on development runs and are committed in `confidence.json`
with what they were fitted on, so the fit can be checked and redone; the threshold below which answers
are withheld is a setting (`min_confidence`), and the words (`level`) come with measured precisions.
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
    "agrees": "1 when a model's short answer is the one the extractive reader would give (two readers agree)",
    "fit": "how well the short answer's entity type fits the question (1 its own type, 0.5 a neighbouring one, 0 none)",
    "typed": "1 when the question asks for a typed answer (a person, place, date, number, organization)",
    "covered": "share of the question's names, numbers and dates that the quoted sentence (or the one before) says",
    "foreign": "1 when the quoted sentence ties the answer to another country, people or organisation than the "
    'question asks about ("Russian President" for the president of Azerbaijan)',
    "verified": "the local model's check: log-odds of yes over no, asked whether the sentence states this answer",
    "checked": "1 when the local model checked the answer (`verified` applies)",
    "decline_prob": "the local model's probability of replying unknown instead of an answer",
}
"""Every signal a reader records, with what it measures (the README's table is this)."""


@dataclass(frozen=True)
class Family:
    """A logistic model over the signals of one kind of reader."""

    weights: dict[str, float]
    bias: float
    high: float = 1.0
    """The lowest confidence at which this reader's answers were right at least `HIGH_PRECISION` of the
    time on the development sets (`rag eval calibrate`): from there on it says "high"."""

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
    source = Path(path) if path else resources.files("rag.answering").joinpath(COEFFICIENTS)
    try:
        data: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
        return {
            name: Family(
                {k: float(v) for k, v in fam["weights"].items()}, float(fam["bias"]), float(fam.get("high", 1.0))
            )
            for name, fam in data["families"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"cannot read the confidence coefficients {source}: {exc}",
            hint="reinstall rag, or refit them with `rag eval calibrate RUN_DIR...`",
        ) from exc


HIGH_PRECISION = 0.9
"""What "high" confidence promises: right at least this often on the development sets."""


def _family(name: str) -> Family:
    families = load()
    return families.get(name) or families["llm"]


def confidence(signals: Mapping[str, float], family: str) -> float:
    return _family(family).probability(signals)


def level(probability: float, family: str, min_confidence: float) -> str:
    """The confidence in words: "high" from the family's measured threshold (`Family.high`), "medium"
    from `min_confidence`, and "not sure" below it, where the answer is withheld."""
    if probability < min_confidence:
        return "not sure"
    return "high" if probability >= max(_family(family).high, min_confidence) else "medium"
