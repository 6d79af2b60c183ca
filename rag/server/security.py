"""Who may call the server, how often, and with how much: API keys (bearer tokens), a per-key rate limit
and a request-size cap that rejects an oversized body before reading it.

Without keys the server answers anyone who can reach it, so it refuses to listen anywhere but loopback;
with keys every `/v1` route and `/metrics` need one, and writes to the index can be kept to admin keys."""

from __future__ import annotations

import hmac
import ipaddress
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from starlette.exceptions import HTTPException

from rag.config import Settings
from rag.errors import ConfigError
from rag.server.errors import APIError, error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, host: str) -> None:
    """Refuse, before listening, to expose an unauthenticated server to the network."""
    if not settings.server.api_key_list and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve on {host} without API keys: anyone who can reach it could read and change the index",
            hint="set RAG_API_KEYS=<key>[,<key>...] (clients send `Authorization: Bearer <key>`), or bind to 127.0.0.1",
        )


@dataclass(frozen=True)
class Caller:
    """Who made a request: the key it used (None when the server has no keys), whether it may write, and
    whether it sees every key's conversations (an admin key; the machine's own user without keys)."""

    key: str | None
    admin: bool
    oversees: bool

    @property
    def bucket(self) -> str:
        return self.key or "anonymous"


def _matches(given: str, keys: tuple[str, ...]) -> bool:
    # Constant-time comparison, so response timing does not reveal how much of a key was right.
    return any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)


class RateLimiter:
    """A token bucket per caller: `per_minute` requests, refilled continuously, so a burst up to the limit is
    allowed and a steady client at the limit is never refused."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(who, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / self.rate


class Guard:
    """The FastAPI dependencies that authenticate and rate-limit: `caller` for any route, `admin` for writes."""

    def __init__(self, settings: Settings) -> None:
        self.keys = settings.server.api_key_list
        self.admin_keys = settings.server.admin_key_list
        self.overseers = settings.server.overseer_keys
        self.limiter = RateLimiter(settings.server.rate_limit_per_minute)

    def caller(self, request: Request) -> Caller:
        if self.keys:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise APIError(
                    401,
                    "no API key: send `Authorization: Bearer <key>` (the OpenAI client's api_key)",
                    code="missing_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if not _matches(token, self.keys):
                raise APIError(401, "the API key is not valid for this server", code="invalid_api_key",
                               headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
            who = Caller(token, _matches(token, self.admin_keys), _matches(token, self.overseers))
        else:
            who = Caller(None, True, True)
        client = request.client.host if request.client else "unknown"
        wait = self.limiter.take(who.key or client)
        if wait:
            raise APIError(
                429,
                f"rate limit of {int(self.limiter.capacity)} requests per minute reached; retry in {math.ceil(wait)} s",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        request.state.caller = who
        return who

    def admin(self, request: Request) -> Caller:
        who = self.caller(request)
        if not who.admin:
            raise APIError(
                403,
                "this key may not change the index: adding and deleting articles needs an admin key "
                "(RAG_ADMIN_KEYS); to let every API key write, start the server with RAG_OPEN_WRITES=true",
                code="admin_key_required",
            )
        return who


class BodyLimit:
    """Rejects a body over `limit` bytes with 413: at once when Content-Length says so, and as soon as a
    chunked body passes the limit otherwise, so an oversized upload is never held in memory whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # An HTTPException passes FastAPI's body parsing unchanged, and its handler answers 413.
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, counted, send)

    @property
    def message(self) -> str:
        return f"the request body is over the {self.limit / 1e6:g} MB limit (RAG_MAX_REQUEST_MB)"

    async def _reject(self, send: Send) -> None:
        body = orjson.dumps(error_body(413, self.message, code="request_too_large"))
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
