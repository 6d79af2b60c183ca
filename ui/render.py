"""HTML for the chat page. Article text and model output are untrusted: a news article may contain
`<script>`, HTML or markdown, and a model may repeat it. Everything such text passes through `inert()`,
which makes every character that HTML or Streamlit's markdown could interpret a numeric entity, so it is
displayed, never executed or styled. Only the markup written in this module is real markup."""

from __future__ import annotations

import html
from collections import defaultdict
from urllib.parse import urlparse

from rag import Answer, Event, Passage
from rag.answering.citations import numbers_in
from rag.stories.figures import figure_line
from rag.types import Chunk, FigureChange
from rag.untrusted import CITATION

_MARKDOWN_SPECIALS = set("\\`*_[](){}#+-!|~$:<>&\"'=")

STYLE = """
<style>
.rag-answer { font-size: 1.05rem; line-height: 1.55; }
.rag-answer a.rag-cite { text-decoration: none; font-weight: 600; padding: 0 1px; }
.rag-section { font-weight: 600; margin: .9rem 0 .2rem; }
.rag-card { border: 1px solid rgba(128,128,128,.35); border-radius: .5rem; padding: .6rem .8rem;
            margin: .4rem 0; scroll-margin-top: 4.5rem; }
.rag-card-head { font-size: .9rem; margin-bottom: .3rem; }
.rag-card-meta { color: rgba(128,128,128,1); }
.rag-card-body { font-size: .92rem; line-height: 1.5; white-space: normal; }
.rag-card-body mark { background: #ffe58f; color: #1f1f1f; padding: 0 1px; }
.rag-short { font-size: 1.25rem; font-weight: 650; margin-bottom: .25rem; }
.rag-unverified { opacity: .75; font-style: italic; }
.rag-quote { color: rgba(90,90,90,1); font-style: italic; }
.rag-unsupported { text-decoration: underline wavy #d4380d; text-underline-offset: 3px; }
.rag-flag { color: #d4380d; font-size: .85rem; font-style: normal; font-weight: 600; }
.rag-confidence { font-size: .85rem; color: rgba(128,128,128,1); }
.rag-feed { font-size: .9rem; overflow-wrap: anywhere; margin-bottom: -.4rem; }
.rag-event, .rag-figure { font-size: .95rem; margin-bottom: .5rem; }
</style>
"""


def inert(text: str) -> str:
    """Text as entities wherever HTML or markdown could act on it; newlines become `<br>`.

    Every line break, CR and CRLF included, becomes `<br>`: a raw one would let a blank line end the HTML
    block the text sits in, and what follows would be parsed as markdown outside the card."""
    out = []
    for char in text.replace("\r\n", "\n").replace("\r", "\n"):
        if char == "\n":
            out.append("<br>")
        elif char in _MARKDOWN_SPECIALS:
            out.append(f"&#{ord(char)};")
        else:
            out.append(char)
    return "".join(out)


def plain(text: str) -> str:
    """Untrusted text for Streamlit's own markdown (alerts, captions, toasts): those render `**`, links
    and `:red[...]` too, but no HTML, so the text is entities on one line, without `inert`'s `<br>`."""
    return inert(" ".join(text.split()))


def clip(text: str, limit: int) -> str:
    """At most `limit` characters on one line, cut at a word with "…" when longer: for labels in a list."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    head = line[: limit - 1]
    cut = head if line[limit - 1] == " " else head.rsplit(" ", 1)[0]
    return (cut.rstrip(" ,;:") or head) + "…"


def anchor(key: str, number: int) -> str:
    return f"src-{key}-{number}"


def _linked(text: str, key: str, n_passages: int) -> str:
    """Text with each `[n]` linked to its source card further down the page."""
    parts: list[str] = []
    previous = 0
    for match in CITATION.finditer(text):
        parts.append(inert(text[previous : match.start()]))
        for number in numbers_in(match.group(1)):
            if 1 <= number <= n_passages:
                parts.append(f'<a class="rag-cite" href="#{anchor(key, number)}">[{number}]</a>')
        previous = match.end()
    parts.append(inert(text[previous:]))
    return "".join(parts)


def answer_html(text: str, key: str, n_passages: int, *, cursor: bool = False) -> str:
    """An answer as it streams in (or one without checked claims)."""
    return f'<div class="rag-answer">{_linked(text, key, n_passages)}{"▌" if cursor else ""}</div>'


def final_answer_html(answer: Answer, key: str) -> str:
    """The short answer as the headline, then each further sentence: quotes in the quote style, and a
    sentence no cited passage supports underlined and flagged, never passed off as sourced."""
    text, n = answer.text, len(answer.passages)
    claims = sorted(answer.claims, key=lambda c: c.start)
    if not claims:
        return answer_html(text, key, n)
    blocks: list[str] = []
    for i, claim in enumerate(claims):
        end = claims[i + 1].start if i + 1 < len(claims) else len(text)
        body = _linked(text[claim.start : end].strip(), key, n)
        classes = ["rag-quote"] if claim.text.startswith("“") else []
        flag = ""
        if not claim.supported:
            classes.append("rag-unsupported")
            flag = ' <span class="rag-flag" title="No cited passage says this">⚠ not in the cited passage</span>'
        if i == 0 and answer.short is not None:
            classes.append("rag-short")
        span = f'<span class="{" ".join(classes)}">{body}</span>' if classes else body
        blocks.append(f"<div>{span}{flag}</div>")
    unverified = " rag-unverified" if answer.refused else ""
    return f'<div class="rag-answer{unverified}">{"".join(blocks)}</div>'


def confidence_line(answer: Answer) -> str:
    """How likely the answer is right, in words (each backed by a measured precision, README) and as a
    number."""
    return f'<div class="rag-confidence">{answer.confidence_label}</div>'


def safe_url(url: str | None) -> str | None:
    """Only http(s) links: a `javascript:` url in a feed must not become a clickable link."""
    if not url:
        return None
    return url if urlparse(url).scheme in ("http", "https") else None


def _link(url: str, text: str | None = None) -> str:
    """A link to an http(s) url (checked by `safe_url`) that opens in a new tab, its address as the text
    unless `text` is given."""
    shown = inert(url if text is None else text)
    return f'<a href="{html.escape(url, quote=True)}" target="_blank" rel="noopener noreferrer">{shown}</a>'


def feed_html(name: str, url: str) -> str:
    """A followed feed: its name, and its address, linked only when it is http(s)."""
    safe = safe_url(url)
    where = _link(safe) if safe else inert(url)
    return f'<div class="rag-feed"><b>{inert(name)}</b><br><span class="rag-card-meta">{where}</span></div>'


def event_html(event: Event) -> str:
    """A timeline's event: its date (and what dated it), the quoted sentence, and its source, linked when
    the article has an http(s) address; every part from the article inert."""
    when = event.date.isoformat() + (f" ({inert(event.dated_by)})" if event.dated_by != "published" else "")
    more = f" · {len(event.sources)} sources" if len(event.sources) > 1 else ""
    return (
        f'<div class="rag-event"><b>{when}</b> {inert(event.citation.quote)}<br>'
        f'<span class="rag-card-meta">{_titled_link(event.citation.passage.chunk)}{more}</span></div>'
    )


def figure_html(change: FigureChange) -> str:
    """A figure that changed (or that sources disagree on): the line, then each figure's sentence and
    source, linked as an event's is."""
    quoted = "".join(
        f'<br><span class="rag-card-meta">“{inert(f.citation.quote)}” {_titled_link(f.citation.passage.chunk)}</span>'
        for f in (change.old, change.new)
    )
    return f'<div class="rag-figure"><b>{inert(figure_line(change))}</b>{quoted}</div>'


def _titled_link(chunk: Chunk) -> str:
    """An article's title, linked to it when its address is http(s); inert either way."""
    safe, title = safe_url(chunk.url), chunk.title or chunk.doc_id
    return _link(safe, title) if safe else inert(title)


def _highlighted(passage: Passage, spans: list[tuple[int, int]]) -> str:
    """Passage text with the quoted spans (document offsets) marked. Spans are clipped to the passage
    and overlapping or touching ones merged, so two citations of one sentence show as one highlight."""
    text, offset = passage.chunk.text, passage.chunk.start
    merged: list[list[int]] = []
    for start, end in sorted((max(0, s - offset), min(len(text), e - offset)) for s, e in spans):
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    parts, cursor = [], 0
    for start, end in merged:
        parts += [inert(text[cursor:start]), f"<mark>{inert(text[start:end])}</mark>"]
        cursor = end
    parts.append(inert(text[cursor:]))
    return "".join(parts)


def source_card(passage: Passage, number: int, key: str, spans: list[tuple[int, int]] | None = None) -> str:
    chunk = passage.chunk
    date = chunk.published.isoformat() if chunk.published else "undated"
    url = safe_url(chunk.url)
    where = _link(url) if url else inert(chunk.source or chunk.doc_id)
    body = _highlighted(passage, spans or [])
    also = (
        f'<div class="rag-card-meta">also reported by: {inert(", ".join(passage.also_in))}</div>'
        if passage.also_in
        else ""
    )
    if chunk.added:
        also += f'<div class="rag-card-meta">added through the API by {inert(chunk.added)}</div>'

    return (
        f'<div class="rag-card" id="{anchor(key, number)}">'
        f'<div class="rag-card-head"><b>[{number}] {inert(chunk.title or chunk.doc_id)}</b> '
        f'<span class="rag-card-meta">· {date} · {where} · score {passage.score:.2f}</span></div>'
        f'<div class="rag-card-body">{body}</div>{also}</div>'
    )


def cited_spans(answer: Answer) -> dict[int, list[tuple[int, int]]]:
    spans: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for citation in answer.citations:
        spans[citation.number].append((citation.quote_start, citation.quote_end))
    return dict(spans)


def stats_line(answer: Answer) -> str:
    t = answer.timings
    parts = [f"retrieve {t.get('retrieve', 0.0) * 1000:.0f} ms", f"generate {t.get('generate', 0.0):.2f} s"]
    if "first_token" in t:
        parts.append(f"first token {t['first_token']:.2f} s")
    parts.append(f"tokens: {answer.tokens.prompt} prompt, {answer.tokens.completion} answer")
    parts.append(answer.backend if answer.model == answer.backend else f"{answer.backend} · {answer.model}")
    return " · ".join(parts)
