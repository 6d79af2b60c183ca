"""Main text from article pages (trafilatura) and PDFs (pypdf).

Extraction quality is measured, not spot-checked: over 120 realistic news pages built around real RealTime
QA articles (tests/news_pages.py), how much of the article is kept and how much of the clutter around it
(menus, cookie banners, ads, newsletter boxes, related lists, comments, footers) is dropped, and whether
the title and date come out right. The numbers are printed (`pytest -s`) and written to extraction.json
in the test's temporary directory. Those tests need ../shared/evaldata: without it they are skipped on a
developer machine and fail in CI (the environment variable CI set). The PDF tests generate their files
with fpdf2 and always run.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rag import RAG
from rag.errors import DocumentError
from rag.ingest.loaders import FORMATS, load_file
from rag.ingest.loaders.html import Extracted, extract_article
from rag.types import Document, Source
from tests.news_pages import CORPUS, Page, article_page, real_articles

N_PAGES = 120
UNDATED_EVERY = 5
"""Every fifth page carries no date at all: its extracted date must be None."""

needs_corpus = pytest.mark.skipif(
    not CORPUS.exists() and not os.environ.get("CI"),
    reason=f"{CORPUS} not found: the extraction measurements need the RealTime QA corpus (../shared/evaldata)",
)


def normalized(text: str) -> str:
    return " ".join(text.lower().split())


def page_url(page_number: int, title: str) -> str:
    """A URL without a date in it, so a page's date can only come from the page itself."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]
    return f"https://news.example/story/{page_number}-{slug}"


def articles(n: int, seed: int) -> list[dict[str, Any]]:
    if not CORPUS.exists():  # only reached in CI, where the data must be there
        pytest.fail(f"{CORPUS} is missing: the extraction measurements need ../shared/evaldata (see its README)")
    return real_articles(n, seed=seed)


def build_pages(n: int = N_PAGES, seed: int = 0) -> list[Page]:
    rng = random.Random(seed)
    return [
        article_page(article, page_url(i, article["title"]), rng, with_date=i % UNDATED_EVERY != UNDATED_EVERY - 1)
        for i, article in enumerate(articles(n, seed))
    ]


def measure(pages: list[Page]) -> dict[str, Any]:
    """Kept and dropped shares over all sentences of all pages (a long article weighs more than a short
    one, as it does for a reader), the worst page of each, and title and date accuracy."""
    rows: list[dict[str, Any]] = []
    for number, page in enumerate(pages):
        found = extract_article(page.html)
        text = normalized(found.text)
        kept = sum(normalized(s) in text for s in page.article_sentences)
        leaked = [s for s in page.boilerplate_sentences if normalized(s) in text]
        blocks = set(found.text.split("\n\n"))
        rows.append(
            {
                "page": number,
                "template": page.template,
                "article_sentences": len(page.article_sentences),
                "kept": kept,
                "boilerplate_sentences": len(page.boilerplate_sentences),
                "leaked": leaked,
                "paragraphs": len(page.paragraphs),
                "paragraphs_exact": sum(p in blocks for p in page.paragraphs),
                "title_ok": found.title == page.title,
                "title": found.title,
                "expected_title": page.title,
                "dated": page.published is not None,
                "date_ok": found.published == page.published,
                "published": found.published.isoformat() if found.published else None,
                "expected_published": page.published.isoformat() if page.published else None,
                "method": found.method,
            }
        )
    article = sum(r["article_sentences"] for r in rows)
    boilerplate = sum(r["boilerplate_sentences"] for r in rows)
    dated = [r for r in rows if r["dated"]]
    undated = [r for r in rows if not r["dated"]]
    worst_keep = min(rows, key=lambda r: r["kept"] / r["article_sentences"])
    worst_drop = max(rows, key=lambda r: len(r["leaked"]) / r["boilerplate_sentences"])
    return {
        "pages": len(rows),
        "templates": dict(Counter(r["template"] for r in rows)),
        "method": rows[0]["method"],
        "article_sentences": article,
        "boilerplate_sentences": boilerplate,
        "kept": sum(r["kept"] for r in rows) / article,
        "dropped": 1 - sum(len(r["leaked"]) for r in rows) / boilerplate,
        "paragraphs_exact": sum(r["paragraphs_exact"] for r in rows) / sum(r["paragraphs"] for r in rows),
        "worst_keep_page": {"page": worst_keep["page"], "template": worst_keep["template"],
                            "kept": worst_keep["kept"] / worst_keep["article_sentences"]},
        "worst_drop_page": {"page": worst_drop["page"], "template": worst_drop["template"],
                            "dropped": 1 - len(worst_drop["leaked"]) / worst_drop["boilerplate_sentences"],
                            "leaked": worst_drop["leaked"]},
        "title_accuracy": sum(r["title_ok"] for r in rows) / len(rows),
        "date_accuracy_dated": sum(r["date_ok"] for r in dated) / len(dated),
        "undated_pages": len(undated),
        "undated_without_date": sum(r["published"] is None for r in undated) / len(undated),
        "min_boilerplate_per_page": min(r["boilerplate_sentences"] for r in rows),
        "rows": rows,
    }  # fmt: skip


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = measure(build_pages())
    summary = {key: value for key, value in result.items() if key != "rows"}
    out = tmp_path_factory.mktemp("extraction") / "extraction.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"\nextraction over {result['pages']} real-article pages ({out}):")
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return result


@needs_corpus
class TestMeasuredOnRealArticles:
    def test_pages_are_varied_and_cluttered(self, measured: dict[str, Any]) -> None:
        assert measured["pages"] >= 100
        assert len(measured["templates"]) >= 4
        assert measured["min_boilerplate_per_page"] >= 15
        assert measured["undated_pages"] >= 20

    def test_article_sentences_are_kept(self, measured: dict[str, Any]) -> None:
        assert measured["kept"] >= 0.95, measured["worst_keep_page"]

    def test_boilerplate_sentences_are_dropped(self, measured: dict[str, Any]) -> None:
        assert measured["dropped"] >= 0.95, measured["worst_drop_page"]

    def test_paragraphs_come_back_as_blank_line_separated_blocks(self, measured: dict[str, Any]) -> None:
        assert measured["paragraphs_exact"] >= 0.95

    def test_titles(self, measured: dict[str, Any]) -> None:
        wrong = [(r["title"], r["expected_title"]) for r in measured["rows"] if not r["title_ok"]]
        assert measured["title_accuracy"] >= 0.95, wrong[:5]

    def test_dates_are_the_pages_own_and_undated_pages_stay_undated(self, measured: dict[str, Any]) -> None:
        wrong = [(r["published"], r["expected_published"]) for r in measured["rows"] if not r["date_ok"]]
        assert measured["date_accuracy_dated"] >= 0.95, wrong[:5]
        assert measured["undated_without_date"] == 1.0, wrong[:5]

    def test_extraction_is_named_for_provenance(self, measured: dict[str, Any]) -> None:
        assert re.fullmatch(r"trafilatura \d+\.\d+\.\d+", measured["method"])

    def test_a_saved_page_through_load_file(self, tmp_path: Path) -> None:
        rng = random.Random(7)
        article = articles(1, seed=7)[0]
        url = page_url(1, article["title"])
        page = article_page(article, url, rng)
        while page.template != "semantic":  # the template with canonical, og: and author metadata
            page = article_page(article, url, rng)
        path = tmp_path / "saved-page.html"
        path.write_text(page.html, encoding="utf-8")
        result = load_file(path)
        assert result.errors == []
        [doc] = result.documents
        assert (doc.id, doc.title, doc.published, doc.url, doc.source) == (
            "saved-page.html", page.title, page.published, page.url, page.site_name
        )  # fmt: skip
        assert doc.metadata["author"] == page.author
        assert doc.metadata["site_name"] == page.site_name
        assert doc.metadata["extraction"].startswith("trafilatura ")
        assert doc.text.split("\n\n") == page.paragraphs
        for sentence in page.boilerplate_sentences:
            assert normalized(sentence) not in normalized(doc.text)


BODY = "<p>" + "The council approved the new budget after a long debate about school funding and roads. " * 4 + "</p>"


def page(head: str = "", before: str = "", after: str = "") -> str:
    return (
        f"<html><head><title>Budget approved</title>{head}</head><body><article><h1>Budget approved</h1>"
        f"{before}{BODY}</article>{after}</body></html>"
    )


class TestPageDates:
    """Only the page's own statement of its date counts; a page without one is undated, never today's."""

    @pytest.mark.parametrize(
        ("html", "expected"),
        [
            pytest.param(page(after="<footer><p>© 2021 The Daily Ledger. All rights reserved.</p></footer>"),
                         None, id="no date at all, a copyright year in the footer"),
            pytest.param(page(after="<div class='comments'><p>I was at the March 3, 2021 meeting myself.</p></div>"),
                         None, id="only a date in a comment"),
            pytest.param(page(before="<p>The previous budget, passed on June 12, 2019, was smaller.</p>"),
                         None, id="only an earlier event's date in the text"),
            pytest.param(page(head="<meta property='article:published_time' content='2022-06-12T23:30:00-04:00'>"),
                         dt.date(2022, 6, 12), id="article:published_time only"),
            pytest.param(page(before="<p class='byline'>By Ann Lee <time datetime='2020-02-03T10:00:00Z'>Feb. 3, "
                                     "2020</time></p>"),
                         dt.date(2020, 2, 3), id="a <time datetime> in the byline"),
            pytest.param(page(head="<meta property='article:modified_time' content='2022-07-01'>"
                                   "<meta property='article:published_time' content='2022-06-12'>"),
                         dt.date(2022, 6, 12), id="published wins over modified"),
            pytest.param(page(head="<link rel='canonical' href='https://x.example/2021/05/06/budget.html'>"
                                   "<meta property='article:published_time' content='2021-05-05T23:50:00Z'>"),
                         dt.date(2021, 5, 5), id="the page's metadata wins over the URL"),
            pytest.param(page(head="<link rel='canonical' href='https://x.example/2021/05/06/budget.html'>"),
                         dt.date(2021, 5, 6), id="a dated URL when the page states nothing"),
        ],
    )  # fmt: skip
    def test_date(self, html: str, expected: dt.date | None) -> None:
        assert extract_article(html).published == expected

    def test_undated_page_file_is_undated(self, tmp_path: Path) -> None:
        path = tmp_path / "undated.html"
        path.write_text(page(after="<footer><p>© 2023 Metro Herald</p></footer>"), encoding="utf-8")
        [doc] = load_file(path).documents
        assert doc.published is None


class TestExtractArticle:
    def test_metadata_and_paragraphs(self) -> None:
        html = (
            "<html><head><title>Bridge reopens | Valley Gazette</title>"
            "<meta property='og:site_name' content='Valley Gazette'><meta name='author' content='Ann Lee'>"
            "<link rel='canonical' href='https://valleygazette.example/news/bridge'></head><body>"
            "<nav><a href='/'>Home</a><a href='/news'>News</a></nav><article><h1>Bridge reopens</h1>"
            "<p>The old bridge reopened on Monday after two years of repairs.</p>"
            "<p>Traffic was light in the morning.<br>Officials expect more by the weekend.</p></article>"
            "</body></html>"
        )
        found = extract_article(html, "https://valleygazette.example/news/bridge?utm_source=feed")
        assert found == Extracted(
            text="Bridge reopens\n\nThe old bridge reopened on Monday after two years of repairs.\n\n"
            "Traffic was light in the morning.\nOfficials expect more by the weekend.",
            title="Bridge reopens",
            author="Ann Lee",
            published=None,
            site_name="Valley Gazette",
            method=found.method,
            url="https://valleygazette.example/news/bridge",
        )

    def test_bytes_are_decoded_as_the_page_declares(self) -> None:
        html = (
            "<html><head><meta charset='iso-8859-1'><title>Café closes</title></head><body><article>"
            "<p>The café on the corner closed after forty years, its owner said on Monday.</p></article></body></html>"
        )
        found = extract_article(html.encode("latin-1"), "https://x.example/news/cafe")
        assert "The café on the corner closed" in found.text
        assert found.url == "https://x.example/news/cafe"

    @pytest.mark.parametrize("html", ["", b"", b"\x00\x01", "<html><body><nav>Home</nav><script>x()</script></body>"])
    def test_nothing_readable_is_empty_text_not_an_exception(self, html: str | bytes) -> None:
        found = extract_article(html)
        assert found.text == "" and found.published is None and found.method.startswith("trafilatura")

    def test_loader_metadata_holds_only_what_the_page_gives(self, tmp_path: Path) -> None:
        path = tmp_path / "plain.html"
        path.write_text(page(), encoding="utf-8")
        [doc] = load_file(path).documents
        assert doc.source == "plain.html" and doc.url is None
        assert list(doc.metadata) == ["extraction"]


# PDFs ------------------------------------------------------------------------------------------------------

RELEASE = [
    [
        "The harbour authority named Mirela Vasquez chief inspector on Tuesday, ending a search that lasted "
        "nine months and drew more than forty applicants from four countries.",
        "Vasquez previously led the port's safety division for six years.",
        "Cargo volumes rose by a fifth in the first half of the year, the authority said.",
    ],
    [
        "The new inspector starts on the first of March and reports to the harbour board.",
        "Contact: press office, harbour authority.",
    ],
]


def text_pdf(pages: list[list[str]], *, running_head: str | None = "Harbour Authority - Press release") -> Any:
    """An fpdf2 document of paragraphs (spaced as a word processor spaces them), one list per page, with a
    running head and a page-number footer on every page."""
    from fpdf import FPDF

    class Release(FPDF):
        def header(self) -> None:
            if running_head:
                self.set_font("helvetica", size=8)
                self.cell(0, 5, running_head, new_x="LMARGIN", new_y="NEXT")
                self.ln(4)
            self.set_font("helvetica", size=11)

        def footer(self) -> None:
            self.set_y(-15)
            self.set_font("helvetica", size=8)
            self.cell(0, 10, f"Page {self.page_no()} of {{nb}}", align="C")

    pdf = Release()
    for paragraphs in pages:
        pdf.add_page()
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    return pdf


def pdf_bytes(pdf: Any, info: dict[str, str] | None = None) -> bytes:
    """The document's bytes; with `info`, its information dictionary replaced by exactly that."""
    data = bytes(pdf.output())
    if info is None:
        return data
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(data))
    writer.metadata = None
    if info:
        writer.add_metadata(info)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def only_document(path: Path) -> Document:
    result = load_file(path)
    assert result.errors == [], [str(e) for e in result.errors]
    [doc] = result.documents
    return doc


def only_error(path: Path) -> DocumentError:
    result = load_file(path)
    assert result.documents == []
    [error] = result.errors
    assert error.path == str(path) and error.hint
    return error


def scanned_pdf() -> bytes:
    """A page holding only a picture of text, as a scanner makes it."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    image = Image.new("L", (600, 300), 255)
    ImageDraw.Draw(image).text((20, 20), "The harbour authority named a chief inspector.", fill=0)
    pdf = FPDF()
    pdf.add_page()
    pdf.image(image, x=10, y=10, w=190)
    return bytes(pdf.output())


class TestPdf:
    def test_pdf_is_a_registered_format(self) -> None:
        assert ".pdf" in FORMATS and "scanned" in FORMATS[".pdf"].description

    def test_two_page_release_with_title_author_and_creation_date(self, tmp_path: Path) -> None:
        pdf = text_pdf(RELEASE)
        pdf.set_title("Harbour authority names chief inspector")
        pdf.set_author("Harbour Authority press office")
        pdf.set_creation_date(dt.datetime(2021, 2, 3, 9, 30, tzinfo=dt.timezone.utc))
        doc = only_document(write(tmp_path / "release.pdf", pdf_bytes(pdf)))
        assert doc.title == "Harbour authority names chief inspector"
        assert doc.published == dt.date(2021, 2, 3)
        assert doc.id == doc.source == "release.pdf"
        assert doc.metadata["author"] == "Harbour Authority press office"
        assert doc.metadata["pages"] == 2 and doc.metadata["extraction"].startswith("pypdf ")
        # Every paragraph whole (wrapped lines joined), in order, and nothing else: the running head
        # and the page numbers are layout.
        assert doc.text.split("\n\n") == [p for page in RELEASE for p in page]

    def test_a_paragraph_over_a_page_break_is_not_cut(self, tmp_path: Path) -> None:
        sentences = [
            f"Ship number {i} unloaded grain, timber and steel at the north quay on the night shift." for i in range(70)
        ]
        doc = only_document(write(tmp_path / "long.pdf", pdf_bytes(text_pdf([[" ".join(sentences)]]))))
        assert doc.metadata["pages"] >= 2
        for sentence in sentences:
            assert sentence in doc.text  # no line break, running head or page number inside a sentence
        assert "Page 1" not in doc.text and "Press release" not in doc.text

    def test_without_a_title_the_first_line_is_the_title(self, tmp_path: Path) -> None:
        doc = only_document(write(tmp_path / "untitled.pdf", pdf_bytes(text_pdf(RELEASE[:1], running_head=None), {})))
        assert doc.title.startswith("The harbour authority named Mirela Vasquez")
        assert doc.published is None  # no dates in the metadata: undated, never today
        assert "author" not in doc.metadata

    def test_a_title_that_is_only_the_file_name_is_ignored(self, tmp_path: Path) -> None:
        data = pdf_bytes(text_pdf(RELEASE[:1], running_head=None), {"/Title": "Microsoft Word - release_v3.docx"})
        assert only_document(write(tmp_path / "word.pdf", data)).title.startswith("The harbour authority")

    @pytest.mark.parametrize(
        ("info", "expected"),
        [
            ({"/CreationDate": "D:20210203093000Z", "/ModDate": "D:20230101120000Z"}, dt.date(2021, 2, 3)),
            ({"/ModDate": "D:20230101120000+02'00'"}, dt.date(2023, 1, 1)),
            ({"/CreationDate": "not a date", "/ModDate": "D:20230101"}, dt.date(2023, 1, 1)),
            ({"/CreationDate": "garbage"}, None),
        ],
        ids=["creation wins over modification", "modification alone", "bad creation date", "only a bad date"],
    )
    def test_date_is_the_creation_date_else_the_modification_date(
        self, tmp_path: Path, info: dict[str, str], expected: dt.date | None
    ) -> None:
        data = pdf_bytes(text_pdf(RELEASE[:1]), info)
        assert only_document(write(tmp_path / "dated.pdf", data)).published == expected

    def test_scanned_pdf_is_reported_not_indexed_empty(self, tmp_path: Path) -> None:
        error = only_error(write(tmp_path / "scan.pdf", scanned_pdf()))
        assert "no text layer" in error.problem and "OCR" in (error.hint or "")

    @pytest.mark.parametrize(
        ("name", "damage", "problem"),
        [
            ("truncated.pdf", lambda data: data[: len(data) // 2], "not a readable PDF"),
            ("garbage.pdf", lambda data: b"%PDF-1.7\n" + bytes(range(256)) * 40, "not a readable PDF"),
            ("header-only.pdf", lambda data: b"%PDF-1.4 text", "not a readable PDF"),
            ("page.pdf", lambda data: b"<html><body>Not found</body></html>", "not a PDF"),
            ("empty.pdf", lambda data: b"", "empty"),
        ],
    )
    def test_damaged_files_are_errors_not_crashes(self, tmp_path: Path, name: str, damage: Any, problem: str) -> None:
        good = pdf_bytes(text_pdf(RELEASE))
        assert problem in only_error(write(tmp_path / name, damage(good))).problem

    def test_password_protected_pdf_is_a_clear_error(self, tmp_path: Path) -> None:
        pdf = text_pdf(RELEASE[:1])
        pdf.set_encryption(owner_password="owner", user_password="reader")
        error = only_error(write(tmp_path / "locked.pdf", pdf_bytes(pdf)))
        assert "encrypted with a password" in error.problem and "qpdf" in (error.hint or "")

    def test_pdf_restricted_without_a_password_to_open_is_read(self, tmp_path: Path) -> None:
        pdf = text_pdf(RELEASE[:1])
        pdf.set_encryption(owner_password="owner")  # copy/print restrictions only, as many releases have
        assert "Mirela Vasquez" in only_document(write(tmp_path / "restricted.pdf", pdf_bytes(pdf))).text

    def test_size_limit_holds_for_bytes_that_never_were_a_file(self) -> None:
        data = pdf_bytes(text_pdf(RELEASE))
        source = Source(io.BytesIO(data), Path("fetched.pdf"), "fetched.pdf", max_bytes=len(data) - 1)
        with pytest.raises(DocumentError, match="over the"):
            list(FORMATS[".pdf"].load(source))
        source = Source(io.BytesIO(data), Path("fetched.pdf"), "fetched.pdf", max_bytes=len(data))
        [doc] = FORMATS[".pdf"].load(source)
        assert isinstance(doc, Document) and "Mirela Vasquez" in doc.text

    def test_index_keeps_the_good_pdf_and_reports_the_scanned_one(self, pipeline: RAG, tmp_path: Path) -> None:
        folder = tmp_path / "releases"
        folder.mkdir()
        pdf = text_pdf(RELEASE)
        pdf.set_title("Harbour authority names chief inspector")
        write(folder / "good.pdf", pdf_bytes(pdf))
        write(folder / "scan.pdf", scanned_pdf())
        result = pipeline.index([folder])
        assert result.report.added == ["good.pdf"]
        assert [(Path(e.path).name, e.problem) for e in result.errors] == [
            ("scan.pdf", "has no text layer (a scanned PDF?)")
        ]
        passages = pipeline.retrieve("Who was named chief inspector?", k=1)
        assert passages[0].doc_id == "good.pdf" and "Vasquez" in passages[0].text
