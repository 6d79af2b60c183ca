"""Shared fixtures. Every test gets its own index directory and no config file, so tests are hermetic;
the real embedding model is loaded once per session because loading it dominates test time."""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag import RAG, Settings
from rag.store.embedding import Embedder
from rag.types import Capabilities, Completion, GenerationRequest
from tests.openai_server import openai_server  # the fixture, shared by every test module

__all__ = ["openai_server"]

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_FILE = next(SEEDS.glob("*.txt"))


def free_port() -> int:
    """A loopback port no one listens on now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cli_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment for a `rag` process a test starts: this one's without its RAG_/OPENAI_ settings,
    data and index under `home`, no progress bars, and the given `RAG_*` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "OPENAI_"))}
    env.update(XDG_DATA_HOME=str(home / "data"), RAG_INDEX_DIR=str(home / "index"), RAG_PROGRESS="false")
    return {**env, **settings}


@pytest.fixture(scope="session")
def _cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model-export cache per test session: exporting once costs seconds, every test would cost minutes."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, _cache_home: Path) -> None:
    for var in ("RAG_CONFIG", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("RAG_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(_cache_home))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(index_dir=tmp_path / "index", progress=False, backend="extractive")


@pytest.fixture
def pipeline(settings: Settings, embedder: Embedder) -> RAG:
    """A RAG over an empty temp index that shares the session's embedding model."""
    return RAG(settings, embedder=embedder)


@pytest.fixture
def seeded(pipeline: RAG) -> RAG:
    pipeline.index([SEEDS])
    return pipeline


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Iterator[Path]:
    """A writable copy of the seed articles to add bad files to."""
    target = tmp_path / "corpus"
    shutil.copytree(SEEDS, target)
    yield target


CAPABLE = Capabilities(llm=True, rewrites_follow_ups=True)
"""A capable endpoint's capabilities: the default stand-in."""


class Scripted:
    """An LLM stand-in for unit tests of logic around generation: replies with a fixed text, streamed in
    word-sized pieces, and records every request. Its capabilities (a capable endpoint by default) decide
    which code paths treat it how."""

    def __init__(
        self,
        reply: str,
        *,
        name: str = "scripted",
        model: str = "scripted",
        capabilities: Capabilities = CAPABLE,
    ) -> None:
        self.reply = reply
        self.name = name
        self.model = model
        self.capabilities = capabilities
        self.requests: list[GenerationRequest] = []

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        self.requests.append(request)
        yield from re.findall(r"\S+|\s+", self.reply)

    def complete(self, request: GenerationRequest) -> Completion:
        return Completion("".join(self.stream(request)))
