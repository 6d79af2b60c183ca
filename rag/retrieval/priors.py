"""Priors: what the date a question is asked at, and the dates it names, say about each article.

The same story is reported many times over months, so the as-of date decides which report is right.
Each prior adds to `Search.prior`, per article, in the units of a first place in one fused ranking.
"""

from __future__ import annotations

import numpy as np

from rag.config import RetrievalSettings
from rag.retrieval.corpus import allowed
from rag.retrieval.search import Search
from rag.store.records import UNDATED, day


class RecencyPrior:
    """`recency_weight`, halving every `recency_half_life_days` of the article's age at the as-of date;
    undated articles earn none."""

    name = "recency"

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool:
        return settings.recency_weight > 0

    def __call__(self, search: Search) -> None:
        s, days = search.settings, search.corpus.article_day

        def bonus() -> np.ndarray:
            dated = days != UNDATED
            age = np.maximum(day(search.as_of) - days[dated].astype(np.int64), 0)
            out = np.zeros(len(days), dtype=np.float64)
            out[dated] = s.recency_weight * 0.5 ** (age / s.recency_half_life_days)
            return out

        key = ("recency", search.as_of, s.recency_weight, s.recency_half_life_days)
        search.prior += search.corpus.memo(key, bonus)


class QuestionDatePrior:
    """`question_date_weight` for articles inside a date the question names ("last week"). The named date
    only adds: it often names when an event happened rather than when it was reported ("how long did Trump
    let the violence of January 6, 2021 play out?" asked during the 2022 hearings), and letting it move
    the recency reference cost 2 points of Hit@1 and Hit@5 on RealTime QA."""

    name = "question dates"

    @staticmethod
    def enabled(settings: RetrievalSettings) -> bool:
        return settings.question_dates != "off" and settings.question_date_weight > 0

    def __call__(self, search: Search) -> None:
        if search.mention is None:
            return
        days = search.corpus.article_day
        inside = allowed(days, search.mention.range) & (days != UNDATED)
        search.prior[inside] += search.settings.question_date_weight
