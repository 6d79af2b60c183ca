"""Kept conversations: every question, the answer it got and the feedback on it, in one SQLite file
(`rag.sqlite_store`: a connection per call, shared by the chat page and `rag serve`, a versioned schema).

An answer is kept whole, as its `Answer.to_json()`, so the page can show it again with its sources and the
quoted sentences, exactly as it was given; the few columns listing and export need (question, text,
refused, backend, model, created) are kept beside it as plain columns, readable with any SQLite tool.
"""

from __future__ import annotations

import builtins
import copy
import datetime as dt
import hashlib
import hmac
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from rag.answering.conversation import Turn
from rag.errors import FeedbackError, NotFoundError, RagError
from rag.sqlite_store import SQLiteFile
from rag.types import Answer

if TYPE_CHECKING:
    from rag.config import Settings

__all__ = [
    "MIGRATIONS",
    "ORIGINS",
    "RATINGS",
    "SCHEMA_VERSION",
    "Conversation",
    "ConversationNotFound",
    "ConversationStore",
    "ConversationSummary",
    "Feedback",
    "FeedbackError",
    "NotFoundError",
    "StoredTurn",
]

RATINGS = ("helpful", "wrong_answer", "wrong_source")
ORIGINS = ("page", "api", "cli")
LOCAL = "local"
"""The owner of what the machine's own user keeps: the chat page's conversations and the CLI's."""
TITLE_CHARS = 80

ConversationNotFound = NotFoundError
"""The name the store's callers may know it by."""

MIGRATIONS: list[str] = [
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL DEFAULT '',
        origin TEXT NOT NULL,
        created TEXT NOT NULL,
        updated TEXT NOT NULL
    );
    CREATE INDEX conversations_by_updated ON conversations (updated);
    CREATE TABLE turns (
        id TEXT PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        question TEXT NOT NULL,
        text TEXT NOT NULL,
        refused INTEGER NOT NULL,
        backend TEXT NOT NULL,
        model TEXT NOT NULL,
        options TEXT NOT NULL,
        answer TEXT NOT NULL,
        created TEXT NOT NULL,
        UNIQUE (conversation_id, position)
    );
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        turn_id TEXT NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
        rating TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL
    );
    CREATE INDEX feedback_by_turn ON feedback (turn_id);
    """,
    # Owners: a conversation belongs to the API key that made it (a keyed hash of it, never the key) or to
    # the machine's own user ('local': the chat page and the CLI). Conversations kept before owners existed
    # came from the page and the CLI, or from API keys nobody recorded: those belong to no key.
    """
    ALTER TABLE conversations ADD COLUMN owner TEXT;
    UPDATE conversations SET owner = 'local' WHERE origin != 'api';
    CREATE INDEX conversations_by_owner ON conversations (owner, updated);
    CREATE TABLE owner_secret (secret TEXT NOT NULL);
    INSERT INTO owner_secret (secret) VALUES (lower(hex(randomblob(32))));
    """,
]
"""Schema scripts; the file's `user_version` is how many of them it has had. Append, never edit."""

SCHEMA_VERSION = len(MIGRATIONS)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _title(text: str) -> str:
    """One line, cut at a word: it is shown in a sidebar and in `rag conversations list`."""
    line = " ".join(text.split())
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[: TITLE_CHARS - 1].rsplit(" ", 1)[0] or line[: TITLE_CHARS - 1]
    return cut.rstrip(" ,;:") + "…"


@dataclass(frozen=True)
class Feedback:
    id: int
    turn_id: str
    rating: str
    comment: str
    created: dt.datetime


@dataclass(frozen=True)
class StoredTurn:
    id: str
    conversation_id: str
    position: int
    question: str
    answer: Answer
    options: dict[str, Any]
    """What it was asked with (k, since, until, as_of, backend, model), dates as ISO strings."""
    created: dt.datetime
    feedback: tuple[Feedback, ...] = ()

    def turn(self) -> Turn:
        """The turn as a follow-up question is rewritten against it."""
        return Turn(self.question, self.answer.text, self.answer.standalone_question or "")


@dataclass(frozen=True)
class ConversationSummary:
    id: str
    title: str
    created: dt.datetime
    updated: dt.datetime
    turns: int
    origin: str


@dataclass(frozen=True)
class Conversation:
    summary: ConversationSummary
    turns: tuple[StoredTurn, ...]

    def history(self) -> list[Turn]:
        return [t.turn() for t in self.turns]


_SUMMARY = """
    SELECT c.id, c.title, c.created, c.updated, c.origin,
           (SELECT COUNT(*) FROM turns t WHERE t.conversation_id = c.id) AS turns
    FROM conversations c
"""
_TURN = "SELECT id, conversation_id, position, question, answer, options, created FROM turns"


def _summary(row: sqlite3.Row) -> ConversationSummary:
    return ConversationSummary(
        row["id"], row["title"], _time(row["created"]), _time(row["updated"]), row["turns"], row["origin"]
    )


def _feedback(row: sqlite3.Row) -> Feedback:
    return Feedback(row["id"], row["turn_id"], row["rating"], row["comment"], _time(row["created"]))


def _stored_turn(row: sqlite3.Row, feedback: tuple[Feedback, ...]) -> StoredTurn:
    return StoredTurn(
        id=row["id"],
        conversation_id=row["conversation_id"],
        position=row["position"],
        question=row["question"],
        answer=Answer.from_json(orjson.loads(row["answer"])),
        options=orjson.loads(row["options"]),
        created=_time(row["created"]),
        feedback=feedback,
    )


class ConversationStore:
    """Conversations in the SQLite file at `path`; safe to use from many threads and processes at once.

    A store is seen as one owner: what it creates belongs to `owner`, and unless it `sees_all` it finds,
    changes and deletes only that owner's conversations. Another owner's conversation is "not found", so
    that its id is not even confirmed. Opened plainly it is the machine's own user, who sees everything
    (`rag conversations`); `for_key` gives the view of one API key, `own` the chat page's."""

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.file = SQLiteFile(
            path, MIGRATIONS, what="conversations database", setting="RAG_CONVERSATIONS_DB", timeout=timeout
        )
        self.path = self.file.path
        self._connect = self.file.connect
        self.owner: str = LOCAL
        self.sees_all = True

    def for_key(self, key: str | None, *, sees_all: bool = False) -> ConversationStore:
        """The store as the holder of API `key` sees it (None: a server without keys, on loopback, is the
        machine's own user). The key is kept only as a keyed hash: a copy of the file names no key."""
        if key is None:
            return self._as(LOCAL, sees_all)
        with self._connect() as conn:
            secret = str(conn.execute("SELECT secret FROM owner_secret").fetchone()[0])
        return self._as("key:" + hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest(), sees_all)

    def own(self) -> ConversationStore:
        """The machine's own user's conversations only: the chat page's view."""
        return self._as(LOCAL, False)

    def _as(self, owner: str, sees_all: bool) -> ConversationStore:
        view = copy.copy(self)
        view.owner, view.sees_all = owner, sees_all
        return view

    def _mine(self, alias: str = "c") -> tuple[str, tuple[str, ...]]:
        """The SQL condition (and its parameter) that keeps this view to its owner's conversations."""
        return ("1", ()) if self.sees_all else (f"{alias}.owner = ?", (self.owner,))

    @classmethod
    def for_settings(cls, settings: Settings) -> ConversationStore:
        return cls(settings.conversations_path, timeout=settings.index.lock_timeout)

    # -- conversations ---------------------------------------------------------------------------------

    def create(self, title: str = "", *, origin: str = "page") -> ConversationSummary:
        if origin not in ORIGINS:
            raise RagError(f"unknown conversation origin {origin!r}", hint=f"one of: {', '.join(ORIGINS)}")
        conversation_id, now = uuid.uuid4().hex, _now()
        with self._connect(write=True) as conn:
            conn.execute(
                "INSERT INTO conversations (id, title, origin, created, updated, owner) VALUES (?, ?, ?, ?, ?, ?)",
                (conversation_id, _title(title), origin, now, now, self.owner),
            )
        return ConversationSummary(conversation_id, _title(title), _time(now), _time(now), 0, origin)

    def list(self, limit: int = 200) -> list[ConversationSummary]:
        mine, owner = self._mine()
        with self._connect() as conn:
            rows = conn.execute(
                f"{_SUMMARY} WHERE {mine} ORDER BY c.updated DESC, c.created DESC, c.id LIMIT ?", (*owner, limit)
            )
            return [_summary(row) for row in rows]

    def _summary(self, conn: sqlite3.Connection, conversation_id: str) -> ConversationSummary:
        mine, owner = self._mine()
        row = conn.execute(f"{_SUMMARY} WHERE c.id = ? AND {mine}", (conversation_id, *owner)).fetchone()
        if row is None:
            raise NotFoundError(
                f"no conversation {conversation_id!r}", hint="`rag conversations list` shows the ones kept"
            )
        return _summary(row)

    def get(self, conversation_id: str) -> Conversation:
        with self._connect() as conn:
            summary = self._summary(conn, conversation_id)
            feedback: dict[str, list[Feedback]] = {}
            for row in conn.execute(
                "SELECT f.* FROM feedback f JOIN turns t ON t.id = f.turn_id WHERE t.conversation_id = ? ORDER BY f.id",
                (conversation_id,),
            ):
                feedback.setdefault(row["turn_id"], []).append(_feedback(row))
            rows = conn.execute(f"{_TURN} WHERE conversation_id = ? ORDER BY position", (conversation_id,))
            turns = tuple(_stored_turn(row, tuple(feedback.get(row["id"], ()))) for row in rows)
        return Conversation(summary, turns)

    def add_turn(self, conversation_id: str, question: str, answer: Answer, options: Mapping[str, Any]) -> StoredTurn:
        """Appends the turn; the position is taken under the write lock, so concurrent writers to one
        conversation each get their own."""
        turn_id, now = uuid.uuid4().hex, _now()
        # Through JSON and back: what is returned now is what `get` returns later (dates as ISO strings,
        # timings rounded), so an answer shown now looks the same when its conversation is reopened.
        kept_options = orjson.dumps(dict(options), default=str)
        kept_answer = orjson.dumps(answer.to_json())
        with self._connect(write=True) as conn:
            self._summary(conn, conversation_id)
            position: int = conn.execute(
                "SELECT COALESCE(MAX(position), -1) + 1 FROM turns WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO turns (id, conversation_id, position, question, text, refused, backend, model, "
                "options, answer, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    turn_id, conversation_id, position, question, answer.text, answer.refused, answer.backend,
                    answer.model, kept_options.decode(), kept_answer.decode(), now,
                ),
            )  # fmt: skip
            conn.execute(
                "UPDATE conversations SET updated = ?, title = CASE WHEN title = '' THEN ? ELSE title END WHERE id = ?",
                (now, _title(question), conversation_id),
            )
        kept = Answer.from_json(orjson.loads(kept_answer))
        return StoredTurn(turn_id, conversation_id, position, question, kept, orjson.loads(kept_options), _time(now))

    def find_continuation(self, pairs: Sequence[tuple[str, str]]) -> str | None:
        """The API conversation that `pairs` (question, answer text) retell, most recently updated first;
        None if there is none. A chat-completions client sends the whole history with every question and
        no conversation id: this is how its next question joins the conversation it continues. Whitespace
        at the ends and inside is not compared, as clients re-wrap what they were sent."""
        if not pairs:
            return None

        def same(a: str, b: str) -> bool:
            return a.split() == b.split()

        with self._connect() as conn:
            candidates = conn.execute(
                "SELECT c.id, t.question, t.text FROM conversations c "
                "JOIN turns t ON t.conversation_id = c.id AND t.position = ? "
                "WHERE c.origin = 'api' AND c.owner IS ? AND NOT EXISTS "
                "(SELECT 1 FROM turns u WHERE u.conversation_id = c.id AND u.position > ?) "
                "ORDER BY c.updated DESC",
                (len(pairs) - 1, self.owner, len(pairs) - 1),
            ).fetchall()
            last_question, last_answer = pairs[-1]
            for candidate in candidates:
                if not (same(candidate["question"], last_question) and same(candidate["text"], last_answer)):
                    continue
                rows = conn.execute(
                    "SELECT question, text FROM turns WHERE conversation_id = ? ORDER BY position", (candidate["id"],)
                ).fetchall()
                if len(rows) == len(pairs) and all(
                    same(row["question"], q) and same(row["text"], a) for row, (q, a) in zip(rows, pairs, strict=True)
                ):
                    return str(candidate["id"])
        return None

    def rename(self, conversation_id: str, title: str) -> ConversationSummary:
        with self._connect(write=True) as conn:
            self._summary(conn, conversation_id)
            conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (_title(title), conversation_id))
            return self._summary(conn, conversation_id)

    def delete(self, conversation_id: str) -> None:
        mine, owner = self._mine("conversations")
        with self._connect(write=True) as conn:
            if not conn.execute(
                f"DELETE FROM conversations WHERE id = ? AND {mine}", (conversation_id, *owner)
            ).rowcount:
                raise NotFoundError(
                    f"no conversation {conversation_id!r}", hint="`rag conversations list` shows the ones kept"
                )

    # -- turns and feedback ----------------------------------------------------------------------------

    def turn(self, turn_id: str) -> StoredTurn:
        with self._connect() as conn:
            return self._turn(conn, turn_id)

    def _turn(self, conn: sqlite3.Connection, turn_id: str) -> StoredTurn:
        mine, owner = self._mine()
        row = conn.execute(
            f"{_TURN} WHERE id = ? AND conversation_id IN (SELECT c.id FROM conversations c WHERE {mine})",
            (turn_id, *owner),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no answer {turn_id!r}", hint="it was never kept, or its conversation was deleted")
        feedback = conn.execute("SELECT * FROM feedback WHERE turn_id = ? ORDER BY id", (turn_id,))
        return _stored_turn(row, tuple(_feedback(f) for f in feedback))

    def add_feedback(self, turn_id: str, rating: str, comment: str = "") -> Feedback:
        if rating not in RATINGS:
            raise FeedbackError(f"unknown rating {rating!r}", hint=f"rate an answer {', '.join(RATINGS)}")
        now = _now()
        mine, owner = self._mine()
        with self._connect(write=True) as conn:
            found = conn.execute(
                f"SELECT 1 FROM turns t JOIN conversations c ON c.id = t.conversation_id WHERE t.id = ? AND {mine}",
                (turn_id, *owner),
            ).fetchone()
            if found is None:
                raise NotFoundError(
                    f"no answer {turn_id!r} to rate", hint="it was never kept, or its conversation was deleted"
                )
            cursor = conn.execute(
                "INSERT INTO feedback (turn_id, rating, comment, created) VALUES (?, ?, ?, ?)",
                (turn_id, rating, comment.strip(), now),
            )
            feedback_id = cursor.lastrowid
        assert feedback_id is not None
        return Feedback(feedback_id, turn_id, rating, comment.strip(), _time(now))

    def rated(self) -> builtins.list[tuple[StoredTurn, Feedback]]:
        """Every rated answer with its latest rating: a user who changes their mind is taken at their word."""
        with self._connect() as conn:
            latest = conn.execute(
                "SELECT f.* FROM feedback f JOIN turns t ON t.id = f.turn_id "
                "WHERE f.id IN (SELECT MAX(id) FROM feedback GROUP BY turn_id) ORDER BY t.created, t.position"
            ).fetchall()
            return [(self._turn(conn, row["turn_id"]), _feedback(row)) for row in latest]
