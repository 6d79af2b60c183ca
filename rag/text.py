"""Text normalisation: how `rag` turns text into comparable words, in one place.

Three normalisations, each for a reason:

- `terms`: what the reader compares questions, passage sentences and answers by (`evidence`, `citations`,
  `spans` and `conversation` of `rag.answering`): lower-cased, possessives dropped, NLTK's English stop
  words removed and Snowball-stemmed (PyStemmer), so "resigned" meets "resignation" and "who" or "did"
  never count as evidence.
- `index_terms` / `query_terms`: BM25's (`rag.store.sparse`), bm25s's own tokenizer with Lucene's shorter stop
  list and the same stemmer. It must not change with the reader's: saved BM25 indexes were built with it
  (`rag.store.sparse.FORMAT`), and retrieval was measured with it.
- `normalize_answer`: the official SQuAD v2 script's, for EM, F1 and `contains`
  (`rag.evaluation.metrics`), so answer scores compare with published numbers.

Heavy pieces (bm25s, PyStemmer) load on first use, so `rag --help` and `import rag.types` stay fast.
"""

from __future__ import annotations

import functools
import logging
import re
import string
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_WORD = re.compile(r"\w+(?:['’]\w+)*")
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


@functools.cache
def bm25s_module() -> ModuleType:
    """bm25s, imported on first use: it costs about 120 ms that `rag info` or `rag --help` need not pay."""
    import bm25s

    # bm25s sets its own logger to DEBUG, which would print its progress notes through any configured handler.
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    module: ModuleType = bm25s
    return module


@functools.cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


@functools.cache
def stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS)


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


def index_terms(texts: Sequence[str], *, return_ids: bool) -> Any:
    """Texts and questions go through the same lower-casing, stop words and stemming (bm25s's)."""
    return bm25s_module().tokenize(
        list(texts), stopwords="en", stemmer=_stemmer(), return_ids=return_ids, show_progress=False
    )


def query_terms(question: str) -> list[str]:
    """The question as the BM25 index sees text: lower-cased, stop words dropped, stemmed."""
    tokenized = index_terms([question], return_ids=False)
    return list(tokenized[0]) if tokenized else []


def normalize_answer(s: str) -> str:
    """The official SQuAD v2 normalization, so answer scores are comparable with published numbers.

    Order matters and follows the reference script: lowercase, drop ASCII punctuation (so "U.S." becomes
    "us", and hyphenated words merge), drop the articles a/an/the, collapse whitespace.
    """
    lowered = s.lower()
    no_punct = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    no_articles = _ARTICLES.sub(" ", no_punct)
    return " ".join(no_articles.split())
