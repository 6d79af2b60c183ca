"""The metric registry: every metric a run reports, with its level, how it is computed and whether it is a
headline. Scoring a question, summarising a run, the Markdown report, the plots, the gate and the ablation
all read `METRICS`, so a new metric is one function and one `register(...)` here.

A metric is computed per question (`per_question`, None where it does not apply, and averaged over the
questions it applies to), from a run's records as a whole (`from_records`: ratios of totals, refusal
rates, latency percentiles), or recorded by someone else (neither: the citation judge writes ALCE's
scores into each record, and they are averaged like per-question ones).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rag.answering.citations import tidy
from rag.evaluation import metrics, selective
from rag.evaluation.sets import EvalQuestion
from rag.registry import Registry
from rag.text import normalize_answer
from rag.types import Answer, Retrieval
from rag.untrusted import CITATION

Level = Literal["document", "passage", "answer", "citation", "refusal", "selective", "cost", "count"]
KS = (1, 3, 5, 10)
"""Retrieval is scored at 1, 3, 5 and 10 whatever `k` the answer uses."""


def without_markers(text: str) -> str:
    """Answer text without its `[n]` markers. They are the product's formatting, not content: left in,
    "Zas [1]" is no exact match for "Zas", and the citation judge reads "[1]" as part of the claim
    (ALCE removes them too before scoring either)."""
    return tidy(CITATION.sub("", text)).strip()


@dataclass(frozen=True)
class Scored:
    """One question and what the pipeline did with it: what per-question metrics read."""

    question: EvalQuestion
    found: Retrieval
    answer: Answer
    picked: int | None
    aliases: Mapping[str, str]
    """A corpus id whose identical text is stored under another id, to that id: the same wire story
    published twice is one document in the index, and finding it must count as finding either."""
    complete: bool = True
    """The set's corpus holds the answer to each answerable question (`SetConfig.complete`)."""

    @functools.cached_property
    def documents(self) -> dict[str, float]:
        """Every document-level metric at every k. An article listed with near-copies folded into it
        (`also_in`) counts as finding any of them."""
        gold = {self.aliases.get(doc_id, doc_id) for doc_id in self.question.gold_doc_ids}
        ranking = [
            next((doc for doc in (hit.doc_id, *hit.also_in) if doc in gold), hit.doc_id) for hit in self.found.articles
        ]
        return metrics.retrieval_metrics(ranking, gold, KS)

    @functools.cached_property
    def passages(self) -> dict[int, dict[str, float]]:
        """Every passage-level metric, by k."""
        texts = [p.text for p in self.found.passages]
        return {k: metrics.passage_metrics(texts, self.question.gold_evidence, k) or {} for k in KS}

    @property
    def has_answers(self) -> bool:
        return self.question.answerable and bool(self.question.answers)

    @property
    def text(self) -> str:
        """What the answer said: the short answer (the quotes after it are its evidence, and a quote that
        happens to hold "no" must not count as answering "no"), else the text; empty for a refusal."""
        if self.answer.refused:
            return ""
        return self.answer.short or without_markers(self.answer.text)

    @property
    def draft_text(self) -> str:
        """What the reader would answer, shown or withheld: the short answer, else its text."""
        answer = self.answer
        if not answer.refused:
            return self.text
        return answer.draft_short or without_markers(answer.draft or "")

    @property
    def answer_in_context(self) -> float | None:
        """1 when a gold answer appears, as whole tokens, in the passages the reader was given."""
        if not self.has_answers:
            return None
        return metrics.contains_answer(" ".join(p.text for p in self.answer.passages), self.question.answers)

    @property
    def citation_numbers(self) -> list[int]:
        return [c.number for c in self.answer.citations]


@dataclass(frozen=True)
class Metric:
    name: str
    level: Level
    description: str
    per_question: Callable[[Scored], float | None] | None = None
    from_records: Callable[[Sequence[dict[str, Any]]], float | None] | None = None
    headline: bool = False
    """Shown in the report's bar chart and the README's baseline table."""
    k: int | None = None
    """For a retrieval metric at depth k: its depth (`base` is the name without it)."""
    ablation: bool = False
    """A column of the retrieval ablation's table (`rag eval ablate`)."""

    @property
    def base(self) -> str:
        return self.name.split("@")[0] if self.k else self.name


METRICS: Registry[Metric] = Registry("metric", lambda metric: [metric.name], group="rag.metrics")
register = METRICS.register


def score_question(scored: Scored) -> dict[str, Any]:
    """Every per-question metric; None marks "not applicable", which averages ignore. Retrieval metrics of a
    question without gold articles or evidence are left out rather than None, as they always were."""
    scores: dict[str, Any] = {}
    for metric in METRICS.values():
        if metric.per_question is None:
            continue
        value = metric.per_question(scored)
        if value is not None or metric.level not in ("document", "passage"):
            scores[metric.name] = value
    return scores


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Run-level values: per-question metrics averaged over the questions they apply to (and those the
    judge recorded), the rest computed from all records."""
    summary: dict[str, float | None] = {}
    for metric in METRICS.values():
        if metric.level == "count":
            continue
        if metric.from_records is not None:
            summary[metric.name] = metric.from_records(records)
        elif any(metric.name in r["scores"] for r in records):
            summary[metric.name] = metrics.mean(r["scores"].get(metric.name) for r in records)
    return summary


# -- document and passage retrieval ----------------------------------------------------------------------


def _document(name: str) -> Callable[[Scored], float | None]:
    return lambda s: s.documents.get(name)


def _passage(base: str, k: int) -> Callable[[Scored], float | None]:
    return lambda s: s.passages[k].get(base)


_ABLATED = {("hit", 1), ("hit", 3), ("hit", 5), ("hit", 10), ("mrr", 10), ("ndcg", 10)}
for _base, (_, _text) in metrics.RANKING.items():
    for _k in KS:
        register(
            Metric(
                f"{_base}@{_k}",
                "document",
                _text.format(what="article"),
                _document(f"{_base}@{_k}"),
                headline=(_base, _k) in {("hit", 1), ("hit", 5), ("mrr", 10)},
                k=_k,
                ablation=(_base, _k) in _ABLATED,
            )
        )
for _base, (_, _text) in metrics.RANKING.items():
    for _k in KS:
        register(
            Metric(
                f"passage_{_base}@{_k}",
                "passage",
                _text.format(what="passage") + " (a passage is relevant if it holds a gold evidence string)",
                _passage(_base, _k),
                headline=(_base, _k) == ("hit", 5),
                k=_k,
                ablation=(_base, _k) == ("hit", 5),
            )
        )


# -- answers -----------------------------------------------------------------------------------------------


def _answered(score: Callable[[str, Sequence[str]], float]) -> Callable[[Scored], float | None]:
    return lambda s: score(s.text, s.question.answers) if s.has_answers else None


register(Metric("em", "answer", "SQuAD exact match of the short answer", _answered(metrics.exact_match), headline=True))
register(Metric("f1", "answer", "SQuAD token F1 of the short answer", _answered(metrics.token_f1), headline=True))
register(
    Metric(
        "contains",
        "answer",
        "1 if a gold answer appears, as whole tokens, in the short answer",
        _answered(metrics.contains_answer),
        headline=True,
    )
)
register(
    Metric(
        "mc_accuracy",
        "answer",
        "the picked choice is the gold one",
        lambda s: float(s.picked == s.question.answer_idx) if s.picked is not None else None,
        headline=True,
    )
)
register(
    Metric(
        "claim_support",
        "answer",
        "share of an answer's sentences that the passage sentence they cite says",
        lambda s: sum(c.supported for c in s.answer.claims) / len(s.answer.claims) if s.answer.claims else None,
        headline=True,
    )
)

register(
    Metric(
        "answer_in_context",
        "answer",
        "1 if a gold answer appears, as whole tokens, in the passages the reader was given: a bound on any reader",
        lambda s: s.answer_in_context,
        headline=True,
        ablation=True,
    )
)


def _draft_correct(s: Scored) -> float | None:
    """Whether the answer the reader drafted (shown, or withheld below the threshold) is right: it holds a
    gold answer (as `contains`); any answer to an unanswerable question is wrong."""
    if not s.question.answerable:
        return 0.0
    return metrics.contains_answer(s.draft_text, s.question.answers) if s.has_answers else None


register(
    Metric(
        "draft_correct",
        "answer",
        "the answer drafted, shown or withheld, is right (holds a gold answer; none is right if unanswerable)",
        _draft_correct,
    )
)

# -- citations ---------------------------------------------------------------------------------------------

register(Metric("citations", "count", "citations in the answer", lambda s: len(s.citation_numbers)))
register(
    Metric(
        "citations_valid",
        "count",
        "citations that point at a passage given",
        lambda s: sum(1 for n in s.citation_numbers if 1 <= n <= len(s.answer.passages)),
    )
)
register(
    Metric(
        "citations_invalid_raw",
        "count",
        "numbers the model cited that point nowhere (removed)",
        lambda s: len(s.answer.invalid_citations),
    )
)


def _citation_validity(records: Sequence[dict[str, Any]]) -> float | None:
    citations = sum(r["scores"]["citations"] for r in records)
    valid = sum(r["scores"]["citations_valid"] for r in records)
    return valid / citations if citations else None


def _citation_validity_raw(records: Sequence[dict[str, Any]]) -> float | None:
    valid = sum(r["scores"]["citations_valid"] for r in records)
    invalid = sum(r["scores"]["citations_invalid_raw"] for r in records)
    return valid / (valid + invalid) if valid + invalid else None


register(
    Metric(
        "citation_validity",
        "citation",
        "share of citations in final answers that point at a passage given",
        from_records=_citation_validity,
    )
)
register(
    Metric(
        "citation_validity_raw",
        "citation",
        "the same before invalid numbers were removed",
        from_records=_citation_validity_raw,
    )
)


def _cited_support(s: Scored) -> float | None:
    """Whole-token containment (as `contains`), so the answer "10" is not found in "2010"; a question with
    neither answers nor evidence has nothing to look for, so the metric does not apply (not 0)."""
    q, numbers = s.question, s.citation_numbers
    needles = [x for x in (*q.answers, *q.gold_evidence) if normalize_answer(x)]
    if not (numbers and q.answerable and needles):
        return None
    passages = s.answer.passages
    cited = " ".join(passages[n - 1].text for n in sorted(set(numbers)) if 1 <= n <= len(passages))
    return metrics.contains_answer(cited, needles)


register(
    Metric(
        "cited_support",
        "citation",
        "share of cited, answerable answers whose cited passages hold a gold answer or evidence string",
        _cited_support,
    )
)
register(Metric("citation_recall", "citation", "ALCE citation recall (with --judge)"))
register(Metric("citation_precision", "citation", "ALCE citation precision (with --judge)"))


# -- refusals ----------------------------------------------------------------------------------------------


def _refusal(name: str, *, any_answerable: bool = False) -> Callable[[Sequence[dict[str, Any]]], float | None]:
    """Refusal rates. Where the set's corpus may lack an answer (`Scored.complete` false), a refusal of a
    question whose answer is not in the passages is honest, so `wrong_refusal_rate` leaves those questions
    out; `any_answerable` counts every answerable question, as the rate was before that distinction."""

    def compute(records: Sequence[dict[str, Any]]) -> float | None:
        kept = [r for r in records if any_answerable or r["scores"].get("reachable", 1.0) or not r["answerable"]]
        rates = metrics.refusal_metrics([r["answerable"] for r in kept], [r["refused"] for r in kept])
        return rates[name]

    return compute


register(
    Metric(
        "reachable",
        "count",
        "answerable, and the answer is in the corpus (every question of a complete set) or in the passages",
        lambda s: float(s.question.answerable and (s.complete or bool(s.answer_in_context))),
    )
)


register(
    Metric(
        "refusal_precision", "refusal", "share of refusals that were right", from_records=_refusal("refusal_precision")
    )
)
register(
    Metric(
        "refusal_recall",
        "refusal",
        "share of unanswerable questions refused",
        from_records=_refusal("refusal_recall"),
        headline=True,
    )
)
register(
    Metric(
        "wrong_refusal_rate",
        "refusal",
        "share of answerable questions refused (where the corpus may lack answers: of those whose answer the "
        "passages hold)",
        from_records=_refusal("wrong_refusal_rate"),
        headline=True,
    )
)
register(
    Metric(
        "wrong_refusal_rate_any",
        "refusal",
        "share of all answerable questions refused, whether or not the passages hold the answer",
        from_records=_refusal("wrong_refusal_rate", any_answerable=True),
    )
)

# -- selective answering -----------------------------------------------------------------------------------


def confidence_pairs(records: Sequence[dict[str, Any]]) -> list[selective.Pair]:
    """(confidence, draft right) for every question whose draft can be judged."""
    return [
        (float(r["confidence"]), bool(r["scores"]["draft_correct"]))
        for r in records
        if r["scores"].get("draft_correct") is not None
    ]


def _answered_precision(records: Sequence[dict[str, Any]]) -> float | None:
    shown = [r["scores"].get("draft_correct") for r in records if not r["refused"]]
    return metrics.mean(shown)


def _coverage(records: Sequence[dict[str, Any]]) -> float | None:
    judged = [r for r in records if r["scores"].get("draft_correct") is not None]
    return sum(not r["refused"] for r in judged) / len(judged) if judged else None


def _half_gain(records: Sequence[dict[str, Any]]) -> float | None:
    """Over the answerable questions only, as the issue that asked for it measured it: with unanswerable
    questions in, whose drafts are all wrong, any confidence that ranks them low would gain for free."""
    pairs = confidence_pairs([r for r in records if r["answerable"]])
    top, every = selective.precision_of_top(pairs, 0.5), selective.precision_of_top(pairs, 1.0)
    return top - every if top is not None and every is not None else None


register(
    Metric(
        "answered_precision",
        "selective",
        "share of the answers shown (not withheld) that are right",
        from_records=_answered_precision,
        headline=True,
    )
)
register(Metric("coverage", "selective", "share of questions answered rather than withheld", from_records=_coverage))
register(
    Metric(
        "aurc",
        "selective",
        "area under the risk–coverage curve, answering the most confident first (lower is better)",
        from_records=lambda records: selective.aurc(confidence_pairs(records)),
    )
)


register(
    Metric(
        "excess_aurc",
        "selective",
        "AURC above the best any ranking of these same answers could reach: the confidence's share of the risk",
        from_records=lambda records: selective.excess_aurc(confidence_pairs(records)),
    )
)


def _coverage_at(precision: int) -> Callable[[Sequence[dict[str, Any]]], float | None]:
    return lambda records: selective.coverage_at(confidence_pairs(records), precision / 100)


for _precision in (80, 90):
    register(
        Metric(
            f"coverage_at_{_precision}",
            "selective",
            f"the largest share of questions answerable, most confident first, with {_precision} % of them right",
            from_records=_coverage_at(_precision),
        )
    )
register(
    Metric(
        "confident_half_precision",
        "selective",
        "share of right drafts among the most confident half of all questions",
        from_records=lambda records: selective.precision_of_top(confidence_pairs(records), 0.5),
    )
)
register(
    Metric(
        "confident_half_gain",
        "selective",
        "how much more often the most confident half of the answerable questions' drafts is right than all",
        from_records=_half_gain,
    )
)

# -- cost --------------------------------------------------------------------------------------------------

STAGES = ("retrieve", "generate", "total")


def _latency(stage: str, stat: str) -> Callable[[Sequence[dict[str, Any]]], float | None]:
    def compute(records: Sequence[dict[str, Any]]) -> float | None:
        return metrics.latency_summary([r["timings"][stage] for r in records if stage in r["timings"]])[stat]

    return compute


for _stage in STAGES:
    for _stat in ("p50", "p95", "mean"):
        register(
            Metric(
                f"latency_{_stage}_{_stat}",
                "cost",
                f"{_stat} seconds to {_stage}",
                from_records=_latency(_stage, _stat),
            )
        )


def _tokens(kind: str) -> Callable[[Sequence[dict[str, Any]]], float | None]:
    return lambda records: metrics.mean(float(r["tokens"][kind]) for r in records)


for _kind in ("prompt", "completion"):
    register(Metric(f"tokens_{_kind}_mean", "cost", f"mean {_kind} tokens (tiktoken)", from_records=_tokens(_kind)))
METRICS.load_entry_points()


def headline() -> list[str]:
    return [m.name for m in METRICS.values() if m.headline]
