"""`rag mcp` (stdio) and `rag serve`'s `/mcp` (streamable HTTP), driven by the official MCP SDK's client:
the tools are listed, search, answer and timeline return cited results, an article reads as a resource,
and over HTTP the endpoint wants the server's API key. Real processes, real index and models."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from rag import RAG
from rag.config import Settings
from rag.store.embedding import Embedder
from rag.types import Document
from tests.conftest import cli_env
from tests.test_server import rag_serve
from tests.test_timeline import STORY, TOPIC

KEY = "mcp-test-key"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the storm story (`tests.test_timeline`) where `cli_env` puts it."""
    home = tmp_path_factory.mktemp("mcp")
    rag = RAG(Settings(index_dir=home / "index", progress=False, backend="extractive"), embedder=Embedder())
    rag.add_documents([Document(doc_id, text, f"Report {doc_id}", published) for doc_id, published, text in STORY])
    return home


def _json(result: Any) -> dict[str, Any]:
    assert not result.is_error, result
    found: dict[str, Any] = json.loads(result.content[0].text)
    return found


async def _exercise(session: ClientSession, *, writes: bool) -> None:
    await session.initialize()
    tools = {tool.name for tool in (await session.list_tools()).tools}
    assert tools == {"search", "answer", "timeline", *(["follow"] if writes else [])}
    if writes:
        followed = _json(await session.call_tool("follow", {"question": "How many people did Storm Nadia kill?"}))
        assert followed["asked"] and "twelve" in followed["answer"]
    found = _json(await session.call_tool("search", {"question": "Where did Storm Nadia make landfall?", "k": 3}))
    assert found["passages"] and found["passages"][0]["doc_id"] in {"landfall", "landfall-copy", "forecast"}
    answer = _json(await session.call_tool("answer", {"question": "Where did Storm Nadia make landfall?"}))
    assert answer["citations"] and "Port Ellis" in answer["text"], answer["text"]
    timeline = _json(await session.call_tool("timeline", {"topic": TOPIC, "as_of": "2023-03-20"}))
    dates = [event["date"] for event in timeline["events"]]
    assert dates == sorted(dates) and all(e["citation"]["quote"] == e["text"] for e in timeline["events"])
    bad = await session.call_tool("timeline", {"topic": TOPIC, "as_of": "the 20th"})
    assert bad.is_error and "not a date" in bad.content[0].text
    article = await session.read_resource("article://landfall")
    assert "made landfall near Port Ellis" in article.contents[0].text


def test_stdio(home: Path) -> None:
    env = cli_env(home, RAG_BACKEND="extractive")
    rag_bin = str(Path(sys.executable).with_name("rag"))
    server = StdioServerParameters(command=rag_bin, args=["-q", "mcp"], env=env, cwd=str(home))

    async def main() -> None:
        async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
            await _exercise(session, writes=True)

    anyio.run(main)


@pytest.fixture(scope="module")
def served(home: Path) -> Iterator[str]:
    with rag_serve(home, RAG_BACKEND="extractive", RAG_API_KEYS=KEY) as url:
        yield url


def test_streamable_http_behind_the_servers_key(served: str) -> None:
    async def main() -> None:
        client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        async with (
            client,
            streamable_http_client(f"{served}/mcp", http_client=client) as (read, write),
            ClientSession(read, write) as session,
        ):
            await _exercise(session, writes=False)  # API keys: following is for admin keys, over the REST API

    anyio.run(main)
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    refused = httpx.post(f"{served}/mcp", json=hello, headers={"Accept": "application/json, text/event-stream"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key"
