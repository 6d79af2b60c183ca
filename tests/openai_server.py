"""A small, real OpenAI-compatible HTTP server for tests (stdlib only).

It speaks the Chat Completions wire format the way api.openai.com does — a JSON `chat.completion` object,
or with `"stream": true` a `text/event-stream` of `data: {chat.completion.chunk}` events ending in
`data: [DONE]` — so the real `openai` client, with its own retries and timeouts, talks to it over TCP.

Each test scripts what the server does next: `server.script(...)` queues behaviours (one per request, in
order) and `server.default` answers once the queue is empty. Every request is recorded in
`server.requests`, so tests can assert what the client sent.

Use the `openai_server` fixture: import it into a test module (`from openai_server import openai_server`).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

MAX_STALL = 10.0
"""Upper bound on any scripted delay, so a broken test cannot hang the suite."""

DEFAULT_TEXT = "Stanislav Zas is the Secretary General of the CSTO [1]."


@dataclass(frozen=True)
class Reply:
    """A successful completion. `pieces` are the streamed content deltas (default: `text` split after
    each space, so a stream has several chunks). `stall_after` pieces, the stream stops sending for
    `stall` seconds (a mid-stream hang); `error` sends an OpenAI-style error event after the pieces."""

    text: str = DEFAULT_TEXT
    pieces: Sequence[str] | None = None
    delay: float = 0.0
    stall_after: int | None = None
    stall: float = 0.0
    error: str | None = None
    finish_reason: str = "stop"

    def chunks(self) -> list[str]:
        if self.pieces is not None:
            return list(self.pieces)
        return re.findall(r"\S+\s*|\s+", self.text)

    @property
    def content(self) -> str:
        """The whole answer, the same streamed or not."""
        return "".join(self.chunks())


@dataclass(frozen=True)
class Status:
    """An HTTP error response with an OpenAI-style error body."""

    code: int
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Stall:
    """Accept the request, then send nothing for `seconds` (bounded by MAX_STALL, cut short at teardown)."""

    seconds: float = MAX_STALL


@dataclass(frozen=True)
class Raw:
    """Any status, content type and body: what a misconfigured base URL or a broken proxy sends back."""

    body: str
    code: int = 200
    content_type: str = "text/html; charset=utf-8"


Behaviour = Reply | Status | Stall | Raw


def rate_limited() -> Status:
    """HTTP 429 as OpenAI sends it. `Retry-After: 0` means "no server-directed delay", so the client
    backs off on its own schedule."""
    return Status(
        429,
        "Rate limit reached for requests",
        headers={"Retry-After": "0"},
    )


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    received: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        assert self.body is not None
        return list(self.body["messages"])


class FakeOpenAIServer:
    """The server object tests talk to: start/stop, scripting, and the request log."""

    def __init__(self, models: Sequence[str] = ("gpt-4o-mini", "test-model")) -> None:
        self.models = list(models)
        self.default: Behaviour = Reply()
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        """Unexpected exceptions in request handlers (see `_Server.handle_error`)."""
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, end scripted delays, and close kept-alive connections so no thread lingers."""
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Root URL; the OpenAI base URL is `url + "/v1"`."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # --- scripting -------------------------------------------------------------------------------

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests to /v1/chat/completions, in order."""
        with self._lock:
            self._queue.extend(behaviours)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def completions(self) -> list[RecordedRequest]:
        """Recorded POST /v1/chat/completions requests."""
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/chat/completions"]

    def _next(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _track(self, sock: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds` (capped at MAX_STALL); False when cut short by shutdown."""
        return not self._stopping.wait(min(seconds, MAX_STALL))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOpenAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hang up on purpose (timeouts): ignore that. Anything else is a bug in this server, kept
        for the fixture to report, since a handler crash would otherwise pass for a network failure."""
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            self.fake.errors.append(repr(error))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # idle keep-alive connections are also closed at shutdown

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeOpenAIServer:
        return self.server.fake

    # --- routing ---------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/") == "/v1/models":
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "test"} for m in self.fake.models]
            self._json(200, {"object": "list", "data": data})
        else:
            self._error(404, f"Unknown request URL: GET {self.path}", "invalid_request_error", "unknown_url")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._record(None)
            self._error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None)
            return
        self._record(body)
        if self.path != "/v1/chat/completions":
            self._error(404, f"Unknown request URL: POST {self.path}", "invalid_request_error", "unknown_url")
            return
        if not isinstance(body, dict) or "model" not in body or "messages" not in body:
            self._error(400, "you must provide a model and messages", "invalid_request_error", None)
            return
        behaviour = self.fake._next()
        if isinstance(behaviour, Stall):
            self.fake.wait(behaviour.seconds)
            self.close_connection = True
            return
        if isinstance(behaviour, Raw):
            self._raw(behaviour)
        elif behaviour.delay and not self.fake.wait(behaviour.delay):
            return
        elif isinstance(behaviour, Status):
            kind = "requests" if behaviour.code == 429 else "server_error"
            code = "rate_limit_exceeded" if behaviour.code == 429 else None
            self._error(behaviour.code, behaviour.message, kind, code, behaviour.headers)
        elif body.get("stream"):
            self._stream(body, behaviour)
        else:
            self._json(200, _completion(body, behaviour))

    # --- responses -------------------------------------------------------------------------------

    def _record(self, body: Any) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake._record(RecordedRequest(self.command, self.path, headers, body, time.monotonic()))

    def _json(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _raw(self, raw: Raw) -> None:
        data = raw.body.encode()
        self.send_response(raw.code)
        self.send_header("Content-Type", raw.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _error(
        self, code: int, message: str, kind: str, err_code: str | None, headers: dict[str, str] | None = None
    ) -> None:
        self._json(code, {"error": {"message": message, "type": kind, "param": None, "code": err_code}}, headers)

    def _stream(self, body: dict[str, Any], reply: Reply) -> None:
        """Server-sent events over chunked transfer encoding, one HTTP chunk per event, flushed at once
        so the client sees pieces as they are "generated"."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        self.end_headers()
        try:
            for event in _events(body, reply):
                if event is None:
                    if not self.fake.wait(reply.stall):
                        return
                    continue
                data = event.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


def _base(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": kind,
        "created": int(time.time()),
        "model": body["model"],
        "service_tier": "default",
        "system_fingerprint": "fp_test",
    }


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message = {"role": "assistant", "content": reply.content, "refusal": None, "annotations": []}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
    return {**_base(body, "chat.completion"), "choices": [choice], "usage": _usage(body, reply.content)}


def _events(body: dict[str, Any], reply: Reply) -> Iterator[str | None]:
    """The SSE events of one streamed completion; None marks where a scripted stall happens."""
    head = _base(body, "chat.completion.chunk")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for i, piece in enumerate(reply.chunks()):
        if reply.stall_after is not None and i == reply.stall_after:
            yield None
        yield chunk({"content": piece})
    if reply.error is not None:
        error = {"message": reply.error, "type": "server_error", "param": None, "code": None}
        yield f"data: {json.dumps({'error': error})}\n\n"
        return
    yield chunk({}, reply.finish_reason)
    if (body.get("stream_options") or {}).get("include_usage"):
        yield f"data: {json.dumps({**head, 'choices': [], 'usage': _usage(body, reply.content)})}\n\n"
    yield "data: [DONE]\n\n"


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """A started fake OpenAI server on a free 127.0.0.1 port, stopped at teardown."""
    server = FakeOpenAIServer().start()
    try:
        yield server
    finally:
        server.close()
    assert not server.errors, f"the fake OpenAI server crashed: {server.errors}"
