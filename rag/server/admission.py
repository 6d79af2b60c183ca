"""Load shedding for the local model: a bounded queue in front of it, and a deadline for each question.

The local model answers `local_parallel` questions at a time (one by default) on the machine's cores,
about three seconds each. Under twenty clients every request used to wait its turn, so answers came half
a minute late and a client that gave up still had its question answered after it left. Now at most
`serve_queue` questions wait while those are answered: one more is refused at once with 503 and a
`Retry-After` estimated from recent answers. Every question has `serve_deadline` seconds from its
arrival: one still waiting then is refused before any work is spent on it, and one being answered is
stopped at the model's next token (`rag.deadline`), rather than answered after its client has given up.
Other backends are not queued here (an endpoint does its own shedding; the extractive reader takes
milliseconds).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TypeVar

from rag.deadline import until
from rag.errors import DeadlineError
from rag.server.errors import APIError

T = TypeVar("T")

_RECENT = 20
"""Answers whose durations estimate how long the queue takes to drain."""
_FIRST_GUESS_SECONDS = 5.0
"""An answer's duration before any was measured."""


class Admission:
    def __init__(self, queue: int, deadline: float, parallel: int = 1) -> None:
        self.queue, self.deadline, self.parallel = queue, deadline, parallel
        self._turns = threading.Semaphore(parallel)
        self._state = threading.Lock()
        self.waiting = 0
        self.answering = 0
        self.shed = 0
        self.stopped = 0
        self._durations: deque[float] = deque(maxlen=_RECENT)

    def retry_after(self) -> int:
        """Seconds until the questions ahead are likely answered: those waiting, plus those in progress."""
        typical = sum(self._durations) / len(self._durations) if self._durations else _FIRST_GUESS_SECONDS
        return max(1, math.ceil(typical * (self.waiting + self.answering) / self.parallel))

    def admit(self, pieces: Iterator[T]) -> Iterator[T]:
        """Take the model's turn for an answer now, or raise the 503 that says why not. The answer's pieces
        are computed under the question's deadline, and give the turn back when they end, fail, are
        abandoned or are stopped."""
        at = time.monotonic() + self.deadline
        return self._held(pieces, self.enter(at), at)

    def _held(self, pieces: Iterator[T], leave: Callable[[], None], at: float) -> Iterator[T]:
        try:
            while True:
                with until(at):  # around each step: a streamed answer's steps run in different threads
                    try:
                        piece = next(pieces)
                    except StopIteration:
                        return
                    except DeadlineError:
                        with self._state:
                            self.stopped += 1
                        raise
                yield piece
        finally:
            leave()

    def enter(self, at: float) -> Callable[[], None]:
        """Wait for the model's turn until `at` (a `time.monotonic()` value, as `rag.deadline` reads it), or
        raise the 503 that says why not; returns the function that gives the turn back (call it exactly
        once, when the answer is done or abandoned)."""
        with self._state:
            if self.waiting >= self.queue and (self.answering >= self.parallel or self.waiting):
                self.shed += 1
                raise self._busy(f"{self.waiting + self.answering} questions are ahead and the queue holds "
                                 f"{self.queue}")  # fmt: skip
            self.waiting += 1
        try:
            turn = self._turns.acquire(timeout=max(at - time.monotonic(), 0.0))
        finally:
            with self._state:
                self.waiting -= 1
        if not turn:
            with self._state:
                self.shed += 1
            raise self._busy(f"the question waited {self.deadline:g} s for the model without starting")
        with self._state:
            self.answering += 1
        started = time.monotonic()
        released = False

        def leave() -> None:
            nonlocal released
            if released:
                return
            released = True
            with self._state:
                self.answering -= 1
                self._durations.append(time.monotonic() - started)
            self._turns.release()

        return leave

    def _busy(self, why: str) -> APIError:
        wait = self.retry_after()
        return APIError(
            503,
            f"the local model is busy: {why}; retry in {wait} s",
            code="overloaded",
            headers={"Retry-After": str(wait)},
        )
