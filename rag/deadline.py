"""A request's deadline, carried from the service that accepted it to the model call that spends its time.

A question whose client has given up should not keep the local model busy: past its deadline it is stopped
where the time goes (the model, token by token) rather than answered late. A context variable carries it, so
nothing between the service and the model has to pass it on; the service sets it around each step of the
answer (`rag.server.admission`), because the steps of a streamed answer may run in different worker threads.
Code run without a deadline (the CLI, the page, evaluation) is never stopped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

from rag.errors import DeadlineError

_AT: ContextVar[float | None] = ContextVar("rag_deadline", default=None)
"""When the work must stop, on `time.monotonic()`'s clock; None for no deadline."""


@contextlib.contextmanager
def until(at: float | None) -> Iterator[None]:
    """Work inside runs under the deadline `at` (a `time.monotonic()` value; None lifts it)."""
    token = _AT.set(at)
    try:
        yield
    finally:
        _AT.reset(token)


def remaining() -> float | None:
    """Seconds left before the deadline (zero or less once it passed); None when there is none."""
    at = _AT.get()
    return None if at is None else at - time.monotonic()


def check(doing: str) -> None:
    """Raise `DeadlineError` if the deadline passed; `doing` says what was stopped."""
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineError(
            f"{doing} was stopped: the request ran past its deadline",
            hint="retry when the server is less busy, or raise RAG_SERVE_DEADLINE",
        )
