"""Where `rag` keeps its files unless told otherwise: per user, in the XDG base directories, so every command
finds the same index and caches from any working directory. Below the settings, so that code the settings
load (the model catalog, the backends) can find the cache without importing them."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """The index, conversations and feeds (`Settings.index_dir` and what sits beside it)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "rag"


def default_cache_dir() -> Path:
    """Derived files (model exports, assembled models): safe to delete, rebuilt on demand."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag"
