"""Content words: how the reader compares a question, a passage sentence and an answer by their words.

Lower-cased, stop words removed and Snowball-stemmed, with the list and the stemmer `rag` already ships
for BM25 (bm25s's NLTK English stop words, PyStemmer), so "resigned" meets "resignation" and "who" or
"did" never count as evidence. BM25 keeps its own tokenizer (`rag.sparse`): its saved indexes depend on it.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_WORD = re.compile(r"\w+(?:['’]\w+)*")


@functools.cache
def stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS)


@functools.cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def words(text: str) -> list[str]:
    """Lower-cased words, possessives dropped ("Armenia’s" is "armenia"), nothing else removed."""
    out = []
    for word in _WORD.findall(text.lower()):
        word = word.replace("’", "'")
        out.append(word.removesuffix("'s"))
    return out


def terms(text: str) -> list[str]:
    """The stemmed content words of `text`, in order."""
    stop = stopwords()
    kept = [w for w in words(text) if w not in stop]
    stems: list[str] = _stemmer().stemWords(kept)
    return stems
