"""Errors a user can act on: each says what went wrong, where, and what to do about it."""

from __future__ import annotations

from pathlib import Path


class RagError(Exception):
    """Base class; the CLI prints `message` and `hint` instead of a traceback."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(RagError):
    """Settings that cannot work together, or a config file that cannot be read."""


class DocumentError(RagError):
    """One input file (or one line of it) could not be turned into a document."""

    def __init__(self, path: Path | str, problem: str, *, line: int | None = None, hint: str | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}", hint=hint)
        self.path = str(path)
        self.line = line
        self.problem = problem


class IndexDirError(RagError):
    """The index directory is missing, damaged, or incompatible with the current settings."""


class QuestionError(RagError):
    """The question itself is unusable (empty, or a filter that cannot match)."""


class LLMError(RagError):
    """The answer generator failed: unreachable endpoint, rejected request, missing model file."""


class NotFoundError(RagError):
    """A kept conversation or answer that is not (or no longer) there: a wrong id, or deleted meanwhile."""


class FeedbackError(RagError):
    """Feedback that cannot be kept as given, such as a rating that is not one of the offered ones."""


class ShardUnavailable(IndexDirError):
    """Part of a sharded archive could not be searched: the answer would silently miss those dates."""


class DeadlineError(RagError):
    """The work ran past the deadline its caller set (`rag.deadline`) and was stopped, not finished late."""
