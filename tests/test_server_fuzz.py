"""A hostile client over the whole HTTP surface of `rag serve`: every route and method its OpenAPI schema
publishes, with random paths, queries, headers and JSON (valid and invalid keys, a key that may not write).
Every reply is a success or an OpenAI-shaped error, never a 500 or a hang, and the archive is unchanged.

`RAG_HTTP_FUZZ` sets the number of requests (hypothesis examples); the long run uses 5,000.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag import Settings
from rag.store.embedding import Embedder
from tests.conftest import SEED_FILE
from tests.test_server import ADMIN, KEY, READER, Running, in_process

REQUESTS = int(os.environ.get("RAG_HTTP_FUZZ", "300"))
DEADLINE_S = 60.0
"""A reply slower than this is a hang (the extractive backend answers in well under a second)."""

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)
FIELDS = st.sampled_from(
    ["model", "messages", "question", "k", "since", "until", "as_of", "stream", "documents", "title", "rating",
     "turn_id", "comment", "role", "content", "text", "date", "id", "conversation_id", "limit", "offset"]
)  # fmt: skip
"""Names the real bodies use, so a random body often gets past the first check and reaches the code."""
BODIES = (
    st.dictionaries(FIELDS, JSON, max_size=6)
    | st.fixed_dictionaries(
        {"model": st.sampled_from(["rag", "rag-extractive", "rag-local:x", "gpt-4", ""]), "messages": JSON}
    )
    | JSON
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("fuzz")
    config = Settings(
        index_dir=home / "index",
        backend="extractive",
        progress=False,
        api_keys=f"{KEY},{READER}",
        admin_keys=ADMIN,
        rate_limit_per_minute=1_000_000,
        max_request_mb=1,
    )
    with in_process(config, embedder) as running:
        running.pipeline.ensure_index()
        yield running


@pytest.fixture(scope="module")
def routes(server: Running) -> list[tuple[str, str]]:
    schema = httpx.get(server.url + "/openapi.json", timeout=30).json()
    found = [(method.upper(), path) for path, item in schema["paths"].items() for method in item]
    assert len(found) >= 10, found
    return found


@settings(max_examples=REQUESTS, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_request_is_a_server_error_or_a_hang(
    server: Running, routes: list[tuple[str, str]], data: st.DataObject
) -> None:
    method, path = data.draw(st.sampled_from(routes), label="route")

    def part(_: re.Match[str]) -> str:
        return data.draw(st.text(max_size=30), label="path part").replace("/", "%2F")

    path = re.sub(r"\{[^}]+\}", part, path)
    key = data.draw(st.sampled_from([None, "wrong", KEY, READER, "Basic eA==", "Bearer"]), label="key")
    headers = {} if key is None else {"Authorization": key if key[0].isupper() else f"Bearer {key}"}
    if data.draw(st.booleans(), label="odd header"):
        headers[data.draw(st.sampled_from(["Content-Type", "Accept", "X-Forwarded-For"]))] = data.draw(
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
        )
    query = data.draw(st.dictionaries(FIELDS, st.text(max_size=20), max_size=3), label="query")
    kwargs: dict[str, object] = {"params": query, "headers": headers}
    if method in ("POST", "PUT", "PATCH"):
        if data.draw(st.booleans(), label="raw body"):
            kwargs["content"] = data.draw(st.binary(max_size=300), label="bytes")
        else:
            kwargs["json"] = data.draw(BODIES, label="json")
    try:
        response = httpx.request(method, server.url + path, timeout=DEADLINE_S, **kwargs)  # type: ignore[arg-type]
    except (httpx.InvalidURL, httpx.LocalProtocolError):
        return  # the client refuses to send it: nothing reached the server
    assert response.status_code < 500, (method, path, response.status_code, response.text[:300])
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
        error = response.json().get("error")
        assert isinstance(error, dict) and isinstance(error.get("message"), str), response.text[:300]


def test_the_archive_is_unchanged_by_the_fuzzing(server: Running) -> None:
    """Runs after the fuzzing (file order): no key it used may write, so the index holds the seed only."""
    index = server.pipeline.open_index()
    assert list(index.documents) == [SEED_FILE.name]
    assert not (Path(server.settings.conversations_path).parent / "api-writes.jsonl").exists()
