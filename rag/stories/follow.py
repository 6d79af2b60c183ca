"""Followed questions: asked again after every `rag sync`, and what changed recorded, in an SQLite file
beside the index (`<index>.follows.sqlite3`, kept apart from the index directory as the feed list is).

A question's first asking is its baseline and reports nothing. After that, a change is an answer whose
text or whose cited articles differ from the last one: the old and the new answer are recorded with the
articles the new one cites that the old did not, once, and marked seen when a reader has been shown them
("new since your last visit"). Answers are compared as given (the extractive reader and the local model
at temperature 0 give the same answer to the same passages), so an unchanged archive reports nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import NotFoundError, QuestionError
from rag.sqlite_store import SQLiteFile

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.types import Answer

MIGRATIONS: list[str] = [
    """
    CREATE TABLE follows (
        id INTEGER PRIMARY KEY,
        question TEXT NOT NULL UNIQUE,
        added TEXT NOT NULL,
        webhook TEXT,
        asked TEXT,
        answer TEXT,
        sources TEXT
    );
    CREATE TABLE changes (
        id INTEGER PRIMARY KEY,
        follow INTEGER NOT NULL REFERENCES follows (id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        old_answer TEXT NOT NULL,
        new_answer TEXT NOT NULL,
        new_sources TEXT NOT NULL,
        answer TEXT NOT NULL,
        seen INTEGER NOT NULL DEFAULT 0
    );
    """,
]
"""Schema scripts; the file's `user_version` is how many of them it has had. Append, never edit."""


@dataclass(frozen=True)
class Followed:
    id: int
    question: str
    added: dt.datetime
    webhook: str | None
    asked: dt.datetime | None
    """When it was last asked (after a sync); None before its first asking."""
    answer: str | None
    sources: tuple[str, ...]
    """The articles its last answer cited."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "added": self.added.isoformat(),
            "webhook": self.webhook,
            "asked": self.asked.isoformat() if self.asked else None,
            "answer": self.answer,
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class Change:
    """A followed question's answer that changed: before, after, and the articles newly cited."""

    id: int
    follow: int
    question: str
    at: dt.datetime
    old_answer: str
    new_answer: str
    new_sources: tuple[str, ...]
    answer: dict[str, Any]
    """The new `Answer.to_json()`, with its citations."""
    seen: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "follow": self.follow,
            "question": self.question,
            "at": self.at.isoformat(),
            "old_answer": self.old_answer,
            "new_answer": self.new_answer,
            "new_sources": list(self.new_sources),
            "answer": self.answer,
            "seen": self.seen,
        }


def follows_path(settings: Settings) -> Path:
    index = settings.index_dir
    return index.parent / f"{index.name}.follows.sqlite3"


def cited(answer: Answer) -> tuple[str, ...]:
    """The articles an answer cites, in the order it first cites them."""
    return tuple(dict.fromkeys(c.passage.chunk.doc_id for c in answer.citations))


class FollowStore:
    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.file = SQLiteFile(path, MIGRATIONS, what="followed questions", setting="RAG_INDEX_DIR", timeout=timeout)

    @classmethod
    def for_settings(cls, settings: Settings) -> FollowStore:
        return cls(follows_path(settings), timeout=settings.index.lock_timeout)

    def add(self, question: str, webhook: str | None = None) -> Followed:
        question = " ".join(question.split())
        if not question:
            raise QuestionError("the question to follow is empty", hint='e.g. `rag follow "Who leads the UK?"`')
        with self.file.connect(write=True) as conn:
            if conn.execute("SELECT 1 FROM follows WHERE question = ?", (question,)).fetchone():
                raise QuestionError(f"{question!r} is already followed", hint="`rag follow --list` shows them")
            cursor = conn.execute(
                "INSERT INTO follows (question, added, webhook) VALUES (?, ?, ?)", (question, _now(), webhook)
            )
            return self._get(conn, int(cursor.lastrowid or 0))

    def remove(self, follow: int) -> Followed:
        """Stop following; its recorded changes go with it."""
        with self.file.connect(write=True) as conn:
            found = self._get(conn, follow)
            conn.execute("DELETE FROM follows WHERE id = ?", (follow,))
            return found

    def get(self, follow: int) -> Followed:
        with self.file.connect() as conn:
            return self._get(conn, follow)

    def followed(self) -> list[Followed]:
        with self.file.connect() as conn:
            return [_followed(row) for row in conn.execute("SELECT * FROM follows ORDER BY id")]

    def record(self, follow: Followed, answer: Answer) -> Change | None:
        """This new answer to `follow`: its baseline the first time, else a change when its text or its
        cited articles differ from the last answer's (None when nothing changed)."""
        text, sources = answer.text, cited(answer)
        with self.file.connect(write=True) as conn:
            conn.execute(
                "UPDATE follows SET asked = ?, answer = ?, sources = ? WHERE id = ?",
                (_now(), text, json.dumps(sources), follow.id),
            )
            if follow.asked is None or (text, sources) == (follow.answer, follow.sources):
                return None
            new = tuple(s for s in sources if s not in follow.sources)
            cursor = conn.execute(
                "INSERT INTO changes (follow, at, old_answer, new_answer, new_sources, answer) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (follow.id, _now(), follow.answer or "", text, json.dumps(new), json.dumps(answer.to_json())),
            )
            return self._change(conn, int(cursor.lastrowid or 0))

    def changes(self, *, unseen: bool = False, mark_seen: bool = False) -> list[Change]:
        """Recorded changes, newest first (only those not yet shown with `unseen`); `mark_seen` marks the
        ones returned as shown."""
        where = "WHERE c.seen = 0" if unseen else ""
        with self.file.connect(write=mark_seen) as conn:
            rows = conn.execute(f"{_CHANGE} {where} ORDER BY c.id DESC").fetchall()
            if mark_seen and rows:
                conn.executemany("UPDATE changes SET seen = 1 WHERE id = ?", [(row["id"],) for row in rows])
            return [_change(row) for row in rows]

    def _get(self, conn: sqlite3.Connection, follow: int) -> Followed:
        row = conn.execute("SELECT * FROM follows WHERE id = ?", (follow,)).fetchone()
        if row is None:
            raise NotFoundError(f"no followed question {follow}", hint="`rag follow --list` shows them with their ids")
        return _followed(row)

    def _change(self, conn: sqlite3.Connection, change: int) -> Change:
        return _change(conn.execute(f"{_CHANGE} WHERE c.id = ?", (change,)).fetchone())


_CHANGE = "SELECT c.*, f.question FROM changes c JOIN follows f ON f.id = c.follow"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _followed(row: sqlite3.Row) -> Followed:
    return Followed(
        row["id"],
        row["question"],
        dt.datetime.fromisoformat(row["added"]),
        row["webhook"],
        dt.datetime.fromisoformat(row["asked"]) if row["asked"] else None,
        row["answer"],
        tuple(json.loads(row["sources"])) if row["sources"] else (),
    )


def _change(row: sqlite3.Row) -> Change:
    return Change(
        row["id"],
        row["follow"],
        row["question"],
        dt.datetime.fromisoformat(row["at"]),
        row["old_answer"],
        row["new_answer"],
        tuple(json.loads(row["new_sources"])),
        json.loads(row["answer"]),
        bool(row["seen"]),
    )
