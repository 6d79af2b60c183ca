"""The chat page driven headlessly with Streamlit's AppTest over the real embedding model, FAISS index and
the extractive backend: building the index, answers with linked citations and source cards, refusals,
follow-ups, the date filter, uploads, deletes, kept conversations (reopened after a reload or a restart,
renamed, deleted, rated, exported), feeds and web pages fetched from a real HTTP server, and article text
that tries to be markup. Plus the HTML helpers in ui/render.py and the upload API the page calls."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from rag import RAG, Settings
from rag.ingest.feeds import FeedStore
from rag.server.conversations import RATINGS, ConversationStore, StoredTurn
from rag.store.embedding import Embedder
from rag.types import Chunk, Passage

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "ui" / "app.py"
SEEDS = ROOT / "seeds"
SEED_ID = next(SEEDS.glob("*.txt")).name
SOURCES_CITED = '<div class="rag-section">Sources cited</div>'
QUESTION = "Who is the Secretary General of the CSTO?"
FOLLOW_UP = "What did he say about military assistance?"

sys.path.insert(0, str(ROOT / "ui"))
from render import (  # noqa: E402
    _MARKDOWN_SPECIALS,
    STYLE,
    answer_html,
    clip,
    feed_html,
    final_answer_html,
    inert,
    plain,
    source_card,
)

INJECTION = (
    "<script>window.pwned=1</script>",
    '<img src=x onerror="alert(1)">',
    "**bold** [link](javascript:alert(1))",
    "$x^2$",
    ":red[red]",
)
INJECTED_ARTICLE = {
    "id": "harbour-**bold**",
    "title": "<script>window.pwned=2</script> **Harbour** news",
    "url": "javascript:alert(1)",
    "source": "[wire](javascript:alert(1))",
    "published": "2020-10-08",
    "text": "Mayor Zorblat Quennick of Plonkton opened the new harbour bridge on Tuesday "
    + " ".join(INJECTION)
    + " in front of a cheering crowd.\n\nThe harbour bridge links the old town of Plonkton with the port.",
}
INJECTION_QUESTION = "Who opened the harbour bridge in Plonkton?"
CONVERSATION = "c"


@pytest.fixture(scope="module", autouse=True)
def _release_pipelines() -> Iterator[None]:
    """Every test's index directory is a new settings key for `st.cache_resource`: drop the pipelines
    (each holding a model and an index) when the module is done."""
    yield
    st.cache_resource.clear()


@pytest.fixture
def index_dir(_hermetic: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the page at a fresh index; set after `_hermetic`, which clears every RAG_* variable."""
    path = tmp_path / "ui-index"
    monkeypatch.setenv("RAG_INDEX_DIR", str(path))
    monkeypatch.setenv("RAG_BACKEND", "extractive")
    monkeypatch.setenv("RAG_PROGRESS", "false")
    return path


def _launch() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    _no_exception(at)
    return at


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    _no_exception(at)
    return at


def _bodies(at: AppTest) -> list[str]:
    """The raw source of everything Streamlit renders as markdown, HTML or not."""
    kinds = (at.markdown, at.caption, at.warning, at.error, at.info, at.success, at.toast)
    return [element.value for kind in kinds for element in kind]


def _store() -> ConversationStore:
    """The store the page keeps conversations in, from the same settings (the environment) as the page."""
    return ConversationStore.for_settings(Settings())


def _turns(at: AppTest) -> tuple[StoredTurn, ...]:
    """The kept turns of the conversation the page's address names."""
    return _store().get(at.query_params[CONVERSATION]).turns


def _last(at: AppTest) -> StoredTurn:
    return _turns(at)[-1]


def _ids(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["id"])


def _card_id(card: str) -> str:
    match = re.search(r'id="([^"]+)"', card)
    assert match, card
    return match.group(1)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _seed_dir_with(tmp_path: Path, name: str, content: str) -> Path:
    seeds = tmp_path / "seeds"
    shutil.copytree(SEEDS, seeds)
    (seeds / name).write_text(content, encoding="utf-8")
    return seeds


class TestChatPage:
    def test_first_run_builds_the_index_from_the_seeds(self, index_dir: Path) -> None:
        assert not index_dir.exists()
        at = _launch()
        assert (index_dir / "manifest.json").is_file()
        assert at.title[0].value == "Ask the news"
        assert not at.error and not at.chat_message
        assert _ids(at) == [SEED_ID]
        assert "1 articles" in [c.value for c in at.caption]
        assert "Model: extractive" in [c.value for c in at.sidebar.caption]

    def test_answer_links_each_citation_to_its_source_card(self, index_dir: Path) -> None:
        at = _ask(_launch(), QUESTION)
        user, reply = at.chat_message
        assert user.name == "user" and user.text[0].value == QUESTION
        bodies = [m.value for m in reply.markdown]
        [answer_md] = [b for b in bodies if 'class="rag-answer"' in b]
        assert "Stanislav Zas" in answer_md
        links = re.findall(r'href="#(src-[\w-]+-\d+)"', answer_md)
        assert links, answer_md

        heading = bodies.index(SOURCES_CITED)
        not_cited = [m.value for m in reply.expander[0].markdown]
        cited_cards = [b for b in bodies[heading + 1 :] if b.startswith('<div class="rag-card"') and b not in not_cited]
        cited_ids = [_card_id(card) for card in cited_cards]
        assert sorted(set(links)) == sorted(cited_ids), "every link has a card under Sources cited, and only those"
        assert not set(cited_ids) & {_card_id(card) for card in not_cited}

        answer = _last(at).answer
        quote = answer.citations[0].quote
        assert "Stanislav Zas" in quote
        key = _last(at).id
        card = cited_cards[cited_ids.index(f"src-{key}-{answer.citations[0].number}")]
        assert f"<mark>{inert(quote)}</mark>" in card
        assert "2020-10-08" in card

        [dates, stats] = reply.caption
        today = dt.date.today()
        assert html.unescape(dates.value) == f"Searched articles published up to {today}; as of {today}."
        match = re.fullmatch(
            r"retrieve \d+ ms · generate \d+\.\d\d s · tokens: (\d+) prompt, (\d+) answer · extractive",
            stats.value,
        )
        assert match, stats.value
        assert int(match.group(2)) > 0  # the extractive reader sends no prompt

    def test_short_answer_headline_quote_and_confidence(self, index_dir: Path) -> None:
        at = _ask(_launch(), QUESTION)
        answer = _last(at).answer
        assert answer.short and not answer.refused
        bodies = [m.value for m in at.chat_message[1].markdown]
        [answer_md] = [b for b in bodies if 'class="rag-answer"' in b]
        assert f'<span class="rag-short">{inert(answer.short)} <a class="rag-cite"' in answer_md
        assert '<span class="rag-quote">' in answer_md and "rag-unsupported" not in answer_md
        [line] = [b for b in bodies if "rag-confidence" in b]
        assert f"({answer.confidence:.2f})" in line

    def test_below_the_threshold_the_draft_is_a_warning_then_unverified_with_its_source(
        self, index_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RAG_MIN_CONFIDENCE", "1")  # nothing is sure enough
        at = _ask(_launch(), QUESTION)
        reply = at.chat_message[-1]
        [warning] = reply.warning
        assert html.unescape(warning.value).startswith("Not sure: the articles may not say this.")
        bodies = [m.value for m in reply.markdown]
        assert any('class="rag-answer rag-unverified"' in b and "Stanislav Zas" in b for b in bodies)
        assert not any("rag-short" in b for b in bodies)  # no headline: it is not an answer
        assert SOURCES_CITED in bodies
        assert any("Confidence: not sure" in b for b in bodies)

    def test_a_refusal_without_a_draft_is_a_warning_without_sources(
        self, index_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RAG_MIN_CONFIDENCE", "1")
        at = _launch()
        at.date_input(key="as_of").set_value(dt.date(2020, 10, 1))  # a week before the seed article
        reply = _ask(at, QUESTION).chat_message[-1]
        [warning] = reply.warning
        assert "I cannot answer this from the provided articles" in html.unescape(warning.value)
        bodies = [m.value for m in reply.markdown]
        assert SOURCES_CITED not in bodies
        assert not any('class="rag-answer' in b for b in bodies)
        assert reply.caption[-1].value.startswith("retrieve ")

    def test_follow_up_is_rewritten_and_shown_when_asked(
        self, index_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # What a follow-up is searched as is the point here, not whether its answer clears the threshold:
        # "what did he say" has no short answer, which the fitted model scores low (README, Reading).
        monkeypatch.setenv("RAG_MIN_CONFIDENCE", "0")
        at = _launch()
        at.toggle(key="show_rewrite").set_value(True)
        _ask(at, QUESTION)
        _ask(at, FOLLOW_UP)
        first, second = at.chat_message[1], at.chat_message[3]
        assert at.chat_message[2].text[0].value == FOLLOW_UP
        assert not any(c.value.startswith("Searched as:") for c in first.caption), "a standalone question"
        [searched] = [html.unescape(c.value) for c in second.caption if c.value.startswith("Searched as:")]
        assert "Stanislav Zas" in searched and "he " not in searched.replace("the ", "")
        answer = _last(at).answer
        assert answer.question == FOLLOW_UP and answer.standalone_question and answer.standalone_question in searched
        assert "military assistance" in answer.citations[0].quote

        at.toggle(key="show_rewrite").set_value(False).run()
        assert not any(c.value.startswith("Searched as:") for c in at.caption)

    def test_date_filter(self, index_dir: Path) -> None:
        at = _launch()
        at.checkbox(key="use_dates").check().run()
        at.date_input(key="since").set_value(dt.date(2021, 1, 1))
        at.date_input(key="until").set_value(dt.date(2021, 12, 31))
        _ask(at, QUESTION)
        reply = at.chat_message[-1]
        assert reply.warning and not any("Stanislav Zas" in m.value for m in reply.markdown)
        answer = _last(at).answer
        assert (answer.since, answer.until) == (dt.date(2021, 1, 1), dt.date(2021, 12, 31))
        assert answer.refused and answer.passages == []

        at.date_input(key="since").set_value(dt.date(2020, 10, 1))
        at.date_input(key="until").set_value(dt.date(2020, 10, 31))
        _ask(at, QUESTION)
        reply = at.chat_message[-1]
        assert not reply.warning
        assert any("Stanislav Zas" in m.value and 'class="rag-answer"' in m.value for m in reply.markdown)

        at.checkbox(key="use_dates").uncheck().run()
        assert [d.key for d in at.date_input] == ["as_of"]
        _ask(at, QUESTION)
        assert _last(at).answer.since is None

    def test_as_of_date_leaves_out_later_articles_and_says_what_was_searched(
        self, index_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RAG_MIN_CONFIDENCE", "0")  # the article is found or left out by date, whatever its draft
        at = _launch()
        at.date_input(key="as_of").set_value(dt.date(2020, 10, 1))  # a week before the seed article
        _ask(at, QUESTION)
        answer = _last(at).answer
        assert answer.refused and answer.as_of == dt.date(2020, 10, 1) and answer.until == dt.date(2020, 10, 1)
        captions = [html.unescape(c.value) for c in at.caption]
        assert "Searched articles published up to 2020-10-01; as of 2020-10-01." in captions

        at.date_input(key="as_of").set_value(dt.date(2020, 10, 9))
        _ask(at, "Who is the Secretary General of the CSTO this week?")
        answer = _last(at).answer
        assert not answer.refused and "Stanislav Zas" in answer.text
        expected = (
            "Searched articles published up to 2020-10-09; as of 2020-10-09; "
            '"this week" read as 2020-10-03 to 2020-10-09 (preferred).'
        )
        assert expected in [html.unescape(c.value) for c in at.caption]


def _reload(at: AppTest, *, restart: bool = False) -> AppTest:
    """The page opened again at its current address, as a browser reload does: a new session with none of
    the old one's state. With `restart`, the process's cached pipeline and store go too, as when the
    server is restarted, so whatever shows was read back from disk."""
    if restart:
        st.cache_resource.clear()
    again = AppTest.from_file(str(APP), default_timeout=120)
    again.query_params.update(at.query_params)
    again.run()
    _no_exception(again)
    return again


def _reply_bodies(at: AppTest, index: int) -> list[str]:
    reply = at.chat_message[index]
    return [m.value for m in reply.markdown] + [c.value for c in reply.caption] + [w.value for w in reply.warning]


def _listed(at: AppTest) -> dict[str, str]:
    """The sidebar's past conversations: id to button label."""
    keys = [b.key or "" for b in at.sidebar.button]
    return {key.removeprefix("open-"): at.button(key=key).label for key in keys if key.startswith("open-")}


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """What the page offers for download, by file name: recorded as Streamlit stores it for the browser."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    offered: dict[str, bytes] = {}
    keep = MemoryMediaFileStorage.load_and_get_id

    def recording(
        self: MemoryMediaFileStorage, data: str | bytes, mimetype: str, kind: Any, filename: str | None = None
    ) -> str:
        if filename:
            offered[filename] = data.encode() if isinstance(data, str) else data
        return keep(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return offered


class TestConversations:
    """Conversations kept in the SQLite store `rag serve` shares, checked through the store itself."""

    def test_first_answer_starts_a_kept_conversation_named_in_the_address(self, index_dir: Path) -> None:
        at = _launch()
        assert CONVERSATION not in at.query_params and _store().list() == []
        assert not _listed(at) and "Answers are kept here: none yet." in [c.value for c in at.sidebar.caption]
        assert [m.value.strip() for m in at.main.markdown] == [STYLE.strip()], "nothing but the chat on the page"
        _ask(at, QUESTION)
        [summary] = _store().list()
        assert at.query_params == {CONVERSATION: summary.id}
        assert (summary.title, summary.turns, summary.origin) == (QUESTION, 1, "page")
        [turn] = _turns(at)
        assert turn.question == QUESTION and "Stanislav Zas" in turn.answer.text
        assert turn.options == {
            "k": 5,
            "since": None,
            "until": None,
            "as_of": dt.date.today().isoformat(),
            "backend": "extractive",
            "model": None,
        }
        assert list(_listed(at)) == [summary.id], "listed as soon as it is kept"
        assert html.unescape(_listed(at)[summary.id]).startswith(f"{QUESTION} · {dt.date.today()}")
        assert at.button(key=f"open-{summary.id}").proto.type == "primary", "the open one stands out"

    @pytest.mark.parametrize("restart", [False, True], ids=["reload", "server-restart"])
    def test_reopened_page_shows_every_answer_with_its_sources(self, index_dir: Path, restart: bool) -> None:
        at = _ask(_ask(_launch(), QUESTION), "Who is the Secretary General of the CSTO this week?")
        before = [_reply_bodies(at, 1), _reply_bodies(at, 3)]
        again = _reload(at, restart=restart)
        assert [m.name for m in again.chat_message] == ["user", "assistant", "user", "assistant"]
        assert again.chat_message[0].text[0].value == QUESTION
        assert [_reply_bodies(again, 1), _reply_bodies(again, 3)] == before, "re-rendered exactly as first shown"
        first = _turns(again)[0]
        bodies = _reply_bodies(again, 1)
        assert SOURCES_CITED in bodies
        [card] = [b for b in bodies if f'id="src-{first.id}-{first.answer.citations[0].number}"' in b]
        assert f"<mark>{inert(first.answer.citations[0].quote)}</mark>" in card and "2020-10-08" in card
        assert list(_listed(again)) == [again.query_params[CONVERSATION]]

    def test_follow_up_after_a_restart_uses_the_kept_history(
        self, index_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RAG_MIN_CONFIDENCE", "0")  # see test_follow_up_is_rewritten_and_shown_when_asked
        again = _reload(_ask(_launch(), QUESTION), restart=True)
        _ask(again, FOLLOW_UP)
        first, second = _turns(again)
        assert (
            first.question == QUESTION
            and second.question == FOLLOW_UP
            and "Stanislav Zas" in (second.answer.standalone_question or "")
        )
        assert "military assistance" in second.answer.citations[0].quote
        assert len(_store().list()) == 1

    def test_new_conversation_starts_without_history_and_the_old_one_reopens(
        self, index_dir: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RAG_MIN_CONFIDENCE", "0")
        at = _ask(_launch(), QUESTION)
        first = at.query_params[CONVERSATION]
        at.button(key="new_conversation").click().run()
        _no_exception(at)
        assert not at.chat_message and CONVERSATION not in at.query_params
        assert list(_listed(at)) == [first], "the old one is still listed"
        _ask(at, FOLLOW_UP)
        second = at.query_params[CONVERSATION]
        assert second != first
        assert _last(at).answer.standalone_question is None, "no history from the other conversation"
        assert list(_listed(at)) == [second, first], "most recent first"

        at.button(key=f"open-{first}").click().run()
        _no_exception(at)
        assert at.query_params == {CONVERSATION: first}
        assert [m.name for m in at.chat_message] == ["user", "assistant"]
        assert at.chat_message[0].text[0].value == QUESTION

    def test_rename_and_delete(self, index_dir: Path) -> None:
        at = _ask(_launch(), QUESTION)
        conversation_id = at.query_params[CONVERSATION]
        hostile = "**Zas** <script>x</script> [link](javascript:alert(1)) :red[red]"
        at.text_input(key=f"title-{conversation_id}").input(hostile).run()
        at.button(key="rename_conversation").click().run()
        _no_exception(at)
        assert _store().get(conversation_id).summary.title == hostile
        button = at.button(key=f"open-{conversation_id}")
        label = button.label
        assert html.unescape(label).startswith(f"{clip(hostile, 48)} · ") and label.startswith(plain(clip(hostile, 48)))
        assert button.help == plain(hostile), "the whole title, as its tooltip"
        for raw in ("**", "<script", "[link]", "javascript:", ":red["):
            assert raw not in label and raw not in button.help, raw
        assert _listed(_reload(at))[conversation_id] == label, "the new title is kept"

        other = _ask(_launch(), FOLLOW_UP).query_params[CONVERSATION]
        at.button(key="delete_conversation").click().run()
        _no_exception(at)
        assert [html.unescape(t.value) for t in at.toast] == [f"Deleted “{hostile}”"]
        assert all("<script" not in t.value for t in at.toast)
        assert [c.id for c in _store().list()] == [other]
        assert CONVERSATION not in at.query_params and not at.chat_message
        assert list(_listed(at)) == [other], "the list is updated"

        at.query_params[CONVERSATION] = conversation_id  # an old link, or another tab, to the deleted one
        stale = _reload(at)
        assert not stale.chat_message and CONVERSATION not in stale.query_params
        assert "no longer kept" in stale.info[0].value

    def test_feedback_is_stored_per_answer(self, index_dir: Path) -> None:
        at = _ask(_ask(_launch(), QUESTION), "Who is the Secretary General of the CSTO this week?")
        first, second = _turns(at)
        labels = {b.key: b.label for b in at.button if (b.key or "").startswith("feedback-")}
        assert labels == {
            f"feedback-{rating}-{turn.id}": label
            for turn in (first, second)
            for rating, label in zip(RATINGS, ("Helpful", "Wrong answer", "Wrong source"), strict=True)
        }
        at.text_input(key=f"comment-{second.id}").input("the **card** is <b>another</b> article")
        at.button(key=f"feedback-wrong_source-{second.id}").click().run()
        _no_exception(at)
        kept = _store().get(at.query_params[CONVERSATION]).turns
        assert kept[0].feedback == ()
        [given] = kept[1].feedback
        assert (given.rating, given.comment) == ("wrong_source", "the **card** is <b>another</b> article")
        thanks = [c.value for c in at.chat_message[3].caption if c.value.startswith("Thanks")]
        assert thanks == [plain("Thanks — recorded as wrong source: “the **card** is <b>another</b> article”")]
        assert not any((b.key or "").endswith(second.id) for b in at.button), "rated once"
        assert any((b.key or "").endswith(first.id) for b in at.button)

        at.button(key=f"feedback-helpful-{first.id}").click().run()
        assert [(f.rating, f.comment) for f in _turns(at)[0].feedback] == [("helpful", "")]
        again = _reload(at, restart=True)
        assert [c.value for m in again.chat_message for c in m.caption if c.value.startswith("Thanks")] == [
            "Thanks — recorded as helpful",
            thanks[0],
        ]

    def test_exports_carry_the_answers(self, index_dir: Path, downloads: dict[str, bytes]) -> None:
        at = _launch()
        assert not at.download_button and not downloads, "nothing to export before the first answer"
        _ask(at, QUESTION)
        conversation_id, answer = at.query_params[CONVERSATION], _last(at).answer
        assert [b.key for b in at.download_button] == ["export_markdown", "export_json"]
        [(markdown_name, markdown)] = [(n, d.decode()) for n, d in downloads.items() if n.endswith(".md")]
        [(json_name, exported)] = [(n, json.loads(d)) for n, d in downloads.items() if n.endswith(".json")]
        assert markdown_name.startswith("conversation-") and conversation_id[:8] in markdown_name
        assert json_name == markdown_name.removesuffix(".md") + ".json"
        assert QUESTION in markdown and answer.short and answer.short in markdown
        assert exported["id"] == conversation_id and exported["title"] == QUESTION
        [turn] = exported["turns"]
        assert turn["question"] == QUESTION and turn["answer"]["text"] == answer.text

    def test_an_error_is_shown_but_not_kept(self, index_dir: Path) -> None:
        at = _launch()
        at.checkbox(key="use_dates").check().run()
        at.date_input(key="since").set_value(dt.date(2021, 12, 31))
        at.date_input(key="until").set_value(dt.date(2021, 1, 1))
        _ask(at, QUESTION)
        [error] = at.chat_message[1].error
        assert "date range is empty" in html.unescape(error.value)
        assert _store().list() == [] and CONVERSATION not in at.query_params

        at.checkbox(key="use_dates").uncheck().run()
        assert at.chat_message[1].error, "still shown in this session"
        _ask(at, QUESTION)
        assert [m.name for m in at.chat_message] == ["user", "assistant"] * 2
        assert at.chat_message[1].error and not at.chat_message[3].error
        [turn] = _turns(at)
        assert turn.question == QUESTION and not turn.answer.refused
        assert not _reload(at).chat_message[1].error, "a reload shows what was kept: the answer only"


class TestCorpusPanel:
    def test_upload_good_and_bad_files(self, index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RAG_MAX_UPLOAD_MB", "1")
        at = _launch()
        assert "add" not in [b.key for b in at.button], "nothing to add before a file is chosen"
        at.file_uploader[0].set_value(
            [
                (
                    "harbour.txt",
                    b"date 2021-03-04\nMayor Zorblat Quennick opened the Plonkton harbour bridge.",
                    "text/plain",
                ),
                ("photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "text/plain"),
                ("huge.txt", b"word " * 250_000, "text/plain"),
                (
                    "feed.jsonl",
                    b'{"id": "feed-1", "text": "Plonkton elected a new council."}\n{oops\n',
                    "application/json",
                ),
            ]
        ).run()
        at.button(key="add").click().run()
        _no_exception(at)

        assert [s.value for s in at.success] == ["2 added, 0 updated, 0 unchanged, 0 duplicates skipped"]
        errors = [html.unescape(e.value) for e in at.error]
        assert len(errors) == 3, errors
        assert errors[0].startswith("huge.txt: is 1.2 MB, over the 1 MB limit")
        assert any(e.startswith("photo.txt: looks like a binary file") for e in errors)
        assert any(e.startswith("feed.jsonl:2: malformed JSON") for e in errors)
        assert not any("rag-upload-" in e or tempfile.gettempdir() in e for e in errors)
        assert set(_ids(at)) == {SEED_ID, "harbour.txt", "feed-1"}
        assert _ids(at)[0] == "harbour.txt", "newest first"
        assert at.file_uploader[0].key != "uploads-0" and not at.file_uploader[0].value, "the uploader is emptied"

        _ask(at, "Who opened the Plonkton harbour bridge?")
        assert "Zorblat Quennick" in _last(at).answer.text

    def test_bad_only_upload_leaves_the_index_untouched(self, index_dir: Path) -> None:
        at = _launch()
        before = _snapshot(index_dir)
        at.file_uploader[0].set_value([("photo.txt", b"\x00\x01\x02", "text/plain"), ("empty.md", b"\xef\xbb\xbf", "")])
        at.run()
        at.button(key="add").click().run()
        _no_exception(at)
        assert [s.value for s in at.success] == ["0 added, 0 updated, 0 unchanged, 0 duplicates skipped"]
        assert [html.unescape(e.value).split(":")[0] for e in at.error] == ["photo.txt", "empty.md"]
        assert _snapshot(index_dir) == before
        assert _ids(at) == [SEED_ID]

    def test_delete_removes_the_article(self, index_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        seeds = _seed_dir_with(tmp_path, "harbour.txt", "date 2021-03-04\nMayor Zorblat Quennick opened a bridge.")
        monkeypatch.setenv("RAG_SEED_DIR", str(seeds))
        at = _launch()
        assert set(_ids(at)) == {SEED_ID, "harbour.txt"}
        at.selectbox(key="delete_id").set_value("harbour.txt").run()
        at.button(key="delete").click().run()
        _no_exception(at)
        assert _ids(at) == [SEED_ID]
        assert at.selectbox(key="delete_id").options == [SEED_ID]
        assert [html.unescape(t.value) for t in at.toast] == ["Deleted harbour.txt"]
        reopened = RAG(Settings(index_dir=index_dir, backend="extractive", progress=False))
        assert [r.id for r in reopened.documents()] == [SEED_ID], "the delete was saved"

    def test_index_changed_by_another_process(self, index_dir: Path, tmp_path: Path) -> None:
        """`rag index` run while the page is open: the page picks up the other process's article on its
        next run, and deleting works against the index as it now is on disk."""
        at = _launch()
        article = tmp_path / "harbour.txt"
        article.write_text("Mayor Zorblat Quennick opened the Plonkton harbour bridge.", encoding="utf-8")
        RAG(Settings(index_dir=index_dir, backend="extractive", progress=False)).index([article])

        at.run()
        assert set(_ids(at)) == {SEED_ID, "harbour.txt"}, "the other process's article shows"
        at.selectbox(key="delete_id").set_value(SEED_ID).run()
        at.button(key="delete").click().run()
        _no_exception(at)
        assert _ids(at) == ["harbour.txt"] and not at.error
        assert [r.id for r in RAG(Settings(index_dir=index_dir, progress=False)).documents()] == ["harbour.txt"]


NEWS = {
    "ferry": (
        "Plonkton ferry to run every twenty minutes",
        dt.date(2024, 3, 4),
        [
            "Harbourmaster Odalys Wembury announced on Monday that the Plonkton ferry will run every twenty "
            "minutes from the first of April, twice as often as it does now.",
            "The new timetable doubles the number of crossings between the old town and the container port, "
            "and the last boat of the evening will leave an hour later than before.",
            "Wembury said two new boats, built at the Kettleby yard, would join the fleet in the spring and "
            "that fares would stay the same for at least another year.",
        ],
    ),
    "library": (
        "Kettleby library reopens after flood repairs",
        dt.date(2024, 3, 5),
        [
            "The Kettleby public library reopened on Tuesday after eight months of repairs following the "
            "winter floods that soaked its ground floor.",
            "Head librarian Tobias Marchetti said the children's section had been moved upstairs, out of reach "
            "of the river, and that most of the damaged books had been replaced by donations.",
            "The library will open on Sundays for the first time, from ten in the morning until four.",
        ],
    ),
    "comet": (
        "A new comet seen from the Quennick observatory",
        None,  # a page without a date: indexed undated, never dated by the day it was fetched
        [
            "Astronomer Ilse Varnhagen discovered a faint new comet from the Quennick observatory, the "
            "observatory said in a statement.",
            "The comet will be brightest in late summer, when it may be visible with binoculars from dark "
            "places in the countryside.",
            "Varnhagen has found four comets in her career, all of them from the same hilltop telescope.",
        ],
    ),
}
"""Articles on the test news site: title, published date, paragraphs. The feed lists the first two."""
FEED_ARTICLES = ("ferry", "library")
NEWS_QUESTION = "Who announced that the Plonkton ferry will run every twenty minutes?"


def _article_page(title: str, published: dt.date | None, paragraphs: list[str]) -> bytes:
    meta = f'<meta property="article:published_time" content="{published}T09:00:00Z">' if published else ""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (
        f"<!doctype html><html><head><title>{html.escape(title)} | Plonkton Post</title>{meta}</head>"
        f"<body><nav><a href='/'>Home</a> <a href='/news/'>News</a></nav>"
        f"<article><h1>{html.escape(title)}</h1>{body}</article>"
        "<footer>© Plonkton Post. All rights reserved.</footer></body></html>"
    ).encode()


def _rfc822(day: dt.date | None) -> str:
    return format_datetime(dt.datetime.combine(day or dt.date.today(), dt.time(9), dt.timezone.utc))


def _rss(base: str) -> bytes:
    items = "".join(
        f"<item><title>{html.escape(NEWS[slug][0])}</title><link>{base}/news/{slug}.html</link>"
        f"<guid>{base}/news/{slug}.html</guid>"
        f"<pubDate>{_rfc822(NEWS[slug][1])}</pubDate>"
        "</item>"
        for slug in FEED_ARTICLES
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Plonkton Post</title>'
        f"<link>{base}/</link><description>News from Plonkton</description>{items}</channel></rss>"
    ).encode()


@pytest.fixture
def news_site() -> Iterator[str]:
    """A tiny news site on 127.0.0.1 served by a real HTTP server: /rss.xml lists two of the articles,
    /news/<slug>.html are the article pages, and everything else is 404. Yields its base URL."""
    pages: dict[str, tuple[str, bytes]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = pages.get(self.path)
            if found is None:
                self.send_error(404)
                return
            kind, body = found
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_port}"
    pages["/rss.xml"] = ("application/rss+xml", _rss(base))
    for slug, (title, published, paragraphs) in NEWS.items():
        pages[f"/news/{slug}.html"] = ("text/html; charset=utf-8", _article_page(title, published, paragraphs))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _texts(elements: Any) -> list[str]:
    return [html.unescape(e.value) for e in elements]


class TestNews:
    """Feeds and web pages, fetched over HTTP from a real server by the page's own Sync and Fetch buttons."""

    def test_follow_a_feed_sync_it_and_ask_about_its_articles(
        self, index_dir: Path, news_site: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RAG_FETCH_HOST_DELAY", "0")  # polite to publishers, slow for a test
        feed_url = f"{news_site}/rss.xml"
        name = news_site.removeprefix("http://")  # a feed is named after its host
        urls = {slug: f"{news_site}/news/{slug}.html" for slug in NEWS}
        at = _launch()
        uploader = at.file_uploader[0]
        assert ".pdf" in uploader.allowed_type and ", pdf;" in uploader.proto.label, "PDFs upload too"
        assert "No feeds followed yet" in " ".join(c.value for c in at.caption)
        assert "sync" not in [b.key for b in at.button], "nothing to sync before a feed is followed"

        at.text_input(key="feed_url-0").input("feeds.example/rss")
        at.button(key="add_feed").click().run()
        _no_exception(at)
        assert _texts(at.error) == [
            "feeds.example/rss: is not an http(s) URL. give the full address, e.g. https://example.com/news/1"
        ]
        at.text_input(key="feed_url-0").input(feed_url)
        at.button(key="add_feed").click().run()
        _no_exception(at)
        assert _texts(at.success) == [f"Following {name}: press Sync now to fetch its articles."]
        [listed] = [m.value for m in at.markdown if 'class="rag-feed"' in m.value]
        assert f'<a href="{feed_url}" target="_blank"' in listed and f"<b>{inert(name)}</b>" in listed
        assert "0 articles so far · never synced" in [c.value for c in at.caption]
        assert not at.text_input(key="feed_url-1").value, "the box is emptied"

        at.button(key="sync").click().run()
        _no_exception(at)
        [feed] = FeedStore.for_settings(Settings()).list()
        assert feed.last_sync is not None and (feed.last_status, feed.last_added, feed.entries) == ("ok", 2, 2)
        synced = feed.last_sync.astimezone().strftime("%Y-%m-%d %H:%M")
        assert f"2 articles so far · last synced {synced} — 2 added, 0 updated" in [c.value for c in at.caption]
        assert _texts(at.success) == [f"{name}: 2 added, 0 updated, 0 unchanged"]
        assert not at.error
        assert set(_ids(at)) == {SEED_ID, urls["ferry"], urls["library"]}
        rows = at.dataframe[0].value
        assert dict(zip(rows["id"], rows["published"], strict=True))[urls["ferry"]] == "2024-03-04"

        _ask(at, NEWS_QUESTION)
        answer = _last(at).answer
        assert "Odalys Wembury" in answer.text and not answer.refused
        cited = answer.passages[answer.citations[0].number - 1]
        assert cited.chunk.doc_id == urls["ferry"] and cited.chunk.url == urls["ferry"]
        key = _last(at).id
        [card] = [
            m.value for m in at.chat_message[1].markdown if f'id="src-{key}-{answer.citations[0].number}"' in m.value
        ]
        assert f'<a href="{urls["ferry"]}" target="_blank" rel="noopener noreferrer">' in card
        assert "2024-03-04" in card and inert("Plonkton ferry to run every twenty minutes") in card

        at.text_input(key="page_url-0").input(urls["comet"])
        at.button(key="add_page").click().run()
        _no_exception(at)
        assert _texts(at.success)[0] == "1 added, 0 updated, 0 unchanged, 0 duplicates skipped"
        assert urls["comet"] in _ids(at) and not at.text_input(key="page_url-1").value
        rows = at.dataframe[0].value
        assert dict(zip(rows["id"], rows["published"], strict=True))[urls["comet"]] == "undated"

        missing = f"{news_site}/news/missing.html"
        at.text_input(key="page_url-1").input(missing)
        at.button(key="add_page").click().run()
        _no_exception(at)
        assert _texts(at.success)[0] == "0 added, 0 updated, 0 unchanged, 0 duplicates skipped"
        assert _texts(at.error) == [f"{missing}: HTTP 404 Not Found"]
        assert at.text_input(key="page_url-1").value == missing, "kept to be corrected"

        at.button(key="sync").click().run()
        _no_exception(at)
        assert f"{name}: 0 added, 0 updated, 2 unchanged" in _texts(at.success)

        at.selectbox(key="remove_feed_name").set_value(name).run()
        at.button(key="remove_feed").click().run()
        _no_exception(at)
        assert FeedStore.for_settings(Settings()).list() == []
        assert f"Stopped following {name}; its articles stay in the index." in _texts(at.info)
        assert not [m for m in at.markdown if 'class="rag-feed"' in m.value]
        assert {urls["ferry"], urls["library"], urls["comet"]} <= set(_ids(at))


class TestUntrustedText:
    def test_article_markup_is_displayed_never_executed(
        self, index_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        seeds = _seed_dir_with(tmp_path, "feed.jsonl", json.dumps(INJECTED_ARTICLE) + "\n")
        monkeypatch.setenv("RAG_SEED_DIR", str(seeds))
        at = _launch()
        at.toggle(key="show_rewrite").set_value(True)
        _ask(at, INJECTION_QUESTION)
        _ask(at, "What did he say?")
        first = _turns(at)[0].answer
        assert "Zorblat Quennick" in first.text
        assert any(c.passage.doc_id == INJECTED_ARTICLE["id"] for c in first.citations), "the article is cited"

        rendered = _bodies(at)
        at.selectbox(key="delete_id").set_value(INJECTED_ARTICLE["id"]).run()
        at.button(key="delete").click().run()
        _no_exception(at)
        toasts = [t.value for t in at.toast]
        rendered += _bodies(at)
        at.file_uploader[0].set_value(
            (
                "dates.jsonl",
                b'{"text": "Plonkton news.", "published": "**bold** :red[red] [x](javascript:alert(1))"}',
                "",
            )
        ).run()
        at.button(key="add").click().run()
        _no_exception(at)
        assert toasts and at.error, "the delete toast and the upload error were rendered"
        rendered += _bodies(at)

        bodies = "\n".join(rendered)
        for raw in ("<script", "<img", "onerror=", "**bold**", "**Harbour**", "javascript:", "$x^2$", ":red["):
            assert raw not in bodies, raw
        assert not re.search(r"href\s*=\s*['\"]?\s*javascript", bodies, re.IGNORECASE)
        assert set(re.findall(r'href="([^"#:]*)', bodies)) <= {""}, "only in-page anchors are linked"
        for shown in (
            "&#60;script&#62;window.pwned&#61;1",
            "&#60;img src&#61;x onerror&#61;",
            "&#42;&#42;bold&#42;&#42;",
        ):
            assert shown in bodies, f"the article text is displayed: {shown}"
        assert "&#36;x^2&#36;" in bodies and "&#58;red&#91;red&#93;" in bodies
        assert [html.unescape(t) for t in toasts] == [f"Deleted {INJECTED_ARTICLE['id']}"]
        [error] = [e.value for e in at.error]
        assert error.startswith(
            "dates.jsonl&#58;1&#58; unrecognised date &#39;&#42;&#42;bold&#42;&#42; &#58;red&#91;red"
        )


def _passage(text: str, *, start: int = 0, url: str | None = None, title: str = "A title") -> Passage:
    chunk = Chunk(
        doc_id="doc.txt",
        ordinal=0,
        text=text,
        start=start,
        end=start + len(text),
        n_tokens=0,
        title=title,
        published=dt.date(2020, 10, 8),
        source="wire.txt",
        url=url,
        id=3,
    )
    return Passage(chunk=chunk, score=0.5, rank=1)


class TestRender:
    def test_inert_escapes_every_special_character(self) -> None:
        text = "".join(sorted(_MARKDOWN_SPECIALS)) + " plain words"
        out = inert(text)
        assert set(re.sub(r"&#\d+;", "", out)) & _MARKDOWN_SPECIALS == set()
        assert html.unescape(out) == text
        for char in "<>&\"'*_[]()`$:#|~=!\\":
            assert f"&#{ord(char)};" in out

    def test_inert_turns_every_line_break_into_br(self) -> None:
        assert inert("a\nb\r\nc\rd\n\ne") == "a<br>b<br>c<br>d<br><br>e"
        assert "\r" not in inert("one\r\rtwo") and "\n" not in inert("one\n\ntwo")

    def test_clip_cuts_at_a_word(self) -> None:
        assert clip("  short\n title ", 20) == "short title"
        assert clip("Who is the Secretary General of the CSTO?", 20) == "Who is the…"
        assert clip("Supercalifragilistic expialidocious", 10) == "Supercali…"
        assert clip("a, b, c, d, e", 6) == "a, b…"
        assert all(len(clip("word " * 30, n)) <= n for n in range(2, 60))

    def test_plain_is_one_line_without_html(self) -> None:
        assert plain("  **a**\n\n<b>x</b>\r\n") == "&#42;&#42;a&#42;&#42; &#60;b&#62;x&#60;/b&#62;"

    def test_answer_html_links_only_valid_citations(self) -> None:
        out = answer_html("Zas [1][2], not [7] or [0]; both [1, 9]. <b>x</b>", "k", 2)
        assert re.findall(r'href="#([^"]+)"', out) == ["src-k-1", "src-k-2", "src-k-1"]
        assert "[7]" not in out and "[0]" not in out and "9" not in out
        assert "&#60;b&#62;x" in out and "<b>" not in out
        assert out.startswith('<div class="rag-answer">') and out.endswith("</div>")
        assert answer_html("partial", "k", 0, cursor=True).endswith("▌</div>")

    def test_answer_html_while_streaming_links_nothing(self) -> None:
        assert "href" not in answer_html("Zas [1]", "k", 0, cursor=True)

    def test_source_card_names_the_outlets_of_folded_near_copies(self) -> None:
        passage = dataclasses.replace(_passage("Storm closes schools."), also_in=("wire-copy.txt", "<i>x</i>"))
        card = source_card(passage, 1, "k")
        assert "also reported by: wire&#45;copy.txt, &#60;i&#62;x&#60;/i&#62;" in card and "<i>" not in card
        assert "also reported by" not in source_card(_passage("Storm closes schools."), 1, "k")

    def test_source_card_says_who_added_an_article_through_the_api(self) -> None:
        plain = _passage("Storm closes schools.")
        added = dataclasses.replace(
            plain, chunk=dataclasses.replace(plain.chunk, added="key:1a2b3c4d5e6f on 2026-12-06")
        )
        assert "added through the API by key&#58;1a2b3c4d5e6f on 2026&#45;12&#45;06" in source_card(added, 1, "k")
        assert "added through the API" not in source_card(plain, 1, "k")

    def test_source_card_links_only_http_urls(self) -> None:
        bad = source_card(_passage("Text.", url="javascript:alert(1)"), 1, "k")
        assert "<a " not in bad and "javascript:" not in bad and "wire.txt" in bad
        good = source_card(_passage("Text.", url='https://news.test/a?b=1&c="x"'), 2, "k")
        assert '<a href="https://news.test/a?b=1&amp;c=&quot;x&quot;" target="_blank"' in good
        assert 'id="src-k-2"' in good and "2020-10-08" in good and "score 0.50" in good

    def test_feed_links_only_http_urls(self) -> None:
        bad = feed_html("**news** <b>x</b>", "javascript:alert(1)")
        assert "<a " not in bad and "javascript:" not in bad and "&#42;&#42;news&#42;&#42; &#60;b&#62;" in bad
        good = feed_html("news", 'https://news.test/rss?a=1&b="x"')
        assert '<a href="https://news.test/rss?a=1&amp;b=&quot;x&quot;" target="_blank"' in good

    def test_source_card_escapes_title(self) -> None:
        card = source_card(_passage("Text.", title="<script>x</script>"), 1, "k")
        assert "<script" not in card and "&#60;script&#62;x" in card

    def test_overlapping_quote_spans_are_one_highlight(self) -> None:
        text = "First sentence here. Second sentence there. Third one."
        passage = _passage(text, start=100)
        card = source_card(passage, 1, "k", [(100, 120), (110, 143), (121, 130)])
        assert card.count("<mark>") == 1
        assert "<mark>First sentence here. Second sentence there.</mark> Third one." in card

    def test_separate_spans_are_separate_highlights(self) -> None:
        passage = _passage("One. Two. Three.", start=10)
        card = source_card(passage, 1, "k", [(10, 14), (20, 26)])
        assert "<mark>One.</mark> Two. <mark>Three.</mark>" in card

    def test_spans_are_clipped_to_the_passage(self) -> None:
        passage = _passage("Inside text.", start=50)
        card = source_card(passage, 1, "k", [(40, 56), (0, 10), (62, 90)])
        assert card.count("<mark>") == 1 and "<mark>Inside</mark> text." in card
        assert "<mark>" not in source_card(passage, 1, "k", [(200, 210)])


class TestIndexUploads:
    """The API behind the page's upload button, over the real index."""

    @pytest.fixture
    def rag(self, seeded: RAG) -> RAG:
        seeded.settings = seeded.settings.model_copy(update={"max_upload_mb": 1})
        return seeded

    def test_errors_name_the_upload_and_good_files_are_indexed(self, rag: RAG) -> None:
        result = rag.index_uploads(
            [
                ("notes/harbour.txt", b"date 2021-03-04\nMayor Zorblat Quennick opened the harbour bridge."),
                ("photo.txt", b"\x00\x01binary"),
                ("huge.md", b"a" * (1024 * 1024 + 1)),
                ("feed.jsonl", b'{"id": "feed-1", "text": "Council news."}\n{oops\n{"title": "no text"}\n'),
            ]
        )
        assert sorted(result.report.added) == ["feed-1", "harbour.txt"]
        assert [(e.path, e.line) for e in result.errors] == [
            ("huge.md", None),
            ("photo.txt", None),
            ("feed.jsonl", 2),
            ("feed.jsonl", 3),
        ]
        assert "over the 1 MB limit" in str(result.errors[0])
        for error in result.errors:
            assert "rag-upload-" not in str(error) and tempfile.gettempdir() not in str(error)
        ids = [r.id for r in rag.documents()]
        assert ids[0] == "harbour.txt" and set(ids) == {SEED_ID, "harbour.txt", "feed-1"}
        assert "Zorblat Quennick" in rag.answer("Who opened the harbour bridge?").text

    def test_bad_only_upload_leaves_the_index_files_byte_identical(self, rag: RAG) -> None:
        before = _snapshot(rag.settings.index_dir)
        result = rag.index_uploads(
            [("photo.txt", b"\x00\x01"), ("huge.txt", b"x" * (2 * 1024 * 1024)), ("x.json", b"[")]
        )
        assert [e.path for e in result.errors] == ["huge.txt", "photo.txt", "x.json"]
        assert result.report.added == [] and _snapshot(rag.settings.index_dir) == before

    def test_same_name_twice_in_one_batch_is_reported_and_the_first_copy_used(self, rag: RAG) -> None:
        result = rag.index_uploads(
            [("a/story.txt", b"Mayor Zorblat Quennick opened the bridge."), ("b/story.txt", b"Other text.")]
        )
        assert result.report.added == ["story.txt"]
        assert [(e.path, e.problem) for e in result.errors] == [("story.txt", "was uploaded twice in one batch")]
        assert "Zorblat" in rag.open_index().documents["story.txt"].text


class TestFinalAnswerHtml:
    """Checked claims as the page shows them: built from a real extractive answer, with a sentence added
    that its cited passage does not say."""

    def test_an_unsupported_sentence_is_flagged(self, tmp_path: Path, embedder: Embedder) -> None:
        from rag.answering.citations import check_claims
        from rag.answering.evidence import EvidencePool

        pipeline = RAG(Settings(index_dir=tmp_path / "index", backend="extractive", progress=False), embedder=embedder)
        pipeline.index([SEEDS])
        answer = pipeline.answer(QUESTION)
        text = f"{answer.text} The CSTO moved its headquarters to Paris [1]."
        claims = check_claims(text, EvidencePool(answer.passages, pipeline.embedder.embed))
        flagged = dataclasses.replace(answer, text=text, claims=claims)
        rendered = final_answer_html(flagged, "k")
        assert [c.supported for c in claims][-1] is False and all(c.supported for c in claims[:-1])
        assert rendered.count("rag-unsupported") == 1 and "not in the cited passage" in rendered
        assert "Paris" in rendered.split("rag-unsupported")[1]
