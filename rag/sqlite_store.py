"""The SQLite file under a store that more than one process uses at once (the conversations, the feed
state): a connection per call in one transaction, a versioned schema, and errors a user can act on.

No connection is held between calls: the chat page, `rag serve` and `rag sync` are separate processes, and
the server calls from many threads. SQLite's write-ahead log lets readers go on while one writer writes; a
writer that finds the file locked waits up to `timeout` seconds (`busy_timeout`) instead of failing at
once. Writes begin with `BEGIN IMMEDIATE`, taking the write lock before they read: a transaction that read
first and wrote later could be refused without waiting, when another writer committed in between.

The schema is versioned in `PRAGMA user_version` and upgraded by numbered migration scripts, applied in
order under the write lock, so two processes opening a new file at once migrate it once. A file written by
a newer `rag` is refused rather than read or written with the wrong idea of its tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

from rag.errors import RagError


def _statements(script: str) -> Iterator[str]:
    """A script's statements one by one: `executescript` would commit the migration's transaction first."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement.strip()
            statement = ""
    if statement.strip():
        yield statement.strip()


class SQLiteFile:
    """`what` names the file in messages ("conversations database"); `setting` is the variable that moves it."""

    def __init__(self, path: Path, migrations: Sequence[str], *, what: str, setting: str, timeout: float) -> None:
        self.path = Path(path)
        self.migrations = migrations
        self.what, self.setting, self.timeout = what, setting, timeout
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RagError(
                f"cannot create the directory for the {what} {self.path}: {exc.strerror or exc}",
                hint=f"point {setting} at a writable place",
            ) from exc
        self._migrate()

    @property
    def schema_version(self) -> int:
        return len(self.migrations)

    @contextmanager
    def connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for one call, inside one transaction: committed when the block ends, rolled back
        if it raises. Reads get a transaction too, so what they read together is one snapshot."""
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        with closing(conn):
            conn.row_factory = sqlite3.Row
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                with conn:
                    yield conn
            except sqlite3.Error as exc:
                raise self._unusable(exc) from exc

    def _unusable(self, exc: sqlite3.Error) -> RagError:
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
            return RagError(
                f"the {self.what} {self.path} stayed locked for {self.timeout:g}s",
                hint="another process holds it (a stuck `rag serve`, `rag sync` or chat page?); try again, or stop it",
            )
        return RagError(
            f"{self.path} cannot be used as the {self.what}: {exc}",
            hint=f"if it is not a rag file, set {self.setting} to another path; if it is damaged, move it aside "
            "(a new one is started) or restore it from a backup",
        )

    def _migrate(self) -> None:
        # The journal mode cannot change inside a transaction, and it sticks to the file once set.
        try:
            with closing(sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)) as conn:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        with self.connect(write=True) as conn:
            version: int = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > self.schema_version:
                raise RagError(
                    f"the {self.what} {self.path} was written by a newer rag "
                    f"(schema {version}; this rag knows up to {self.schema_version})",
                    hint=f"upgrade rag, or set {self.setting} to another file",
                )
            if version == 0 and conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                raise RagError(
                    f"{self.path} is an SQLite database of something else, not rag's {self.what}",
                    hint=f"set {self.setting} to another path",
                )
            for number, script in enumerate(self.migrations[version:], start=version + 1):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
