"""A time budget for reading one file or page: markup is parsed in a worker process that is killed when it
takes too long.

HTML and PDF are parsed by libraries (trafilatura and lxml, pypdf) whose worst case is not bounded by the
size of the input: a 1.6 MB page whose one tag carries 100,000 attributes kept trafilatura busy for over
two minutes here, and a run waiting on it saved nothing, good files included. A thread cannot be stopped
and a signal only reaches the main thread, so such formats (`Format.isolated`) are read in one worker
process per `rag` process, started when the first of them is read; a file over its budget is reported
and the worker is killed and started again for the next file. The budget counts from when the worker has
the file, so neither the worker's start nor another thread's file in front of it is charged to it.
"""

from __future__ import annotations

import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

_START_SECONDS = 120.0
"""How long the worker may take to start (imports) before reading is reported as impossible."""


class OverBudget(TimeoutError):
    """The work took longer than its budget and was stopped."""


class _Worker:
    """One Python process running `serve`, fed pickled calls on stdin; its replies are read by a
    thread, so waiting for one can time out on any platform. A subprocess rather than multiprocessing:
    spawning re-imports the caller's main script, which runs a script without a main guard again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._replies: queue.Queue[tuple[str, Any]] = queue.Queue()

    def run(self, function: Callable[..., Any], args: tuple[Any, ...], seconds: float) -> Any:
        with self._lock:
            process = self._ready()
            assert process.stdin is not None
            try:
                _write(process.stdin, (function, args))
                kind, value = self._replies.get(timeout=seconds)
            except queue.Empty:
                self._stop()
                raise OverBudget(f"took longer than {seconds:g} s") from None
            except OSError:
                self._stop()
                raise RuntimeError("the worker process stopped") from None
            if kind == "stopped":
                self._stop()
                raise RuntimeError("the worker process stopped")
            if kind == "raised":
                raise RuntimeError(value)
            return value

    def _ready(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        process = subprocess.Popen(
            [sys.executable, "-c", "from rag.ingest.loaders.budget import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        replies: queue.Queue[tuple[str, Any]] = queue.Queue()
        threading.Thread(target=_read_replies, args=(process, replies), daemon=True, name="rag-extract").start()
        try:
            kind, _ = replies.get(timeout=_START_SECONDS)
        except queue.Empty:
            kind = "stopped"
        if kind != "ready":
            process.kill()
            raise OSError("the extraction worker did not start")
        self._process, self._replies = process, replies
        return process

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=30)
            for pipe in (self._process.stdin, self._process.stdout):
                if pipe is not None:
                    pipe.close()
        self._process = None


def _write(pipe: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message)
    pipe.write(len(data).to_bytes(8, "big") + data)
    pipe.flush()


def _read(pipe: IO[bytes]) -> Any:
    """One message, or EOFError when the other side has gone."""
    header = pipe.read(8)
    if len(header) < 8:
        raise EOFError
    data = pipe.read(int.from_bytes(header, "big"))
    return pickle.loads(data)


def _read_replies(process: subprocess.Popen[bytes], replies: queue.Queue[tuple[str, Any]]) -> None:
    assert process.stdout is not None
    try:
        while True:
            replies.put(_read(process.stdout))
    except (EOFError, OSError, pickle.UnpicklingError, ValueError):
        replies.put(("stopped", None))


_WORKER = _Worker()


def run(function: Callable[..., Any], *args: Any, seconds: float) -> Any:
    """`function(*args)` in the worker, within `seconds` (`OverBudget` past them); the function must be a
    module-level one (it is sent by name) and return something picklable. What it raises comes back as a
    RuntimeError with its message."""
    return _WORKER.run(function, args, seconds)


def serve() -> None:
    """The worker: run calls read from stdin until it closes. stdout carries the replies, so anything a
    library prints goes to stderr instead."""
    replies = sys.stdout.buffer
    sys.stdout = sys.stderr
    _write(replies, ("ready", None))
    while True:
        try:
            function, args = _read(sys.stdin.buffer)
        except EOFError:
            return
        try:
            reply: tuple[str, Any] = ("ok", function(*args))
        except Exception as exc:  # reported to the caller, and the worker goes on
            reply = ("raised", f"{type(exc).__name__}: {exc}"[:300])
        _write(replies, reply)
