"""The answerer: a question in, an answer out — search, then read (`rag.answering.reader`), then check — each step
returning its own timing, over the store's retriever and the backends' generators."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Unpack

from rag.answering.conversation import Turn, condense
from rag.answering.evidence import EvidencePool
from rag.answering.packing import pack_passages
from rag.answering.question import Question, analyze, check_question
from rag.answering.reader import Asked, ReaderOptions, read
from rag.backends import make_generator
from rag.dates import DateRange
from rag.ingest.chunking import tiktoken_counter
from rag.pipeline.store import Store
from rag.pipeline.stories import build_timeline, final
from rag.retrieval import Retriever
from rag.stories.changes import WhatChanged, answer_text, asks_what_changed
from rag.types import Answer, Generator, Passage, Retrieval, SearchOptions, TokenUsage

PART_PASSAGES = 2
"""Passages searched for each part of a multi-part question, beside the question's own."""


class Answerer:
    def __init__(
        self, store: Store, retriever: Callable[[], Retriever], generators: Mapping[str, Generator] | None = None
    ) -> None:
        """`retriever` gives the retriever over the store as it is now (a fresh checkout's first question
        indexes the seed articles first); `generators` (by backend name) let several pipelines share
        loaded models, and tests answer with a scripted generator."""
        self.store = store
        self.retriever = retriever
        self.generators: dict[str, Generator] = dict(generators or {})
        """Generators built so far, by backend name (`backend:model` with a model override)."""
        self.count_tokens = tiktoken_counter(store.settings.index.tokenizer_encoding)

    def generator(self, backend: str | None = None, model: str | None = None) -> Generator:
        name = backend or self.store.settings.backend
        key = f"{name}:{model}" if model else name
        if key not in self.generators:
            self.generators[key] = make_generator(self.store.settings, name, model)
        return self.generators[key]

    def search(self, question: str, **options: Unpack[SearchOptions]) -> Retrieval:
        """Passages and the ranked articles they come from, with the dates searched (see `rag.retrieval`)."""
        question = check_question(question, self.store.settings.reader.max_question_chars)
        _check_options(options)
        k = options.get("k") or self.store.settings.retrieval.top_k
        dates = DateRange(options.get("since"), options.get("until"))
        with self.store.lock:
            return self.retriever().retrieve(question, k, dates, as_of=options.get("as_of"))

    def retrieve(self, question: str, **options: Unpack[SearchOptions]) -> list[Passage]:
        """`search`'s passages alone."""
        return self.search(question, **options).passages

    def answer_stream(
        self,
        question: str,
        *,
        backend: str | None = None,
        model: str | None = None,
        history: Sequence[Turn] = (),
        retrieved: Retrieval | None = None,
        **search: Unpack[SearchOptions],
    ) -> Iterator[str | Answer]:
        """Yields answer text pieces as they are generated, then the final `Answer`; `search` as `search`
        takes it. `backend` and `model` override the configured ones. With `history`, a
        follow-up question is first rewritten into a standalone one (`Answer.standalone_question`). With
        `retrieved`, its first k passages are used instead of searching again (the evaluation harness has
        already retrieved deeper for scoring)."""
        original = check_question(question, self.store.settings.reader.max_question_chars)
        _check_options(search)
        asked_change = None if history else asks_what_changed(original, search.get("as_of") or dt.date.today())
        if asked_change is not None:
            yield from self._what_changed(original, asked_change, backend or self.store.settings.backend, search)
            return
        generator = self.generator(backend, model)
        timings: dict[str, float] = {}
        start = time.perf_counter()
        rewriter = generator if generator.capabilities.rewrites_follow_ups else None
        question = condense(original, history, rewriter)
        timings["rewrite"] = time.perf_counter() - start
        # A retrieval passed in was searched before this call: its time is charged to this answer.
        earlier = retrieved.seconds if retrieved is not None else 0.0
        if retrieved is None:
            retrieved = self.search(question, **search)
        # The date phrase was used to search; the evidence must match the rest ("last week" is in no passage).
        topic = retrieved.mention.strip_from(question) if retrieved.mention else question
        analysis = analyze(question, topic=topic)
        found = self._with_parts(analysis, retrieved, search.get("k") or self.store.settings.retrieval.top_k)
        timings["retrieve"] = earlier + time.perf_counter() - start - timings["rewrite"]
        passages = pack_passages(found, self.store.settings.reader.context_tokens, self.count_tokens)
        s = self.store.settings.reader
        options = ReaderOptions(
            focus_sentences=s.local_focus_sentences,
            max_tokens=s.max_answer_tokens,
            temperature=s.temperature,
            min_confidence=s.min_confidence,
            attribute_citations=s.attribute_citations,
        )
        asked = Asked(original, analysis, retrieved, len(found), start - earlier)
        yield from read(
            asked,
            passages,
            generator,
            pool=EvidencePool(passages, self.store.embedder.embed),
            options=options,
            count=self.count_tokens,
            before=timings,
        )

    def _what_changed(
        self, question: str, asked: WhatChanged, backend: str, search: SearchOptions
    ) -> Iterator[str | Answer]:
        """ "What is new about X since Monday?": X's timeline from that day (and within the dates asked
        for), each line quoted from the passage it cites (`rag.stories.changes`); no model is called."""
        since = max(filter(None, (asked.dates.since, search.get("since"))), default=None)
        dates = DateRange(since, search.get("until"))
        found = final(build_timeline(self.store, self.retriever, asked.topic, dates, search.get("as_of")))
        events = found.events
        if events:
            text, claims, cited = answer_text(asked, found)
        else:
            text, claims, cited = f"Nothing new about {asked.topic} in the articles published {found.dates}.", [], []
        yield text
        yield Answer(
            question=question,
            text=text,
            citations=cited,
            passages=[citation.passage for citation in cited],
            refused=not events,
            backend=backend,
            model="timeline",
            tokens=TokenUsage(0, 0, 0),
            timings={"retrieve": found.seconds, "total": found.seconds},
            retrieved=found.articles,
            as_of=found.as_of,
            since=found.dates.since,
            until=found.dates.until,
            confidence=1.0 if events else 0.0,
            confidence_level="quoted" if events else "not sure",
            claims=claims,
        )

    def _with_parts(self, question: Question, retrieved: Retrieval, k: int) -> list[Passage]:
        """The first k passages, and for a multi-part question the best passages for each part searched on
        its own (same dates), so evidence for every part reaches the reader."""
        found = list(retrieved.passages[:k])
        seen = {p.chunk.id for p in found}
        for part in question.parts:
            since, until = retrieved.dates.since, retrieved.dates.until
            for passage in self.search(part, k=PART_PASSAGES, since=since, until=until, as_of=retrieved.as_of).passages:
                if passage.chunk.id not in seen:
                    seen.add(passage.chunk.id)
                    found.append(passage)
        return found

    def answer(self, question: str, **options: Any) -> Answer:
        """The final `Answer` of `answer_stream` (same options)."""
        final = None
        for item in self.answer_stream(question, **options):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        return final


def _check_options(options: Mapping[str, object]) -> None:
    """A misspelt option (`sinse=`) is an error, as a keyword argument would be, not silently ignored."""
    unknown = sorted(options.keys() - SearchOptions.__annotations__.keys())
    if unknown:
        raise TypeError(f"unexpected keyword arguments {', '.join(unknown)}: the search options are "
                        f"{', '.join(SearchOptions.__annotations__)}")  # fmt: skip
