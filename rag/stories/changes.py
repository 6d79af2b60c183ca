"""What changed: a question asking what is new about a story since a date ("What is new about Storm Nadia
since Monday?", "What changed in the Twitter deal this week?") is answered by the story's timeline from
that date on, each line quoted from the passage it cites, rather than by one sentence of one passage.

The date is read as questions' dates are (`rag.dates.resolve`, against the as-of date): "since Monday"
starts on that Monday; "this week" or "in the past month" starts where that period does.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace

from rag.dates import DateRange, resolve
from rag.stories.figures import figure_line
from rag.types import Citation, Claim, Timeline

_ASKS = re.compile(
    r"^\s*what(?:'s|\s+is|\s+has\s+been)?\s+(?:new|the\s+latest|(?:has\s+)?changed|(?:has\s+)?happened)\s+"
    r"(?:about|in|on|with|for|to|from|around)\s+(?P<topic>.+?)\s+(?P<when>since\s+.+|(?:this|last|past)\s+\w+|"
    r"in\s+the\s+(?:past|last)\s+.+|today|yesterday)\s*\??\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class WhatChanged:
    """A question asking what is new about `topic` within `dates`."""

    topic: str
    dates: DateRange
    phrase: str


def asks_what_changed(question: str, as_of: dt.date) -> WhatChanged | None:
    """The topic and the dates when the question asks what is new about a story since a date; else None."""
    match = _ASKS.match(question)
    if match is None:
        return None
    when = match.group("when").rstrip(" ?")
    mention = resolve(re.sub(r"^since\s+", "on ", when, flags=re.IGNORECASE), as_of) or resolve(when, as_of)
    if mention is None or mention.range.since is None:
        return None
    return WhatChanged(match.group("topic").strip(" ,"), DateRange(mention.range.since, as_of), when)


def answer_text(asked: WhatChanged, timeline: Timeline) -> tuple[str, list[Claim], list[Citation]]:
    """The answer's text, one line per event (`[n]` its citation's number), then one per figure that
    changed citing both figures' sentences; a claim per line, each supported (an event's line is its
    passage's own sentence, a figure's values are quoted from theirs); the citations, numbered as cited."""
    since = asked.dates.since.isoformat() if asked.dates.since else "the start"
    lines, claims = [f"Since {since} ({asked.phrase}):"], []
    cited = [event.citation for event in timeline.events]

    def add(line: str, claim: str, numbers: tuple[int, ...], quote: str) -> None:
        at = sum(len(before) + 1 for before in lines)  # where the line starts in the joined text
        claims.append(Claim(claim, numbers, 1.0, True, quote, at, at + len(line)))
        lines.append(line)

    for event in timeline.events:
        number, quote = event.citation.number, event.citation.quote
        add(f"{event.date.isoformat()}: {quote} [{number}]", quote, (number,), quote)
    for change in timeline.figures:
        numbers = (len(cited) + 1, len(cited) + 2)
        cited += [replace(f.citation, number=n) for f, n in zip((change.old, change.new), numbers, strict=True)]
        line = f"{figure_line(change)} [{numbers[0]}][{numbers[1]}]"
        add(line, line, numbers, change.new.citation.quote)
    return "\n".join(lines), claims, cited
