"""Retrieval: which articles a question is about, and which of their passages to show the reader.

A search is a list of small stages (`stages_for`) run in order over one `Search`:

1. candidates: the dense top chunks (`DenseCandidates`) and BM25 (`KeywordCandidates`), within the
   dates searched (explicit `since`/`until`, capped at the as-of date, narrowed by a date the question
   names when `question_dates=filter`), as the source searched draws them (`rag.retrieval.source`: one
   index, or an archive's shards);
2. fuse: weighted reciprocal rank fusion of the candidate rankings (`Fuse`);
3. priors: recency at the as-of date and dates the question names (`RecencyPrior`, `QuestionDatePrior`),
   then the order (`Order`);
4. diversity: near-copies of a kept passage fold into it (`Diversify`);
5. rescore: an optional stronger model reads the leading results again, its ranking fused in (`Rescore`);
6. passages: the articles listed and the passages shown (`Passages`).

With `article_ranking` (the default) the units ranked are articles, each standing for its best passage;
without it, chunks, the textbook hybrid. A new signal is one module with a stage class and one `register`
call; the evaluation's ablation ladder shows each step's stages.

Layer 5: imports the store (and the core modules, backends and settings below it); never the archive,
answering or the pipeline. A source of candidates other than one index (the archive's shards) implements
`source.Source` from above.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from rag.config import RetrievalSettings
from rag.dates import DateRange, resolve
from rag.errors import ConfigError
from rag.registry import Registry
from rag.retrieval.candidates import DenseCandidates, KeywordCandidates
from rag.retrieval.corpus import rrf
from rag.retrieval.diversity import Diversify
from rag.retrieval.fusion import Fuse, Order
from rag.retrieval.passages import Passages
from rag.retrieval.priors import QuestionDatePrior, RecencyPrior
from rag.retrieval.rescoring import Rescore
from rag.retrieval.search import Search, Stage
from rag.retrieval.source import IndexSource, Source, Wanted
from rag.store.embedding import Embedder
from rag.store.segments import Unit
from rag.types import Retrieval

if TYPE_CHECKING:
    from rag.retrieval.rerank import Reranker

__all__ = [
    "PIPELINE",
    "STAGES",
    "IndexSource",
    "Retriever",
    "Search",
    "Source",
    "Stage",
    "register",
    "rrf",
    "stages_for",
    "unregister",
]


STAGES: Registry[type[Stage]] = Registry("retrieval stage", lambda stage: [stage.name], group="rag.stages")
"""Every stage by name; `PIPELINE` is the order they run in."""
PIPELINE: list[type[Stage]] = []
"""Every stage in the order they run; the settings switch each on or off (`Stage.enabled`)."""


def register(stage: type[Stage], *, before: str | None = None) -> type[Stage]:
    """Add a stage to the pipeline ahead of the stage named `before` (e.g. a prior before "order"), or at
    its end. A stage another package brings (entry-point group `rag.stages`) names its place in a `before`
    class attribute."""
    if before is not None and before not in STAGES:
        raise ConfigError(f"no retrieval stage named {before!r}", hint=f"the stages are: {', '.join(STAGES)}")
    STAGES.register(stage)
    PIPELINE.insert(PIPELINE.index(STAGES[before]) if before is not None else len(PIPELINE), stage)
    return stage


def unregister(stage: type[Stage]) -> None:
    STAGES.unregister(stage)
    PIPELINE.remove(stage)


for _stage in (
    DenseCandidates,
    KeywordCandidates,
    Fuse,
    RecencyPrior,
    QuestionDatePrior,
    Order,
    Diversify,
    Rescore,
    Passages,
):
    register(_stage)
STAGES.load_entry_points(lambda stage: register(stage, before=getattr(stage, "before", None)))


def stages_for(settings: RetrievalSettings) -> list[Stage]:
    """The stages the settings switch on, in the order they run."""
    return [cls() for cls in PIPELINE if cls.enabled(settings)]


def scope(
    question: str, dates: DateRange | None, as_of: dt.date | None, settings: RetrievalSettings
) -> tuple[Retrieval, bool]:
    """The dates a question searches: the range asked for, capped at the as-of date (default today), and
    narrowed by a date the question names when `question_dates=filter`. An empty `Retrieval` saying so,
    and False when no date can match."""
    as_of = as_of or dt.date.today()
    dates = dates or DateRange()
    if settings.as_of_filter:
        dates = DateRange(dates.since, min(dates.until or as_of, as_of))
    mention = resolve(question, as_of) if settings.question_dates != "off" else None
    filtered = mention is not None and settings.question_dates == "filter"
    if filtered:
        assert mention is not None
        since = max(filter(None, (dates.since, mention.range.since)), default=None)
        until = min(filter(None, (dates.until, mention.range.until)), default=None)
        if since and until and since > until:
            return Retrieval([], [], as_of, dates, mention, True), False
        dates = DateRange(since, until)
    return Retrieval([], [], as_of, dates, mention, filtered), True


class Retriever:
    """Runs the stages over what a source (one index, or an archive's shards) draws for a question."""

    def __init__(
        self,
        source: Source,
        embedder: Embedder,
        settings: RetrievalSettings | None = None,
        reranker: Reranker | None = None,
        stages: list[Stage] | None = None,
    ) -> None:
        self.source = source
        self.embedder = embedder
        self.settings = settings or RetrievalSettings()
        self.reranker = reranker
        self._stages = stages

    @property
    def stages(self) -> list[Stage]:
        """The stages given, or those the settings switch on (read at each search, so they follow the
        settings)."""
        return self._stages if self._stages is not None else stages_for(self.settings)

    def prepare(self) -> None:
        """Build ahead what the first search would otherwise build (the keyword indexes of one index)."""
        if self.settings.retrieval_mode != "dense":
            self.source.prepare()

    def retrieve(
        self,
        question: str,
        k: int,
        dates: DateRange | None = None,
        *,
        as_of: dt.date | None = None,
    ) -> Retrieval:
        """The search's `Retrieval`, its `seconds` the time the search took."""
        start = time.perf_counter()
        found = self._retrieve(question, k, dates, as_of)
        found.seconds = time.perf_counter() - start
        return found

    def _retrieve(self, question: str, k: int, dates: DateRange | None, as_of: dt.date | None) -> Retrieval:
        s = self.settings
        result, searchable = scope(question, dates, as_of, s)
        if not searchable:
            return result
        unit: Unit = "article" if s.article_ranking else "chunk"
        wanted = Wanted(question, result.dates, unit, s, self.embedder)
        drawn = self.source.draw(wanted)
        if drawn is None:
            return result
        search = Search(
            question=question,
            k=k,
            as_of=result.as_of,
            mention=result.mention,
            index=drawn.index,
            corpus=drawn.corpus,
            settings=s,
            reranker=self.reranker,
            unit=unit,
            vector=wanted.vector,
            terms=wanted.terms,
            allowed_chunks=drawn.allowed_chunks,
            result=result,
            dense_rows=drawn.dense,
            keyword_rows=drawn.keyword,
            chunk_scores=drawn.chunk_scores,
        )
        for stage in self.stages:
            stage(search)
        return result
