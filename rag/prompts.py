"""Every prompt the product sends lives here, so wording changes are reviewed (and evaluated) in one place."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from rag.retrieval import Passage

REFUSAL = "I cannot answer this from the provided articles."
"""The one sentence every backend uses to decline; refusal detection and evaluation key on it."""

SYSTEM_PROMPT = (
    "You answer questions about news articles using only the numbered passages you are given.\n"
    "Rules:\n"
    "- Cite the passage that supports each claim right after it, like [1] or [2][3].\n"
    "- Use only facts stated in the passages; do not add outside knowledge.\n"
    "- Dates matter: prefer the most recent passage unless the question asks about another time.\n"
    f'- If the passages do not contain the answer, reply with exactly: "{REFUSAL}"\n'
    "- Answer in one to three short sentences."
)


def _chat(system: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def format_passage(number: int, passage: Passage, sentences: Sequence[str] | None = None) -> str:
    """A numbered passage with its date. Whole passages carry their title; focused evidence (the local
    model's prompt) does not: SmolLM2-135M copied the title instead of answering, and without it the
    seed panel in tests/test_local_llm.py went from 1 to 4 of 5 answered with a supporting citation."""
    chunk = passage.chunk
    date = chunk.published.isoformat() if chunk.published else "date unknown"
    if sentences is not None:
        return f"[{number}] ({date}) {' … '.join(sentences)}"
    return f"[{number}] {chunk.title or chunk.doc_id} ({date})\n{chunk.text}"


def passages_block(passages: Sequence[Passage], focus: dict[int, list[str]] | None = None) -> str:
    """`focus` maps passage numbers to the only sentences to show; passages it omits are left out, but
    the numbering stays that of `passages` so citations still point at the right one."""
    numbered = [(n, p) for n, p in enumerate(passages, start=1) if focus is None or n in focus]
    return "\n\n".join(format_passage(n, p, focus.get(n) if focus else None) for n, p in numbered)


def user_prompt(
    question: str, passages: Sequence[Passage], as_of: dt.date, focus: dict[int, list[str]] | None = None
) -> str:
    block = passages_block(passages, focus)
    return f"Passages:\n\n{block}\n\nToday is {as_of.isoformat()}.\nQuestion: {question}\nAnswer with citations:"


def chat_messages(
    question: str, passages: Sequence[Passage], as_of: dt.date, focus: dict[int, list[str]] | None = None
) -> list[dict[str, str]]:
    return _chat(SYSTEM_PROMPT, user_prompt(question, passages, as_of, focus))


CONDENSE_PROMPT = (
    "Rewrite the user's last question so it can be understood without the conversation: replace pronouns "
    "and references like 'that' or 'then' with what they refer to. Keep the language and meaning. Reply "
    "with the rewritten question only."
)


def condense_messages(question: str, history: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """`history`: (question, answer) pairs, oldest first."""
    conversation = "\n".join(f"Q: {q}\nA: {a}" for q, a in history)
    return _chat(CONDENSE_PROMPT, f"Conversation:\n{conversation}\n\nLast question: {question}")


CHOICE_PROMPT = (
    "Answer the multiple-choice question using the numbered news passages. Reply with the letter of the "
    "correct choice only."
)


def choice_messages(
    question: str, choices: Sequence[str], passages: Sequence[Passage], focus: dict[int, list[str]] | None = None
) -> list[dict[str, str]]:
    block = passages_block(passages, focus)
    options = "\n".join(f"{chr(ord('A') + i)}. {choice}" for i, choice in enumerate(choices))
    return _chat(CHOICE_PROMPT, f"Passages:\n\n{block}\n\nQuestion: {question}\n{options}\nAnswer:")


ENTAILMENT_PROMPT = (
    "You judge whether a premise supports a claim. Reply 'yes' if the premise entails the claim, "
    "otherwise 'no'. Reply with one word."
)


def entailment_messages(premise: str, claim: str) -> list[dict[str, str]]:
    """The citation judge's question (ALCE uses an NLI model; any configured LLM backend plays that role)."""
    return _chat(ENTAILMENT_PROMPT, f"Premise: {premise}\n\nClaim: {claim}\n\nDoes the premise entail the claim?")
