"""Article pages (saved `.html` files and pages fetched over HTTP): the main text, title, date, author and
site through trafilatura.

Why trafilatura and not our own tag stripping: a news page is mostly not the article. Navigation, cookie
banners, ad slots, newsletter boxes, "related" lists, comments and legal footers outweigh the story, and
sites mark them up every way there is (`<div>`s with class names, no `<article>` at all). Dropping a fixed
list of tags kept comments and sidebars and lost articles written in `<div>`s; trafilatura scores the
page's blocks by text density, link density and markup conventions, and is the maintained standard for
exactly this job (its benchmarks are news pages). Its balanced default mode is kept: on realistic news
pages (tests/test_extraction.py) `favor_precision` dropped no more boilerplate and `favor_recall` let more
through, and only the balanced mode retries a short extraction with recall settings, which is what saves
an article the main heuristics under-read. What is set (`_OPTIONS`) follows from what a reader cites.

Paragraphs come back as blank-line separated blocks, a `<br>` as a line break: the chunker splits on both,
so a passage never runs a heading into the paragraph after it.

Dates are the page's own: its metadata (`article:published_time`, JSON-LD, `<meta name="date">`), a
`<time datetime>`, a dated byline or, failing those, a dated URL, found by htmldate without its free-text
search. With that search (trafilatura's default) an undated page is dated by whatever date its text
mentions: a comment's, an earlier event's, or January 1st of the "© 2021" in its footer. A page that
carries no date gets none, and never the day it was read, which would make an old story look like today's
news to every date filter and to recency ranking.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rag.errors import DocumentError
from rag.ingest.loaders.common import make_title, parse_date, read_text
from rag.types import Document, Format, Source

# Every page trafilatura cannot read comes back as empty text, which the caller reports with a hint; its own
# log lines ("discarding data: None", "empty HTML tree") would repeat that, in its terms, once per page.
for _library in ("trafilatura", "htmldate"):
    logging.getLogger(_library).setLevel(logging.CRITICAL)

_OPTIONS: dict[str, Any] = {
    # Readers' comments are not the article and must never be cited as if they were; off, they are also
    # pruned before trafilatura's fallback extractors run, so none of those can bring them back.
    "include_comments": False,
    "include_tables": True,  # results tables, polls and figures are often the news itself
    "prune_xpath": ["//nav"],  # menus never hold article text, yet the last-resort body dump brings them back
}
"""trafilatura's documented extraction options, chosen for what a news reader cites (see the module doc)."""

_DATES: dict[str, Any] = {"extensive_search": False, "original_date": True, "deferred_url_extractor": True}
"""htmldate: markup and metadata only, no guessing from free text; the first publication, not the last
update, since that is the date a story is filed under and asked about; a date in the URL only when the page
states none, since the page's own statement is the more precise (a story filed late on the 3rd may sit
under /04/)."""

_BLOCKS = {"p", "head", "list", "item", "quote", "code", "table", "row", "div", "section", "article"}
"""trafilatura's block elements: each starts a paragraph of its own."""
_PARAGRAPH, _LINE = "\x00", "\x01"


@dataclass(frozen=True)
class Extracted:
    """What an article page says about itself; empty `text` when nothing on it reads as an article (the
    caller decides whether that is an error: a file is reported, a fetched page may be retried)."""

    text: str
    title: str
    author: str | None
    published: dt.date | None
    site_name: str | None
    method: str
    """The extractor and its version, kept with the document: the same page extracted by another version
    can differ, and this is how a surprising passage is traced back."""
    url: str | None = None
    """The page's own canonical address (`<link rel=canonical>`, `og:url`) when it gives one, else the
    `url` it was extracted with."""


def _method() -> str:
    import trafilatura

    return f"trafilatura {trafilatura.__version__}"


def _paragraphs(body: Any) -> str:
    """trafilatura's XML body as text: blocks separated by blank lines, `<lb/>` as a line break, inline
    markup (`<hi>`, `<ref>`) joined without added spaces. Its own text output separates paragraphs and line
    breaks alike with one newline, which would lose the paragraph structure the chunker relies on."""
    parts: list[str] = []

    def walk(element: Any) -> None:
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag == "lb":
            parts.append(_LINE)
        elif tag in _BLOCKS:
            parts.append(_PARAGRAPH)
        elif tag == "cell":
            parts.append(" ")
        if element.text and tag != "lb":
            parts.append(element.text)
        for child in element:
            walk(child)
            if child.tail:
                parts.append(child.tail)
        if tag in _BLOCKS:
            parts.append(_PARAGRAPH)

    walk(body)
    flat = re.sub(r"\s+", " ", "".join(parts))
    paragraphs = []
    for block in flat.split(_PARAGRAPH):
        lines = [line.strip() for line in block.split(_LINE)]
        text = "\n".join(line for line in lines if line)
        if text:
            paragraphs.append(text)
    return "\n\n".join(paragraphs)


def _date(value: object) -> dt.date | None:
    try:
        return parse_date(value)
    except ValueError:
        return None


def extract_article(html: str | bytes, url: str | None = None) -> Extracted:
    """The article on a page: its main text, title (the page's, else the text's first line), first
    publication date, author, site name and canonical URL. `url` is where the page came from: it helps
    resolve relative links and may carry the date. Bytes are decoded as the page declares."""
    import trafilatura

    found = trafilatura.bare_extraction(
        html,
        url=url,
        with_metadata=True,
        date_extraction_params={**_DATES, "max_date": dt.date.today().isoformat()},
        **_OPTIONS,
    )
    method = _method()
    if found is None or isinstance(found, dict):  # a dict only with the deprecated `as_dict`
        return Extracted("", "", None, None, None, method, url)
    text = _paragraphs(found.body) if found.body is not None else ""
    title = " ".join((found.title or "").split())
    return Extracted(
        text=text,
        title=title or make_title(text),
        author=found.author or None,
        published=_date(found.date),
        site_name=found.sitename or None,
        method=method,
        url=found.url or url,
    )


def load(source: Source) -> Iterator[Document]:
    found = extract_article(read_text(source))
    if not found.text.strip():
        raise DocumentError(source.path, "HTML page has no readable text", hint="check that it is an article page")
    metadata = {key: value for key, value in (("author", found.author), ("site_name", found.site_name)) if value}
    metadata["extraction"] = found.method
    yield Document(
        id=source.doc_id,
        text=found.text,
        title=found.title,
        published=found.published,
        url=found.url,
        source=found.site_name or source.path.name,
        metadata=metadata,
    )


FORMAT = Format(
    (".html", ".htm"),
    "the main text found by trafilatura (navigation, ads, related links, comments and footers dropped; "
    "paragraphs kept); title, author and site name from the page's metadata; the published date from its "
    "metadata, `<time>` or URL (none if it has none); the canonical URL",
    load,
    isolated=True,
    media_types=("text/html", "application/xhtml+xml"),
)
