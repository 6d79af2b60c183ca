"""Prometheus metrics for `GET /metrics`: requests and their latency per route, the time each answer spent
in each pipeline stage, errors by type, and the size of the index. Each app has its own registry, so two
servers in one process (the tests) count separately."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import Response

from rag.server.security import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from rag.server.admission import Admission
    from rag.server.connections import ConnectionLimits

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self, index_size: Callable[[], tuple[int, int]]) -> None:
        """`index_size` gives (articles, chunks) when scraped, so the gauges are never stale."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "rag_request_seconds",
            "Time to the last byte of the response, by route",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "rag_stage_seconds",
            "Time an answer spent in each pipeline stage (rewrite, retrieve, generate, check, ...)",
            ["stage", "backend"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter("rag_errors", "Failed requests by HTTP status", ["status"], registry=self.registry)
        self.answers = Counter("rag_answers", "Answers given, by backend and outcome", ["backend", "outcome"],
                               registry=self.registry)  # fmt: skip
        self._gauges(
            rag_index_articles=("Articles in the index", lambda: index_size()[0]),
            rag_index_chunks=("Chunks in the index", lambda: index_size()[1]),
        )

    def watch(self, admission: Admission) -> None:
        """The local model's queue, read when scraped."""
        self._gauges(
            rag_local_waiting=("Questions waiting for the local model", lambda: admission.waiting),
            rag_local_answering=("Questions the local model is answering", lambda: admission.answering),
            rag_local_shed=("Questions refused with 503: queue full or deadline passed", lambda: admission.shed),
            rag_local_stopped=("Answers stopped by the local model at their deadline", lambda: admission.stopped),
        )

    def watch_connections(self, limits: ConnectionLimits) -> None:
        """Connections closed by their bounds (`rag.server.connections`), read when scraped."""
        self._gauges(
            rag_connections_refused=(
                "Connections closed at once: their address held its share",
                lambda: limits.refused,
            ),
            rag_connections_timed_out=(
                "Connections closed: their request did not arrive, or their answer was not read, in time",
                lambda: limits.timed_out,
            ),
        )

    def _gauges(self, **gauges: tuple[str, Callable[[], float]]) -> None:
        for name, (description, read) in gauges.items():
            Gauge(name, description, registry=self.registry).set_function(read)

    def answered(self, backend: str, refused: bool, timings: Mapping[str, float]) -> None:
        self.answers.labels(backend, "refused" if refused else "answered").inc()
        for stage, seconds in timings.items():
            self.stages.labels(stage, backend).observe(seconds)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class Timing:
    """Counts every request under its route template (`/v1/documents/{doc_id}`, not each id), timed to the
    end of its body, so a streamed answer is timed whole."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            # The router leaves the route it chose in the scope; a 404 or a 413 sent before routing has none.
            route, method = str(getattr(scope.get("route"), "path", None) or "unmatched"), scope.get("method", "")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
            if status >= 400:
                self.metrics.errors.labels(str(status)).inc()
