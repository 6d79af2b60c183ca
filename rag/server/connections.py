"""Connections that give nothing back: bounds on how long a request may take to arrive and an answer to be
read, and on how many connections one client address holds.

uvicorn closes a connection that idles between requests, but not one that is sending its request slowly:
a client that sends one header byte every few seconds (Slowloris) holds a connection, and a file
descriptor, for as long as it likes, and a thousand such clients hold the server. Nor one that stops
reading a large answer, which then waits in the server's memory. Here a connection has
`serve_read_timeout` seconds, from when it opens or its previous answer was sent, to deliver a whole
request (headers and body), and as long again each time the answer it is sent backs up unread; one
client address may hold `serve_client_connections` at once; past any of these the connection is closed.
Working out the answer may take as long as it takes (`rag.server.admission` bounds that).

uvicorn's own HTTP/1.1 protocol (h11) is extended rather than replaced, through the protocol class its
configuration accepts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("rag.server")

_RECEIVED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)
"""The client's states in which its request has fully arrived (or never will)."""


class ConnectionLimits:
    """The bounds, and the counts they are checked against, shared by every connection of one server."""

    def __init__(self, read_timeout: float, per_client: int) -> None:
        self.read_timeout = read_timeout
        self.per_client = per_client
        """0: no bound (behind a reverse proxy, every client has the proxy's address)."""
        self.open: Counter[str] = Counter()
        self.refused = 0
        self.timed_out = 0

    def admit(self, host: str) -> bool:
        if self.per_client and self.open[host] >= self.per_client:
            self.refused += 1
            return False
        self.open[host] += 1
        return True

    def release(self, host: str) -> None:
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request does not arrive in time or whose answer
    is not read, and refusing one over its address's share."""

    _REQUEST = "its request did not arrive"
    _ANSWER = "it did not read its answer"

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._host: str | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        """The bounds running, by what they wait for (`_REQUEST`, `_ANSWER`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else ""
        if not self.limits.admit(host):
            log.warning("closed a connection from %s: it holds %d already", host, self.limits.per_client)
            transport.close()
            return
        self._host = host
        self._start(self._REQUEST)

    def connection_lost(self, exc: Exception | None) -> None:
        for waiting in list(self._timers):
            self._stop(waiting)
        if self._host is not None:
            self.limits.release(self._host)
            self._host = None
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state in _RECEIVED:
            self._stop(self._REQUEST)

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._start(self._REQUEST)  # the next one; handling a pipelined one below stops it again
        super().on_response_complete()

    def pause_writing(self) -> None:
        """The answer backs up: more is waiting to be sent than the client has read."""
        super().pause_writing()
        if self._ANSWER not in self._timers:
            self._start(self._ANSWER)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop(self._ANSWER)

    def _start(self, waiting: str) -> None:
        self._stop(waiting)
        self._timers[waiting] = self.loop.call_later(self.limits.read_timeout, self._expire, waiting)

    def _stop(self, waiting: str) -> None:
        timer = self._timers.pop(waiting, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, waiting: str) -> None:
        del self._timers[waiting]
        if self.transport.is_closing():
            return
        self.limits.timed_out += 1
        log.warning("closed a connection from %s: %s within %g s", self._host, waiting, self.limits.read_timeout)
        self.transport.abort()  # close() would first send all of an answer that is not being read


def server_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration for `app` (from `rag.server.app.create_app`), with its connection bounds;
    `rag serve` and the tests run the same."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=functools.partial(BoundedH11Protocol, limits=app.state.connections),  # type: ignore[arg-type]
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
