"""Kept conversations out of the store: a Markdown brief to paste, JSON for other tools, and the rated
answers as an eval set, so what users flagged becomes questions `rag eval` asks again.

The brief carries article text (titles, quoted sentences, answers built from them), and article text is
untrusted: a title or quote must not start a heading, a link or HTML in the brief it is pasted into. Such
text is put on one line and its Markdown punctuation escaped; only the answer's own `[n]` markers stay.
"""

from __future__ import annotations

import re
from typing import Any

from rag.evaluation.scoring import without_markers
from rag.server.conversations import Conversation, ConversationStore, ConversationSummary, Feedback, StoredTurn
from rag.types import Answer
from rag.untrusted import CITATION

_INLINE = re.compile(r"([\\`*_\[\]<>!|~])")
_NUMBERED = re.compile(r"^(\d+)([.)])")
_SAFE_URL = re.compile(r"^https?://[^\s<>]+$", re.IGNORECASE)


def _escape(text: str) -> str:
    """Markdown's inline punctuation escaped (no link, image, emphasis, code or HTML) and line breaks
    made spaces, so the text cannot start a block of its own."""
    return _INLINE.sub(r"\\\1", re.sub(r"\s+", " ", text))


def _line_start(line: str) -> str:
    """A line that cannot open a heading, list, quote, rule, table or link definition."""
    line = line.strip()
    if _NUMBERED.match(line):
        return _NUMBERED.sub(r"\1\\\2", line, count=1)
    return "\\" + line if line[:1] in ("#", "-", "+", "=", "[") else line


def _inline(text: str) -> str:
    """Untrusted text as one line of plain Markdown text: no markup, link or heading of its own."""
    return _line_start(_escape(text))


def _answer_text(text: str) -> str:
    """The answer's lines, each escaped like `_inline` but keeping its `[n]` markers, and kept as
    lines (a hard break) and paragraphs."""
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = []
        for line in paragraph.splitlines():
            parts = CITATION.split(line)  # each marker's numbers land at the odd positions
            kept = "".join(_escape(part) if i % 2 == 0 else f"[{part}]" for i, part in enumerate(parts))
            if kept.strip():
                lines.append(_line_start(kept))
        paragraphs.append("  \n".join(lines))
    return "\n\n".join(p for p in paragraphs if p)


def _url(url: str | None) -> str:
    if not url:
        return ""
    return f" <{url}>" if _SAFE_URL.match(url) else f" ({_inline(url)})"


def _sources(answer: Answer) -> list[str]:
    quotes: dict[int, list[str]] = {}
    for citation in answer.citations:
        quotes.setdefault(citation.number, [])
        if citation.quote and citation.quote not in quotes[citation.number]:
            quotes[citation.number].append(citation.quote)
    by_number = {c.number: c.passage for c in answer.citations}
    lines = []
    for number in sorted(quotes):
        chunk = by_number[number].chunk
        date = chunk.published.isoformat() if chunk.published else "undated"
        title = _inline(chunk.title or chunk.doc_id)
        lines.append(f"- **[{number}]** {title} ({date}){_url(chunk.url)}")
        lines.extend(f"  > {_inline(quote)}" for quote in quotes[number])
    return lines


def _turn_markdown(turn: StoredTurn) -> list[str]:
    answer = turn.answer
    asked = turn.created.strftime("%Y-%m-%d %H:%M UTC")
    as_of = f", as of {turn.options['as_of']}" if turn.options.get("as_of") else ""
    lines = [f"**Q:** {_inline(turn.question)}", "", f"*Asked {asked}{as_of}.*", ""]
    if answer.standalone_question and answer.standalone_question != turn.question:
        lines += [f"*Searched as: {_inline(answer.standalone_question)}*", ""]
    if answer.refused:
        lines += ["**No answer:** the articles searched do not say.", "", _answer_text(answer.text), ""]
    else:
        lines += [_answer_text(answer.text), ""]
        lines += [f"- ⚠ not supported by the passage it cites: {_inline(c.text)}" for c in answer.unsupported]
        if answer.unsupported:
            lines.append("")
        if answer.citations:
            lines += ["**Sources**", "", *_sources(answer), ""]
    lines += [f"*Searched {_inline(answer.searched_dates)}.*", ""]
    return lines


def to_markdown(conversation: Conversation) -> str:
    """A brief to paste into a document or a ticket: every question, its answer with its `[n]` markers,
    and the sources those markers name, each with the sentence quoted from it."""
    summary = conversation.summary
    lines = [
        f"# {_inline(summary.title) or 'Conversation'}",
        "",
        f"*{summary.created.strftime('%Y-%m-%d %H:%M UTC')}, {summary.turns} question(s); "
        f"last updated {summary.updated.strftime('%Y-%m-%d %H:%M UTC')}.*",
        "",
    ]
    for turn in conversation.turns:
        lines += ["---", "", *_turn_markdown(turn)]
    return "\n".join(lines).rstrip() + "\n"


def _feedback_json(feedback: Feedback) -> dict[str, Any]:
    return {
        "id": feedback.id,
        "rating": feedback.rating,
        "comment": feedback.comment,
        "created": feedback.created.isoformat(),
    }


def summary_json(summary: ConversationSummary) -> dict[str, Any]:
    """A conversation as listed: `turns` is how many it has."""
    return {
        "id": summary.id,
        "title": summary.title,
        "origin": summary.origin,
        "created": summary.created.isoformat(),
        "updated": summary.updated.isoformat(),
        "turns": summary.turns,
    }


def to_json(conversation: Conversation) -> dict[str, Any]:
    return {
        **summary_json(conversation.summary),
        "turns": [
            {
                "id": turn.id,
                "position": turn.position,
                "question": turn.question,
                "options": turn.options,
                "created": turn.created.isoformat(),
                "answer": turn.answer.to_json(),
                "feedback": [_feedback_json(f) for f in turn.feedback],
            }
            for turn in conversation.turns
        ],
    }


def feedback_eval_record(turn: StoredTurn, feedback: Feedback) -> dict[str, Any]:
    """One rated answer as a question of an eval set (`rag.evaluation.sets`).

    A helpful answer is taken as gold: its short answer, the articles it cited and the sentences it quoted.
    A helpful refusal says the question cannot be answered from the articles. An answer rated wrong gives
    no gold, only the flag and the comment: the question is asked again and its new answer is there to
    read, while the scores come from the helpful ones. The question is the one searched, as a follow-up
    ("what did he say?") means nothing asked on its own."""
    answer = turn.answer
    record: dict[str, Any] = {
        "id": f"feedback-{turn.id}",
        "question": answer.standalone_question or turn.question,
        "question_date": turn.options.get("as_of") or turn.created.date().isoformat(),
        "answers": [],
        "gold_doc_ids": [],
        "gold_evidence": [],
        "answerable": True,
        "type": feedback.rating,
        "rating": feedback.rating,
        "comment": feedback.comment,
        "asked": turn.question,
        "conversation_id": turn.conversation_id,
        "turn_id": turn.id,
        "rated": feedback.created.isoformat(),
    }
    if feedback.rating != "helpful":
        record["flagged"] = feedback.rating
    elif answer.refused:
        record["answerable"] = False
    else:
        record["answers"] = [answer.short or without_markers(answer.text)]
        record["gold_doc_ids"] = list(dict.fromkeys(c.passage.doc_id for c in answer.citations))
        record["gold_evidence"] = list(dict.fromkeys(c.quote for c in answer.citations if c.quote))
    return record


def feedback_eval_records(store: ConversationStore) -> list[dict[str, Any]]:
    """Every rated answer, by its latest rating, oldest first: a `questions.jsonl` for `rag eval`."""
    return [feedback_eval_record(turn, feedback) for turn, feedback in store.rated()]
