"""Stories over the store: a topic in, its timeline out (`rag.stories.timeline`), searched as a question
is, only wider."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

from rag.dates import DateRange
from rag.pipeline.answerer import check_question
from rag.pipeline.store import Store
from rag.retrieval import Retriever
from rag.stories.timeline import events
from rag.text import query_terms
from rag.types import Timeline


class Stories:
    def __init__(self, store: Store, retriever: Callable[[], Retriever]) -> None:
        self.store = store
        self.retriever = retriever

    def timeline(
        self,
        topic: str,
        *,
        since: dt.date | None = None,
        until: dt.date | None = None,
        as_of: dt.date | None = None,
    ) -> Timeline:
        """The topic's events published between `since` and `until` (both inclusive), as of `as_of`
        (default today: later articles are left out), oldest first."""
        started = time.perf_counter()
        settings = self.store.settings
        topic = check_question(
            topic, settings.reader.max_question_chars, kind="topic", example='rag timeline "Hurricane Ian"'
        )
        wanted = settings.stories.timeline_articles * settings.retrieval.passages_per_article
        terms = query_terms(topic)
        with self.store.lock:
            retriever = self.retriever()
            found = retriever.retrieve(topic, wanted, DateRange(since, until), as_of=as_of)
            held = retriever.source.article_stats(terms).frequency
        named = min((t for t in terms if held.get(t)), key=lambda t: held[t], default=None)
        copies = settings.retrieval.near_duplicate_similarity
        embed = self.store.embedder.embed
        listed = events(topic, found.passages, embed, settings.stories, copies=copies, named=named)
        articles = len({p.chunk.doc_id for p in found.passages})
        return Timeline(topic, listed, found.as_of, found.dates, articles, time.perf_counter() - started)
