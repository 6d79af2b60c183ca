"""The FastAPI application: one `RAG` pipeline and one conversation store shared by every request, the
routers, the guards, the error shape and the metrics. `create_app` builds it; `serve` runs it with uvicorn."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI
from fastapi.responses import Response

from rag.config import Settings
from rag.pipeline import RAG
from rag.server import errors, mcp
from rag.server.connections import ConnectionLimits, server_config
from rag.server.conversations import ConversationStore
from rag.server.metrics import Metrics, Timing
from rag.server.native import reads, writes
from rag.server.openai_api import router as openai_router
from rag.server.security import BodyLimit, Guard, check_bind
from rag.server.service import Service

log = logging.getLogger("rag.server")


def create_app(settings: Settings | None = None, *, pipeline: RAG | None = None) -> FastAPI:
    """An app over `pipeline` (built from `settings` when not given); the index and embedding model are
    loaded here, before the first request, so no client waits for them."""
    pipeline = pipeline or RAG(settings or Settings(progress=False))
    settings = pipeline.settings
    pipeline.warm_up()

    def index_size() -> tuple[int, int]:
        index = pipeline.open_index()
        return len(index.documents), len(index.chunks)

    metrics = Metrics(index_size)
    guard = Guard(settings)
    agents = mcp.build(pipeline, writes=not settings.server.api_key_list)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with agents.session_manager.run():  # the MCP endpoint's sessions
            yield

    app = FastAPI(
        title="rag",
        summary="Questions about news articles, answered with citations; OpenAI-compatible chat completions.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.router.routes.append(mcp.route(agents, guard, settings.server.serve_host))
    app.state.service = Service(pipeline, ConversationStore.for_settings(settings), metrics)
    app.state.connections = ConnectionLimits(
        settings.server.serve_read_timeout, settings.server.serve_client_connections
    )
    metrics.watch_connections(app.state.connections)
    errors.install(app)
    app.include_router(openai_router, dependencies=[Depends(guard.caller)])
    app.include_router(reads, dependencies=[Depends(guard.caller)])
    app.include_router(writes, dependencies=[Depends(guard.admin)])

    @app.get("/healthz", tags=["operations"], summary="Liveness: the index is open and how big it is")
    def healthz() -> dict[str, Any]:
        documents, chunks = index_size()
        return {"status": "ok", "documents": documents, "chunks": chunks}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", dependencies=[Depends(guard.caller)])
    def prometheus() -> Response:
        return metrics.render()

    app.add_middleware(BodyLimit, limit=int(settings.server.max_request_mb * 1024 * 1024))
    app.add_middleware(Timing, metrics=metrics)
    return app


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run until stopped. Checked before anything loads: no keys means loopback only."""
    host = host or settings.server.serve_host
    port = port or settings.server.serve_port
    check_bind(settings, host)
    app = create_app(settings)
    log.warning("rag serve on http://%s:%d (API docs at /docs)", host, port)
    if settings.server.api_key_list and not settings.server.admin_key_list:
        log.warning("no key may add or delete articles: set RAG_ADMIN_KEYS, or RAG_OPEN_WRITES=true for every key")
    uvicorn.Server(server_config(app, host, port)).run()
