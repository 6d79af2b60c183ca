"""The base of every group of settings (`rag.config.Settings` is made of them), apart from the settings
object itself so that a backend or plugin can declare its own group without importing the pipeline's.

A section's field names are also its settings' flat names: `RAG_<NAME>` in the environment, `name = ...` at
the top of the TOML file or inside its `[section]` table, `Settings(name=...)`. They are unique across
sections, so the flat names people have always used keep working whatever section a setting lives in.
"""

from __future__ import annotations

from pydantic import BaseModel, BeforeValidator, ConfigDict


class Section(BaseModel):
    """Settings of one part of `rag`: bounds on every number, so an absurd value (RAG_CANDIDATES=1e12, a NaN
    weight) is a clear settings error, not a multi-terabyte allocation or a silently broken ranking."""

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False, populate_by_name=True)


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


EMPTY_IS_NONE = BeforeValidator(_empty_is_none)
"""For an optional setting: an empty value (`RAG_RERANKER=`, `--set reranker=`) means none."""
