"""`rag serve` over real HTTP: the official `openai` client (sync, async, streaming) and httpx against a
real uvicorn server on 127.0.0.1, over a real index of the seed articles and the real embedding model.

Most tests share one server started in-process (it shares the session's embedding model); the tests of
the command itself start `rag serve` as a process, as a user would."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

from rag import RAG, Settings
from rag.cli import _info
from rag.server.app import create_app
from rag.server.connections import ConnectionLimits, server_config
from rag.server.conversations import ConversationStore
from rag.server.service import Service
from rag.store.embedding import Embedder
from tests.conftest import SEED_FILE, cli_env, free_port
from tests.openai_server import FakeOpenAIServer, Reply

RAG_BIN = Path(sys.executable).with_name("rag")
QUESTION = "Who is the Secretary General of the Collective Security Treaty Organization?"
KEY, ADMIN, READER = "sk-user", "sk-admin", "sk-reader"


@dataclass
class Running:
    url: str
    settings: Settings
    pipeline: RAG
    service: Service

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def client(self, key: str = KEY, **options: object) -> openai.OpenAI:
        return openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=60, **options)  # type: ignore[arg-type]

    def http(self, key: str | None = KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@contextlib.contextmanager
def in_process(settings: Settings, embedder: Embedder) -> Iterator[Running]:
    """A real uvicorn server on a free loopback port, in a thread of this process."""
    pipeline = RAG(settings, embedder=embedder)
    app = create_app(pipeline=pipeline)
    with serving(app) as port:
        yield Running(f"http://127.0.0.1:{port}", settings, pipeline, app.state.service)


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[int]:
    """`app` served as `rag serve` serves it, in a thread; yields its port."""
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAIServer]:
    server = FakeOpenAIServer().start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def running(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, fake_llm: FakeOpenAIServer
) -> Iterator[Running]:
    home = tmp_path_factory.mktemp("serve")
    settings = Settings(
        index_dir=home / "index",
        backend="extractive",
        progress=False,
        api_keys=f"{KEY},{READER}",
        admin_keys=ADMIN,
        rate_limit_per_minute=1000,
        max_request_mb=2,
        max_upload_mb=1,
        openai_base_url=fake_llm.base_url,
        openai_api_key="sk-fake",
        openai_model="test-model",
    )
    with in_process(settings, embedder) as server:
        yield server


def _rag(response: object) -> dict[str, object]:
    extra = getattr(response, "model_extra", None) or {}
    assert "rag" in extra, f"no `rag` field in {response}"
    return extra["rag"]  # type: ignore[no-any-return]


# --- the official OpenAI client ---------------------------------------------------------------------


def test_openai_client_gets_an_answer_with_a_citation(running: Running) -> None:
    response = running.client().chat.completions.create(
        model="rag-extractive", messages=[{"role": "user", "content": QUESTION}]
    )
    text = response.choices[0].message.content or ""
    assert "Zas" in text and "[1]" in text
    fields = _rag(response)
    assert fields["refused"] is False
    citation = fields["citations"][0]  # type: ignore[index]
    assert citation["doc_id"] == SEED_FILE.name
    assert citation["published"] and citation["title"]
    assert "Zas" in citation["quote"] and citation["quote_end"] > citation["quote_start"]
    assert "as of" in str(fields["searched_dates"])
    assert response.usage is not None and response.usage.completion_tokens > 0


def test_async_client_and_dates_passed_as_extra_body(running: Running) -> None:
    async def ask() -> openai.types.chat.ChatCompletion:
        client = openai.AsyncOpenAI(api_key=KEY, base_url=running.base_url, max_retries=0, timeout=60)
        async with client:
            return await client.chat.completions.create(
                model="rag-extractive",
                messages=[{"role": "user", "content": QUESTION}],
                extra_body={"as_of": "2020-10-10", "since": "2020-01-01"},
            )

    response = asyncio.run(ask())
    fields = _rag(response)
    assert fields["as_of"] == "2020-10-10" and fields["since"] == "2020-01-01"
    assert "Zas" in (response.choices[0].message.content or "")


def test_an_as_of_before_every_article_is_a_refusal(running: Running) -> None:
    response = running.client().chat.completions.create(
        model="rag-extractive",
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"as_of": "2001-01-01"},
    )
    assert _rag(response)["refused"] is True


def test_streamed_answer_adds_up_to_the_answer(running: Running) -> None:
    stream = running.client().chat.completions.create(
        model="rag-extractive", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = [c for c in chunks if (c.model_extra or {}).get("rag")]
    assert len(final) == 1 and final[0].choices[0].finish_reason == "stop"
    assert text == _rag(final[0])["text"] and "Zas" in text


def test_a_streaming_llm_backend_streams_piece_by_piece(running: Running, fake_llm: FakeOpenAIServer) -> None:
    fake_llm.script(Reply("Stanislav Zas is the Secretary General of the CSTO [1]."))
    stream = running.client().chat.completions.create(
        model="rag-openai", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3
    assert "Stanislav Zas" in "".join(pieces)


def test_a_backend_failing_mid_stream_ends_the_stream_with_an_error_the_client_raises(
    running: Running, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.script(Reply("Stanislav Zas is the", error="the upstream model crashed"))
    stream = running.client().chat.completions.create(
        model="rag-openai", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError, match="crashed"):
        for chunk in stream:
            received.append(chunk)
    assert received, "the pieces before the failure were streamed"


def test_models_lists_the_backends(running: Running) -> None:
    names = {m.id for m in running.client().models.list()}
    assert {"rag", "rag-local", "rag-extractive", "rag-openai"} <= names


def test_errors_surface_as_the_clients_exception_types(running: Running) -> None:
    ask = {"model": "rag-extractive", "messages": [{"role": "user", "content": QUESTION}]}
    with pytest.raises(openai.AuthenticationError, match="not valid"):
        running.client("sk-wrong").chat.completions.create(**ask)  # type: ignore[call-overload]
    with pytest.raises(openai.NotFoundError, match="rag-extractive"):
        running.client().chat.completions.create(model="gpt-5", messages=ask["messages"])  # type: ignore[arg-type]
    # a local model is one of the installed ones, never a path on the server: a client error, not a 502
    for name in ("rag-local:../../etc/passwd", "rag-local:/etc/hostname", "rag-local:no-such-model"):
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            running.client().chat.completions.create(model=name, messages=ask["messages"])  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="last message"):
        running.client().chat.completions.create(
            model="rag-extractive", messages=[{"role": "system", "content": "be brief"}]
        )
    with pytest.raises(openai.BadRequestError, match="messages"):
        running.client().chat.completions.create(model="rag-extractive", messages=[])
    with pytest.raises(openai.APIStatusError) as too_big:
        running.client().chat.completions.create(
            model="rag-extractive", messages=[{"role": "user", "content": "x" * 3_000_000}]
        )
    assert too_big.value.status_code == 413 and "MB limit" in too_big.value.message


def test_a_backend_that_is_down_is_a_502_with_its_cause(running: Running, embedder: Embedder, tmp_path: Path) -> None:
    settings = running.settings.model_copy(update={"openai_base_url": f"http://127.0.0.1:{free_port()}/v1"})
    with in_process(settings, embedder) as down:
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as failed:
            down.client().chat.completions.create(model="rag-openai", messages=[{"role": "user", "content": QUESTION}])
        assert failed.value.status_code == 502
        assert "connect" in failed.value.message.lower()
        assert time.monotonic() - started < 30


def test_rate_limit_is_a_429_with_retry_after(running: Running, embedder: Embedder) -> None:
    settings = running.settings.model_copy(update={"rate_limit_per_minute": 2})
    with in_process(settings, embedder) as limited:
        client = limited.client()
        client.models.list()
        client.models.list()
        with pytest.raises(openai.RateLimitError) as limited_error:
            client.models.list()
        assert int(limited_error.value.response.headers["retry-after"]) >= 1
        # the limit is per key: another key is not held back by this one
        limited.client(READER).models.list()


# --- every endpoint over httpx ----------------------------------------------------------------------


def test_bad_json_is_a_400_in_openais_shape(running: Running) -> None:
    with running.http() as http:
        response = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "JSON" in error["message"]


def test_missing_key_is_a_401_and_health_needs_none(running: Running) -> None:
    with running.http(key=None) as http:
        response = http.get("/v1/models")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "missing_api_key"
        assert http.get("/healthz").json()["status"] == "ok"
        assert http.get("/metrics").status_code == 401


def test_search_returns_articles_passages_and_dates(running: Running) -> None:
    with running.http() as http:
        response = http.post("/v1/search", json={"question": QUESTION, "k": 3, "as_of": "2020-10-10"})
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["articles"][0]["doc_id"] == SEED_FILE.name
    assert len(found["passages"]) == 3 and found["as_of"] == "2020-10-10"
    assert "2020-10-10" in found["searched_dates"]


def test_uploads_index_good_files_and_name_bad_ones(running: Running) -> None:
    article = (
        "date 2021-05-04\nLighthouse keepers return\n\n"
        "The harbour board named Ilse Marquardt keeper of the north light."
    )
    files = [
        ("files", ("lighthouse.txt", article.encode(), "text/plain")),
        ("files", ("broken.json", b"{not json", "application/json")),
        ("files", ("huge.txt", b"word " * 300_000, "text/plain")),
    ]
    with running.http(ADMIN) as http:
        response = http.post("/v1/documents", files=files)
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["added"] == ["lighthouse.txt"]
        named = {e["file"] for e in report["errors"]}
        assert named == {"broken.json", "huge.txt"}, report["errors"]
        listed = http.get("/v1/documents", params={"limit": 1000}).json()
        assert "lighthouse.txt" in {d["id"] for d in listed["data"]}
        assert SEED_FILE.name in {d["id"] for d in listed["data"]}
        found = http.post("/v1/search", json={"question": "Who keeps the north light?", "k": 1}).json()
        assert found["articles"][0]["doc_id"] == "lighthouse.txt"
        # provenance: which key added it and when, never the key itself (its keyed hash, as conversations)
        today = dt.datetime.now(dt.timezone.utc).date().isoformat()
        added = next(d["added"] for d in listed["data"] if d["id"] == "lighthouse.txt")
        assert added.startswith("key:") and added.endswith(f" on {today}") and ADMIN not in added
        assert found["passages"][0]["added"] == added
        assert next(d["added"] for d in listed["data"] if d["id"] == SEED_FILE.name) is None
        assert (
            f"lighthouse.txt\t2021-05-04\tLighthouse keepers return\tadded through the API by {added}"
            in (_info(running.pipeline, docs=True)["ids"])
        )
        deleted = http.delete("/v1/documents/lighthouse.txt")
        assert deleted.status_code == 200
        assert http.delete("/v1/documents/lighthouse.txt").status_code == 404
        assert "lighthouse.txt" not in {d["id"] for d in http.get("/v1/documents").json()["data"]}
    writes = (running.settings.conversations_path.parent / "api-writes.jsonl").read_text(encoding="utf-8")
    entries = [json.loads(line) for line in writes.splitlines()]
    mine = [e for e in entries if "lighthouse.txt" in e["ids"]]
    assert [e["action"] for e in mine] == ["add", "delete"] and {e["by"] for e in mine} == {added.split(" on ")[0]}
    assert ADMIN not in writes


def test_json_records_are_checked_one_by_one(running: Running) -> None:
    records = {
        "documents": [
            {
                "id": "ferry-1",
                "title": "Ferry line reopens",
                "published": "2021-06-01",
                "text": "The ferry line to Vis reopened on Monday under captain Dora Penz.",
            },
            {"id": "empty-1", "text": ""},
        ]
    }
    with running.http(ADMIN) as http:
        report = http.post("/v1/documents", json=records).json()
        assert report["added"] == ["ferry-1"]
        assert len(report["errors"]) == 1 and report["errors"][0]["line"] == 2
        assert http.delete("/v1/documents/ferry-1").status_code == 200
        # articles without ids are named by their content: a later request does not replace an earlier one
        first = http.post("/v1/documents", json={"documents": [{"text": "The mill in Orsk closed on Monday."}]})
        second = http.post("/v1/documents", json={"documents": [{"text": "The bakery in Tver opened on Friday."}]})
        [one], [two] = first.json()["added"], second.json()["added"]
        assert one != two and one.startswith("api-")
        listed = {d["id"] for d in http.get("/v1/documents", params={"limit": 1000}).json()["data"]}
        assert {one, two} <= listed
        for doc_id in (one, two):
            assert http.delete(f"/v1/documents/{doc_id}").status_code == 200


def test_writes_need_an_admin_key(running: Running) -> None:
    with running.http(KEY) as http:
        response = http.post("/v1/documents", json={"documents": [{"text": "x"}]})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "admin_key_required"
        assert http.delete(f"/v1/documents/{SEED_FILE.name}").status_code == 403
    with running.http(ADMIN) as http:  # an admin key is also an API key
        assert http.get("/v1/models").status_code == 200


@pytest.mark.parametrize("open_writes", [False, True])
def test_with_keys_and_no_admin_keys_writes_are_refused_unless_opened_on_purpose(
    tmp_path: Path, embedder: Embedder, open_writes: bool
) -> None:
    keys = "key-a,key-b"  # the README's first example: keys for readers, no admin keys
    settings = Settings(index_dir=tmp_path / "index", backend="extractive", progress=False, api_keys=keys)
    article = {"documents": [{"id": "duck", "text": "The CSTO Secretary General is Donald Duck."}]}
    with (
        in_process(settings.model_copy(update={"open_writes": open_writes}), embedder) as server,
        server.http("key-b") as http,
    ):
        posted = http.post("/v1/documents", json=article)
        deleted = http.delete(f"/v1/documents/{SEED_FILE.name}")
        listed = {d["id"] for d in http.get("/v1/documents").json()["data"]}
    if open_writes:
        assert posted.status_code == 200 and deleted.status_code == 200
        assert "duck" in listed and SEED_FILE.name not in listed
    else:
        assert posted.status_code == deleted.status_code == 403
        error = posted.json()["error"]
        assert error["code"] == "admin_key_required" and "RAG_OPEN_WRITES=true" in error["message"]
        assert "duck" not in listed and SEED_FILE.name in listed


DEEP = b'{"a":' * 3000 + b"1" + b"}" * 3000
CHAT = b'{"model":"rag-extractive","messages":[{"role":"user","content":'


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/chat/completions", b'{"model":"rag-extractive","messages":[{"role":"user","content":"Who \\ud800?"}]}'),
        (
            "/v1/chat/completions",
            b'{"model":"rag-extractive","messages":[{"role":"user","content":"Who?"}],"x":' + DEEP + b"}",
        ),
        (
            "/v1/chat/completions",
            b'{"model":"rag-extractive","messages":[{"role":"user","content":"Who?"}],"n":1' + b"0" * 30 + b"}",
        ),
        ("/v1/search", b'{"question":"\\udc00"}'),
        ("/v1/documents", b'{"documents":[{"id":"a\\udc00","text":"The bloc met."}]}'),
        ("/v1/documents", b'{"documents":[{"id":"d","text":"The bloc met.","metadata":' + DEEP + b"}]}"),
        ("/v1/documents", b'{"documents":[{"id":"i","text":"The bloc met.","n":' + b"9" * 5000 + b"}]}"),
        ("/v1/feedback", b'{"turn_id":"\\ud800","rating":"helpful"}'),
    ],
)
def test_json_that_nothing_can_keep_is_a_400_naming_it(running: Running, route: str, body: bytes) -> None:
    """Lone surrogates, nesting without end and integers beyond 64 bits are valid JSON, and each used to be
    a 500 or a dropped connection."""
    with running.http(ADMIN) as http:
        before = http.get("/v1/documents").json()["total"]
        response = http.post(route, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error", response.text
        assert http.get("/v1/documents").json()["total"] == before


def test_a_question_over_the_length_limit_is_a_400_at_once(running: Running) -> None:
    long = "Who is the Secretary General of the CSTO? " * 200  # 8,600 characters, over RAG_MAX_QUESTION_CHARS
    with pytest.raises(openai.BadRequestError, match="RAG_MAX_QUESTION_CHARS"):
        running.client().chat.completions.create(model="rag-extractive", messages=[{"role": "user", "content": long}])


def test_an_upload_over_the_request_limit_is_refused_unread(running: Running) -> None:
    with running.http(ADMIN) as http:
        response = http.post("/v1/documents", files=[("files", ("big.txt", b"a" * 3_000_000, "text/plain"))])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_key_sees_only_its_own_conversations_and_an_admin_key_sees_all(running: Running) -> None:
    asked = running.client(KEY).chat.completions.create(
        model="rag-extractive", messages=[{"role": "user", "content": f"{QUESTION} Ask for Anna Petrova."}]
    )
    mine, turn = _rag(asked)["conversation_id"], _rag(asked)["turn_id"]
    with running.http(READER) as other:
        listed = {c["id"] for c in other.get("/v1/conversations").json()["data"]}
        assert mine not in listed
        # every cross-key access is "not found", so that the id is not even confirmed
        refused = [
            other.get(f"/v1/conversations/{mine}"),
            other.get(f"/v1/conversations/{mine}?format=markdown"),
            other.patch(f"/v1/conversations/{mine}", json={"title": "taken"}),
            other.delete(f"/v1/conversations/{mine}"),
            other.post("/v1/feedback", json={"turn_id": turn, "rating": "wrong_answer"}),
        ]
        assert [r.status_code for r in refused] == [404] * 5
        assert all("Anna Petrova" not in r.text for r in refused)
        ask = {"model": "rag-extractive", "messages": [{"role": "user", "content": "Who?"}], "conversation_id": mine}
        assert other.post("/v1/chat/completions", json=ask).status_code == 404
    with running.http(ADMIN) as admin:
        assert mine in {c["id"] for c in admin.get("/v1/conversations", params={"limit": 10_000}).json()["data"]}
        assert "Anna Petrova" in admin.get(f"/v1/conversations/{mine}").json()["turns"][0]["question"]
    with running.http(KEY) as owner:
        assert owner.get(f"/v1/conversations/{mine}").status_code == 200
        assert owner.patch(f"/v1/conversations/{mine}", json={"title": "mine"}).status_code == 200


def test_two_keys_sending_the_same_history_keep_two_conversations(running: Running) -> None:
    history = [{"role": "user", "content": QUESTION}]
    first = {key: running.client(key).chat.completions.create(model="rag-extractive", messages=history)
             for key in (KEY, READER)}  # fmt: skip
    answer = first[KEY].choices[0].message.content
    assert answer == first[READER].choices[0].message.content
    follow = [*history, {"role": "assistant", "content": answer}, {"role": "user", "content": "When did he say it?"}]
    again = {key: running.client(key).chat.completions.create(model="rag-extractive", messages=follow)
             for key in (KEY, READER)}  # fmt: skip
    ids = {key: _rag(again[key])["conversation_id"] for key in (KEY, READER)}
    assert ids == {key: _rag(first[key])["conversation_id"] for key in (KEY, READER)}
    assert ids[KEY] != ids[READER]


def test_a_conversation_continues_across_requests(running: Running) -> None:
    client = running.client()
    first = client.chat.completions.create(model="rag-extractive", messages=[{"role": "user", "content": QUESTION}])
    conversation_id = _rag(first)["conversation_id"]
    # continued by id, without resending the history
    second = client.chat.completions.create(
        model="rag-extractive",
        messages=[{"role": "user", "content": "What did he say about Armenia?"}],
        extra_body={"conversation_id": conversation_id},
    )
    assert _rag(second)["conversation_id"] == conversation_id
    assert "Zas" in str(_rag(second)["standalone_question"])
    # continued the way a chat front-end does it: resending the history, with no id
    third = client.chat.completions.create(
        model="rag-extractive",
        messages=[
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "What did he say about Armenia?"},
            {"role": "assistant", "content": second.choices[0].message.content},
            {"role": "user", "content": "When did he say it?"},
        ],
    )
    assert _rag(third)["conversation_id"] == conversation_id
    with running.http() as http:
        kept = http.get(f"/v1/conversations/{conversation_id}").json()
        assert [t["question"] for t in kept["turns"]] == [
            QUESTION,
            "What did he say about Armenia?",
            "When did he say it?",
        ]
        assert conversation_id in {c["id"] for c in http.get("/v1/conversations").json()["data"]}
        markdown = http.get(f"/v1/conversations/{conversation_id}", params={"format": "markdown"})
        assert markdown.headers["content-type"].startswith("text/markdown")
        assert "Zas" in markdown.text and "[1]" in markdown.text
        renamed = http.patch(f"/v1/conversations/{conversation_id}", json={"title": "CSTO brief"})
        assert renamed.json()["title"] == "CSTO brief"
        turn_id = kept["turns"][0]["id"]
        rated = http.post("/v1/feedback", json={"turn_id": turn_id, "rating": "helpful", "comment": "good"})
        assert rated.status_code == 200, rated.text
        bad = http.post("/v1/feedback", json={"turn_id": turn_id, "rating": "meh"})
        assert bad.status_code == 400 and "helpful" in bad.json()["error"]["message"]
        missing = http.post("/v1/feedback", json={"turn_id": "nope", "rating": "helpful"})
        assert missing.status_code == 404
        assert http.delete(f"/v1/conversations/{conversation_id}").status_code == 200
        assert http.get(f"/v1/conversations/{conversation_id}").status_code == 404
    store = ConversationStore.for_settings(running.settings)
    assert conversation_id not in {c.id for c in store.list()}


def test_metrics_count_requests_stages_and_index_size(running: Running) -> None:
    running.client().chat.completions.create(model="rag-extractive", messages=[{"role": "user", "content": QUESTION}])
    with running.http() as http:
        text = http.get("/metrics").text
    assert 'rag_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in text
    assert 'rag_stage_seconds_count{backend="extractive",stage="retrieve"}' in text
    assert 'rag_errors_total{status="401"}' in text
    articles = next(line for line in text.splitlines() if line.startswith("rag_index_articles "))
    assert float(articles.split()[1]) >= 1


def test_an_unexpected_failure_is_a_500_without_a_traceback(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(running.pipeline, "search", broken)
    with running.http() as http:
        response = http.post("/v1/search", json={"question": QUESTION})
    assert response.status_code == 500
    assert "secret" not in response.text and "Traceback" not in response.text
    assert response.json()["error"]["type"] == "api_error"


# --- `rag serve` as a process -----------------------------------------------------------------------


@contextlib.contextmanager
def rag_serve(home: Path, **extra: str) -> Iterator[str]:
    port = free_port()
    log_path = home / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(RAG_BIN), "serve", "--port", str(port)], env=cli_env(home, **extra), cwd=home, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_local_model_sheds_load_with_503_and_retry_after(tmp_path: Path, embedder: Embedder) -> None:
    """While the model answers one question, at most `serve_queue` wait, each at most `serve_deadline`; past
    either, 503 with Retry-After at once, before any work is spent. The test holds the model's turn itself,
    so what is in progress does not depend on how fast the model is."""
    settings = Settings(index_dir=tmp_path / "index", progress=False, local_model="smollm2-135m", serve_queue=1)
    question = {"model": "rag-local", "messages": [{"role": "user", "content": QUESTION}]}
    with in_process(settings, embedder) as server, server.http(None) as http:
        assert http.post("/v1/chat/completions", json=question).status_code == 200  # loads the model
        admission = server.service.admission
        admission.deadline = 1.0
        leave = admission.enter(time.monotonic() + 3600)  # as if a question were being answered
        late: list[httpx.Response] = []
        waiting = threading.Thread(target=lambda: late.append(http.post("/v1/chat/completions", json=question)))
        try:
            waiting.start()  # takes the one place in the queue...
            while admission.waiting < 1:
                assert waiting.is_alive()
                time.sleep(0.01)
            refused = http.post("/v1/chat/completions", json=question)  # ... so this one is refused at once
            assert refused.status_code == 503, refused.text
            assert (
                refused.json()["error"]["code"] == "overloaded"
                and "queue holds 1" in refused.json()["error"]["message"]
            )
            assert int(refused.headers["Retry-After"]) >= 1
            waiting.join()  # and the waiting one gives up at its deadline
        finally:
            leave()
        late = admission.shed
        assert late == 2  # the refused one and the one whose deadline passed
        metrics = http.get("/metrics").text
        assert "rag_local_shed 2.0" in metrics and "rag_local_waiting 0.0" in metrics
        answered = http.post("/v1/chat/completions", json=question)
        assert answered.status_code == 200 and admission.answering == 0


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_past_its_deadline_is_stopped_not_given_late(
    tmp_path: Path, embedder: Embedder, stream: bool
) -> None:
    """The deadline counts from the question's arrival and holds while the model writes: a question whose
    time is up when the model starts is stopped there, with 503, and the model is free for the next one.
    (The deadline is set to zero here, so it has always passed by then, however fast the machine.)"""
    settings = Settings(index_dir=tmp_path / "index", progress=False, local_model="smollm2-135m")
    question = {"model": "rag-local", "messages": [{"role": "user", "content": QUESTION}], "stream": stream}
    with in_process(settings, embedder) as server, server.http(None) as http:
        admission = server.service.admission
        admission.deadline = 0.0
        stopped = http.post("/v1/chat/completions", json=question)
        assert stopped.status_code == 503, stopped.text
        assert "past its deadline" in stopped.json()["error"]["message"]
        assert admission.stopped == 1 and admission.answering == 0
        assert "rag_local_stopped 1.0" in http.get("/metrics").text
        admission.deadline = settings.server.serve_deadline
        answered = http.post("/v1/chat/completions", json={**question, "stream": False})
        assert answered.status_code == 200 and "Zas" in answered.json()["choices"][0]["message"]["content"]


def _closed_by_the_server(connection: socket.socket) -> bool:
    """Waits for the server to end the connection (its own bound ends the wait, not this one's timeout)."""
    connection.settimeout(120)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


def test_connections_that_send_slowly_or_too_many_are_closed(tmp_path: Path, embedder: Embedder) -> None:
    """Slowloris: connections that never finish their headers, or their body, each hold a file descriptor
    and a task. Each is closed once `serve_read_timeout` passes without a whole request, and an address
    that holds `serve_client_connections` gets no more; the server answers others all along."""
    settings = Settings(
        index_dir=tmp_path / "index",
        progress=False,
        backend="extractive",
        serve_read_timeout=1.0,
        serve_client_connections=3,
    )
    with in_process(settings, embedder) as server:
        address = ("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        slow = [socket.create_connection(address) for _ in range(3)]
        try:
            slow[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the headers never end
            slow[1].sendall(b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")  # nor the body
            # the third sends nothing at all
            with socket.create_connection(address) as over:  # the address's share is taken
                assert _closed_by_the_server(over)
            assert all(_closed_by_the_server(connection) for connection in slow)
        finally:
            for connection in slow:
                connection.close()
        with socket.create_connection(address) as huge:  # unfinished headers past what h11 buffers (16 KiB)
            huge.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 20_000)
            huge.settimeout(120)
            assert huge.recv(12) == b"HTTP/1.1 400"
        with server.http(None) as http:
            assert http.get("/healthz").status_code == 200
            metrics = http.get("/metrics").text
        assert "rag_connections_refused 1.0" in metrics and "rag_connections_timed_out 3.0" in metrics


def test_a_client_that_stops_reading_a_large_answer_is_disconnected() -> None:
    """An answer the client does not read waits in the server's memory; once it has backed up for
    `serve_read_timeout`, the connection is closed and the memory freed. (A route of its own serves the
    large answer: no route of rag's sends more than a socket's buffers hold.)"""
    app = FastAPI()
    app.state.connections = ConnectionLimits(read_timeout=1.0, per_client=0)
    size = 16 << 20

    @app.get("/large")
    def large() -> Response:
        return Response(b"x" * size, media_type="application/octet-stream")

    with serving(app) as port, socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", port))
        client.sendall(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 120  # a bound on a hang; the condition below ends the wait
        while app.state.connections.timed_out < 1:
            assert time.monotonic() < deadline, "the connection was not closed"
            time.sleep(0.05)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while block := client.recv(1 << 16):
                received += len(block)
        assert received < size


@pytest.mark.slow
def test_rag_serve_answers_with_the_local_model_and_keeps_conversations_across_restarts(tmp_path: Path) -> None:
    with rag_serve(tmp_path) as url:
        client = openai.OpenAI(api_key="unused", base_url=url + "/v1", max_retries=0, timeout=120)
        response = client.chat.completions.create(model="rag-local", messages=[{"role": "user", "content": QUESTION}])
        assert "Zas" in (response.choices[0].message.content or "")
        assert _rag(response)["citations"], "the local model's answer cites a passage"
        conversation_id = _rag(response)["conversation_id"]
    with rag_serve(tmp_path, RAG_BACKEND="extractive") as url:
        kept = httpx.get(f"{url}/v1/conversations/{conversation_id}", timeout=30).json()
        assert kept["turns"][0]["question"] == QUESTION
        assert "Zas" in kept["turns"][0]["answer"]["text"]


def test_rag_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(RAG_BIN), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=cli_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "without API keys" in done.stderr and "RAG_API_KEYS" in done.stderr
