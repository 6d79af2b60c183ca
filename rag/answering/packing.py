"""Context packing: which retrieved passages fit the prompt's token budget."""

from __future__ import annotations

from collections.abc import Sequence

from rag.types import Passage, TokenCounter


def pack_passages(passages: Sequence[Passage], budget: int, count: TokenCounter) -> list[Passage]:
    """Best passages first until the budget is spent; exact duplicates (the same wire copy indexed twice)
    are skipped. The first passage always goes in, so a tiny budget degrades instead of refusing."""
    packed: list[Passage] = []
    seen: set[str] = set()
    used = 0
    for passage in passages:
        key = " ".join(passage.text.split())
        if key in seen:
            continue
        cost = count(passage.text) + 16
        if packed and used + cost > budget:
            continue
        packed.append(passage)
        seen.add(key)
        used += cost
    return packed
