"""Conversation: turn a follow-up ("what did he say after that?") into a standalone question before
retrieval, because the index only understands what the question itself says.

A capable LLM (the `openai` backend) rewrites with the prompt in `rag.prompts`; for the small local model
and the extractive backend a deterministic rewrite is more reliable than asking a 135M model to do it:
person pronouns become the person the previous answer named, and an elliptical question ("and in
July?") carries the previous question's subject along.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.prompts import condense_messages
from rag.text import stopwords, terms, words
from rag.types import GenerationRequest, Generator

_PERSON = {"he": "", "him": "", "she": "", "her": "", "his": "'s", "hers": "'s", "he's": " is", "she's": " is"}
_PERSON_WORD = re.compile(r"\b(?:he['’]s|she['’]s|he|him|she|her|his|hers)\b", re.IGNORECASE)
_DEICTIC = {"it", "its", "they", "them", "their", "that", "this", "those", "these", "there", "then"}
_NAME = re.compile(r"\b(?:[A-Z][a-z’'\-]+|[A-Z]{2,})(?:\s+(?:[A-Z][a-z’'\-]+|[A-Z]{2,}))+\b")
_FOLLOW_UP_START = re.compile(r"^\s*(and|but|also|what about|how about|so)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Turn:
    """One exchange; `standalone` is the question as it was actually searched."""

    question: str
    answer: str
    standalone: str = ""

    @property
    def searched_question(self) -> str:
        return self.standalone or self.question


def needs_context(question: str) -> bool:
    said = words(question)
    return (
        any(w in _PERSON or w in _DEICTIC for w in said)
        or bool(_FOLLOW_UP_START.match(question))
        or len(terms(question)) <= 1
    )


def _last_new_name(answer: str, question: str) -> str | None:
    """The last multi-word proper name in the answer that the question did not already mention:
    for "Who is X?" that is the answer itself.

    Leading words the question used are a title, not the name: an answer quoting "... Secretary General
    Stanislav Zas said" to "Who is the Secretary General ...?" names "Stanislav Zas". Searching with the
    title attached ranks whatever else the title's words match above what the person said."""
    asked = question.lower()
    asked_words = set(words(asked))
    names = []
    for match in _NAME.findall(answer):
        parts = match.split()
        # A sentence-initial "The"/"In" is not part of the name ("In Geneva" is no person), and neither is
        # a title the question used.
        while parts and parts[0].lower() in stopwords():
            parts.pop(0)
        if len(parts) < 2:
            continue
        while parts and parts[0].lower() in asked_words:
            parts.pop(0)
        name = " ".join(parts)
        if name and name.lower() not in asked:
            names.append(name)
    return names[-1] if names else None


def rewrite_heuristic(question: str, history: Sequence[Turn]) -> str:
    if not history or not needs_context(question):
        return question
    previous = history[-1]
    name = _last_new_name(previous.answer, previous.searched_question)
    rewritten, replaced = question, False
    if name:

        def person(match: re.Match[str]) -> str:
            nonlocal replaced
            if replaced:
                return match.group(0)
            replaced = True
            return name + _PERSON[match.group(0).lower().replace("’", "'")]

        rewritten = _PERSON_WORD.sub(person, question)
    remaining = words(rewritten)
    if not replaced or any(w in _DEICTIC for w in remaining) or _FOLLOW_UP_START.match(question):
        rewritten = f"{rewritten.rstrip()} (context: {previous.searched_question.rstrip()})"
    return rewritten


def condense(question: str, history: Sequence[Turn], generator: Generator | None = None) -> str:
    """The standalone form of `question`. With a generator, the LLM rewrites; an empty or rambling reply
    falls back to the deterministic rewrite."""
    if not history or not needs_context(question):
        return question
    if generator is None:
        return rewrite_heuristic(question, history)
    messages = condense_messages(question, [(t.searched_question, t.answer) for t in history[-3:]])
    reply = "".join(generator.stream(GenerationRequest(question, [], messages, 96, 0.0))).strip()
    reply = reply.splitlines()[0].strip().strip('"') if reply else ""
    return reply if 0 < len(reply) <= 4 * len(question) + 200 else rewrite_heuristic(question, history)
