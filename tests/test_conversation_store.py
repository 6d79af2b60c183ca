"""Kept conversations: the SQLite store the chat page and `rag serve` share, its exports, and the CLI over
them. Answers are real ones, from the extractive backend over the seed article."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from markdown_it import MarkdownIt

import rag.server.conversations as conversation_store
from rag import RAG, Settings
from rag.answering.conversation import Turn
from rag.cli import main
from rag.errors import FeedbackError, NotFoundError, RagError
from rag.evaluation.runner import evaluate
from rag.evaluation.sets import load_set, read_questions
from rag.server.conversations import RATINGS, SCHEMA_VERSION, ConversationStore
from rag.server.export import feedback_eval_records, to_json, to_markdown
from rag.store.embedding import Embedder
from rag.types import Answer
from tests.conftest import ROOT, SEED_FILE

QUESTION = "Who is the Secretary General of the CSTO?"
FOLLOW_UP = "When did he say it?"
UNANSWERABLE = "Who won the 2030 football world cup?"


@pytest.fixture
def store(tmp_path: Path) -> ConversationStore:
    return ConversationStore(tmp_path / "kept" / "conversations.sqlite3", timeout=10)


@pytest.fixture
def answer(seeded: RAG) -> Answer:
    return seeded.answer(QUESTION)


def _count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    return count


class TestAnswerJson:
    def test_real_answers_round_trip(self, seeded: RAG) -> None:
        first = seeded.answer(QUESTION)
        answers = [
            first,
            seeded.answer(f"{QUESTION[:-1]} last week?", as_of=dt.date(2020, 10, 12)),
            seeded.answer(QUESTION, since=dt.date(2021, 1, 1)),
            seeded.answer(FOLLOW_UP, history=[Turn(QUESTION, first.text)]),
        ]
        assert answers[1].date_mention is not None and answers[2].refused and answers[3].standalone_question
        for original in answers:
            data = original.to_json()
            stored = orjson.loads(orjson.dumps(data))
            again = Answer.from_json(stored)
            assert again.to_json() == data
            assert again.date_mention == original.date_mention
            assert again.searched_dates == original.searched_dates
            for citation in again.citations:
                assert citation.passage is again.passages[citation.number - 1]

    def test_a_citation_without_its_passage_is_rebuilt_from_its_own_fields(self, answer: Answer) -> None:
        data = answer.to_json()
        again = Answer.from_json({**data, "passages": []})
        assert again.citations and again.passages == []
        for citation, original in zip(again.citations, answer.citations, strict=True):
            assert citation.passage.doc_id == original.passage.doc_id == SEED_FILE.name
            assert citation.passage.chunk.title == original.passage.chunk.title
            assert citation.to_json() == original.to_json()


class TestConversations:
    def test_create_add_get_rename(self, store: ConversationStore, seeded: RAG, answer: Answer) -> None:
        created = store.create()
        assert (created.title, created.turns, created.origin) == ("", 0, "page")
        assert created.created.tzinfo is not None and created.created.utcoffset() == dt.timedelta(0)
        options = {"k": 5, "since": None, "until": dt.date(2020, 10, 31), "as_of": None, "backend": "extractive"}
        turn = store.add_turn(created.id, QUESTION, answer, options)
        assert turn.position == 0 and turn.options["until"] == "2020-10-31"
        follow = seeded.answer(FOLLOW_UP, history=store.get(created.id).history())
        assert follow.standalone_question and "Zas" in follow.standalone_question
        store.add_turn(created.id, FOLLOW_UP, follow, {})

        kept = store.get(created.id)
        assert kept.summary.title == QUESTION and kept.summary.turns == 2
        assert kept.summary.updated > created.updated
        assert [t.position for t in kept.turns] == [0, 1]
        assert kept.turns[0].options == turn.options
        assert kept.turns[0].answer.to_json() == answer.to_json()
        assert kept.history()[1].standalone == follow.standalone_question
        assert store.turn(turn.id) == kept.turns[0]

        renamed = store.rename(created.id, "  CSTO \n questions ")
        assert renamed.title == "CSTO questions" and store.get(created.id).summary.title == "CSTO questions"

    def test_a_long_first_question_becomes_a_short_title(self, store: ConversationStore, answer: Answer) -> None:
        conversation = store.create(origin="api")
        store.add_turn(conversation.id, "word " * 60 + "?", answer, {})
        title = store.get(conversation.id).summary.title
        assert len(title) <= 80 and title.endswith("…") and "\n" not in title

    def test_list_is_most_recently_updated_first(self, store: ConversationStore, answer: Answer) -> None:
        first, second, third = (store.create(f"c{i}") for i in range(3))
        store.add_turn(first.id, QUESTION, answer, {})
        assert [s.id for s in store.list()] == [first.id, third.id, second.id]
        assert [s.turns for s in store.list()] == [1, 0, 0]
        assert len(store.list(limit=2)) == 2

    def test_delete_cascades_to_turns_and_feedback(self, store: ConversationStore, answer: Answer) -> None:
        keep, gone = store.create("keep"), store.create("gone")
        store.add_turn(keep.id, QUESTION, answer, {})
        turn = store.add_turn(gone.id, QUESTION, answer, {})
        store.add_feedback(turn.id, "helpful")
        store.delete(gone.id)
        assert [s.id for s in store.list()] == [keep.id]
        assert (_count(store.path, "turns"), _count(store.path, "feedback")) == (1, 0)
        with pytest.raises(NotFoundError, match=gone.id):
            store.get(gone.id)
        with pytest.raises(NotFoundError):
            store.turn(turn.id)
        with pytest.raises(NotFoundError, match=gone.id):
            store.delete(gone.id)

    @pytest.mark.parametrize("call", ["get", "rename", "delete", "add_turn"])
    def test_an_unknown_conversation_is_not_found(self, store: ConversationStore, answer: Answer, call: str) -> None:
        arguments: dict[str, tuple[Any, ...]] = {
            "get": (),
            "rename": ("title",),
            "delete": (),
            "add_turn": (QUESTION, answer, {}),
        }
        with pytest.raises(NotFoundError, match="no conversation 'missing'") as raised:
            getattr(store, call)("missing", *arguments[call])
        assert raised.value.hint
        assert _count(store.path, "turns") == 0

    def test_an_unknown_origin_is_refused(self, store: ConversationStore) -> None:
        with pytest.raises(RagError, match="origin"):
            store.create(origin="email")

    def test_find_continuation_matches_an_api_conversation_by_its_exchanges(
        self, store: ConversationStore, answer: Answer
    ) -> None:
        page = store.create(origin="page")
        store.add_turn(page.id, QUESTION, answer, {})
        api = store.create(origin="api")
        store.add_turn(api.id, QUESTION, answer, {})
        assert store.find_continuation([(f" {QUESTION}\n", answer.text.replace(" ", "  "))]) == api.id
        assert store.find_continuation([(QUESTION, "something else")]) is None
        assert store.find_continuation([(QUESTION, answer.text), (QUESTION, answer.text)]) is None
        assert store.find_continuation([]) is None


class TestFeedback:
    def test_ratings_and_latest_per_turn(self, store: ConversationStore, answer: Answer) -> None:
        conversation = store.create()
        first = store.add_turn(conversation.id, QUESTION, answer, {})
        second = store.add_turn(conversation.id, QUESTION, answer, {})
        store.add_feedback(second.id, "wrong_source", "cites the wrong article")
        store.add_feedback(first.id, "wrong_answer")
        latest = store.add_feedback(first.id, "helpful", "  fine after all ")
        assert latest.comment == "fine after all" and latest.created.utcoffset() == dt.timedelta(0)
        assert [f.rating for f in store.turn(first.id).feedback] == ["wrong_answer", "helpful"]
        rated = store.rated()
        assert [(t.id, f.rating) for t, f in rated] == [(first.id, "helpful"), (second.id, "wrong_source")]
        assert store.get(conversation.id).turns[1].feedback[0].comment == "cites the wrong article"

    def test_a_bad_rating_names_the_allowed_ones(self, store: ConversationStore, answer: Answer) -> None:
        turn = store.add_turn(store.create().id, QUESTION, answer, {})
        with pytest.raises(FeedbackError) as raised:
            store.add_feedback(turn.id, "meh")
        assert all(rating in str(raised.value) for rating in RATINGS)
        assert _count(store.path, "feedback") == 0

    def test_feedback_on_a_missing_turn_is_not_found(self, store: ConversationStore) -> None:
        with pytest.raises(NotFoundError, match="nope"):
            store.add_feedback("nope", "helpful")


_WRITER = """
import sys
from pathlib import Path
import orjson
from rag.server.conversations import ConversationStore
from rag.types import Answer

path, answer_file, conversation_id, count = sys.argv[1:]
answer = Answer.from_json(orjson.loads(Path(answer_file).read_bytes()))
store = ConversationStore(Path(path), timeout=60)
for i in range(int(count)):
    store.add_turn(conversation_id, f"process {i}", answer, {"k": i})
"""


class TestConcurrency:
    def test_threads_and_a_second_process_lose_no_turns(
        self, store: ConversationStore, answer: Answer, tmp_path: Path
    ) -> None:
        conversation = store.create()
        answer_file = tmp_path / "answer.json"
        answer_file.write_bytes(orjson.dumps(answer.to_json()))
        count = 25
        process = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(store.path), str(answer_file), conversation.id, str(count)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stderr=subprocess.PIPE,
            text=True,
        )
        errors: list[BaseException] = []

        def write(name: str) -> None:
            # Each thread its own store object as well as its own connections, as separate requests would.
            mine = ConversationStore(store.path, timeout=60)
            try:
                for i in range(count):
                    mine.add_turn(conversation.id, f"{name} {i}", answer, {"k": i})
                    if i % 5 == 0:
                        mine.list()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(f"thread{n}",)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert not errors, errors
        kept = store.get(conversation.id)
        assert kept.summary.turns == 3 * count
        assert [t.position for t in kept.turns] == list(range(3 * count))
        questions = {t.question for t in kept.turns}
        assert {f"{who} {i}" for who in ("process", "thread0", "thread1") for i in range(count)} == questions

    def test_a_lock_held_too_long_is_a_clear_error(self, store: ConversationStore) -> None:
        impatient = ConversationStore(store.path, timeout=0.2)
        with sqlite3.connect(store.path, isolation_level=None) as holder:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(RagError, match=r"stayed locked for 0\.2s"):
                impatient.create()
            assert impatient.list() == []  # readers are not blocked by a writer (WAL)
            holder.execute("ROLLBACK")
        assert impatient.create().id


class TestSchema:
    def test_a_new_database_is_migrated_to_the_current_schema(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.sqlite3"
        path.touch()  # an empty file is an empty database: version 0
        ConversationStore(path)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"conversations", "turns", "feedback"} <= tables
        ConversationStore(path)  # opening it again migrates nothing
        assert ConversationStore.for_settings(Settings(conversations_db=path)).path == path

    def test_an_older_database_is_upgraded_keeping_its_data(
        self, tmp_path: Path, answer: Answer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "old.sqlite3"
        old = ConversationStore(path)
        conversation = old.create("before the upgrade")
        old.add_turn(conversation.id, QUESTION, answer, {})
        upgrade = """
            ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
            CREATE INDEX turns_by_created ON turns (created);
        """
        monkeypatch.setattr(conversation_store, "MIGRATIONS", [*conversation_store.MIGRATIONS, upgrade])
        monkeypatch.setattr(conversation_store, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        new = ConversationStore(path)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
            assert conn.execute("SELECT pinned FROM conversations").fetchall() == [(0,)]
        assert new.get(conversation.id).turns[0].answer.text == answer.text

    def test_owners_after_the_upgrade_the_page_keeps_its_own_and_unknown_keys_conversations_are_admins(
        self, tmp_path: Path, answer: Answer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "before-owners.sqlite3"
        monkeypatch.setattr(conversation_store, "MIGRATIONS", conversation_store.MIGRATIONS[:1])
        monkeypatch.setattr(conversation_store, "SCHEMA_VERSION", 1)
        ConversationStore(path)  # the schema before owners, then two conversations as that version kept them
        with sqlite3.connect(path) as conn:
            conn.executemany(
                "INSERT INTO conversations (id, title, origin, created, updated) VALUES (?, ?, ?, ?, ?)",
                [(origin, origin, origin, "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00")
                 for origin in ("page", "api")],
            )  # fmt: skip
        monkeypatch.undo()
        store = ConversationStore(path)
        assert [c.id for c in store.own().list()] == ["page"]
        assert store.for_key("sk-someone").list() == []
        with pytest.raises(NotFoundError):
            store.for_key("sk-someone").get("api")
        assert {c.id for c in store.list()} == {c.id for c in store.for_key("sk-admin", sees_all=True).list()}
        assert {c.id for c in store.list()} == {"page", "api"}
        kept = store.for_key("sk-very-secret-key").create("a key's own", origin="api")
        store.for_key("sk-very-secret-key").add_turn(kept.id, QUESTION, answer, {})
        assert [c.id for c in store.for_key("sk-very-secret-key").list()] == [kept.id]
        assert b"sk-very-secret-key" not in path.read_bytes(), "a key is kept only as a keyed hash"

    def test_a_newer_database_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "newer.sqlite3"
        ConversationStore(path)
        with sqlite3.connect(path) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(RagError, match="newer rag") as raised:
            ConversationStore(path)
        assert "upgrade rag" in str(raised.value)

    def test_a_file_that_is_not_sqlite_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "conversations.sqlite3"
        path.write_bytes(b"this is not a database, just some text that happens to be here\n" * 100)
        with pytest.raises(RagError, match="cannot be used as the conversations database") as raised:
            ConversationStore(path)
        assert str(path) in str(raised.value) and "RAG_CONVERSATIONS_DB" in str(raised.value)
        assert path.read_bytes().startswith(b"this is not a database")

    def test_another_programs_database_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "other.sqlite3"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE songs (title TEXT)")
        with pytest.raises(RagError, match="something else"):
            ConversationStore(path)


_HOSTILE = "# heading\n[link](javascript:x) <script>alert(1)</script>"


class TestExport:
    def test_markdown_brief(self, store: ConversationStore, seeded: RAG, answer: Answer) -> None:
        conversation = store.create()
        store.add_turn(conversation.id, QUESTION, answer, {"as_of": "2020-10-10"})
        store.add_turn(conversation.id, UNANSWERABLE, seeded.answer(UNANSWERABLE, since=dt.date(2021, 1, 1)), {})
        md = to_markdown(store.get(conversation.id))
        assert md.startswith(f"# {QUESTION}\n")
        assert f"**Q:** {QUESTION}" in md and f"**Q:** {UNANSWERABLE}" in md
        assert "Stanislav Zas [1]" in md and "as of 2020-10-10" in md
        assert "**Sources**" in md and "- **[1]** " in md and "(2020-10-08)" in md
        assert f"  > {answer.citations[0].quote}" in md
        assert "**No answer:**" in md
        assert md.count("*Searched articles published") == 2

    def test_article_text_cannot_inject_headings_links_or_html(
        self, store: ConversationStore, seeded: RAG, tmp_path: Path
    ) -> None:
        article = tmp_path / "hostile" / "springfield.txt"
        article.parent.mkdir()
        article.write_text(
            f"{_HOSTILE}\n[link](javascript:x) The mayor of Springfield is Joe Quimby, the council said "
            "[link](javascript:x) on Monday <b>x</b> at 10.\n\nQuimby has been mayor since 1986.\n",
            encoding="utf-8",
        )
        seeded.index([article.parent])
        answer = seeded.answer("Who is the mayor of Springfield?")
        assert "javascript:x" in answer.text and answer.citations
        # A loader keeping line breaks in a title or quote must not matter either.
        hostile = dataclasses.replace(
            answer.citations[0],
            quote=f"{_HOSTILE}\n> quoted\n1. listed",
            passage=dataclasses.replace(
                answer.citations[0].passage,
                chunk=dataclasses.replace(answer.citations[0].passage.chunk, title=_HOSTILE, url="javascript:alert(1)"),
            ),
        )
        answer.citations[0] = hostile
        answer.text += f"\n\n{_HOSTILE}\n[1]: javascript:x\n---"
        conversation = store.create()
        store.add_turn(conversation.id, _HOSTILE, answer, {})
        md = to_markdown(store.get(conversation.id))

        tokens = MarkdownIt("commonmark").parse(md)
        assert [t.tag for t in tokens if t.type == "heading_open"] == ["h1"]  # the brief's own title
        inline = [child for t in tokens if t.type == "inline" for child in t.children or []]
        assert not [c for c in inline if c.type in ("link_open", "html_inline", "image")]
        assert not [t for t in tokens if t.type == "html_block"]
        assert [t.map for t in tokens if t.type == "hr"] == [[4, 5]]  # the brief's own, before the turn
        assert "[1]" in md and "Joe Quimby" in md
        for line in md.splitlines():
            assert not line.startswith("#") or line.startswith("# \\# heading")

    def test_json_export(self, store: ConversationStore, answer: Answer) -> None:
        conversation = store.create("CSTO")
        turn = store.add_turn(conversation.id, QUESTION, answer, {"k": 3, "as_of": dt.date(2020, 10, 10)})
        store.add_feedback(turn.id, "helpful", "right")
        data = to_json(store.get(conversation.id))
        data = json.loads(json.dumps(data))  # plain JSON, nothing left to convert
        assert (data["id"], data["title"], data["origin"]) == (conversation.id, "CSTO", "page")
        assert dt.datetime.fromisoformat(data["created"]) == conversation.created
        [kept] = data["turns"]
        assert (kept["id"], kept["question"], kept["options"]) == (turn.id, QUESTION, {"k": 3, "as_of": "2020-10-10"})
        assert kept["answer"] == answer.to_json()
        assert [(f["rating"], f["comment"]) for f in kept["feedback"]] == [("helpful", "right")]

    def test_feedback_becomes_an_eval_set_that_rag_eval_scores(
        self,
        store: ConversationStore,
        seeded: RAG,
        answer: Answer,
        tmp_path: Path,
        embedder: Embedder,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        conversation = store.create()
        helpful = store.add_turn(conversation.id, QUESTION, answer, {"as_of": "2020-10-10"})
        follow = seeded.answer(FOLLOW_UP, history=store.get(conversation.id).history())
        wrong = store.add_turn(conversation.id, FOLLOW_UP, follow, {})
        refusal = store.add_turn(store.create().id, QUESTION, seeded.answer(QUESTION, since=dt.date(2021, 1, 1)), {})
        store.add_feedback(helpful.id, "helpful")
        store.add_feedback(wrong.id, "wrong_answer", "it was Thursday")
        store.add_feedback(refusal.id, "helpful")

        records = feedback_eval_records(store)
        exported = tmp_path / "feedback.jsonl"
        exported.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        questions = {q.extra["turn_id"]: q for q in load_set(exported).questions}

        good = questions[helpful.id]
        assert good.question == QUESTION and good.question_date == dt.date(2020, 10, 10)
        assert good.answers == ["Stanislav Zas"] and good.gold_doc_ids == [SEED_FILE.name]
        assert good.answerable and good.gold_evidence == [answer.citations[0].quote]
        assert "flagged" not in good.extra and good.extra["type"] == "helpful"
        flagged = questions[wrong.id]
        assert flagged.question == follow.standalone_question and flagged.extra["asked"] == FOLLOW_UP
        assert flagged.extra["flagged"] == "wrong_answer" and flagged.extra["comment"] == "it was Thursday"
        assert flagged.answers == [] and flagged.gold_doc_ids == []
        assert flagged.question_date == wrong.created.date()
        assert not questions[refusal.id].answerable

        # A bare questions file is asked of the index its questions were asked of: the seeded one, as it is.
        monkeypatch.setattr("rag.pipeline.store.Embedder", lambda *args, **kwargs: embedder)
        built = seeded.open_index().manifest.files
        run = evaluate(
            exported, settings=seeded.settings, out_dir=tmp_path / "run", backend="extractive", progress=False
        )
        assert seeded.open_index().manifest.files == built
        assert not (seeded.settings.index_dir.parent / "eval-indexes").exists()
        results = {r["id"]: r for r in map(json.loads, (run / "results.jsonl").read_text().splitlines())}
        assert results[f"feedback-{helpful.id}"]["scores"]["hit@1"] == 1.0
        assert results[f"feedback-{helpful.id}"]["scores"]["em"] == 1.0
        assert "hit@1" not in results[f"feedback-{wrong.id}"]["scores"]


class TestCli:
    @pytest.fixture
    def kept(
        self, store: ConversationStore, answer: Answer, monkeypatch: pytest.MonkeyPatch
    ) -> tuple[ConversationStore, str, str]:
        monkeypatch.setenv("RAG_CONVERSATIONS_DB", str(store.path))
        conversation = store.create(origin="cli")
        turn = store.add_turn(conversation.id, QUESTION, answer, {})
        return store, conversation.id, turn.id

    def _main(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exited:
            main(["-q", *args])
        out, err = capsys.readouterr()
        return int(exited.value.code or 0), out, err

    def test_list_export_delete(
        self, kept: tuple[ConversationStore, str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        store, conversation_id, _ = kept
        code, out, _ = self._main(capsys, "conversations", "list")
        assert code == 0
        header, row = out.splitlines()
        assert header.split() == ["id", "updated", "(UTC)", "turns", "title"]
        assert row.startswith(conversation_id) and row.endswith(QUESTION) and " 1  " in row

        code, out, _ = self._main(capsys, "conversations", "export", conversation_id)
        assert code == 0 and f"**Q:** {QUESTION}" in out and "**Sources**" in out
        code, out, _ = self._main(capsys, "conversations", "export", conversation_id, "--format", "json")
        assert code == 0 and json.loads(out)["id"] == conversation_id
        target = tmp_path / "brief.md"
        code, out, _ = self._main(capsys, "conversations", "export", conversation_id, "-o", str(target))
        assert code == 0 and str(target) in out and target.read_text(encoding="utf-8").startswith(f"# {QUESTION}")

        code, out, _ = self._main(capsys, "conversations", "delete", conversation_id)
        assert code == 0 and conversation_id in out and store.list() == []
        code, out, _ = self._main(capsys, "conversations", "list")
        assert code == 0 and "no conversations kept" in out

    def test_feedback_export(
        self, kept: tuple[ConversationStore, str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        store, _, turn_id = kept
        target = tmp_path / "feedback.jsonl"
        code, out, _ = self._main(capsys, "feedback", "export", str(target))
        assert code == 0 and "no rated answers" in out and not target.exists()
        store.add_feedback(turn_id, "helpful")
        store.add_feedback(
            store.add_turn(store.create().id, QUESTION, store.turn(turn_id).answer, {}).id, "wrong_source"
        )
        code, out, _ = self._main(capsys, "feedback", "export", str(target))
        assert code == 0
        assert "wrote 2 rated questions" in out and "1 helpful, 0 wrong_answer, 1 wrong_source" in out
        assert [q.extra["rating"] for q in read_questions(target)] == ["helpful", "wrong_source"]

    def test_an_unknown_id_is_one_clear_line(self, kept: tuple[ConversationStore, str, str], tmp_path: Path) -> None:
        store, _, _ = kept
        rag = str(Path(sys.executable).with_name("rag"))
        env = {**os.environ, "RAG_CONVERSATIONS_DB": str(store.path), "XDG_DATA_HOME": str(tmp_path / "data")}
        for action in ("export", "delete"):
            result = subprocess.run(
                [rag, "conversations", action, "0123abcd"], capture_output=True, text=True, timeout=120, env=env
            )
            assert result.returncode == 2
            assert result.stderr.splitlines()[0] == "error: no conversation '0123abcd'"
            assert "rag conversations list" in result.stderr and "Traceback" not in result.stderr

    def test_a_damaged_database_is_one_clear_line(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = tmp_path / "broken.sqlite3"
        path.write_bytes(b"garbage" * 1000)
        monkeypatch.setenv("RAG_CONVERSATIONS_DB", str(path))
        code, _, err = self._main(capsys, "conversations", "list")
        assert code == 2 and err.startswith(f"error: {path} cannot be used") and "fix:" in err
