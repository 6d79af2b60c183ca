"""Dates: publication-date ranges, and the relative date expressions of a question resolved against the
date it is asked.

News questions carry time in their words ("who resigned this week?", "what did the Fed do in March?").
Read against the question's "as of" date, such a phrase names a range, which retrieval then prefers or
filters by. Calendar semantics are used (weeks start on Monday, as in ISO 8601) with one exception:
"this week" is the seven days ending on the as-of date, as news copy uses it. A Thursday news quiz asks
about Sunday's story as "this week"; on RealTime QA the calendar reading cost 4 points of Hit@1. "Past
N days" style phrases are rolling too, as they say. Phrases without a definite range ("recently", "the
latest") resolve to nothing: the recency prior covers them.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.errors import QuestionError


@dataclass(frozen=True)
class DateRange:
    """Publication dates from `since` to `until`, both inclusive; None leaves that side open."""

    since: dt.date | None = None
    until: dt.date | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise QuestionError(
                f"date range is empty: since {self.since} is after until {self.until}", hint="swap the dates"
            )

    def __str__(self) -> str:
        """In words, as the CLI and the chat page show which dates were searched."""
        since, until = self.since, self.until
        if since and until:
            return f"{since.isoformat()} to {until.isoformat()}" if since != until else f"on {since.isoformat()}"
        if since:
            return f"since {since.isoformat()}"
        return f"up to {until.isoformat()}" if until else "at any date"


@dataclass(frozen=True)
class DateMention:
    """A date phrase found in a question and the range it names."""

    phrase: str
    range: DateRange
    relative: bool = True
    """Relative to the as-of date ("last week"), so no article states it in those words; "on Friday" or
    "in March 2021" is how articles write dates, and may well be in the text."""

    def strip_from(self, question: str) -> str:
        """The question without a relative phrase, for matching its words against passages: "last week"
        is in no passage, while "on Friday" is part of what the question asks about and stays."""
        return " ".join(question.replace(self.phrase, " ").split()) if self.relative else question


MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
MONTHS |= {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name and name != "May"}
WEEKDAYS = {name.lower(): number for number, name in enumerate(calendar.day_name)}
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "ten": 10}

_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_WEEKDAY = "|".join(WEEKDAYS)
_COUNT = r"(?P<n>\d{1,3}|" + "|".join(_NUMBERS) + ")"
_UNIT = r"(?P<unit>day|week|month|year)s?"


def _month_range(year: int, month: int) -> DateRange:
    return DateRange(dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1]))


def _year_range(year: int) -> DateRange:
    return DateRange(dt.date(year, 1, 1), dt.date(year, 12, 31))


def _week_of(day: dt.date) -> DateRange:
    monday = day - dt.timedelta(days=day.weekday())
    return DateRange(monday, monday + dt.timedelta(days=6))


def _months_back(as_of: dt.date, n: int) -> tuple[int, int]:
    index = as_of.year * 12 + as_of.month - 1 - n
    return index // 12, index % 12 + 1


def _latest_month(as_of: dt.date, month: int) -> int:
    """The year of the most recent `month` that has begun by `as_of`: "in March" asked in February 2022
    means March 2021."""
    return as_of.year if month <= as_of.month else as_of.year - 1


def _count(match: re.Match[str]) -> int:
    n = match.group("n").lower()
    return _NUMBERS[n] if n in _NUMBERS else int(n)


def _ago(match: re.Match[str], as_of: dt.date) -> DateRange:
    """ "3 days ago" is that day; "2 weeks ago" that calendar week, and so on for months and years."""
    n, unit = _count(match), match.group("unit").lower()
    if unit == "day":
        day = as_of - dt.timedelta(days=n)
        return DateRange(day, day)
    if unit == "week":
        return _week_of(as_of - dt.timedelta(weeks=n))
    if unit == "month":
        return _month_range(*_months_back(as_of, n))
    return _year_range(as_of.year - n)


def _past(match: re.Match[str], as_of: dt.date) -> DateRange:
    """ "the past 3 weeks" (and "the past week", one week): a rolling range ending on the as-of date."""
    n = _count(match) if match.group("n") else 1
    unit = match.group("unit").lower()
    if unit == "day":
        start = as_of - dt.timedelta(days=n - 1)
    elif unit == "week":
        start = as_of - dt.timedelta(weeks=n) + dt.timedelta(days=1)
    elif unit == "month":
        year, month = _months_back(as_of, n)
        start = dt.date(year, month, min(as_of.day, calendar.monthrange(year, month)[1])) + dt.timedelta(days=1)
    else:
        start = _clamped(as_of.year - n, as_of.month, as_of.day) + dt.timedelta(days=1)
    return DateRange(start, as_of)


def _clamped(year: int, month: int, day: int) -> dt.date:
    return dt.date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _weekday(match: re.Match[str], as_of: dt.date) -> DateRange:
    """ "on Tuesday" is the most recent Tuesday, today included; "last Tuesday" the one before today."""
    back = (as_of.weekday() - WEEKDAYS[match.group("wd").lower()]) % 7
    if back == 0 and match.group("last"):
        back = 7
    day = as_of - dt.timedelta(days=back)
    return DateRange(day, day)


def _weekend(match: re.Match[str], as_of: dt.date) -> DateRange:
    """ "this weekend" and "last weekend": the most recent Saturday and Sunday that have begun."""
    saturday = as_of - dt.timedelta(days=(as_of.weekday() - 5) % 7)
    if match.group("which").lower() == "last" and as_of.weekday() >= 5:
        saturday -= dt.timedelta(weeks=1)
    return DateRange(saturday, saturday + dt.timedelta(days=1))


def _named_day(match: re.Match[str], as_of: dt.date) -> DateRange:
    month, day = MONTHS[match.group("month").lower()], int(match.group("day"))
    year = int(match.group("year")) if match.group("year") else None
    if year is None:
        year = as_of.year if (month, day) <= (as_of.month, as_of.day) else as_of.year - 1
    try:
        date = dt.date(year, month, day)
    except ValueError:
        return _month_range(year, month)
    return DateRange(date, date)


def _named_month(match: re.Match[str], as_of: dt.date) -> DateRange:
    month = MONTHS[match.group("month").lower()]
    year = int(match.group("year")) if match.group("year") else _latest_month(as_of, month)
    return _month_range(year, month)


Rule = tuple[re.Pattern[str], Callable[[re.Match[str], dt.date], DateRange], bool]


def _rule(pattern: str, resolve: Callable[[re.Match[str], dt.date], DateRange], *, relative: bool = True) -> Rule:
    return re.compile(rf"\b(?:{pattern})\b", re.IGNORECASE), resolve, relative


# The phrase starting earliest in the question wins; at one position, the rule listed first does, so
# longer phrases come before the ones they start with ("on March 5" before "on March"). Weekdays and
# month names count only after a word that makes them dates: "Black Friday" and "they may" are not.
RULES: tuple[Rule, ...] = (
    _rule(r"today|tonight|this (?:morning|afternoon|evening)", lambda m, d: DateRange(d, d)),
    _rule(r"yesterday|last night", lambda m, d: DateRange(d - dt.timedelta(days=1), d - dt.timedelta(days=1))),
    _rule(rf"{_COUNT} {_UNIT} ago", _ago),
    _rule(rf"(?:the )?(?:past|last|previous) {_COUNT} {_UNIT}", _past),
    _rule(r"(?:the )?past (?P<n>)(?P<unit>day|week|month|year)", _past),
    _rule(r"this week", lambda m, d: DateRange(d - dt.timedelta(days=6), d)),  # rolling: see the module doc
    _rule(r"last week", lambda m, d: _week_of(d - dt.timedelta(weeks=1))),
    _rule(r"(?P<which>this|last) weekend", _weekend),
    _rule(r"this month", lambda m, d: _month_range(d.year, d.month)),
    _rule(r"last month", lambda m, d: _month_range(*_months_back(d, 1))),
    _rule(r"this year", lambda m, d: _year_range(d.year)),
    _rule(r"last year", lambda m, d: _year_range(d.year - 1)),
    _rule(rf"(?:(?P<last>last)|on|this|early|late) (?P<wd>{_WEEKDAY})", _weekday, relative=False),
    _rule(
        rf"(?:(?:on|in|by|of) )?(?P<month>{_MONTH}|may)\.? (?P<day>\d{{1,2}})(?:st|nd|rd|th)?"
        r"(?:,? (?P<year>(?:19|20)\d\d))?(?!\d)",
        _named_day,
        relative=False,
    ),
    _rule(
        rf"(?:(?:in|during|early|late|mid|of) )?(?P<month>{_MONTH}|may),? (?P<year>(?:19|20)\d\d)",
        _named_month,
        relative=False,
    ),
    _rule(rf"(?:in|during|early|late|mid|of) (?P<month>{_MONTH}|may)(?P<year>)", _named_month, relative=False),
    _rule(r"(?:in|during|of) (?P<year>(?:19|20)\d\d)", lambda m, d: _year_range(int(m.group("year"))), relative=False),
)


def resolve(question: str, as_of: dt.date) -> DateMention | None:
    """The first date phrase of `question` and its range, or None when it names no definite period. The
    range ends on the as-of date at the latest ("this week" asked on a Wednesday ends that Wednesday)."""
    best: tuple[int, str, DateRange, bool] | None = None
    for pattern, rule, relative in RULES:
        match = pattern.search(question)
        if match is not None and (best is None or match.start() < best[0]):
            best = (match.start(), match.group(0), rule(match, as_of), relative)
    if best is None or (best[2].since is not None and best[2].since > as_of):
        return None
    _, phrase, found, relative = best
    until = min(found.until, as_of) if found.until else as_of
    return DateMention(phrase, DateRange(found.since, until), relative)
