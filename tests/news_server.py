"""A real HTTP server on 127.0.0.1 for the feed and web-page tests: it serves whatever a test puts in
`routes` (feeds, article pages, PDFs) and the ways real servers fail (404, 500, a slow answer, a redirect
loop, a 50 MB page), honours ETag / If-None-Match with 304, and counts the requests to each path so a test
can tell what a sync fetched."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

import pytest


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    etag: str | None = None
    delay: float = 0.0
    """Seconds before answering (a slow server)."""
    redirect: str | None = None
    size: int | None = None
    """Stream this many bytes of filler instead of `body` (a huge page)."""


class NewsServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.conditional: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                server.hits[path] += 1
                route = server.routes.get(path)
                if route is None:
                    self.send_error(404)
                    return
                if route.delay:
                    time.sleep(route.delay)
                if route.redirect:
                    self.send_response(302)
                    self.send_header("Location", route.redirect)
                    self.end_headers()
                    return
                if route.etag and self.headers.get("If-None-Match") == route.etag:
                    server.conditional[path] += 1
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                if route.etag:
                    self.send_header("ETag", route.etag)
                size = route.size if route.size is not None else len(route.body)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                try:
                    if route.size is None:
                        self.wfile.write(route.body)
                        return
                    block = b"<p>" + b"filler text " * 8000 + b"</p>\n"
                    sent = 0
                    while sent < size:
                        piece = block[: size - sent]
                        self.wfile.write(piece)
                        sent += len(piece)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should on a huge page

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> NewsServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Item:
    title: str
    link: str
    guid: str
    published: float | None = None
    """POSIX time of the entry, or None for an entry without a date."""
    updated: float | None = None


def rss(title: str, items: list[Item]) -> bytes:
    entries = "".join(
        f"<item><title>{escape(i.title)}</title><link>{escape(i.link)}</link>"
        f'<guid isPermaLink="false">{escape(i.guid)}</guid>'
        + (f"<pubDate>{formatdate(i.updated or i.published)}</pubDate>" if i.published else "")
        + "</item>"
        for i in items
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{escape(title)}</title>'
        f"<link>http://example.org/</link><description>news</description>{entries}</channel></rss>"
    ).encode()


def atom(title: str, items: list[Item]) -> bytes:
    def stamp(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    entries = "".join(
        f'<entry><title>{escape(i.title)}</title><link href="{escape(i.link)}"/><id>{escape(i.guid)}</id>'
        + (f"<published>{stamp(i.published)}</published>" if i.published else "")
        + (f"<updated>{stamp(i.updated or i.published)}</updated>" if i.published else "")
        + "</entry>"
        for i in items
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>{escape(title)}'
        f"</title><id>urn:test:{escape(title)}</id><updated>2021-01-01T00:00:00Z</updated>{entries}</feed>"
    ).encode()


@pytest.fixture
def news_server() -> Iterator[NewsServer]:
    server = NewsServer().start()
    try:
        yield server
    finally:
        server.close()
