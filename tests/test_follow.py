"""Followed questions (`rag follow`): after each `rag sync` they are asked again; an answer that changes is
reported once, with the articles it newly cites, and POSTed to the user's webhook; an unchanged one
reports nothing. A real feed server and webhook receiver on 127.0.0.1, real `rag` processes, the real
index and models."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import rag.stories.timeline
from rag import RAG
from rag.config import Settings
from rag.store.embedding import Embedder
from rag.stories.follow import FollowStore
from rag.types import Document
from tests.conftest import cli_env
from tests.news_server import Item, NewsServer, Route, news_server, rss
from tests.test_server import in_process
from tests.test_timeline import STORY, TOPIC

__all__ = ["news_server"]
RAG_BIN = Path(sys.executable).with_name("rag")
QUESTION = "How many people did Storm Nadia kill in Port Ellis?"
ARTICLES = {
    "landfall": (
        "2023-03-10",
        "Storm Nadia makes landfall in Port Ellis",
        "Storm Nadia made landfall near Port Ellis on Thursday, flattening hundreds of homes along the seafront. "
        "Power lines were torn down across the region and the harbour was closed to shipping. Forecasters said the "
        "storm would weaken as it moved inland over the hills north of the town.",
    ),
    "toll": (
        "2023-03-11",
        "Storm Nadia killed twelve people in Port Ellis",
        "Rescue teams in Port Ellis said Storm Nadia killed twelve people and left thousands without shelter. The "
        "army was sent to clear the roads into the town, and the mayor asked for tents and drinking water. Schools "
        "will stay closed for the rest of the week while engineers check the buildings.",
    ),
}


def _page(title: str, date: str, text: str) -> bytes:
    return (
        f'<html><head><title>{title}</title><meta property="article:published_time" content="{date}"></head>'
        f"<body><article><h1>{title}</h1><p>{text}</p></article></body></html>"
    ).encode()


def _publish(server: NewsServer, items: list[Item], name: str) -> None:
    date, title, text = ARTICLES[name]
    path = f"/news/{name}.html"
    server.routes[path] = Route(_page(title, date, text))
    stamp = time.mktime(time.strptime(date, "%Y-%m-%d"))
    items.append(Item(title, server.url + path, f"urn:story:{name}", published=stamp))
    server.routes["/rss.xml"] = Route(rss("Port Ellis Herald", items), "application/rss+xml")


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A receiver of the changes POSTed to a user's webhook: its URL and what it was sent."""
    received: list[dict[str, object]] = []

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def _rag(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = cli_env(home, RAG_BACKEND="extractive", RAG_FETCH_HOST_DELAY="0")
    done = subprocess.run([str(RAG_BIN), *args], env=env, cwd=home, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def test_a_changed_answer_is_reported_once_with_its_new_sources(
    tmp_path: Path, news_server: NewsServer, webhook: tuple[str, list[dict[str, object]]]
) -> None:
    hook, received = webhook
    items: list[Item] = []
    _publish(news_server, items, "landfall")
    _rag(tmp_path, "feeds", "add", f"{news_server.url}/rss.xml", "--name", "herald")
    assert "herald: ok, 1 added" in _rag(tmp_path, "sync").stdout
    followed = _rag(tmp_path, "follow", QUESTION, "--webhook", hook).stdout
    assert "following [1]" in followed

    unchanged = _rag(tmp_path, "sync").stdout
    assert "followed question" not in unchanged and not received, "nothing new: nothing to report"

    _publish(news_server, items, "toll")
    changed = _rag(tmp_path, "sync").stdout
    assert "herald: ok, 1 added" in changed
    assert f"followed question 1 changed: {QUESTION}" in changed and "twelve" in changed, changed
    toll = f"{news_server.url}/news/toll.html"
    assert f"new sources: {toll}" in changed
    assert len(received) == 1, "one POST to the webhook"
    assert received[0]["question"] == QUESTION and received[0]["new_sources"] == [toll]
    assert "twelve" in str(received[0]["new_answer"]) and received[0]["answer"]["citations"]  # type: ignore[index]

    again = _rag(tmp_path, "sync").stdout
    assert "followed question" not in again and len(received) == 1, "reported once"
    listed = _rag(tmp_path, "follow", "--changes").stdout
    assert listed.count("followed question 1 changed") == 1
    store = FollowStore(tmp_path / "index.follows.sqlite3")
    assert [c.new_sources for c in store.changes(unseen=True, mark_seen=True)] == [(toll,)]
    assert store.changes(unseen=True) == [], "seen once shown"
    _rag(tmp_path, "follow", "--remove", "1")
    assert store.followed() == [] and store.changes() == []


def test_the_api_follows_questions_and_builds_timelines(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/v1/follows` (following is a write: admin keys) and `/v1/timeline`, whole or streamed as it is
    built (two articles a step here, so the story's four take two), over a real server."""
    monkeypatch.setattr(rag.stories.timeline, "_BATCH", 2)
    settings = Settings(index_dir=tmp_path / "index", progress=False, backend="extractive")
    RAG(settings, embedder=embedder).add_documents(
        [Document(doc_id, text, f"Report {doc_id}", published) for doc_id, published, text in STORY]
    )
    with in_process(settings, embedder) as server, server.http(None) as http:
        made = http.post("/v1/follows", json={"question": QUESTION})
        assert made.status_code == 200, made.text
        assert made.json()["asked"] and "twelve" in made.json()["answer"], "asked when followed: its baseline"
        listed = http.get("/v1/follows").json()
        assert [f["question"] for f in listed["data"]] == [QUESTION] and listed["changes"] == []
        assert http.post("/v1/follows", json={"question": QUESTION}).status_code == 400, "followed twice"
        found = http.post("/v1/timeline", json={"topic": TOPIC, "as_of": "2023-03-20"}).json()
        assert [e["date"] for e in found["events"]] == sorted(e["date"] for e in found["events"]) and found["events"]
        assert found["complete"] and found["figures"][0]["kind"] == "changed"
        asked = {"topic": TOPIC, "as_of": "2023-03-20", "stream": True}
        with http.stream("POST", "/v1/timeline", json=asked) as streamed:
            assert streamed.headers["content-type"].startswith("application/x-ndjson")
            steps = [json.loads(line) for line in streamed.iter_lines() if line]
        assert [step["complete"] for step in steps] == [False, True] and len(steps[0]["events"]) < len(found["events"])
        assert steps[-1]["events"] == found["events"], "the last line is the whole timeline"
        assert http.post("/v1/timeline", json={**asked, "topic": "  "}).status_code == 400, "before any line"
        assert http.delete(f"/v1/follows/{listed['data'][0]['id']}").json()["deleted"] is True
        assert http.delete("/v1/follows/99").status_code == 404
