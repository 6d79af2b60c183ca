"""Stories over the store: a topic in, its timeline out (`rag.stories.timeline`), searched as a question
is, only wider; followed questions asked again after a sync (`rag.stories.follow`), their changes
recorded and posted to the webhook a user gave."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator

import httpx

from rag.answering.nlp import parse
from rag.answering.question import check_question
from rag.dates import DateRange
from rag.ingest.web import check_url
from rag.pipeline.store import Store
from rag.retrieval import Retriever
from rag.stories.figures import QUERY as FIGURES_QUERY
from rag.stories.figures import changes, figures
from rag.stories.follow import Change, Followed, FollowStore
from rag.stories.timeline import reading
from rag.text import query_terms
from rag.types import Answer, Timeline

log = logging.getLogger(__name__)


class Stories:
    def __init__(self, store: Store, retriever: Callable[[], Retriever], answer: Callable[..., Answer]) -> None:
        self.store = store
        self.retriever = retriever
        self.answer = answer

    def follows(self) -> FollowStore:
        return FollowStore.for_settings(self.store.settings)

    def follow(self, question: str, webhook: str | None = None) -> Followed:
        """Follow a question: asked again after every sync, its changes recorded (and POSTed to `webhook`).
        Asked now, so that the first sync reports what changed since it was followed."""
        settings = self.store.settings
        question = check_question(question, settings.reader.max_question_chars)
        store = self.follows()
        followed = store.add(question, check_url(webhook) if webhook else None)
        store.record(followed, self.answer(question))
        return store.get(followed.id)

    def follow_up(self) -> list[Change]:
        """Ask every followed question again as of now; the changes recorded, each POSTed to its webhook."""
        changes = []
        store = self.follows()
        for followed in store.followed():
            change = store.record(followed, self.answer(followed.question))
            if change is None:
                continue
            changes.append(change)
            if followed.webhook:
                self._post(followed.webhook, change)
        return changes

    def _post(self, url: str, change: Change) -> None:
        """The change as JSON to the user's webhook; a receiver that fails is logged, and the change stays
        recorded for the page and the API."""
        try:
            httpx.post(url, json=change.to_json(), timeout=self.store.settings.feeds.fetch_timeout).raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("the webhook %s did not take the change to %r: %s", url, change.question, exc)

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
        return final(self.timeline_stream(topic, since=since, until=until, as_of=as_of))

    def timeline_stream(
        self,
        topic: str,
        *,
        since: dt.date | None = None,
        until: dt.date | None = None,
        as_of: dt.date | None = None,
    ) -> Iterator[Timeline]:
        """Like `timeline`, as it is built: the timeline of the articles read so far, then of more, the
        last one `complete`. The topic is checked before the first is built."""
        settings = self.store.settings
        topic = check_question(
            topic, settings.reader.max_question_chars, kind="topic", example='rag timeline "Hurricane Ian"'
        )
        return build_timeline(self.store, self.retriever, topic, DateRange(since, until), as_of)


def build_timeline(
    store: Store, retriever: Callable[[], Retriever], topic: str, dates: DateRange, as_of: dt.date | None
) -> Iterator[Timeline]:
    """The timeline of a checked topic, as its articles are read: the wide search, the topic's most
    specific word, the events; at the end, the figures that changed, read from the events' articles and
    from a search for the topic's counts (`rag.stories.figures`)."""
    started = time.perf_counter()
    settings = store.settings
    wanted = settings.stories.timeline_articles * settings.retrieval.passages_per_article
    terms = query_terms(topic)
    with store.lock:
        searcher = retriever()
        found = searcher.retrieve(topic, wanted, dates, as_of=as_of)
        held = searcher.source.article_stats(terms).frequency
    named = min((t for t in terms if held.get(t)), key=lambda t: held[t], default=None)
    copies = settings.retrieval.near_duplicate_similarity
    articles = len({p.chunk.doc_id for p in found.passages})
    embed, stories = store.embedder.embed, settings.stories
    snapshots = reading(topic, found.passages, embed, stories, copies=copies, named=named, since=dates.since)
    listed = next(snapshots)
    for following in snapshots:
        yield Timeline(topic, listed, found.as_of, found.dates, articles, time.perf_counter() - started, False)
        listed = following
    with store.lock:  # the counts before `since` too: what a figure was, to say what it changed from
        before = DateRange(None, dates.until)
        counts = retriever().retrieve(f"{topic} {FIGURES_QUERY}", wanted, before, as_of=as_of).passages
    reporting = {doc_id for event in listed for doc_id in event.sources}  # the articles judged on the topic
    read = {p.chunk.id: p for p in (*(p for p in found.passages if p.chunk.doc_id in reporting), *counts)}
    changed = changes(figures(list(read.values()), named, parse), settings.stories.figure_days, dates.since)
    seconds = time.perf_counter() - started
    yield Timeline(topic, listed, found.as_of, found.dates, articles, seconds, figures=changed)


def final(steps: Iterator[Timeline]) -> Timeline:
    """The complete timeline, the last of the steps of its building."""
    return deque(steps, maxlen=1)[0]
