"""The archive for AI agents and IDEs over the Model Context Protocol (the official `mcp` SDK): tools to
search, answer with citations and build a timeline, and every article as a resource (`article://ID`).

`rag mcp` serves it over stdio, as an agent starts a local tool; `rag serve` serves it over streamable
HTTP at `/mcp`, behind the same keys and rate limit as its other routes (`guarded`). Each tool runs the
pipeline in a worker thread, so a long answer never holds up the server's other requests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import orjson
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from rag.errors import QuestionError, RagError
from rag.pipeline import RAG
from rag.server.errors import APIError, error_body, rag_error_message
from rag.server.security import Guard

T = TypeVar("T")
INSTRUCTIONS = (
    "A news archive. `search` finds passages, `answer` answers a question with numbered citations to "
    "passages, `timeline` lists a story's events in date order, each quoted from a cited article. Dates are "
    "YYYY-MM-DD; `as_of` is the day the question is asked (later articles are left out). Read a whole "
    "article with the resource article://ID."
)


def _date(value: str | None, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise QuestionError(f"{name} {value!r} is not a date", hint="use YYYY-MM-DD") from exc


async def _run(work: Callable[[], T]) -> T:
    """`work` in a worker thread; what it reports as wrong with the request (a `RagError`: a bad date, an
    empty question, no such article) reaches the agent as the tool's error, in the CLI's words."""
    try:
        return await anyio.to_thread.run_sync(work)
    except RagError as exc:
        raise ToolError(rag_error_message(exc)) from exc


def build(pipeline: RAG, *, writes: bool = True) -> MCPServer:
    """The MCP server over `pipeline`: its tools and the article resource. `writes`: with the `follow`
    tool, which keeps a question (and a webhook the server will POST to) on the server; `rag serve` offers
    it only where every caller may write (no API keys: its own machine's user)."""
    server: MCPServer = MCPServer("rag", instructions=INSTRUCTIONS)

    @server.tool()
    async def search(
        question: str, k: int = 5, since: str | None = None, until: str | None = None, as_of: str | None = None
    ) -> dict[str, Any]:
        """Passages about the question, best first, from articles published between `since` and `until`
        (YYYY-MM-DD, inclusive) as of `as_of`."""
        found = await _run(
            lambda: pipeline.search(
                question, k=k, since=_date(since, "since"), until=_date(until, "until"), as_of=_date(as_of, "as_of")
            )
        )
        return {
            "searched": found.searched_dates,
            "passages": [{"number": n, **p.to_json()} for n, p in enumerate(found.passages, start=1)],
        }

    @server.tool()
    async def answer(
        question: str, since: str | None = None, until: str | None = None, as_of: str | None = None
    ) -> dict[str, Any]:
        """The answer, its sentences cited as [n] to the numbered passages, whether it was refused (the
        archive does not say), and its confidence."""
        found = await _run(
            lambda: pipeline.answer(
                question, since=_date(since, "since"), until=_date(until, "until"), as_of=_date(as_of, "as_of")
            )
        )
        return found.to_json()

    @server.tool()
    async def timeline(
        topic: str, since: str | None = None, until: str | None = None, as_of: str | None = None
    ) -> dict[str, Any]:
        """A story's events in date order: each a sentence quoted from a cited article, its date (the
        article's, or the day the sentence states) and how many articles reported it; and the counts
        that changed (a death toll: old and new figure, each quoted with its article)."""
        found = await _run(
            lambda: pipeline.timeline(
                topic, since=_date(since, "since"), until=_date(until, "until"), as_of=_date(as_of, "as_of")
            )
        )
        return found.to_json()

    if writes:

        @server.tool()
        async def follow(question: str, webhook: str | None = None) -> dict[str, Any]:
            """Follow a question: it is asked again after every sync of the feeds, and when its answer or
            its sources change the change is recorded (and POSTed to `webhook` as JSON). Its first answer."""
            return (await _run(lambda: pipeline.follow(question, webhook))).to_json()

    @server.resource("article://{doc_id}", mime_type="text/plain")
    async def article(doc_id: str) -> str:
        """An article: its title, date, source and text."""

        def read() -> str:
            record = pipeline.open_index().documents.get(doc_id)
            if record is None:
                raise QuestionError(f"no article {doc_id!r} in the index", hint="use a doc_id a search returned")
            date = record.published.isoformat() if record.published else "undated"
            return f"{record.title}\n{date} {record.url or record.source or ''}\n\n{record.text}"

        return await _run(read)

    return server


def route(server: MCPServer, guard: Guard, host: str) -> Route:
    """`/mcp` for `rag serve`: the server's streamable HTTP endpoint behind the guard. Its sessions run in
    `server.session_manager.run()`, which the app's lifespan holds open."""
    server.streamable_http_app(streamable_http_path="/mcp", host=host)  # makes the session manager
    endpoint = Guarded(StreamableHTTPASGIApp(server.session_manager), guard)
    return Route("/mcp", endpoint=endpoint, methods=["GET", "POST", "DELETE"])


class Guarded:
    """The MCP endpoint behind `rag serve`'s guard: a request without a valid key, or over the rate limit,
    is answered as the API's routes answer it (401 or 429, the same error body)."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self.guard.caller(Request(scope))
            except APIError as exc:
                await _error(exc, send)
                return
        await self.app(scope, receive, send)


async def _error(exc: APIError, send: Send) -> None:
    body = orjson.dumps(error_body(exc.status, exc.message, code=exc.code, param=exc.param))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
