"""The chat page: a thin Streamlit layer over `rag.RAG` and the conversation store. No retrieval,
answering or storage logic lives here.

Conversations are kept in the SQLite store `rag serve` shares (`rag.server.conversations`); the open one is
named in the page's address (`?c=<id>`), so a reload or a server restart reopens it."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `render` beside this file, however it is run

from render import (
    STYLE,
    answer_html,
    cited_spans,
    clip,
    confidence_line,
    event_html,
    feed_html,
    figure_html,
    final_answer_html,
    plain,
    safe_url,
    source_card,
    stats_line,
)

from rag import RAG, Answer, RagError, Settings, Timeline
from rag.backends import BACKENDS
from rag.errors import NotFoundError
from rag.ingest.feeds import Feed, FeedStore
from rag.ingest.loaders import FORMATS
from rag.pipeline import IndexReport
from rag.pipeline.sync import Synced, index_pages, sync
from rag.server.conversations import RATINGS, Conversation, ConversationStore, StoredTurn
from rag.server.export import to_json, to_markdown
from rag.store.records import UNDATED
from rag.stories.follow import FollowStore
from rag.types import AskOptions

UPLOAD_TYPES = [suffix.lstrip(".") for suffix in FORMATS]
CONVERSATION = "c"  # the query parameter naming the open conversation
LISTED_TITLE_CHARS = 48
RATING_ICONS = {
    "helpful": ":material/thumb_up:",
    "wrong_answer": ":material/thumb_down:",
    "wrong_source": ":material/link_off:",
}
LISTED_ADDED = 5  # article ids a sync result names per feed before "and N more"


@dataclass(frozen=True)
class PageOptions:
    """The sidebar's choices: how questions are asked, and what the page shows of each answer."""

    ask: AskOptions
    show_passages: bool
    show_rewrite: bool


@st.cache_resource(show_spinner="Loading the index and models…")
def load_pipeline(settings_json: str) -> RAG:
    """One pipeline per process and settings: models and the index load once, not on every rerun."""
    pipeline = RAG(Settings.model_validate_json(settings_json))
    pipeline.warm_up()
    return pipeline


@st.cache_resource(show_spinner=False)
def load_store(settings_json: str) -> ConversationStore:
    """One store per process and settings, shared by every browser session (it holds no connection). The
    page sees the machine's own user's conversations, never those an API key kept through `rag serve`."""
    return ConversationStore.for_settings(Settings.model_validate_json(settings_json)).own()


@st.cache_resource(show_spinner=False)
def load_feeds(settings_json: str) -> FeedStore:
    """The feed list `rag sync` keeps beside the index; like the conversation store, it holds no connection."""
    return FeedStore.for_settings(Settings.model_validate_json(settings_json))


@st.cache_resource(show_spinner=False)
def load_follows(settings_json: str) -> FollowStore:
    """The followed questions beside the index, opened once per process as the feed list is (opening checks
    the file's schema in a write transaction: not on every rerun)."""
    return FollowStore.for_settings(Settings.model_validate_json(settings_json))


def sidebar(pipeline: RAG) -> PageOptions:
    s = pipeline.settings
    st.sidebar.header("Answering")
    names = list(BACKENDS)
    backend = st.sidebar.selectbox("Backend", names, index=names.index(s.backend), key="backend")
    spec = BACKENDS[backend]
    model = None
    if spec.model_setting and spec.model_choices:
        model = st.sidebar.selectbox("Model", spec.model_choices(s), index=0, key=f"model-{backend}")
    elif spec.model_setting:
        configured = str(s.flat()[spec.model_setting])
        model = st.sidebar.text_input("Model", value=configured, key=f"model-{backend}").strip() or None
    try:
        st.sidebar.caption(f"Model: {plain(pipeline.generator(backend, model).model)}")
    except RagError as exc:
        st.sidebar.error(failure(exc))
    k = st.sidebar.slider("Passages to retrieve (top-k)", 1, 20, s.retrieval.top_k, key="top_k")
    as_of = st.sidebar.date_input(
        "As of",
        value=dt.date.today(),
        key="as_of",
        help="The date the question is asked: later articles are left out, recent ones preferred, and "
        "'last week' means the week before this date.",
    )
    since = until = None
    if st.sidebar.checkbox("Only articles published in a date range", key="use_dates"):
        since = st.sidebar.date_input("From", value=dt.date(2020, 1, 1), key="since")
        until = st.sidebar.date_input("To", value=dt.date.today(), key="until")
    show_passages = st.sidebar.toggle("Show retrieved passages", value=True, key="show_passages")
    show_rewrite = st.sidebar.toggle("Show rewritten question", value=False, key="show_rewrite")
    return PageOptions(AskOptions(k, since, until, as_of, backend, model), show_passages, show_rewrite)


def failure(exc: RagError, before: str = "") -> str:
    """What went wrong and what to do, as text for the page: a message can name a file or carry an
    endpoint's words, so it is shown plain, like article text."""
    return plain(f"{before}{exc.message}. {exc.hint or ''}")


def write_failed(exc: RagError) -> None:
    """An upload or delete the index refused is shown, not a traceback; the pipeline has already dropped
    its in-memory copy and reads the index from disk again on the next run."""
    st.error(failure(exc))
    st.info("The page reads the index from disk again on its next run: try again.")


def index_summary(result: IndexReport) -> tuple[str, list[str]]:
    """What an upload or a fetched page did to the index, and the errors of what could not be read."""
    r = result.report
    return (
        f"{len(r.added)} added, {len(r.updated)} updated, {len(r.unchanged)} unchanged, "
        f"{len(r.duplicates)} duplicates skipped",
        [str(e) for e in result.errors],
    )


def corpus_panel(pipeline: RAG) -> None:
    with st.sidebar.expander("Articles in the index", expanded=False):
        round_ = st.session_state.get("upload_round", 0)
        uploads = st.file_uploader(
            f"Add articles ({', '.join(UPLOAD_TYPES)}; up to {pipeline.settings.ui.max_upload_mb} MB each)",
            type=UPLOAD_TYPES,
            accept_multiple_files=True,
            key=f"uploads-{round_}",
            help="Article files from your computer; an article or PDF on the web can be added by its address below.",
        )
        if uploads and st.button("Add to index", key="add"):
            bar = st.progress(0.0, text="Embedding new articles…")

            def progress(done: int, total: int) -> None:
                bar.progress(min(done / max(total, 1), 1.0), text=f"Indexed {done / 1e6:.1f} of {total / 1e6:.1f} MB")

            try:
                result = pipeline.index_uploads([(f.name, f.getvalue()) for f in uploads], on_progress=progress)
            except RagError as exc:
                bar.empty()
                write_failed(exc)
                return
            bar.empty()
            st.session_state.upload_result = index_summary(result)
            st.session_state.upload_round = round_ + 1
            st.rerun()
        page_url = st.text_input(
            "Add a web page (article or PDF)",
            key=f"page_url-{round_}",
            placeholder="https://example.com/news/story.html",
            help="The page is fetched, its article text extracted and indexed under its address.",
        )
        if st.button("Fetch and add", key="add_page", icon=":material/public:"):
            if not page_url.strip():
                st.toast("Type the page's address first.")
            else:
                with st.spinner("Fetching the page…"):
                    try:
                        fetched = index_pages(pipeline, [page_url.strip()])
                    except RagError as exc:
                        write_failed(exc)
                        return
                st.session_state.upload_result = index_summary(fetched)
                if not fetched.errors:  # a failed address stays in the box, to be corrected
                    st.session_state.upload_round = round_ + 1
                st.rerun()
        if "upload_result" in st.session_state:
            summary, errors = st.session_state.upload_result
            st.success(summary)
            for error in errors:
                st.error(plain(error))
        records = pipeline.documents()
        st.caption(f"{len(records)} articles")
        st.dataframe(
            [{"published": str(r.published or "undated"), "title": r.title, "id": r.id} for r in records],
            hide_index=True,
            width="stretch",
        )
        if records:
            doc_id = st.selectbox("Delete an article", [r.id for r in records], index=None, key="delete_id")
            if doc_id and st.button("Delete", key="delete"):
                try:
                    pipeline.delete(doc_id)
                except RagError as exc:
                    write_failed(exc)
                    return
                st.session_state.pop("upload_result", None)
                st.toast(f"Deleted {plain(doc_id)}")
                st.rerun()


def feed_status(feed: Feed) -> str:
    """What the feed's last sync did, in the page's own words (no text from the feed)."""
    if feed.last_sync is None:
        return "never synced"
    if feed.last_status == "ok":
        did = f"{feed.last_added} added, {feed.last_updated} updated"
        if feed.last_failed:
            did += f", {feed.last_failed} pages failed (tried again next time)"
    elif feed.last_status == "not modified":
        did = "nothing new"
    else:
        did = "failed"
    return f"last synced {when(feed.last_sync)} — {did}"


def sync_notices(results: Synced) -> list[tuple[str, str]]:
    """What a sync brought, per feed, as (kind of alert, text) with every feed-provided part made plain."""
    notices: list[tuple[str, str]] = []
    for r in results:
        if r.status == "failed":
            notices.append(("error", plain(f"{r.feed}: {r.url}: {r.error}")))
            continue
        if r.status == "not modified":
            notices.append(("info", plain(f"{r.feed}: nothing new (the feed has not changed)")))
            continue
        counts = f"{len(r.added)} added, {len(r.updated)} updated, {r.unchanged} unchanged"
        if r.failed:
            counts += f", {len(r.failed)} failed"
        notices.append(("success", plain(f"{r.feed}: {counts}")))
        brought = r.added + r.updated
        if brought:
            more = f" and {len(brought) - LISTED_ADDED} more" if len(brought) > LISTED_ADDED else ""
            notices.append(("caption", plain(f"New or updated: {', '.join(brought[:LISTED_ADDED])}{more}")))
        notices.extend(("error", plain(str(error))) for error in r.failed)
    for change in results.changes:
        notices.append(("warning", plain(f"The answer to a followed question changed: {change.question}")))
        notices.append(("caption", plain(f"Was: {change.old_answer} Now: {change.new_answer}")))
    return notices or [("info", "No feeds to sync.")]


NOTICE: dict[str, Callable[[str], object]] = {
    "success": st.success,
    "info": st.info,
    "error": st.error,
    "caption": st.caption,
    "warning": st.warning,
}


@st.cache_data(show_spinner=False, max_entries=4)
def coverage(settings_json: str, generation: int, feeds: tuple[tuple[str, int], ...]) -> pd.DataFrame:
    """Each feed's indexed articles per publication day: the archive's coverage. Read again only when the
    index (its generation) or a feed's entries change, not on every rerun of the page."""
    pipeline = load_pipeline(settings_json)
    summaries = pipeline.open_index().documents.summaries()
    day_of = dict(zip(summaries.ids, summaries.days.tolist(), strict=True))
    store = load_feeds(settings_json)
    rows = [
        (name, day_of[entry.doc_id])
        for name, _ in feeds
        for entry in store.entries(name).values()
        if day_of.get(entry.doc_id, UNDATED) != UNDATED
    ]
    frame = pd.DataFrame(rows, columns=["feed", "day"])
    counted = frame.groupby(["feed", "day"], as_index=False).size().rename(columns={"size": "articles"})
    counted["date"] = pd.to_datetime(counted["day"], unit="D")
    return counted[["date", "feed", "articles"]]


def coverage_chart(pipeline: RAG, settings_json: str, feeds: list[Feed]) -> None:
    """The feeds' articles per publication day, stacked by feed."""
    generation = pipeline.open_index().manifest.generation
    days = coverage(settings_json, generation, tuple((f.name, f.entries) for f in feeds))
    if days.empty:
        return
    st.caption("Articles per day, by feed (publication dates)")
    chart = (
        alt.Chart(days)
        .mark_bar()
        .encode(
            x=alt.X("date:T", title=None),
            y=alt.Y("articles:Q", title=None, axis=alt.Axis(format="d", tickMinStep=1)),
            color=alt.Color("feed:N", legend=alt.Legend(orient="bottom", title=None)),
            tooltip=["date:T", "feed:N", "articles:Q"],
        )
    )
    st.altair_chart(chart, use_container_width=True)


def feeds_panel(pipeline: RAG, settings_json: str) -> None:
    """The RSS and Atom feeds `rag sync` follows: listed with what their last sync did, synced now, added
    and removed. A sync adds its articles through this page's pipeline, so they are asked about at once."""
    with st.sidebar.expander("Feeds", expanded=False):
        try:
            store = load_feeds(settings_json)
            feeds = store.list()
        except RagError as exc:
            st.error(failure(exc))
            return
        if not feeds:
            st.caption("No feeds followed yet: add an RSS or Atom feed's address below, then sync it.")
        for feed in feeds:
            st.markdown(feed_html(feed.name, feed.url), unsafe_allow_html=True)
            st.caption(f"{feed.entries} articles so far · {feed_status(feed)}")
            if feed.last_error:
                st.error(plain(f"Last sync: {feed.last_error}"))
        if any(feed.entries for feed in feeds):
            coverage_chart(pipeline, settings_json, feeds)
        if feeds and st.button("Sync now", key="sync", icon=":material/sync:"):
            with st.spinner(f"Syncing {len(feeds)} feed{'s' if len(feeds) > 1 else ''}…"):
                try:
                    results = sync(pipeline)
                except RagError as exc:
                    write_failed(exc)
                    return
            st.session_state.feed_notices = sync_notices(results)
            st.rerun()
        for kind, text in st.session_state.get("feed_notices", []):
            NOTICE[kind](text)
        round_ = st.session_state.get("feed_round", 0)
        url = st.text_input(
            "Add feed",
            key=f"feed_url-{round_}",
            placeholder="https://example.com/rss.xml",
            help="The address of an RSS or Atom feed; its articles are fetched when it is synced.",
        )
        if st.button("Add feed", key="add_feed", icon=":material/add:"):
            if not url.strip():
                st.toast("Type the feed's address first.")
            else:
                try:
                    added = store.add(url)
                except RagError as exc:
                    st.error(failure(exc))
                else:
                    st.session_state.feed_notices = [
                        ("success", plain(f"Following {added.name}: press Sync now to fetch its articles."))
                    ]
                    st.session_state.feed_round = round_ + 1
                    st.rerun()
        if feeds:
            name = st.selectbox(
                "Stop following a feed",
                [f.name for f in feeds],
                index=None,
                key="remove_feed_name",
                help="The articles it brought stay in the index.",
            )
            if name and st.button("Remove feed", key="remove_feed", icon=":material/delete:"):
                try:
                    store.remove(name)
                except RagError as exc:
                    st.error(failure(exc))
                    return
                st.session_state.feed_notices = [
                    ("info", plain(f"Stopped following {name}; its articles stay in the index."))
                ]
                st.rerun()


def stories_panel(pipeline: RAG, settings_json: str) -> str | None:
    """The timeline topic asked for (built and shown above the conversation by `stream_timeline`), and the
    followed questions, with what changed since the reader last looked."""
    asked = None
    with st.sidebar.expander("Story timeline", expanded=False):
        topic = st.text_input("Timeline topic", key="timeline_topic", placeholder="Hurricane Ian")
        if st.button("Show timeline", key="show_timeline", icon=":material/timeline:") and topic.strip():
            asked = topic
    store = load_follows(settings_json)
    try:
        if "new_changes" not in st.session_state:  # a visit: what changed since the last one, then seen
            st.session_state.new_changes = store.changes(unseen=True, mark_seen=True)
        followed = store.followed()
    except RagError as exc:
        write_failed(exc)
        return asked
    if st.session_state.new_changes:
        with st.container(border=True):
            st.markdown("**New since your last visit**")
            for change in st.session_state.new_changes:
                st.warning(plain(f"{change.question} — now: {change.new_answer}"))
                st.caption(plain(f"Was: {change.old_answer}"))
    with st.sidebar.expander("Followed questions", expanded=False):
        for one in followed:
            st.caption(plain(f"[{one.id}] {one.question} — {one.answer or 'not asked yet'}"))
        question = st.text_input("Follow a question", key="follow_question", placeholder="Who leads the UK?")
        if st.button("Follow", key="follow", icon=":material/notifications:") and question.strip():
            try:
                with st.spinner("Asking it a first time…"):
                    pipeline.follow(question)
            except RagError as exc:
                write_failed(exc)
                return asked
            st.rerun()
    return asked


def stream_timeline(pipeline: RAG, topic: str, ask: AskOptions) -> None:
    """The timeline drawn as it is built, the best articles' events first, then kept for the next reruns."""
    slot = st.empty()
    try:
        for found in pipeline.timeline_stream(topic, since=ask.since, until=ask.until, as_of=ask.as_of):
            with slot.container():
                show_timeline(found)
    except RagError as exc:
        write_failed(exc)
        return
    st.session_state.timeline = found


def show_timeline(found: Timeline) -> None:
    """The timeline as a chart (events on a date axis over the number of articles each day; a click opens
    the event's article) and as a list, every line quoted from its source. While it is built, the events
    so far without the chart, whose bars need every article."""
    with st.expander(plain(f"Timeline: {found.topic}"), expanded=True):
        if not found.complete:
            st.caption(plain(f"Reading the {found.articles} articles found… {len(found.events)} events so far"))
        elif not found.events:
            st.info(plain(f"No events about {found.topic} among the articles published {found.dates}."))
            return
        else:
            timeline_chart(found)
        for event in found.events:
            st.markdown(event_html(event), unsafe_allow_html=True)
        if not found.complete:
            return
        if found.figures:
            st.markdown("**Figures**")
        for change in found.figures:
            st.markdown(figure_html(change), unsafe_allow_html=True)
        st.caption(plain(f"{len(found.events)} events from {found.articles} articles published {found.dates}, "
                         f"as of {found.as_of.isoformat()} · {found.seconds:.1f} s"))  # fmt: skip


def timeline_chart(found: Timeline) -> None:
    """Events on a date axis (a circle each, as high as its sources; a click opens its article) over the
    number of articles each day."""
    events = pd.DataFrame(
        {
            "date": [e.date.isoformat() for e in found.events],
            "sources": [len(e.sources) for e in found.events],
            "event": [clip(e.citation.quote, 140) for e in found.events],
            "url": [safe_url(e.citation.passage.chunk.url) for e in found.events],
        }
    )
    days = events.groupby("date", as_index=False)["sources"].sum().rename(columns={"sources": "articles"})
    count = alt.Axis(format="d", tickMinStep=1)
    bars = alt.Chart(days).mark_bar(opacity=0.25).encode(x="date:T", y=alt.Y("articles:Q", axis=count))
    points = (
        alt.Chart(events)
        .mark_circle(size=90)
        .encode(
            x=alt.X("date:T", title=None),
            y=alt.Y("sources:Q", axis=count),
            tooltip=["date:T", "event:N"],
            href="url:N",
        )
    )
    st.altair_chart(bars + points, use_container_width=True)


def show_answer(answer: Answer, key: str, options: PageOptions) -> None:
    if options.show_rewrite and answer.standalone_question:
        st.caption(f"Searched as: {plain(answer.standalone_question)}")
    if answer.refused and answer.draft_short is None:
        st.warning(f"No answer in the articles: {plain(answer.text)}", icon="🚫")
    elif answer.refused:
        st.warning("Not sure: the articles may not say this. Unverified draft, with its source:", icon="❔")
        st.markdown(final_answer_html(answer, key), unsafe_allow_html=True)
    else:
        st.markdown(final_answer_html(answer, key), unsafe_allow_html=True)
        if answer.unsupported:
            st.caption(
                f"{len(answer.unsupported)} sentence(s) are not supported by the passage they cite and are "
                "marked ⚠: check them against the sources."
            )
    st.markdown(confidence_line(answer), unsafe_allow_html=True)
    spans = cited_spans(answer)
    if spans:
        st.markdown('<div class="rag-section">Sources cited</div>', unsafe_allow_html=True)
        for number in sorted(spans):
            passage = answer.passages[number - 1]
            st.markdown(source_card(passage, number, key, spans[number]), unsafe_allow_html=True)
    others = [(n, p) for n, p in enumerate(answer.passages, start=1) if n not in spans]
    if options.show_passages and others:
        with st.expander(f"Retrieved but not cited ({len(others)})"):
            for number, passage in others:
                st.markdown(source_card(passage, number, key), unsafe_allow_html=True)
    st.caption(f"Searched {plain(answer.searched_dates)}.")
    st.caption(stats_line(answer))


def rating_label(rating: str) -> str:
    return rating.replace("_", " ").capitalize()


def record_feedback(store: ConversationStore, turn_id: str, rating: str) -> None:
    try:
        store.add_feedback(turn_id, rating, st.session_state.get(f"comment-{turn_id}", ""))
    except RagError as exc:
        st.toast(failure(exc, "Feedback not recorded: "), icon="⚠️")


def feedback(store: ConversationStore, turn: StoredTurn) -> None:
    """Rate the answer once; afterwards the rating kept is what shows."""
    if turn.feedback:
        latest = turn.feedback[-1]
        said = f": “{latest.comment}”" if latest.comment else ""
        st.caption(plain(f"Thanks — recorded as {rating_label(latest.rating).lower()}{said}"))
        return
    st.text_input(
        "Comment (optional)",
        key=f"comment-{turn.id}",
        placeholder="What was right or wrong? (optional)",
        label_visibility="collapsed",
    )
    row = st.container(horizontal=True)
    for rating in RATINGS:
        row.button(
            rating_label(rating),
            key=f"feedback-{rating}-{turn.id}",
            on_click=record_feedback,
            args=(store, turn.id, rating),
            icon=RATING_ICONS.get(rating),
        )


def show_turn(store: ConversationStore, turn: StoredTurn, options: PageOptions) -> None:
    with st.chat_message("user"):
        st.text(turn.question)
    with st.chat_message("assistant"):
        show_answer(turn.answer, turn.id, options)
        feedback(store, turn)


def errors_for(conversation: Conversation | None) -> list[tuple[int, str, str]]:
    """Questions that got an error instead of an answer, as (turns before it, question, error): shown in
    this browser session only, never kept."""
    errors: dict[str, list[tuple[int, str, str]]] = st.session_state.setdefault("errors", {})
    return errors.setdefault(conversation.summary.id if conversation else "", [])


def show_error(question: str, error: str) -> None:
    with st.chat_message("user"):
        st.text(question)
    with st.chat_message("assistant"):
        st.error(error)


def show_conversation(store: ConversationStore, conversation: Conversation | None, options: PageOptions) -> None:
    turns = conversation.turns if conversation else ()
    errors = errors_for(conversation)
    for position in range(len(turns) + 1):
        for _, question, error in (e for e in errors if e[0] == position):
            show_error(question, error)
        if position < len(turns):
            show_turn(store, turns[position], options)


def keep(
    store: ConversationStore, conversation: Conversation | None, question: str, answer: Answer, options: PageOptions
) -> StoredTurn:
    """Saves the answer, starting a conversation on the first one, and names it in the page's address."""
    if conversation is None:
        conversation_id = store.create(origin="page").id
        errors: dict[str, list[tuple[int, str, str]]] = st.session_state.setdefault("errors", {})
        errors[conversation_id] = errors.pop("", [])
    else:
        conversation_id = conversation.summary.id
    turn = store.add_turn(conversation_id, question, answer, options.ask.arguments())
    st.query_params[CONVERSATION] = conversation_id
    return turn


def ask(
    pipeline: RAG, store: ConversationStore, conversation: Conversation | None, question: str, options: PageOptions
) -> None:
    with st.chat_message("user"):
        st.text(question)
    with st.chat_message("assistant"):
        placeholder = st.empty()
        text = ""
        try:
            history = conversation.history() if conversation else []
            for item in pipeline.answer_stream(question, **options.ask.arguments(), history=history):
                if isinstance(item, Answer):
                    placeholder.empty()
                    try:
                        turn = keep(store, conversation, question, item, options)
                    except RagError as exc:
                        show_answer(item, "unsaved", options)
                        st.error(failure(exc, "This answer was not kept: "))
                    else:
                        show_answer(turn.answer, turn.id, options)  # as kept, so a reopened page matches
                        feedback(store, turn)
                else:
                    text += item
                    placeholder.markdown(answer_html(text, "new", 0, cursor=True), unsafe_allow_html=True)
        except RagError as exc:
            # An endpoint's error text or a file name can carry markdown: shown as text, like articles.
            error = failure(exc)
            placeholder.error(error)
            errors_for(conversation).append((len(conversation.turns) if conversation else 0, question, error))


def open_conversation(store: ConversationStore) -> Conversation | None:
    """The conversation the page's address names, or None for a new one."""
    conversation_id = st.query_params.get(CONVERSATION)
    if not conversation_id:
        return None
    try:
        return store.get(conversation_id)
    except NotFoundError:
        del st.query_params[CONVERSATION]
        st.info("That conversation is no longer kept (it was deleted): this is a new one.")
    except RagError as exc:
        st.error(failure(exc))
    return None


def start_new() -> None:
    st.query_params.pop(CONVERSATION, None)
    st.session_state.setdefault("errors", {}).pop("", None)


def reopen(conversation_id: str) -> None:
    st.query_params[CONVERSATION] = conversation_id


def rename(store: ConversationStore, conversation_id: str) -> None:
    try:
        store.rename(conversation_id, st.session_state.get(f"title-{conversation_id}", ""))
    except RagError as exc:
        st.toast(failure(exc, "Not renamed: "), icon="⚠️")


def delete(store: ConversationStore, conversation_id: str, title: str) -> None:
    try:
        store.delete(conversation_id)
    except RagError as exc:
        st.toast(failure(exc, "Not deleted: "), icon="⚠️")
    else:
        st.toast(plain(f"Deleted “{title}”"))
    st.query_params.pop(CONVERSATION, None)


def title_of(title: str) -> str:
    return title or "Untitled"


def when(moment: dt.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def conversations_panel(store: ConversationStore, conversation: Conversation | None) -> None:
    """New, past, rename, delete and export. Every action is a callback: it is done before the page
    runs again, so the page and this list show its result."""
    st.header("Conversations")
    st.button("New conversation", key="new_conversation", on_click=start_new, icon=":material/add:", width="stretch")
    if conversation is not None:
        summary = conversation.summary
        with st.expander("This conversation", expanded=False):
            st.text_input("Title", value=summary.title, key=f"title-{summary.id}")
            st.button("Rename", key="rename_conversation", on_click=rename, args=(store, summary.id))
            stem = f"conversation-{summary.created.astimezone():%Y%m%d-%H%M}-{summary.id[:8]}"
            exports = st.container(horizontal=True)
            for label, data, suffix, mime in (
                ("Markdown", to_markdown(conversation), "md", "text/markdown"),
                ("JSON", json.dumps(to_json(conversation), ensure_ascii=False, indent=2), "json", "application/json"),
            ):
                exports.download_button(
                    label,
                    data,
                    file_name=f"{stem}.{suffix}",
                    mime=mime,
                    key=f"export_{label.lower()}",
                    on_click="ignore",
                    icon=":material/download:",
                )
            st.button(
                "Delete conversation",
                key="delete_conversation",
                on_click=delete,
                args=(store, summary.id, title_of(summary.title)),
                icon=":material/delete:",
            )
    try:
        past = store.list(limit=200)
    except RagError as exc:
        st.error(failure(exc))
        return
    if not past:
        st.caption("Answers are kept here: none yet.")
        return
    current = conversation.summary.id if conversation else None
    with st.container(height=320 if len(past) > 8 else "content", border=False):
        for item in past:
            st.button(
                plain(f"{clip(title_of(item.title), LISTED_TITLE_CHARS)} · {when(item.updated)}"),
                key=f"open-{item.id}",
                help=plain(title_of(item.title)),
                on_click=reopen,
                args=(item.id,),
                type="primary" if item.id == current else "tertiary",
                width="stretch",
            )


def main() -> None:
    st.set_page_config(page_title="rag · ask the news", page_icon="📰", layout="centered")
    st.markdown(STYLE, unsafe_allow_html=True)
    st.title("Ask the news")
    settings_json = Settings(progress=False).model_dump_json()
    try:
        pipeline = load_pipeline(settings_json)
        store = load_store(settings_json)
    except RagError as exc:
        st.error(failure(exc))
        st.stop()
    conversations = st.sidebar.container()  # filled last, to list an answer this run has just kept
    options = sidebar(pipeline)
    corpus_panel(pipeline)
    feeds_panel(pipeline, settings_json)
    asked = stories_panel(pipeline, settings_json)
    if asked:
        stream_timeline(pipeline, asked, options.ask)
    elif "timeline" in st.session_state:
        show_timeline(st.session_state.timeline)
    conversation = open_conversation(store)
    show_conversation(store, conversation, options)
    question = st.chat_input("Ask a question about the articles")
    if question:
        if question.strip():
            ask(pipeline, store, conversation, question, options)
            conversation = open_conversation(store)  # with the answer just kept, in a new one or this one
        else:
            st.toast("Type a question first.")
    with conversations:
        conversations_panel(store, conversation)


main()
