"""Question and answer latency as users feel them: a search with the question embedding included, and
the local model's full, checked answer."""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.measure import percentile, timed
from rag import RAG
from rag.pipeline.stories import final


def search(rag: RAG, questions: Sequence[tuple[str, dt.date | None]], repeats: int) -> dict[str, Any]:
    """Per-search seconds over every question, `repeats` times; the first search (which builds the BM25
    view of the index) is reported on its own."""
    first_question, first_date = questions[0]
    cold = timed(lambda: rag.search(first_question, k=10, as_of=first_date))
    times, embed = [], []
    for _ in range(repeats):
        for question, as_of in questions:
            start = time.perf_counter()
            rag.search(question, k=10, as_of=as_of)
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
            rag.embedder.embed_query(question)
            embed.append(time.perf_counter() - start)
    return {
        "questions": len(questions),
        "chunks": len(rag.open_index().chunks),
        "first_search_s": cold,
        "p50_ms": percentile(times, 0.5) * 1000,
        "p95_ms": percentile(times, 0.95) * 1000,
        "embed_p50_ms": percentile(embed, 0.5) * 1000,
    }


def timelines(rag: RAG, topics: Sequence[tuple[str, dt.date | None]], repeats: int) -> dict[str, Any]:
    """Seconds per timeline (`rag timeline`) over every topic, `repeats` times, after a first one that loads
    the models, and to its first events (`timeline_stream`'s first step, what the page shows first). A
    timeline quotes its sentences and calls no answer model, so the backend does not enter."""
    rag.timeline(topics[0][0], as_of=topics[0][1])
    times, first, events = [], [], []
    for _ in range(repeats):
        for topic, as_of in topics:
            start = time.perf_counter()
            steps = rag.timeline_stream(topic, as_of=as_of)
            shown = next(steps)
            first.append(time.perf_counter() - start)
            found = final(itertools.chain([shown], steps))
            times.append(time.perf_counter() - start)
            events.append(len(found.events))
    return {
        "topics": len(topics),
        "chunks": len(rag.open_index().chunks),
        "p50_s": percentile(times, 0.5),
        "p95_s": percentile(times, 0.95),
        "first_p50_s": percentile(first, 0.5),
        "events_median": percentile(events, 0.5),
    }


def answer(rag: RAG, questions: Sequence[str], repeats: int, k: int = 5) -> dict[str, Any]:
    """Local-model answers with k passages, from the question to the checked answer: the model's reply,
    and everything around it (retrieval, evidence, claims, confidence)."""
    warm = rag.answer(questions[0], k=k)  # loads the model
    generate, total, prompt, refused = [], [], [], 0
    for _ in range(repeats):
        for question in questions:
            result = rag.answer(question, k=k)
            generate.append(result.timings["generate"])
            total.append(result.timings["total"])
            prompt.append(result.tokens.prompt)
            refused += result.refused
    return {
        "questions": len(questions),
        "k": k,
        "model": warm.model,
        "generate_p50_s": percentile(generate, 0.5),
        "total_p50_s": percentile(total, 0.5),
        "total_p95_s": percentile(total, 0.95),
        "prompt_tokens_median": statistics.median(prompt),
        "refused": refused,
    }


def rescore(plain: RAG, rescored: RAG, questions: Sequence[tuple[str, dt.date | None]], repeats: int) -> dict[str, Any]:
    """What the second stage adds to a search: the first time a question's candidates are read (their
    vectors computed, the cache empty) and once they are cached, against the same searches without it."""
    assert rescored.settings.retrieval.reranker, "the rescored RAG needs a reranker"
    rescored.search(questions[0][0], k=10, as_of=questions[0][1])  # loads the model; its passages stay cached
    first = []
    for question, as_of in questions[1:]:
        start = time.perf_counter()
        rescored.search(question, k=10, as_of=as_of)
        first.append(time.perf_counter() - start)
    cached: list[float] = []
    without: list[float] = []
    for _ in range(repeats):
        for question, as_of in questions:
            for rag, times in ((rescored, cached), (plain, without)):
                start = time.perf_counter()
                rag.search(question, k=10, as_of=as_of)
                times.append(time.perf_counter() - start)
    return {
        "model": rescored.settings.retrieval.reranker,
        "depth": rescored.settings.retrieval.rerank_depth,
        "passages_per_article": rescored.settings.retrieval.rerank_passages,
        "questions": len(questions),
        "chunks": len(plain.open_index().chunks),
        "uncached_p50_ms": percentile(first, 0.5) * 1000,
        "uncached_p95_ms": percentile(first, 0.95) * 1000,
        "cached_p50_ms": percentile(cached, 0.5) * 1000,
        "cached_p95_ms": percentile(cached, 0.95) * 1000,
        "without_p50_ms": percentile(without, 0.5) * 1000,
        "without_p95_ms": percentile(without, 0.95) * 1000,
    }
