"""Saved HTML article pages: the main text (`<article>`/`<main>`; scripts, styles, navigation, headers and
footers dropped) through a real HTML parser, the `<h1>` or `<title>`, and `article:published_time`."""

from __future__ import annotations

from collections.abc import Iterator

from rag.errors import DocumentError
from rag.loaders.common import make_title, parse_date, read_text
from rag.types import Document, Format, Source


def html_to_text(html: str) -> tuple[str, str, str | None]:
    """Main text, title and published-time meta of a page: scripts, styles and navigation are not article."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    meta = soup.find("meta", attrs={"property": "article:published_time"}) or soup.find("meta", attrs={"name": "date"})
    date_value = meta.get("content") if meta is not None else None
    for tag in soup(["script", "style", "noscript", "nav", "header", "footer", "aside", "form", "template"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with(" ")  # text is joined without separators so inline tags add no stray spaces
    root = soup.find("article") or soup.find("main") or soup.body or soup
    blocks = [
        " ".join(el.get_text().split())
        for el in root.find_all(["h1", "h2", "h3", "h4", "p", "li", "blockquote", "pre"])
        if not el.find_parent(["p", "li", "blockquote"])
    ]
    text = "\n\n".join(block for block in blocks if block)
    if not text:
        text = "\n".join(line.strip() for line in root.get_text("\n").splitlines() if line.strip())
    h1 = root.find("h1")
    return (
        text,
        (h1.get_text(" ", strip=True) if h1 else "") or title,
        str(date_value) if date_value else None,
    )


def load(source: Source) -> Iterator[Document]:
    text, title, date_value = html_to_text(read_text(source))
    if not text.strip():
        raise DocumentError(source.path, "HTML page has no readable text", hint="check that it is an article page")
    try:
        published = parse_date(date_value)
    except ValueError:
        published = None
    yield Document(
        id=source.doc_id, text=text, title=title or make_title(text), published=published, source=source.path.name
    )


FORMAT = Format(
    (".html", ".htm"),
    "the main text (`<article>`/`<main>`, scripts, styles, navigation, headers and footers dropped) via a real "
    "HTML parser; `<h1>`/`<title>`; `article:published_time`",
    load,
)
