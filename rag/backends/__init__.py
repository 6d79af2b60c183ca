"""The answer backends: a registry of `Backend`s by name, read by the settings, CLI, page and evaluation.

A backend is a module with a `BACKEND` (a `rag.types.Backend`) registered below, one line each; another
package can add its own through the `rag.backends` entry-point group, as `llm` plugins do:

    [project.entry-points."rag.backends"]
    mine = "my_package.backend:BACKEND"
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from rag.backends import extractive, local, openai_chat
from rag.errors import ConfigError
from rag.types import Backend, Generator

if TYPE_CHECKING:
    from rag.config import Settings

BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    if backend.name in BACKENDS and BACKENDS[backend.name] is not backend:
        raise ConfigError(f"two backends are named {backend.name!r}", hint="rename one of them")
    BACKENDS[backend.name] = backend
    return backend


register(local.BACKEND)
register(openai_chat.BACKEND)
register(extractive.BACKEND)
for _entry in entry_points(group="rag.backends"):
    register(_entry.load())


def get(name: str) -> Backend:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}", hint=f"use one of: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def make_generator(settings: Settings, backend: str | None = None, model: str | None = None) -> Generator:
    """`model` overrides the configured one: a catalog name or GGUF path for `local`, a model name for
    `openai`."""
    return get(backend or settings.backend).build(settings, model)
