"""The chat page: a thin Streamlit layer over `rag.RAG`. No retrieval or answering logic lives here."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `render` beside this file, however it is run

from render import STYLE, answer_html, cited_spans, confidence_line, final_answer_html, plain, source_card, stats_line

from rag import RAG, Answer, RagError, Settings
from rag.backends import BACKENDS
from rag.conversation import Turn
from rag.loaders import FORMATS

UPLOAD_TYPES = [suffix.lstrip(".") for suffix in FORMATS]


@st.cache_resource(show_spinner="Loading the index and models…")
def load_pipeline(settings_json: str) -> RAG:
    """One pipeline per process and settings: models and the index load once, not on every rerun."""
    pipeline = RAG(Settings.model_validate_json(settings_json))
    pipeline.warm_up()
    return pipeline


def sidebar(pipeline: RAG) -> dict[str, Any]:
    s = pipeline.settings
    st.sidebar.header("Answering")
    names = list(BACKENDS)
    backend = st.sidebar.selectbox("Backend", names, index=names.index(s.backend), key="backend")
    spec = BACKENDS[backend]
    model = None
    if spec.model_setting and spec.model_choices:
        model = st.sidebar.selectbox("Model", spec.model_choices(s), index=0, key=f"model-{backend}")
    elif spec.model_setting:
        configured = str(getattr(s, spec.model_setting))
        model = st.sidebar.text_input("Model", value=configured, key=f"model-{backend}").strip() or None
    try:
        st.sidebar.caption(f"Model: {plain(pipeline.generator(backend, model).model)}")
    except RagError as exc:
        st.sidebar.error(plain(f"{exc.message}. {exc.hint or ''}"))
    k = st.sidebar.slider("Passages to retrieve (top-k)", 1, 20, s.top_k, key="top_k")
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
    if st.sidebar.button("Clear conversation", key="clear"):
        st.session_state.messages = []
    return {
        "backend": backend,
        "model": model,
        "k": k,
        "since": since,
        "until": until,
        "as_of": as_of,
        "show_passages": show_passages,
        "show_rewrite": show_rewrite,
    }


def write_failed(exc: RagError) -> None:
    """An upload or delete the index refused is shown, not a traceback; the pipeline has already dropped
    its in-memory copy and reads the index from disk again on the next run."""
    st.error(plain(f"{exc.message}. {exc.hint or ''}"))
    st.info("The page reads the index from disk again on its next run: try again.")


def corpus_panel(pipeline: RAG) -> None:
    with st.sidebar.expander("Articles in the index", expanded=False):
        uploads = st.file_uploader(
            f"Add articles ({', '.join(UPLOAD_TYPES)}; up to {pipeline.settings.max_upload_mb} MB each)",
            type=UPLOAD_TYPES,
            accept_multiple_files=True,
            key=f"uploads-{st.session_state.get('upload_round', 0)}",
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
            r = result.report
            st.session_state.upload_result = (
                f"{len(r.added)} added, {len(r.updated)} updated, {len(r.unchanged)} unchanged, "
                f"{len(r.duplicates)} duplicates skipped",
                [str(e) for e in result.errors],
            )
            st.session_state.upload_round = st.session_state.get("upload_round", 0) + 1
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


def show_answer(answer: Answer, key: str, options: dict[str, Any]) -> None:
    if options["show_rewrite"] and answer.standalone_question:
        st.caption(f"Searched as: {plain(answer.standalone_question)}")
    if answer.refused:
        st.warning(f"No answer in the articles: {plain(answer.text)}", icon="🚫")
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
    if options["show_passages"] and others:
        with st.expander(f"Retrieved but not cited ({len(others)})"):
            for number, passage in others:
                st.markdown(source_card(passage, number, key), unsafe_allow_html=True)
    st.caption(f"Searched {plain(answer.searched_dates)}.")
    st.caption(stats_line(answer))


def ask(pipeline: RAG, question: str, options: dict[str, Any]) -> None:
    messages = st.session_state.messages
    history = [
        Turn(m["question"], m["answer"].text, m["answer"].standalone_question or "")
        for m in messages
        if m["role"] == "assistant"
    ]
    messages.append({"role": "user", "text": question})
    with st.chat_message("user"):
        st.text(question)
    with st.chat_message("assistant"):
        placeholder = st.empty()
        text = ""
        key = str(len(messages))
        try:
            for item in pipeline.answer_stream(
                question,
                k=options["k"],
                since=options["since"],
                until=options["until"],
                as_of=options["as_of"],
                backend=options["backend"],
                model=options["model"],
                history=history,
            ):
                if isinstance(item, Answer):
                    placeholder.empty()
                    messages.append({"role": "assistant", "question": question, "answer": item, "key": key})
                    show_answer(item, key, options)
                else:
                    text += item
                    placeholder.markdown(answer_html(text, key, 0, cursor=True), unsafe_allow_html=True)
        except RagError as exc:
            # An endpoint's error text or a file name can carry markdown: shown as text, like articles.
            error = plain(f"{exc.message}. {exc.hint or ''}")
            placeholder.error(error)
            messages.append({"role": "error", "text": error})


def main() -> None:
    st.set_page_config(page_title="rag · ask the news", page_icon="📰", layout="centered")
    st.markdown(STYLE, unsafe_allow_html=True)
    st.title("Ask the news")
    try:
        pipeline = load_pipeline(Settings(progress=False).model_dump_json())
    except RagError as exc:
        st.error(f"{exc.message}. {exc.hint or ''}")
        st.stop()
    st.session_state.setdefault("messages", [])
    options = sidebar(pipeline)
    corpus_panel(pipeline)
    for message in st.session_state.messages:
        if message["role"] == "user":
            with st.chat_message("user"):
                st.text(message["text"])
        elif message["role"] == "assistant":
            with st.chat_message("assistant"):
                show_answer(message["answer"], message["key"], options)
        else:
            with st.chat_message("assistant"):
                st.error(message["text"])
    question = st.chat_input("Ask a question about the articles")
    if question:
        if question.strip():
            ask(pipeline, question, options)
        else:
            st.toast("Type a question first.")


main()
