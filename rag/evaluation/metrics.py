"""Evaluation metrics: retrieval (doc and passage level), answers, refusals and latency.

Everything here is pure and deterministic so that a run's numbers can be recomputed from its saved
records. Per-question functions return None when a question cannot be scored on that metric (no gold
documents, no evidence strings); `mean` skips those, so such questions are excluded from an average
rather than dragging it towards 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence

from rag.text import normalize_answer


def dedupe(ranking: Sequence[str]) -> list[str]:
    """Keep each id at its first (best) rank.

    Doc-level rankings are derived from chunk rankings, so one article can appear several times;
    counting it again would inflate precision-based metrics and push other documents down.
    """
    return list(dict.fromkeys(ranking))


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _relevance(ranked: Sequence[str], gold: Collection[str], k: int) -> list[bool]:
    """Binary relevance of the deduplicated top k; shorter than k when the ranking is."""
    _check_k(k)
    gold_set = set(gold)
    return [doc in gold_set for doc in dedupe(ranked)[:k]]


def _dcg(relevance: Sequence[bool]) -> float:
    """DCG = Σ rel_i / log2(i + 1) over 1-based ranks i.

    With binary relevance the linear gain rel_i and the exponential gain 2^rel_i - 1 coincide, so the
    choice between the two common DCG variants does not matter here.
    """
    return sum(1.0 / math.log2(i + 1) for i, rel in enumerate(relevance, start=1) if rel)


def _ndcg(relevance: Sequence[bool], ideal_count: int) -> float:
    """The ideal ranking puts `ideal_count` relevant items at the top, so a perfect top k scores 1."""
    return _dcg(relevance) / _dcg([True] * ideal_count)


def _reciprocal_rank(relevance: Sequence[bool]) -> float:
    return next((1.0 / i for i, rel in enumerate(relevance, start=1) if rel), 0.0)


def _average_precision(relevance: Sequence[bool], ideal_count: int) -> float:
    """AP@k = Σ P@i·rel_i / min(|gold|, k).

    Dividing by min(|gold|, k) rather than |gold| means a system that fills all k slots with gold
    scores 1 even when there is more gold than fits in k.
    """
    hits = 0
    total = 0.0
    for i, rel in enumerate(relevance, start=1):
        if rel:
            hits += 1
            total += hits / i
    return total / ideal_count


def hit_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float | None:
    """1.0 if any gold id is in the top k, else 0.0; None without gold (the question is not scorable)."""
    if not gold:
        return None
    return 1.0 if any(_relevance(ranked, gold, k)) else 0.0


def recall_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float | None:
    """|gold ∩ top-k| / |gold|: the denominator is all of gold, so k < |gold| caps recall below 1."""
    if not gold:
        return None
    return sum(_relevance(ranked, gold, k)) / len(set(gold))


def mrr_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float | None:
    """1 / rank of the first gold id within the top k; 0.0 when gold only appears beyond k."""
    if not gold:
        return None
    return _reciprocal_rank(_relevance(ranked, gold, k))


def ndcg_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float | None:
    """Binary-relevance nDCG@k; the ideal has min(|gold|, k) relevant documents at the top."""
    if not gold:
        return None
    return _ndcg(_relevance(ranked, gold, k), min(len(set(gold)), k))


def map_at_k(ranked: Sequence[str], gold: Collection[str], k: int) -> float | None:
    """Average precision at k (averaged over questions by the caller with `mean`, giving MAP@k)."""
    if not gold:
        return None
    return _average_precision(_relevance(ranked, gold, k), min(len(set(gold)), k))


RANKING: dict[str, tuple[Callable[[Sequence[str], Collection[str], int], float | None], str]] = {
    "hit": (hit_at_k, "1 if a gold {what} is among the first k"),
    "recall": (recall_at_k, "share of the gold {what}s among the first k"),
    "mrr": (mrr_at_k, "1 / rank of the first gold {what} within k, else 0"),
    "ndcg": (ndcg_at_k, "binary-relevance nDCG over the first k"),
    "map": (map_at_k, "average precision over the first k"),
}
"""Every metric of a ranking at depth k, with what it says ({what}: article or passage): scored for articles
and passages at every depth (`rag.evaluation.scoring` registers each), so a new one is one entry here."""


def retrieval_metrics(
    ranked_ids: Sequence[str], gold: Collection[str], ks: Sequence[int] = (1, 3, 5, 10)
) -> dict[str, float]:
    """All doc-level metrics at every k, keyed "name@k"; empty without gold so the question drops out."""
    if not gold:
        return {}
    scores: dict[str, float] = {}
    for name, (function, _) in RANKING.items():
        for k in ks:
            value = function(ranked_ids, gold, k)
            assert value is not None  # gold is non-empty
            scores[f"{name}@{k}"] = value
    return scores


def _normalize_text(text: str) -> str:
    """Case-insensitive, whitespace-insensitive form: evidence quoted from an article may be re-wrapped."""
    return " ".join(text.split()).casefold()


def evidence_relevance(passages: Sequence[str], evidence: Sequence[str]) -> list[set[int]]:
    """For each ranked passage, the indices of the evidence strings it contains.

    This is the MultiHop-RAG notion of relevance: a chunk is relevant when it contains a gold evidence
    sentence, which does not depend on how the corpus was chunked into ids. Evidence strings that are
    empty after normalization never match; otherwise they would make every passage relevant.
    """
    needles = [_normalize_text(e) for e in evidence]
    found: list[set[int]] = []
    for passage in passages:
        haystack = _normalize_text(passage)
        found.append({j for j, needle in enumerate(needles) if needle and needle in haystack})
    return found


def _novel_relevance(matches: Sequence[set[int]]) -> list[bool]:
    """A passage counts as relevant only if it contains evidence no earlier passage contained.

    Overlapping chunks often repeat the same evidence sentence; crediting each copy would let nDCG and
    AP exceed 1 (more relevant passages than the min(|evidence|, k) ideal) — the passage analogue of
    deduplicating doc rankings. The first relevant passage is always novel, so hit and MRR are the same
    as under plain "contains any evidence".
    """
    seen: set[int] = set()
    relevance: list[bool] = []
    for match in matches:
        relevance.append(bool(match - seen))
        seen |= match
    return relevance


def passage_metrics(passages: Sequence[str], evidence: Sequence[str], k: int) -> dict[str, float] | None:
    """Hit, recall, MRR, nDCG and AP at k over ranked passage texts, against gold evidence strings.

    Recall is the share of evidence strings found in some top-k passage (one passage may hold several).
    Passages are not deduplicated: distinct chunks can share text, and relevance is judged on text.
    None without evidence, so the question is excluded from averages.
    """
    _check_k(k)
    if not evidence:
        return None
    matches = evidence_relevance(passages[:k], evidence)
    relevance = _novel_relevance(matches)
    ideal = min(len(evidence), k)
    found = set[int]().union(*matches)
    return {
        "hit": 1.0 if any(relevance) else 0.0,
        "recall": len(found) / len(evidence),
        "mrr": _reciprocal_rank(relevance),
        "ndcg": _ndcg(relevance, ideal),
        "map": _average_precision(relevance, ideal),
    }


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if the prediction equals any gold after normalization; 0.0 with no golds (nothing to match)."""
    pred = normalize_answer(prediction)
    return max((1.0 if pred == normalize_answer(g) else 0.0 for g in golds), default=0.0)


def _f1(pred_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """SQuAD token F1 with multiset overlap.

    When either side is empty (e.g. an articles-only answer) the reference script scores agreement:
    1.0 if both are empty, 0.0 if only one is.
    """
    if not pred_tokens or not gold_tokens:
        return 1.0 if not pred_tokens and not gold_tokens else 0.0
    overlap = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Best SQuAD token F1 over the golds (any acceptable answer counts); 0.0 with no golds."""
    pred_tokens = normalize_answer(prediction).split()
    return max((_f1(pred_tokens, normalize_answer(g).split()) for g in golds), default=0.0)


def _contains_tokens(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return any(list(haystack[i : i + n]) == list(needle) for i in range(len(haystack) - n + 1))


def contains_answer(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if some gold appears in the prediction as a contiguous run of whole tokens.

    Generative answers wrap the fact in a sentence, which EM and F1 penalise; this asks only whether the
    fact is there. Whole tokens so "10" is not found in "2010"; golds that normalize to nothing (e.g.
    "The") are skipped because they would be contained in everything.
    """
    pred_tokens = normalize_answer(prediction).split()
    for gold in golds:
        gold_tokens = normalize_answer(gold).split()
        if gold_tokens and _contains_tokens(pred_tokens, gold_tokens):
            return 1.0
    return 0.0


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def refusal_metrics(answerable: Sequence[bool], refused: Sequence[bool]) -> dict[str, float | None]:
    """How well the system refuses exactly the unanswerable questions.

    Precision: of the refusals, how many were right. Recall: of the unanswerable questions, how many were
    refused. Wrong-refusal rate: of the answerable questions, how many were wrongly refused. Each is None
    when its denominator is empty (e.g. a set without unanswerable questions has no refusal recall)
    rather than a misleading 0 or 1.
    """
    if len(answerable) != len(refused):
        raise ValueError(f"answerable has {len(answerable)} items but refused has {len(refused)}")
    pairs = list(zip(answerable, refused, strict=True))
    correct_refusals = sum(1 for ans, ref in pairs if ref and not ans)
    wrong_refusals = sum(1 for ans, ref in pairs if ref and ans)
    return {
        "refusal_precision": _ratio(correct_refusals, sum(1 for _, ref in pairs if ref)),
        "refusal_recall": _ratio(correct_refusals, sum(1 for ans, _ in pairs if not ans)),
        "wrong_refusal_rate": _ratio(wrong_refusals, sum(1 for ans, _ in pairs if ans)),
    }


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (p in 0..100) with linear interpolation between closest ranks.

    Same as numpy.percentile's default ("linear") method, so numbers match anything computed with numpy:
    the position is (n - 1)·p/100 in the sorted values. None for no values.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {p}")
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * p / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


def latency_summary(values: Sequence[float]) -> dict[str, float | None]:
    """Median and p95 (the tail users notice) plus the mean; all None when nothing was timed."""
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "mean": mean(values)}


def mean(values: Iterable[float | None]) -> float | None:
    """Average of the scored values; None entries are questions the metric does not apply to, so they
    are skipped rather than counted as 0. None when no value is left."""
    scored = [v for v in values if v is not None]
    return sum(scored) / len(scored) if scored else None
