"""The chat page's story panels in a real browser (`rag ui`, headless Chromium, as tests/test_ui_browser.py
drives it): a timeline asked for in the sidebar is drawn as a chart with its events listed, each quoted and
linked to its article; a followed question is listed, and a change recorded by a sync is shown once as new
since the last visit."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from rag import RAG
from rag.config import Settings
from rag.ingest.feeds import Entry, FeedStore
from rag.store.embedding import Embedder
from rag.stories.follow import FollowStore
from rag.types import Document
from tests.conftest import cli_env
from tests.test_timeline import STORY, TOPIC
from tests.test_ui_browser import (
    ANSWER_SECONDS,
    STARTUP_SECONDS,
    browser,
    click_button,
    running_ui,
    screenshot,
    typeable,
)

__all__ = ["browser"]
QUESTION = "How many people did Storm Nadia kill in Port Ellis?"


@pytest.fixture(scope="module")
def story_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`rag ui` over an index of the storm story (links on every article, all from one feed), one
    question followed and a change to it recorded as a sync would; yields (url, home)."""
    home = tmp_path_factory.mktemp("ui-stories")
    env = cli_env(home, RAG_BACKEND="extractive")
    settings = Settings(index_dir=home / "index", progress=False, backend="extractive")
    rag = RAG(settings, embedder=Embedder())
    rag.add_documents(
        [
            Document(doc_id, text, f"Report {doc_id}", published, url=f"https://news.example/{doc_id}")
            for doc_id, published, text in STORY
            if published <= dt.date(2023, 3, 10)
        ]
    )
    rag.follow(QUESTION)
    rag.add_documents(
        [
            Document(doc_id, text, f"Report {doc_id}", published, url=f"https://news.example/{doc_id}")
            for doc_id, published, text in STORY
            if published > dt.date(2023, 3, 10)
        ]
    )
    assert len(rag.follow_up()) == 1, "the toll articles change the answer"
    feeds = FeedStore.for_settings(settings)  # as if the articles had come from a feed
    feeds.add("https://news.example/rss.xml", "example")
    feeds.record("example", [Entry(f"urn:{d}", d, f"https://news.example/{d}", "s") for d, _, _ in STORY])
    with running_ui(env, home) as (url, _):
        yield url, home


def _open(driver: WebDriver, panel: str) -> None:
    WebDriverWait(driver, STARTUP_SECONDS).until(
        lambda d: d.find_element(By.XPATH, f"//summary[contains(., '{panel}')]"), message=f"no {panel} panel"
    ).click()


def test_a_change_to_a_followed_question_is_new_once(story_app: tuple[str, Path], browser: WebDriver) -> None:
    """Runs first: the page's first visit is what marks the change seen."""
    url, home = story_app
    browser.get(url)
    WebDriverWait(browser, STARTUP_SECONDS, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: "New since your last visit" in d.find_element(By.TAG_NAME, "body").text,
        message="the recorded change was not shown",
    )
    body = browser.find_element(By.TAG_NAME, "body").text
    assert QUESTION in body and "twelve" in body
    _open(browser, "Followed questions")
    sidebar = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    WebDriverWait(browser, 20).until(lambda d: QUESTION in sidebar.text, message="the followed question is not listed")
    store = FollowStore(home / "index.follows.sqlite3")
    assert store.changes(unseen=True) == [], "shown once: seen"
    with sqlite3.connect(home / "index.follows.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == 1, "kept for --changes and the API"


def test_a_timeline_is_charted_and_listed_with_linked_sources(story_app: tuple[str, Path], browser: WebDriver) -> None:
    browser.get(story_app[0])
    _open(browser, "Story timeline")
    box = typeable(browser, 'input[aria-label="Timeline topic"]', 20)
    box.send_keys(TOPIC, Keys.ENTER)
    click_button(browser, "Show timeline")
    WebDriverWait(browser, ANSWER_SECONDS, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".rag-event"), message="no timeline events shown"
    )
    events = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".rag-event")]
    dates = [text.split()[0] for text in events]
    assert dates == sorted(dates) and any("Storm Nadia made landfall" in text for text in events), events
    assert any(text.startswith("2023-03-09 (on Thursday)") for text in events)
    link = browser.find_element(By.CSS_SELECTOR, '.rag-event a[href="https://news.example/landfall"]')
    assert link.get_attribute("target") == "_blank"
    shown = browser.find_element(By.XPATH, "//*[@data-testid='stExpander'][.//summary[contains(., 'Timeline:')]]")
    chart = WebDriverWait(browser, 30).until(
        lambda d: shown.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"] .marks'),  # Vega's drawing
        message="no chart drawn",
    )
    assert chart[0].is_displayed()
    (figure,) = WebDriverWait(browser, 30).until(
        lambda d: shown.find_elements(By.CSS_SELECTOR, ".rag-figure"), message="no figure line shown"
    )  # drawn after the chart, in the same step
    assert figure.text.startswith("people killed: twelve (2023-03-11) → thirty-one (2023-03-15)"), figure.text
    assert figure.find_elements(By.CSS_SELECTOR, 'a[href="https://news.example/rising-toll"]'), (
        "the new figure's source"
    )
    screenshot(browser, "ui-timeline.png")


def test_the_feeds_panel_charts_each_feeds_articles_per_day(story_app: tuple[str, Path], browser: WebDriver) -> None:
    browser.get(story_app[0])
    _open(browser, "Feeds")
    sidebar = browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]')
    WebDriverWait(browser, 60, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: "Articles per day, by feed" in sidebar.text, message="no coverage chart caption"
    )
    chart = WebDriverWait(browser, 30).until(
        lambda d: sidebar.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"] .marks'),
        message="no coverage chart drawn",
    )
    assert chart[0].is_displayed()
    assert "6 articles so far" in sidebar.text
    screenshot(browser, "ui-coverage.png")
