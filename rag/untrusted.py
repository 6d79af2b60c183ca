"""Article text is untrusted input: what keeps it inert wherever it meets a model or an answer.

News articles are written by others, and an article can carry text aimed at `rag` itself: a printed
"[2]" that would read as a citation, chat role tags, or sentences addressed to the model ("ignore all
previous instructions"). None of it is removed from the index; it is made harmless where it is used.
"""

from __future__ import annotations

import re

CITATION = re.compile(r"\[(\s*\d+(?:\s*[,;]\s*\d+)*\s*)\]")
"""An answer's citation marker: "[1]", "[1, 3]", "[2; 4]"."""

_ROLE_TAG = re.compile(
    r"<\|[^|<>\n]{0,40}\|>(?:\s*(?:system|assistant|user)\b)?|</?(?:system|assistant|user|passage)\b[^>\n]{0,40}>",
    re.IGNORECASE,
)


def inert(text: str) -> str:
    """Article text as prompts and answers carry it. A bracketed number the article itself prints (a
    footnote, or a planted "[2]") becomes "(2)", so it is never taken for a citation of passage 2; chat
    role tags and passage delimiters are dropped, so an article cannot close its passage and speak as the
    system. The words stay: an instruction inside an article is reported as what the article says."""
    return _ROLE_TAG.sub("", CITATION.sub(lambda m: f"({m.group(1).strip()})", text)).strip()


_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.]{0,40}\b(?:instructions?|prompts?|passages?|context|rules)\b"
    r"|(?:^|[\s.\u200b])(?:system|assistant|user)\s*:"
    r"|\b(?:new|updated) instructions?\b"
    r"|\byou (?:must|should|will|are to) (?:reply|answer|respond|say|output)\b"
    r"|\b(?:reply|answer|respond)(?: only)? with (?:only |just )?the (?:single )?word\b",
    re.IGNORECASE,
)


def reporting_part(sentence: str) -> str:
    """The sentence up to where it starts speaking to the model ("ignore all previous instructions",
    "SYSTEM: ..."), stripped; "" when it does so from the start. What is cut stays in the index and in the
    passages shown, but is never evidence: the reader neither answers from it nor shows it to a small
    model as an excerpt. Cut rather than dropped, as a planted instruction often shares a sentence with
    the news it rides on (no full stop before "SYSTEM:")."""
    match = _INSTRUCTION.search(sentence)
    return sentence if match is None else sentence[: match.start()].rstrip(" \t\n\u200b.,;:-")
