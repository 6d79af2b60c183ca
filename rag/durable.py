"""Files that survive a crash or a power cut whole: written beside their final name, flushed to disk,
renamed over it, and the directory entry flushed too. A reader sees the old file or the new one, never
half of one; without the directory's flush a power cut can roll the rename back."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def replace(path: Path, write: Callable[[Path], object]) -> None:
    """`write` fills a temporary file beside `path`, which then replaces `path` (not yet durable: call
    `fsync_dir` on the directory once every file of a change is in place)."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    """Make the renames in `path` durable. Not every platform can open a directory (Windows cannot), and
    there the renames are all there is; a failing flush is an error like any failed write."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fingerprint(path: Path) -> dict[str, Any]:
    """The file's size and sha256, recorded when it is written and checked when it is read back."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
