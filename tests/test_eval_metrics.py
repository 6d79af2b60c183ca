"""Evaluation metrics against hand-computed values: every expected number is worked out in a comment.

Constants used below: 1/log2(2) = 1, 1/log2(3) = 0.6309297535714575, 1/log2(4) = 0.5,
1/log2(5) = 0.43067655807339306.
"""

from __future__ import annotations

import pytest

from rag.evaluation.metrics import (
    contains_answer,
    dedupe,
    evidence_relevance,
    exact_match,
    hit_at_k,
    latency_summary,
    map_at_k,
    mean,
    mrr_at_k,
    ndcg_at_k,
    passage_metrics,
    percentile,
    recall_at_k,
    refusal_metrics,
    retrieval_metrics,
    token_f1,
)
from rag.text import normalize_answer

# The worked example: doc-level ranking derived from chunks, so "a" appears twice.
# Deduped: [a, b, c]; gold {c, x}; relevance within k=3: [0, 0, 1].
RANKED = ["a", "b", "a", "c"]
GOLD = {"c", "x"}


class TestDedupe:
    def test_keeps_first_occurrence_in_order(self) -> None:
        assert dedupe(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]

    def test_empty(self) -> None:
        assert dedupe([]) == []


class TestRetrievalMetrics:
    """hit / recall / mrr / ndcg / map at k over doc ids."""

    def test_worked_example_at_3(self) -> None:
        # Deduped top 3 = [a, b, c]: c (gold) at rank 3. Without dedupe the top 3 would be [a, b, a] (no hit).
        assert hit_at_k(RANKED, GOLD, 3) == 1.0
        # |{c}| / |{c, x}| = 1/2
        assert recall_at_k(RANKED, GOLD, 3) == pytest.approx(0.5)
        # first gold at rank 3
        assert mrr_at_k(RANKED, GOLD, 3) == pytest.approx(1 / 3)
        # DCG = 1/log2(4) = 0.5; IDCG = min(2, 3) = 2 relevant on top = 1 + 1/log2(3) = 1.6309297535714575
        # nDCG = 0.5 / 1.6309297535714575 = 0.3065735963827292
        assert ndcg_at_k(RANKED, GOLD, 3) == pytest.approx(0.3065735963827292)
        # AP = P@3·1 / min(2, 3) = (1/3) / 2 = 1/6
        assert map_at_k(RANKED, GOLD, 3) == pytest.approx(1 / 6)

    def test_gold_beyond_k_scores_zero_not_none(self) -> None:
        # Top 1 = [a]: no gold, so every metric is 0 (the question is scored, just badly).
        assert hit_at_k(RANKED, GOLD, 1) == 0.0
        assert recall_at_k(RANKED, GOLD, 1) == 0.0
        assert mrr_at_k(RANKED, GOLD, 1) == 0.0
        assert ndcg_at_k(RANKED, GOLD, 1) == 0.0
        assert map_at_k(RANKED, GOLD, 1) == 0.0

    def test_gold_at_rank_4(self) -> None:
        ranked = ["a", "b", "c", "d"]
        assert mrr_at_k(ranked, {"d"}, 3) == 0.0
        # rank 4: MRR = 1/4; nDCG = (1/log2(5)) / 1 = 0.43067655807339306; AP = (1/4) / min(1, 4) = 0.25
        assert mrr_at_k(ranked, {"d"}, 4) == pytest.approx(0.25)
        assert ndcg_at_k(ranked, {"d"}, 4) == pytest.approx(0.43067655807339306)
        assert map_at_k(ranked, {"d"}, 4) == pytest.approx(0.25)

    def test_k_larger_than_ranking(self) -> None:
        # Deduped ranking has 3 docs; k = 10 sees the same [0, 0, 1], and IDCG still uses min(2, 10) = 2.
        assert hit_at_k(RANKED, GOLD, 10) == 1.0
        assert recall_at_k(RANKED, GOLD, 10) == pytest.approx(0.5)
        assert mrr_at_k(RANKED, GOLD, 10) == pytest.approx(1 / 3)
        assert ndcg_at_k(RANKED, GOLD, 10) == pytest.approx(0.3065735963827292)
        assert map_at_k(RANKED, GOLD, 10) == pytest.approx(1 / 6)

    def test_duplicates_do_not_count_twice(self) -> None:
        # Deduped [c]: DCG = 1, IDCG (1 gold) = 1, AP = 1/1, recall = 1/1.
        # Counting the copy would give nDCG 1 + 1/log2(3) = 1.63, AP (1 + 1) / 1 = 2, recall 2.
        ranked = ["c", "c"]
        assert recall_at_k(ranked, {"c"}, 2) == pytest.approx(1.0)
        assert ndcg_at_k(ranked, {"c"}, 2) == pytest.approx(1.0)
        assert map_at_k(ranked, {"c"}, 2) == pytest.approx(1.0)

    def test_relevant_at_2_and_4(self) -> None:
        ranked = ["x", "a", "y", "b"]
        gold = {"a", "b"}
        # relevance [0, 1, 0, 1]
        assert recall_at_k(ranked, gold, 4) == pytest.approx(1.0)
        assert mrr_at_k(ranked, gold, 4) == pytest.approx(0.5)
        # DCG = 1/log2(3) + 1/log2(5) = 1.0616063116448506; IDCG = 1 + 1/log2(3) = 1.6309297535714575
        assert ndcg_at_k(ranked, gold, 4) == pytest.approx(0.6509209298071326)
        # AP = (P@2 + P@4) / 2 = (1/2 + 2/4) / 2 = 0.5
        assert map_at_k(ranked, gold, 4) == pytest.approx(0.5)

    def test_more_gold_than_k(self) -> None:
        ranked = ["a", "b", "z"]
        gold = {"a", "b", "c"}
        # recall divides by all 3 gold: 2/3; nDCG and AP divide by min(3, 2) = 2, so a full top 2 scores 1:
        # DCG = IDCG = 1 + 1/log2(3); AP = (1/1 + 2/2) / 2 = 1.
        assert recall_at_k(ranked, gold, 2) == pytest.approx(2 / 3)
        assert ndcg_at_k(ranked, gold, 2) == pytest.approx(1.0)
        assert map_at_k(ranked, gold, 2) == pytest.approx(1.0)

    def test_empty_ranking_with_gold(self) -> None:
        assert hit_at_k([], {"a"}, 5) == 0.0
        assert recall_at_k([], {"a"}, 5) == 0.0
        assert mrr_at_k([], {"a"}, 5) == 0.0
        assert ndcg_at_k([], {"a"}, 5) == 0.0
        assert map_at_k([], {"a"}, 5) == 0.0

    def test_no_gold_is_none(self) -> None:
        for metric in (hit_at_k, recall_at_k, mrr_at_k, ndcg_at_k, map_at_k):
            assert metric(["a", "b"], set(), 3) is None

    def test_no_gold_is_excluded_from_mean(self) -> None:
        # Question 1 scores hit@3 = 1, question 2 has no gold: the average is 1, not 1/2.
        assert mean([hit_at_k(RANKED, GOLD, 3), hit_at_k(RANKED, set(), 3)]) == pytest.approx(1.0)

    def test_k_must_be_positive(self) -> None:
        with pytest.raises(ValueError):
            hit_at_k(RANKED, GOLD, 0)


class TestRetrievalMetricsDict:
    def test_keys_for_every_k(self) -> None:
        scores = retrieval_metrics(RANKED, GOLD)
        assert set(scores) == {f"{m}@{k}" for m in ("hit", "recall", "mrr", "ndcg", "map") for k in (1, 3, 5, 10)}

    def test_values_match_worked_example(self) -> None:
        scores = retrieval_metrics(RANKED, GOLD, ks=(1, 3))
        assert scores == pytest.approx(
            {
                "hit@1": 0.0,
                "recall@1": 0.0,
                "mrr@1": 0.0,
                "ndcg@1": 0.0,
                "map@1": 0.0,
                "hit@3": 1.0,
                "recall@3": 0.5,
                "mrr@3": 1 / 3,
                "ndcg@3": 0.3065735963827292,
                "map@3": 1 / 6,
            }
        )

    def test_no_gold_is_empty(self) -> None:
        assert retrieval_metrics(RANKED, set()) == {}


# Passage-level fixture. Evidence 0 appears in passages 1 and 3 (with different case and line wrapping in
# passage 1), evidence 1 only in passage 3, evidence 2 nowhere.
PASSAGES = [
    "Intro text about nothing in particular.",
    "The  Minister SAID\n talks would resume on Monday.",
    "Unrelated weather report.",
    "Markets fell 3% on Tuesday. The minister said talks would resume.",
]
EVIDENCE = ["minister said talks would resume", "Markets fell 3%", "never appears anywhere"]
ALL_ZERO = {"hit": 0.0, "recall": 0.0, "mrr": 0.0, "ndcg": 0.0, "map": 0.0}


class TestEvidenceRelevance:
    def test_case_and_whitespace_insensitive(self) -> None:
        assert evidence_relevance(PASSAGES, EVIDENCE) == [set(), {0}, set(), {0, 1}]

    def test_evidence_whitespace_is_normalized_too(self) -> None:
        assert evidence_relevance(["a b c"], ["A\n\tB"]) == [{0}]

    def test_empty_evidence_string_matches_nothing(self) -> None:
        assert evidence_relevance(["anything"], ["", "   "]) == [set()]

    def test_no_passages(self) -> None:
        assert evidence_relevance([], EVIDENCE) == []


class TestPassageMetrics:
    def test_all_four_passages(self) -> None:
        # relevance [0, 1, 0, 1]; evidence found in top 4: {0, 1} of 3; ideal = min(3, 4) = 3.
        scores = passage_metrics(PASSAGES, EVIDENCE, 4)
        assert scores is not None
        assert scores["hit"] == 1.0
        assert scores["recall"] == pytest.approx(2 / 3)
        assert scores["mrr"] == pytest.approx(0.5)
        # DCG = 1/log2(3) + 1/log2(5) = 1.0616063116448506; IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.1309297535714578
        assert scores["ndcg"] == pytest.approx(0.49818925746641285)
        # AP = (P@2 + P@4) / 3 = (1/2 + 2/4) / 3 = 1/3
        assert scores["map"] == pytest.approx(1 / 3)

    def test_top_two(self) -> None:
        # relevance [0, 1]; evidence found: {0} of 3; ideal = min(3, 2) = 2.
        scores = passage_metrics(PASSAGES, EVIDENCE, 2)
        assert scores == pytest.approx(
            {
                "hit": 1.0,
                "recall": 1 / 3,
                "mrr": 0.5,
                # DCG = 1/log2(3) = 0.6309297535714575; IDCG = 1 + 1/log2(3) = 1.6309297535714575
                "ndcg": 0.38685280723454163,
                # AP = P@2 / 2 = (1/2) / 2
                "map": 0.25,
            }
        )

    def test_evidence_beyond_k(self) -> None:
        assert passage_metrics(PASSAGES, EVIDENCE, 1) == ALL_ZERO

    def test_repeated_evidence_is_not_credited_twice(self) -> None:
        # Overlapping chunks both hold the single evidence sentence. Only the first is a new find, so
        # relevance is [1, 0, 0]: nDCG = 1/1, AP = 1/1. Crediting the copy would give nDCG 1.63 and AP 2.
        passages = ["A said x.", "A said x. More text.", "Other."]
        scores = passage_metrics(passages, ["a said x"], 3)
        assert scores == pytest.approx({"hit": 1.0, "recall": 1.0, "mrr": 1.0, "ndcg": 1.0, "map": 1.0})

    def test_passages_are_not_deduplicated(self) -> None:
        # Two identical noise passages keep their ranks: the evidence is at rank 3, not 2.
        scores = passage_metrics(["noise", "noise", "the gold fact"], ["gold fact"], 3)
        assert scores is not None
        assert scores["mrr"] == pytest.approx(1 / 3)
        # AP = P@3 / min(1, 3) = 1/3
        assert scores["map"] == pytest.approx(1 / 3)

    def test_no_passages(self) -> None:
        assert passage_metrics([], EVIDENCE, 5) == ALL_ZERO

    def test_no_evidence_is_none(self) -> None:
        assert passage_metrics(PASSAGES, [], 5) is None


class TestNormalizeAnswer:
    def test_squad_normalization(self) -> None:
        assert normalize_answer("The Stanislav Zas.") == "stanislav zas"

    def test_punctuation_removed_before_articles(self) -> None:
        # lower → "  a  u.s.-led   coalition, the end! "; no punctuation → "  a  usled   coalition the end ";
        # no articles, collapsed → "usled coalition end"
        assert normalize_answer("  A  U.S.-led   coalition, The end! ") == "usled coalition end"

    def test_articles_only_inside_words_are_kept(self) -> None:
        assert normalize_answer("Theatre and anthem") == "theatre and anthem"

    def test_articles_only(self) -> None:
        assert normalize_answer("The a AN") == ""


class TestExactMatch:
    def test_equal_after_normalization(self) -> None:
        assert exact_match("The Stanislav Zas.", ["stanislav zas"]) == 1.0

    def test_partial_is_not_exact(self) -> None:
        assert exact_match("Zas", ["Stanislav Zas"]) == 0.0

    def test_max_over_golds(self) -> None:
        assert exact_match("Zas", ["Stanislav Zas", "zas!"]) == 1.0

    def test_empty_prediction(self) -> None:
        assert exact_match("", ["Zas"]) == 0.0

    def test_no_golds(self) -> None:
        assert exact_match("Zas", []) == 0.0

    def test_articles_only_answer_matches_empty_gold(self) -> None:
        # both normalize to ""
        assert exact_match("The", [""]) == 1.0


class TestTokenF1:
    def test_partial_overlap(self) -> None:
        # pred tokens [minister, of, finance, said] (4), gold [finance, minister] (2), overlap 2
        # P = 2/4, R = 2/2, F1 = 2·0.5·1 / 1.5 = 2/3
        assert token_f1("The minister of finance said", ["Finance minister"]) == pytest.approx(2 / 3)

    def test_max_over_golds(self) -> None:
        # second gold [minister, of, finance]: overlap 3, P = 3/4, R = 1, F1 = 2·0.75 / 1.75 = 6/7 > 2/3
        assert token_f1("The minister of finance said", ["Finance minister", "minister of finance"]) == pytest.approx(
            6 / 7
        )

    def test_repeated_tokens_use_multiset_overlap(self) -> None:
        # pred [paris, paris, paris], gold [paris, france]: overlap min(3, 1) = 1
        # P = 1/3, R = 1/2, F1 = 2·(1/6) / (5/6) = 2/5
        assert token_f1("Paris Paris Paris", ["Paris, France"]) == pytest.approx(0.4)

    def test_repeated_tokens_each_count_in_overlap(self) -> None:
        # pred [paris, paris], gold [paris, paris, france]: overlap min(2, 2) = 2 (a set overlap would give 1)
        # P = 2/2, R = 2/3, F1 = 2·(2/3) / (5/3) = 4/5
        assert token_f1("Paris Paris", ["Paris, Paris, France"]) == pytest.approx(0.8)

    def test_equal_after_normalization(self) -> None:
        assert token_f1("The Stanislav Zas.", ["stanislav zas"]) == pytest.approx(1.0)

    def test_no_overlap(self) -> None:
        assert token_f1("Kyiv", ["Moscow"]) == 0.0

    def test_empty_prediction(self) -> None:
        assert token_f1("", ["Zas"]) == 0.0

    def test_articles_only_prediction_and_gold(self) -> None:
        # both normalize to no tokens: agreement scores 1
        assert token_f1("the", ["A."]) == 1.0

    def test_articles_only_gold_with_real_prediction(self) -> None:
        assert token_f1("Paris", ["The"]) == 0.0

    def test_no_golds(self) -> None:
        assert token_f1("Zas", []) == 0.0


class TestContainsAnswer:
    def test_answer_inside_sentence(self) -> None:
        assert contains_answer("He said it was the Stanislav Zas, yesterday.", ["Stanislav Zas"]) == 1.0

    def test_whole_tokens_only(self) -> None:
        # "10" is a substring of "2010" but not a token of it
        assert contains_answer("In 2010 it rose", ["10"]) == 0.0

    def test_contiguous_in_order(self) -> None:
        assert contains_answer("Zas met Stanislav", ["Stanislav Zas"]) == 0.0

    def test_gold_longer_than_prediction(self) -> None:
        assert contains_answer("Zas", ["Stanislav Zas"]) == 0.0

    def test_any_gold(self) -> None:
        assert contains_answer("It was Kyiv.", ["Moscow", "kyiv"]) == 1.0

    def test_articles_only_gold_is_skipped(self) -> None:
        assert contains_answer("The answer is the city", ["The"]) == 0.0

    def test_empty_prediction(self) -> None:
        assert contains_answer("", ["Kyiv"]) == 0.0

    def test_no_golds(self) -> None:
        assert contains_answer("Kyiv", []) == 0.0


class TestRefusalMetrics:
    def test_mixed(self) -> None:
        answerable = [True, True, False, False, True]
        refused = [False, True, True, False, False]
        # refused ∧ unanswerable: #2 → 1; refused: #1, #2 → 2; unanswerable: #2, #3 → 2;
        # refused ∧ answerable: #1 → 1; answerable: #0, #1, #4 → 3
        assert refusal_metrics(answerable, refused) == pytest.approx(
            {"refusal_precision": 1 / 2, "refusal_recall": 1 / 2, "wrong_refusal_rate": 1 / 3}
        )

    def test_no_unanswerables(self) -> None:
        # one refusal, and it is wrong: precision 0/1, recall undefined, wrong refusals 1/2
        assert refusal_metrics([True, True], [True, False]) == {
            "refusal_precision": 0.0,
            "refusal_recall": None,
            "wrong_refusal_rate": 0.5,
        }

    def test_nothing_refused(self) -> None:
        assert refusal_metrics([True, False], [False, False]) == {
            "refusal_precision": None,
            "refusal_recall": 0.0,
            "wrong_refusal_rate": 0.0,
        }

    def test_only_unanswerables_all_refused(self) -> None:
        assert refusal_metrics([False, False], [True, True]) == {
            "refusal_precision": 1.0,
            "refusal_recall": 1.0,
            "wrong_refusal_rate": None,
        }

    def test_empty(self) -> None:
        assert refusal_metrics([], []) == {
            "refusal_precision": None,
            "refusal_recall": None,
            "wrong_refusal_rate": None,
        }

    def test_length_mismatch(self) -> None:
        with pytest.raises(ValueError):
            refusal_metrics([True], [True, False])


class TestLatency:
    def test_percentile_of_one_value(self) -> None:
        assert percentile([7.0], 0) == 7.0
        assert percentile([7.0], 50) == 7.0
        assert percentile([7.0], 95) == 7.0

    def test_percentile_even_length_interpolates(self) -> None:
        # sorted [1, 2, 3, 4]; p50 position 3·0.5 = 1.5 → 2 + 0.5·(3 − 2) = 2.5
        # p95 position 3·0.95 = 2.85 → 3 + 0.85·(4 − 3) = 3.85
        values = [4.0, 1.0, 3.0, 2.0]
        assert percentile(values, 50) == pytest.approx(2.5)
        assert percentile(values, 95) == pytest.approx(3.85)
        assert percentile(values, 0) == 1.0
        assert percentile(values, 100) == 4.0

    def test_percentile_odd_length(self) -> None:
        # [10, 20, 30]: p50 at position 1 → 20; p25 at position 0.5 → 15
        assert percentile([30.0, 10.0, 20.0], 50) == pytest.approx(20.0)
        assert percentile([30.0, 10.0, 20.0], 25) == pytest.approx(15.0)

    def test_percentile_empty(self) -> None:
        assert percentile([], 50) is None

    def test_percentile_out_of_range(self) -> None:
        with pytest.raises(ValueError):
            percentile([1.0], 101)

    def test_summary(self) -> None:
        # as above: p50 2.5, p95 3.85; mean (1 + 2 + 3 + 4) / 4 = 2.5
        assert latency_summary([4.0, 1.0, 3.0, 2.0]) == pytest.approx({"p50": 2.5, "p95": 3.85, "mean": 2.5})

    def test_summary_empty(self) -> None:
        assert latency_summary([]) == {"p50": None, "p95": None, "mean": None}


class TestMean:
    def test_ignores_none(self) -> None:
        # (1 + 0 + 0.5) / 3 = 0.5, the None is not a 0
        assert mean([None, 1.0, 0.0, 0.5]) == pytest.approx(0.5)

    def test_nothing_left(self) -> None:
        assert mean([None, None]) is None
        assert mean([]) is None

    def test_accepts_generator(self) -> None:
        assert mean(x for x in [1.0, 2.0]) == pytest.approx(1.5)
