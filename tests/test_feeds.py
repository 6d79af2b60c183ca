"""Feeds, web pages and `rag sync` against a real HTTP server on 127.0.0.1 (tests/news_server.py) serving
RSS and Atom feeds whose entries are real RealTime QA articles in realistic page boilerplate
(tests/news_pages.py): nothing leaves the machine. The index, the embedding model and the extraction are
the real ones."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import rag.ingest.loaders
from rag import RAG, Settings
from rag.ingest.feeds import FeedStore
from rag.pipeline.sync import index_pages, sync
from rag.store.embedding import Embedder
from rag.store.index import verify
from rag.types import Document, Format, Source
from tests.conftest import cli_env
from tests.news_pages import CORPUS, Page, article_date, article_page, real_articles
from tests.news_server import Item, NewsServer, Route, atom, news_server, rss

__all__ = ["news_server"]

RAG_BIN = Path(sys.executable).with_name("rag")

pytestmark = pytest.mark.skipif(
    not CORPUS.is_file() and not os.environ.get("CI"),
    reason=f"{CORPUS} not found: the feed tests serve real RealTime QA articles from ../shared/evaldata",
)


@dataclass
class Site:
    """A news site on the test server: article pages, an RSS feed and an Atom feed over them."""

    server: NewsServer
    pages: dict[str, Page] = field(default_factory=dict)
    rss_items: list[Item] = field(default_factory=list)
    atom_items: list[Item] = field(default_factory=list)
    articles: dict[str, dict[str, object]] = field(default_factory=dict)
    spare: dict[str, object] = field(default_factory=dict)
    """A real article not yet published, for a test to publish later."""

    def publish(self, article: dict[str, object], n: int, *, feed: str = "rss", with_date: bool = True) -> Page:
        path = f"/news/{n:03d}-story.html"
        page = article_page(article, self.server.url + path, random.Random(n), with_date=with_date)
        self.server.routes[path] = Route(page.html.encode())
        self.pages[path], self.articles[path] = page, article
        stamp = time.mktime(article_date(article).timetuple()) if with_date else None
        item = Item(page.title, self.server.url + path, f"urn:story:{n}", published=stamp)
        (self.rss_items if feed == "rss" else self.atom_items).append(item)
        self.refresh()
        return page

    def edit(self, path: str, sentence: str) -> None:
        """The article at `path` with a sentence added, on the same page."""
        article = {**self.articles[path], "text": f"{self.articles[path]['text']}\n{sentence}"}
        page = article_page(article, self.server.url + path, random.Random(int(path[6:9])))
        self.server.routes[path] = Route(page.html.encode())

    def refresh(self, etag: str | None = None) -> None:
        self.server.routes["/rss.xml"] = Route(rss("Test Daily", self.rss_items), "application/rss+xml", etag=etag)
        self.server.routes["/atom.xml"] = Route(atom("Test Weekly", self.atom_items), "application/atom+xml")


@pytest.fixture
def site(news_server: NewsServer) -> Site:
    site = Site(news_server)
    articles = real_articles(6, seed=7)
    for n, article in enumerate(articles[:3]):
        site.publish(article, n, feed="rss")
    for n, article in enumerate(articles[3:5], start=3):
        site.publish(article, n, feed="atom")
    site.spare = articles[5]
    return site


@pytest.fixture
def live(tmp_path: Path, embedder: Embedder) -> RAG:
    settings = Settings(
        index_dir=tmp_path / "index", progress=False, backend="extractive", fetch_host_delay=0, fetch_timeout=3
    )
    return RAG(settings, embedder=embedder)


def _follow(pipeline: RAG, site: Site) -> FeedStore:
    store = FeedStore.for_settings(pipeline.settings)
    store.add(site.server.url + "/rss.xml", "daily")
    store.add(site.server.url + "/atom.xml", "weekly")
    return store


def test_sync_fills_the_index_with_dated_articles_and_their_provenance(live: RAG, site: Site) -> None:
    store = _follow(live, site)
    results = {r.feed: r for r in sync(live)}
    assert [len(results["daily"].added), len(results["weekly"].added)] == [3, 2]
    assert not results["daily"].failed and not results["weekly"].failed
    records = live.open_index().documents
    for path, page in site.pages.items():
        record = records[site.server.url + path]
        assert record.title == page.title
        assert record.published == page.published
        assert record.url == site.server.url + path
        assert record.metadata["source_url"] == site.server.url + path
        assert record.metadata["feed"] in ("daily", "weekly")
        assert record.metadata["extraction"].startswith("trafilatura")
        dt.datetime.fromisoformat(record.metadata["fetched_at"])
    feeds = {f.name: f for f in store.list()}
    assert feeds["daily"].entries == 3 and feeds["daily"].last_added == 3 and feeds["daily"].last_status == "ok"
    assert feeds["weekly"].last_sync is not None


def test_a_synced_article_answers_with_a_citation_linking_to_its_page(live: RAG, site: Site) -> None:
    _follow(live, site)
    sync(live)
    path, page = next(iter(site.pages.items()))
    answer = live.answer(page.title, as_of=page.published)
    # answered, or drafted as "not sure" with its source: either way the synced page is what is cited
    cited = {c.passage.chunk.url for c in answer.citations}
    assert site.server.url + path in cited


def test_a_second_sync_fetches_and_embeds_nothing_new(live: RAG, site: Site) -> None:
    site.refresh(etag='"v1"')
    _follow(live, site)
    sync(live)
    chunks = len(live.open_index().chunks)
    pages_fetched = sum(site.server.hits[p] for p in site.pages)
    again = {r.feed: r for r in sync(live)}
    assert again["daily"].status == "not modified"  # the ETag came back as a 304
    assert site.server.conditional["/rss.xml"] == 1
    assert again["weekly"].status == "ok" and again["weekly"].unchanged == 2 and not again["weekly"].added
    assert sum(site.server.hits[p] for p in site.pages) == pages_fetched, "known entries are not fetched again"
    assert len(live.open_index().chunks) == chunks


def test_a_new_entry_is_indexed_and_an_edited_one_embedded_again_once(live: RAG, site: Site) -> None:
    _follow(live, site)
    sync(live)
    site.publish(site.spare, 9, feed="atom")
    edited_path = next(iter(site.pages))
    site.edit(edited_path, "The council confirmed the decision on Friday.")
    site.rss_items[0].updated = (site.rss_items[0].published or 0) + 86400
    site.refresh()
    results = {r.feed: r for r in sync(live)}
    assert results["weekly"].added == [site.server.url + "/news/009-story.html"]
    assert results["daily"].updated == [site.server.url + edited_path]
    assert "confirmed the decision on Friday" in live.open_index().documents[site.server.url + edited_path].text
    third = {r.feed: r for r in sync(live)}
    assert not third["daily"].updated and not third["weekly"].added and not third["weekly"].updated


def test_an_undated_page_uses_its_entrys_date_and_without_one_stays_undated(
    live: RAG, site: Site, news_server: NewsServer
) -> None:
    article = real_articles(8, seed=11)[7]
    page = site.publish(article, 20, feed="rss", with_date=False)
    site.rss_items[-1].published = time.mktime(dt.date(2021, 3, 4).timetuple())
    nodate = real_articles(9, seed=12)[8]
    lone = site.publish(nodate, 21, feed="rss", with_date=False)
    site.refresh()
    _follow(live, site)
    sync(live)
    records = live.open_index().documents
    assert page.published is None and records[page.url].published == dt.date(2021, 3, 4)
    assert lone.published is None and records[lone.url].published is None, "never silently today"


def test_failures_are_reported_by_url_and_stop_nothing_else(live: RAG, site: Site, news_server: NewsServer) -> None:
    url = news_server.url
    store = _follow(live, site)
    sync(live)
    kept = set(live.open_index().documents)
    news_server.routes["/slow.xml"] = Route(rss("slow", []), "application/rss+xml", delay=5)
    news_server.routes["/broken.xml"] = Route(b"<rss><channel><item><title>unclosed", "application/rss+xml")
    news_server.routes["/down.xml"] = Route(b"oops", "text/plain", status=500)
    news_server.routes["/loop.html"] = Route(redirect="/loop.html")
    news_server.routes["/photo.png"] = Route(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")
    news_server.routes["/huge.html"] = Route(size=50 * 1024 * 1024)
    bad_pages = [f"{url}/loop.html", f"{url}/photo.png", f"{url}/huge.html", f"{url}/gone.html"]
    news_server.routes["/mixed.xml"] = Route(
        rss("mixed", [Item(f"bad {i}", link, f"urn:bad:{i}") for i, link in enumerate(bad_pages)]),
        "application/rss+xml",
    )
    for name in ("missing", "slow", "broken", "down", "mixed"):
        path = "/nowhere.xml" if name == "missing" else f"/{name}.xml"
        store.add(url + path, name)
    started = time.monotonic()
    results = {r.feed: r for r in sync(live)}
    assert time.monotonic() - started < 60
    reasons = {name: results[name].error or "" for name in ("missing", "slow", "broken", "down")}
    assert "404" in reasons["missing"] and "500" in reasons["down"]
    assert "no answer within" in reasons["slow"]
    assert "not a readable RSS or Atom feed" in reasons["broken"]
    failed = {e.url: e.reason for e in results["mixed"].failed}
    assert set(failed) == set(bad_pages)
    assert "redirect" in failed[f"{url}/loop.html"]
    assert "image/png" in failed[f"{url}/photo.png"]
    assert "MB limit" in failed[f"{url}/huge.html"]
    assert "404" in failed[f"{url}/gone.html"]
    assert results["daily"].status == "ok" and results["weekly"].status == "ok"
    assert kept <= set(live.open_index().documents), "nothing already indexed is lost"
    listed = {f.name: f for f in store.list()}
    assert listed["down"].last_status == "failed" and "500" in (listed["down"].last_error or "")
    assert listed["mixed"].last_failed == 4


def test_a_page_over_the_time_budget_is_reported_and_the_others_indexed(
    live: RAG, site: Site, news_server: NewsServer
) -> None:
    attributes = " ".join(f'a{i}="v{i}"' for i in range(100_000))
    news_server.routes["/slow.html"] = Route(f"<html><body><div {attributes}>Text.</div></body></html>".encode())
    path = next(iter(site.pages))
    live.settings.index.max_extract_seconds = 5
    report = index_pages(live, [news_server.url + "/slow.html", news_server.url + path])
    assert report.report.added == [news_server.url + path]
    assert [e.path for e in report.errors] == [news_server.url + "/slow.html"]
    assert "took longer than 5 s to read, so it was stopped" in report.errors[0].message


def test_rag_index_fetches_a_web_page_and_a_pdf(live: RAG, site: Site, news_server: NewsServer) -> None:
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF()
    pdf.set_title("Harbour authority annual report")
    pdf.set_creation_date(dt.datetime(2021, 2, 3, tzinfo=dt.timezone.utc))
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, "The harbour authority named Mirela Vasquez chief inspector. Cargo volumes rose by a fifth.")
    news_server.routes["/report.pdf"] = Route(bytes(pdf.output()), "application/pdf")
    path, page = next(iter(site.pages.items()))
    report = index_pages(live, [news_server.url + path, news_server.url + "/report.pdf", news_server.url + "/x"])
    assert sorted(report.report.added) == sorted([news_server.url + path, news_server.url + "/report.pdf"])
    assert [e.path for e in report.errors] == [news_server.url + "/x"]
    records = live.open_index().documents
    assert records[news_server.url + path].title == page.title
    assert records[news_server.url + "/report.pdf"].published == dt.date(2021, 2, 3)
    assert live.answer("Who is the harbour authority's chief inspector?").short == "Mirela Vasquez"


def _note(source: Source) -> Iterator[Document]:
    title, _, text = source.file.read().decode("utf-8").partition("\n")
    yield Document(id=source.doc_id, text=text.strip(), title=title.lstrip("# "))


NOTES = Format((".note",), "a note: its title on the first line", _note, media_types=("text/markdown",))


def test_a_format_reads_the_pages_served_as_its_media_types(live: RAG, news_server: NewsServer) -> None:
    """Fetching dispatches on the formats' own media types: a format another package registers is
    fetchable with no edit to the fetcher."""
    note = b"# Harbour note\nThe harbour authority named Ilse Brandvik pilot master."
    news_server.routes["/note"] = Route(note, "text/markdown; charset=utf-8")
    news_server.routes["/table"] = Route(b"a,b\n1,2\n", "text/csv")
    refused = index_pages(live, [news_server.url + "/note"])
    assert "is text/markdown, not an article page (application/pdf, application/xhtml+xml, text/html)" in str(
        refused.errors[0]
    )
    rag.ingest.loaders.register(NOTES)
    try:
        report = index_pages(live, [news_server.url + "/note", news_server.url + "/table"])
    finally:
        rag.ingest.loaders.FORMATS.unregister(NOTES)
    assert report.report.added == [news_server.url + "/note"]
    assert "is text/csv, not an article page" in str(report.errors[0])
    record = live.open_index().documents[news_server.url + "/note"]
    assert record.title == "Harbour note" and record.url == news_server.url + "/note"


# --- the command line ---------------------------------------------------------------------------------


def _env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, RAG_BACKEND="extractive", RAG_FETCH_HOST_DELAY="0")


def _rag(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RAG_BIN), *args], env=_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=600
    )


def test_feeds_add_sync_and_ask_from_the_command_line(tmp_path: Path, site: Site) -> None:
    assert _rag(tmp_path, "feeds", "add", site.server.url + "/rss.xml", "--name", "daily").returncode == 0
    assert _rag(tmp_path, "feeds", "add", site.server.url + "/rss.xml").returncode == 2, "followed twice"
    first = _rag(tmp_path, "sync")
    assert first.returncode == 0, first.stderr
    assert "daily: ok, 3 added" in first.stdout
    second = _rag(tmp_path, "sync")
    assert "daily: ok, 0 added, 0 updated, 3 unchanged" in second.stdout
    listed = _rag(tmp_path, "feeds", "list").stdout
    assert "daily" in listed and "3 articles" in listed and "last sync" in listed
    path, page = next(iter(site.pages.items()))
    asked = _rag(tmp_path, "ask", page.title, "--as-of", str(page.published), "--json")
    assert site.server.url + path in asked.stdout
    removed = _rag(tmp_path, "feeds", "remove", "daily")
    assert removed.returncode == 0 and "stay in the index" in removed.stdout
    assert _rag(tmp_path, "feeds", "remove", "daily").returncode == 2


def test_a_killed_sync_resumes_without_duplicates(tmp_path: Path, site: Site, news_server: NewsServer) -> None:
    for n, article in enumerate(real_articles(14, seed=3)[6:], start=30):
        site.publish(article, n, feed="rss")
    for route in site.server.routes.values():
        route.delay = 0.3  # slow enough to be killed halfway through the fetches
    _rag(tmp_path, "feeds", "add", site.server.url + "/rss.xml", "--name", "daily")
    process = subprocess.Popen([str(RAG_BIN), "sync"], env=_env(tmp_path), cwd=tmp_path)
    time.sleep(2.5)
    process.kill()
    process.wait()
    done = _rag(tmp_path, "sync")
    assert done.returncode == 0, done.stderr
    index = RAG(Settings(index_dir=tmp_path / "index")).open_index()
    assert sorted(index.documents) == sorted(i.link for i in site.rss_items)
    assert verify(tmp_path / "index")[1] == []
    again = _rag(tmp_path, "sync")
    assert f"daily: ok, 0 added, 0 updated, {len(site.rss_items)} unchanged" in again.stdout


def test_sync_every_runs_until_sigterm_and_stops_cleanly(tmp_path: Path, site: Site) -> None:
    _rag(tmp_path, "feeds", "add", site.server.url + "/atom.xml", "--name", "weekly")
    process = subprocess.Popen(
        [str(RAG_BIN), "sync", "--every", "1s"], env=_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while site.server.hits["/atom.xml"] < 3:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    assert "weekly: ok, 2 added" in out and "weekly: ok, 0 added, 0 updated, 2 unchanged" in out
    assert verify(tmp_path / "index")[1] == []


def test_bad_intervals_and_urls_are_clear_errors(tmp_path: Path) -> None:
    bad = _rag(tmp_path, "sync", "--every", "soon")
    assert bad.returncode == 2 and "not an interval" in bad.stderr
    notaurl = _rag(tmp_path, "feeds", "add", "ftp://example.org/feed")
    assert notaurl.returncode == 2 and "not an http(s) URL" in notaurl.stderr
