"""The answer backends: a registry of `Backend`s by name, read by the settings, CLI, page and evaluation.

A backend is a module with a `BACKEND` (a `rag.types.Backend`) registered below, one line each; another
package can add its own through the `rag.backends` entry-point group (`rag.registry`), as `llm` plugins do:

    [project.entry-points."rag.backends"]
    mine = "my_package.backend:BACKEND"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rag.backends import extractive, local, openai_chat
from rag.registry import Registry
from rag.types import Backend, Generator

if TYPE_CHECKING:
    from rag.config import Settings

BACKENDS: Registry[Backend] = Registry("backend", lambda backend: [backend.name], group="rag.backends")
register = BACKENDS.register

register(local.BACKEND)
register(openai_chat.BACKEND)
register(extractive.BACKEND)
BACKENDS.load_entry_points()


def make_generator(settings: Settings, backend: str | None = None, model: str | None = None) -> Generator:
    """`model` overrides the configured one: a catalog name or GGUF path for `local`, a model name for
    `openai`."""
    return BACKENDS.named(backend or settings.backend).build(settings, model)
