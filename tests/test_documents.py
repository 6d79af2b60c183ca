"""Loading articles: formats, dates, titles, stable ids, and bad input that is reported, never fatal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from rag import RAG
from rag.cli import main, run
from rag.errors import DocumentError
from rag.ingest.loaders import load_file, load_paths
from rag.ingest.loaders.common import make_title, parse_date
from rag.ingest.loaders.html import extract_article
from rag.store.embedding import Embedder
from rag.store.index import ArticleIndex
from rag.types import Document, content_hash

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
SEED_FILE = next(SEEDS.glob("*.txt"))
SEED_ID = SEED_FILE.name


def only_document(path: Path, doc_id: str | None = None) -> Document:
    result = load_file(path, doc_id)
    assert result.errors == [], [str(e) for e in result.errors]
    assert len(result.documents) == 1
    return result.documents[0]


def only_error(path: Path) -> DocumentError:
    result = load_file(path)
    assert result.documents == []
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return result.errors[0]


def write_jsonl(path: Path, *lines: object) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return path


class TestParseDate:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2020-10-08", dt.date(2020, 10, 8)),
            ("2022/06/12", dt.date(2022, 6, 12)),
            ("2021-3-4", dt.date(2021, 3, 4)),
            ("2021-03-04T10:00:00Z", dt.date(2021, 3, 4)),
            ("  2021-03-04 10:00:00+02:00 ", dt.date(2021, 3, 4)),
            (dt.datetime(2019, 1, 2, 23, 59), dt.date(2019, 1, 2)),
            (dt.date(2019, 1, 2), dt.date(2019, 1, 2)),
            (None, None),
            ("", None),
        ],
    )
    def test_accepts_feed_formats(self, value: object, expected: dt.date | None) -> None:
        assert parse_date(value) == expected

    @pytest.mark.parametrize("value", ["08.10.2020", "October 8, 2020", "yesterday", 20201008])
    def test_unrecognised_shape_says_which_format(self, value: object) -> None:
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            parse_date(value)

    @pytest.mark.parametrize("value", ["2020-13-01", "2020-02-30", "2020-00-10"])
    def test_impossible_calendar_date_is_rejected(self, value: str) -> None:
        with pytest.raises(ValueError):
            parse_date(value)


class TestMakeTitle:
    def test_first_non_empty_line(self) -> None:
        assert make_title("\n\n   \n  Armenia asks CSTO for help  \nBody text.") == "Armenia asks CSTO for help"

    def test_markdown_heading_markup_is_dropped(self) -> None:
        assert make_title("## Ceasefire agreed ##\n\nBody.") == "Ceasefire agreed"
        assert make_title("# Talks resume in Geneva\nBody.") == "Talks resume in Geneva"

    def test_long_first_line_is_cut_on_a_word_boundary(self) -> None:
        line = ("The minister said on Thursday that negotiations would resume, " * 4).strip()
        title = make_title(line + "\nSecond line.")
        assert title.endswith("…")
        assert len(title) <= 121
        stem = title[:-1]
        assert line.startswith(stem)
        assert line[len(stem)] in " ,"  # cut between words, trailing comma dropped
        assert not stem.endswith(",")

    def test_empty_text_has_no_title(self) -> None:
        assert make_title("  \n\n ") == ""


class TestContentHash:
    def test_stable_under_whitespace_and_line_ending_changes(self) -> None:
        text = "Zas said on Thursday.\n\nThe CSTO will help."
        assert content_hash(text) == content_hash("  Zas  said on\tThursday.\r\n\r\nThe CSTO   will help.\n")
        assert Document(id="a", text=text).content_hash == content_hash(text)

    def test_changes_when_words_change(self) -> None:
        assert content_hash("Zas said on Thursday.") != content_hash("Zas said on Friday.")

    def test_reloaded_file_with_other_whitespace_has_same_hash(self, tmp_path: Path) -> None:
        unix = tmp_path / "unix.txt"
        unix.write_text("date 2020-10-08\nHeadline\n\nFirst paragraph.\n", encoding="utf-8")
        dos = tmp_path / "dos.txt"
        dos.write_bytes(b"date 2020-10-08\r\nHeadline\r\n\r\n  First   paragraph.\r\n\r\n")
        assert only_document(unix).content_hash == only_document(dos).content_hash
        assert "\r" not in only_document(dos).text


class TestLoadFileText:
    def test_seed_article_date_prefix_on_the_first_line(self) -> None:
        doc = only_document(SEED_FILE)
        assert doc.id == SEED_ID
        assert doc.published == dt.date(2020, 10, 8)
        assert doc.text.startswith("The Collective Security Treaty Organization, which Armenia is a member of")
        assert "date 2020" not in doc.text
        assert doc.source == SEED_ID
        # The seed's first line is a whole paragraph, so the title is a truncated prefix of it.
        assert doc.title.startswith("The Collective Security Treaty Organization")
        assert doc.title.endswith("…")
        assert len(doc.title) <= 121
        assert "Stanislav Zas" in doc.text

    def test_date_line_on_its_own_line(self, tmp_path: Path) -> None:
        path = tmp_path / "story.txt"
        path.write_text("date 2021-05-06\n\nCeasefire holds in the south\n\nBoth sides said so.\n", encoding="utf-8")
        doc = only_document(path)
        assert doc.published == dt.date(2021, 5, 6)
        assert doc.title == "Ceasefire holds in the south"
        assert doc.text == "Ceasefire holds in the south\n\nBoth sides said so."

    def test_date_line_with_colon_and_slashes(self, tmp_path: Path) -> None:
        path = tmp_path / "story.txt"
        path.write_text("Date: 2022/06/12\nMarkets rally.\n", encoding="utf-8")
        doc = only_document(path)
        assert doc.published == dt.date(2022, 6, 12)
        assert doc.text == "Markets rally."

    def test_without_date_line_is_undated_and_keeps_all_text(self, tmp_path: Path) -> None:
        path = tmp_path / "story.txt"
        path.write_text("Dates are a fruit grown in Iraq.\nSecond line.", encoding="utf-8")
        doc = only_document(path)
        assert doc.published is None
        assert doc.text == "Dates are a fruit grown in Iraq.\nSecond line."
        assert doc.title == "Dates are a fruit grown in Iraq."

    def test_markdown_heading_is_the_title(self, tmp_path: Path) -> None:
        path = tmp_path / "note.md"
        path.write_text("date 2019-12-31\n# Year in review\n\nA busy *year*.\n", encoding="utf-8")
        doc = only_document(path)
        assert doc.title == "Year in review"
        assert doc.published == dt.date(2019, 12, 31)
        assert doc.text == "# Year in review\n\nA busy *year*."
        assert doc.id == "note.md"

    def test_markdown_suffix_and_upper_case_suffix(self, tmp_path: Path) -> None:
        path = tmp_path / "NOTE.MARKDOWN"
        path.write_text("### Short item\nText.", encoding="utf-8")
        assert only_document(path).title == "Short item"

    def test_utf8_bom_is_not_part_of_the_text(self, tmp_path: Path) -> None:
        path = tmp_path / "bom.txt"
        path.write_bytes("\ufeffdate 2020-01-02 Yerevan — Zas’ statement.".encode())
        doc = only_document(path)
        assert doc.published == dt.date(2020, 1, 2)
        assert doc.text == "Yerevan — Zas’ statement."

    def test_explicit_doc_id_wins(self, tmp_path: Path) -> None:
        path = tmp_path / "story.txt"
        path.write_text("Text.", encoding="utf-8")
        assert only_document(path, "world/story.txt").id == "world/story.txt"


PAGE = """<!doctype html>
<html><head>
  <title>Daily News | Talks resume</title>
  <meta property="article:published_time" content="2021-03-04T10:00:00Z">
  <style>body { color: red; }</style>
  <script>var tracking = "SCRIPT-TEXT";</script>
</head>
<body>
  <nav><a href="/">Home</a> <a href="/world">NAV-TEXT</a></nav>
  <div class="sidebar"><p>SIDEBAR-TEXT most read stories</p></div>
  <article>
    <h1>Talks resume in Geneva</h1>
    <p>Diplomats met on <b>Thursday</b> in Geneva.</p>
    <aside><p>ASIDE-TEXT related links</p></aside>
    <p>They agreed to meet again.</p>
    <ul><li>First point</li><li>Second point</li></ul>
    <script>console.log("INLINE-SCRIPT")</script>
  </article>
  <footer><p>FOOTER-TEXT copyright</p></footer>
</body></html>
"""


class TestFrontMatter:
    def test_front_matter_sets_title_date_url_and_source(self, tmp_path: Path) -> None:
        path = tmp_path / "story.md"
        path.write_text(
            '---\ntitle: "Talks resume"\ndate: 2022-03-04\nurl: https://example.org/t\nsource: Wire\n---\n'
            "Negotiators met again on Friday.\n",
            encoding="utf-8",
        )
        doc = only_document(path)
        assert (doc.title, doc.published, doc.url, doc.source) == (
            "Talks resume",
            dt.date(2022, 3, 4),
            "https://example.org/t",
            "Wire",
        )
        assert doc.text == "Negotiators met again on Friday."

    def test_bad_front_matter_date_names_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "story.md"
        path.write_text("---\ndate: last week\n---\nText.\n", encoding="utf-8")
        error = only_error(path)
        assert str(path) in error.message and "front matter" in error.message and error.hint


class TestLoadFileHtml:
    def test_article_text_without_boilerplate(self, tmp_path: Path) -> None:
        path = tmp_path / "page.html"
        path.write_text(PAGE, encoding="utf-8")
        doc = only_document(path)
        assert doc.text == (
            "Talks resume in Geneva\n\nDiplomats met on Thursday in Geneva.\n\n"
            "They agreed to meet again.\n\nFirst point\n\nSecond point"
        )
        for junk in ("SCRIPT-TEXT", "NAV-TEXT", "SIDEBAR-TEXT", "ASIDE-TEXT", "INLINE-SCRIPT", "FOOTER-TEXT", "color"):
            assert junk not in doc.text
        assert doc.title == "Talks resume in Geneva"
        assert doc.published == dt.date(2021, 3, 4)
        assert doc.id == "page.html"
        assert doc.source == "page.html"

    def test_meta_name_date_and_title_tag_fallback(self, tmp_path: Path) -> None:
        path = tmp_path / "page.htm"
        path.write_text(
            '<html><head><title>Budget passes</title><meta name="date" content="2018/07/01"></head>'
            "<body><main><p>Parliament voted.</p></main></body></html>",
            encoding="utf-8",
        )
        doc = only_document(path)
        assert doc.title == "Budget passes"
        assert doc.published == dt.date(2018, 7, 1)
        assert doc.text == "Parliament voted."

    def test_unparseable_meta_date_is_undated_not_an_error(self, tmp_path: Path) -> None:
        path = tmp_path / "page.html"
        path.write_text(
            '<html><head><meta name="date" content="last Tuesday"></head><body><p>Text here.</p></body></html>',
            encoding="utf-8",
        )
        doc = only_document(path)
        assert doc.published is None
        assert doc.title == "Text here."

    def test_text_outside_block_tags_is_kept(self) -> None:
        found = extract_article("<html><body><div>Loose text<br>second line</div></body></html>")
        assert found.text == "Loose text\nsecond line"
        assert found.title == "Loose text"  # no title on the page: its first line
        assert found.published is None

    def test_inline_tags_add_no_stray_spaces_and_br_is_a_line_break(self) -> None:
        found = extract_article("<p>Hello <b>world</b>. Line<br>break, <a href='#'>link</a>!</p>")
        assert found.text == "Hello world. Line\nbreak, link!"

    def test_page_without_readable_text_is_an_error(self, tmp_path: Path) -> None:
        path = tmp_path / "empty.html"
        path.write_text("<html><head><script>x()</script></head><body><nav>Home</nav></body></html>", encoding="utf-8")
        error = only_error(path)
        assert error.path == str(path)
        assert "no readable text" in error.message
        assert error.hint


class TestLoadFileJson:
    def test_jsonl_fields_and_extra_metadata(self, tmp_path: Path) -> None:
        path = write_jsonl(
            tmp_path / "feed.jsonl",
            {
                "id": "azatutyun-1",
                "title": "CSTO will help",
                "text": "Zas said on Thursday.\r\nMore text.",
                "url": "https://example.org/a",
                "source": "Azatutyun",
                "published": "2020-10-08T09:00:00+04:00",
                "author": "Staff",
                "tags": ["armenia", "csto"],
            },
        )
        doc = only_document(path)
        assert doc == Document(
            id="azatutyun-1",
            text="Zas said on Thursday.\nMore text.",
            title="CSTO will help",
            published=dt.date(2020, 10, 8),
            url="https://example.org/a",
            source="Azatutyun",
            metadata={"author": "Staff", "tags": ["armenia", "csto"]},
        )

    def test_id_falls_back_to_url_then_file_and_line(self, tmp_path: Path) -> None:
        path = write_jsonl(
            tmp_path / "feed.jsonl",
            {"text": "Has a url.", "url": "https://example.org/b"},
            "",
            {"text": "Has nothing.", "date": "2020-01-05"},
            {"doc_id": "legacy-7", "body": "Uses the body alias."},
        )
        result = load_file(path)
        assert result.errors == []
        ids = [d.id for d in result.documents]
        assert ids == ["https://example.org/b", "feed.jsonl#3", "legacy-7"]
        nothing = result.documents[1]
        assert nothing.published == dt.date(2020, 1, 5)
        assert nothing.title == "Has nothing."
        assert nothing.source == "feed.jsonl"
        assert nothing.url is None
        assert result.documents[2].text == "Uses the body alias."

    def test_null_published_falls_back_to_date(self, tmp_path: Path) -> None:
        path = write_jsonl(tmp_path / "feed.jsonl", {"text": "T.", "published": None, "date": "2020-01-02"})
        assert only_document(path).published == dt.date(2020, 1, 2)

    def test_upper_case_jsonl_suffix_is_still_line_delimited(self, tmp_path: Path) -> None:
        path = write_jsonl(tmp_path / "FEED.JSONL", {"text": "One."}, {"text": "Two."})
        result = load_file(path)
        assert [str(e) for e in result.errors] == []
        assert [d.id for d in result.documents] == ["FEED.JSONL#1", "FEED.JSONL#2"]

    def test_json_list_of_records(self, tmp_path: Path) -> None:
        path = tmp_path / "batch.json"
        path.write_text(
            json.dumps([{"id": "a", "text": "First."}, {"content": "Second.", "published": "2021-02-03"}]),
            encoding="utf-8",
        )
        result = load_file(path)
        assert result.errors == []
        assert [(d.id, d.text, d.published) for d in result.documents] == [
            ("a", "First.", None),
            ("batch.json#2", "Second.", dt.date(2021, 2, 3)),
        ]

    def test_bad_record_in_a_json_array_is_named_by_position(self, tmp_path: Path) -> None:
        path = tmp_path / "batch.json"
        path.write_text(json.dumps([{"text": "Fine."}, {"title": "no text"}, {"text": "Also fine."}]), encoding="utf-8")
        result = load_file(path)
        assert [d.id for d in result.documents] == ["batch.json#1", "batch.json#3"]
        [error] = result.errors
        assert error.message == f"{path}: record 2: record has no `text`"
        assert error.hint

    def test_single_json_object_takes_the_file_id(self, tmp_path: Path) -> None:
        path = tmp_path / "one.json"
        path.write_text(json.dumps({"title": "T", "text": "Body.", "section": "world"}), encoding="utf-8")
        doc = only_document(path)
        assert (doc.id, doc.title, doc.metadata) == ("one.json", "T", {"section": "world"})

    def test_malformed_line_does_not_lose_the_good_lines(self, tmp_path: Path) -> None:
        path = write_jsonl(
            tmp_path / "feed.jsonl",
            {"text": "Good one."},
            '{"text": "broken", ',
            {"text": "Good three."},
        )
        result = load_file(path)
        assert [d.id for d in result.documents] == ["feed.jsonl#1", "feed.jsonl#3"]
        assert len(result.errors) == 1
        error = result.errors[0]
        assert error.line == 2
        assert f"{path}:2" in str(error)
        assert "malformed JSON" in error.message
        assert error.hint


class TestLoadPaths:
    def test_single_file_id_is_its_name(self) -> None:
        result = load_paths([SEED_FILE])
        assert [d.id for d in result.documents] == [SEED_ID]

    def test_directory_ids_are_relative_paths(self, tmp_path: Path) -> None:
        (tmp_path / "corpus" / "world" / "europe").mkdir(parents=True)
        (tmp_path / "corpus" / "top.txt").write_text("Top story.", encoding="utf-8")
        (tmp_path / "corpus" / "world" / "europe" / "story.md").write_text("# Europe\nText.", encoding="utf-8")
        (tmp_path / "corpus" / ".hidden.txt").write_text("Hidden.", encoding="utf-8")
        (tmp_path / "corpus" / ".git").mkdir()
        (tmp_path / "corpus" / ".git" / "HEAD.txt").write_text("ref", encoding="utf-8")
        (tmp_path / "corpus" / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        result = load_paths([tmp_path / "corpus"])
        assert result.errors == []
        assert sorted(d.id for d in result.documents) == ["top.txt", "world/europe/story.md"]
        assert result.skipped == [str(tmp_path / "corpus" / "photo.png")]

    def test_ids_are_stable_when_the_directory_moves(self, tmp_path: Path) -> None:
        for name in ("a", "b"):
            (tmp_path / name / "sub").mkdir(parents=True)
            (tmp_path / name / "sub" / "x.txt").write_text("Same article.", encoding="utf-8")
        first = load_paths([tmp_path / "a"]).documents[0]
        moved = load_paths([str(tmp_path / "b")]).documents[0]
        assert first.id == moved.id == "sub/x.txt"
        assert first.content_hash == moved.content_hash

    def test_directory_with_bad_files_loads_the_good_ones(self, corpus_dir: Path) -> None:
        (corpus_dir / "empty.txt").write_bytes(b"")
        (corpus_dir / "latin1.txt").write_bytes("Caf\xe9 society, Yerevan.".encode("latin-1"))
        write_jsonl(corpus_dir / "feed.jsonl", {"text": "Good."}, "{oops", {"title": "no text"})
        (corpus_dir / "good.md").write_text("# Fine\nA fine article.", encoding="utf-8")
        result = load_paths([corpus_dir])
        assert sorted(d.id for d in result.documents) == sorted([SEED_ID, "good.md", "feed.jsonl#1"])
        reported = sorted((Path(e.path).name, e.line) for e in result.errors)
        assert reported == [("empty.txt", None), ("feed.jsonl", 2), ("feed.jsonl", 3), ("latin1.txt", None)]
        assert all(e.hint for e in result.errors)

    def test_missing_path_is_reported_with_the_others_loaded(self, tmp_path: Path) -> None:
        missing = tmp_path / "nope" / "gone.txt"
        result = load_paths([missing, SEED_FILE])
        assert [d.id for d in result.documents] == [SEED_ID]
        assert len(result.errors) == 1
        assert result.errors[0].path == str(missing)
        assert str(missing) in str(result.errors[0])
        assert "no such file" in result.errors[0].message
        assert result.errors[0].hint


BAD_FILES: list[tuple[str, bytes, str, int | None, str]] = [
    ("empty.txt", b"", "file is empty", None, "remove it"),
    ("blank.md", b"  \n\n\t \n", "file is empty", None, "remove it"),
    ("bom_only.txt", b"\xef\xbb\xbf\n", "file is empty", None, "remove it"),
    ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary", None, "JSON"),
    ("latin1.txt", "Café in Yerevan, señor.".encode("latin-1"), "not valid UTF-8 (byte 3)", None, "iconv"),
    ("baddate.txt", b"date 2020-13-45 Text follows.", "bad date line", 1, "YYYY-MM-DD"),
    ("dateonly.txt", b"date 2020-10-08\n\n", "no article text", None, "add the article text"),
    ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "unsupported file type .png", None, ".pdf"),
    ("scan.pdf", b"%PDF-1.4 text", "not a readable PDF", None, "again"),
    ("noext", b"Plain text without a suffix.", "unsupported file type (none)", None, ".txt"),
    ("notext.jsonl", b'{"id": "a", "text": "ok"}\n{"id": "b", "title": "no body"}\n', "no `text`", 2, "text"),
    ("blanktext.jsonl", b'{"text": "   "}\n', "no `text`", 1, "text"),
    ("baddate.jsonl", b'{"text": "ok", "published": "08/10/2020"}\n', "YYYY-MM-DD", 1, "published"),
    ("array.jsonl", b'["not", "an", "object"]\n', "not a JSON object", 1, "{...}"),
    ("broken.json", b'{\n  "text": "x",\n  oops\n}', "malformed JSON", 3, "syntax"),
    ("empty_list.json", b"[]", "no records", None, "text"),
    ("notext.json", b'{"title": "only a title"}', "no `text`", None, "text"),
]


class TestBadInput:
    @pytest.mark.parametrize(("name", "data", "problem", "line", "hint"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
    def test_error_names_the_file_and_line_and_says_how_to_fix(
        self, tmp_path: Path, name: str, data: bytes, problem: str, line: int | None, hint: str
    ) -> None:
        path = tmp_path / name
        path.write_bytes(data)
        errors = load_file(path).errors
        assert len(errors) == 1, [str(e) for e in errors]
        error = errors[0]
        assert isinstance(error, DocumentError)
        assert error.path == str(path)
        assert error.line == line
        where = f"{path}:{line}" if line else str(path)
        assert error.message.startswith(f"{where}: ")
        assert problem in error.message
        assert error.hint is not None
        assert hint in error.hint
        assert str(error) == f"{error.message} ({error.hint})"

    def test_bad_line_keeps_the_good_record_of_the_same_file(self, tmp_path: Path) -> None:
        path = tmp_path / "notext.jsonl"
        path.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "title": "no body"}\n')
        assert [d.id for d in load_file(path).documents] == ["a"]

    def test_unreadable_path_is_an_error_not_a_crash(self, tmp_path: Path) -> None:
        path = tmp_path / "folder.txt"
        path.mkdir()
        error = only_error(path)
        assert error.path == str(path)
        assert error.message == f"{path}: cannot read: Is a directory"
        assert error.hint


def _add_bad_files(folder: Path) -> dict[str, str]:
    """Bad files written into `folder`, by name, with the problem each must be reported for."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02garbage")
    (folder / "latin1.txt").write_bytes("Café".encode("latin-1"))
    (folder / "broken.jsonl").write_text('{"text": \n', encoding="utf-8")
    return {
        "empty.txt": "file is empty",
        "binary.txt": "binary",
        "latin1.txt": "UTF-8",
        "broken.jsonl": "malformed JSON",
    }


class TestIndexWithBadFiles:
    def test_good_files_are_indexed_and_bad_ones_reported(self, seeded: RAG, corpus_dir: Path) -> None:
        expected = _add_bad_files(corpus_dir)
        (corpus_dir / "new.txt").write_text(
            "date 2021-01-15\nArmenia and Azerbaijan exchanged prisoners of war on Friday.", encoding="utf-8"
        )
        result = seeded.index([corpus_dir])
        assert result.report.added == ["new.txt"]
        assert result.report.unchanged == [SEED_ID]
        assert result.report.chunks_added == 1
        problems = {Path(e.path).name: e.message for e in result.errors}
        assert problems.keys() == expected.keys()
        for name, problem in expected.items():
            assert problem in problems[name]
        on_disk = ArticleIndex.load(seeded.settings.index_dir)
        assert sorted(on_disk.documents) == sorted([SEED_ID, "new.txt"])
        passages = seeded.retrieve("When were prisoners of war exchanged?", k=1)
        assert passages[0].doc_id == "new.txt"

    def test_only_bad_files_leave_the_existing_index_intact(
        self, seeded: RAG, tmp_path: Path, embedder: Embedder
    ) -> None:
        before = ArticleIndex.load(seeded.settings.index_dir)
        expected = _add_bad_files(tmp_path / "bad")
        result = seeded.index([tmp_path / "bad", tmp_path / "missing.txt"])
        assert result.report.added == [] and result.report.chunks_added == 0
        assert len(result.errors) == len(expected) + 1

        after = ArticleIndex.load(seeded.settings.index_dir)
        assert list(after.documents) == [SEED_ID]
        assert len(after.chunks) == len(before.chunks) > 0
        assert after.manifest.generation == before.manifest.generation

        fresh = RAG(seeded.settings, embedder=embedder)
        answer = fresh.answer("Who is the Secretary General of the CSTO?")
        assert not answer.refused
        assert answer.passages[0].doc_id == SEED_ID
        assert "Zas" in " ".join(p.text for p in answer.passages[:2])

    def test_a_page_over_the_time_budget_is_stopped_and_the_rest_saved(self, pipeline: RAG, tmp_path: Path) -> None:
        """One tag with 100,000 attributes keeps trafilatura busy for minutes; read in the extraction worker,
        it is stopped at the budget, the worker starts again for the next page, and the run is saved."""
        folder = tmp_path / "pages"
        folder.mkdir()
        attributes = " ".join(f'a{i}="v{i}"' for i in range(100_000))
        (folder / "a-slow.html").write_text(f"<html><body><div {attributes}>Text.</div></body></html>")
        (folder / "b-good.html").write_text(
            "<html><head><title>Ferry strike</title></head><body><article><p>The ferry workers' union called "
            "a strike for Monday, stopping crossings to the islands.</p></article></body></html>"
        )
        (folder / "c-good.txt").write_text("date 2021-01-15\nThe harbour reopened after the storm.")
        pipeline.settings.index.max_extract_seconds = 5
        result = pipeline.index([folder])
        assert sorted(result.report.added) == ["b-good.html", "c-good.txt"]
        assert [Path(e.path).name for e in result.errors] == ["a-slow.html"]
        assert "took longer than 5 s, so it was stopped" in result.errors[0].message
        assert "RAG_MAX_EXTRACT_SECONDS" in (result.errors[0].hint or "")
        assert sorted(ArticleIndex.load(pipeline.settings.index_dir).documents) == ["b-good.html", "c-good.txt"]

    def test_first_index_from_only_bad_files_is_empty_but_valid(self, pipeline: RAG, tmp_path: Path) -> None:
        _add_bad_files(tmp_path / "bad")
        result = pipeline.index([tmp_path / "bad"])
        assert len(result.errors) == 4
        index = ArticleIndex.load(pipeline.settings.index_dir)
        assert index.documents == {} and index.chunks == {}


@pytest.fixture
def cli_embedder(monkeypatch: pytest.MonkeyPatch, embedder: Embedder) -> Embedder:
    """The CLI builds its own `RAG`; hand it the session's (real) model instead of loading a second copy."""
    monkeypatch.setattr("rag.pipeline.store.Embedder", lambda *args, **kwargs: embedder)
    return embedder


@pytest.mark.usefixtures("cli_embedder")
class TestCliErrors:
    def test_index_with_a_bad_file_exits_1_and_names_it(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        folder = tmp_path / "articles"
        folder.mkdir()
        (folder / "good.txt").write_text("date 2021-01-15\nPrisoners were exchanged on Friday.", encoding="utf-8")
        bad = folder / "latin1.txt"
        bad.write_bytes("Café".encode("latin-1"))
        code = run(["--quiet", "--index-dir", str(tmp_path / "idx"), "index", str(folder)])
        out, err = capsys.readouterr()
        assert code == 1
        assert "1 added" in out
        assert f"error: {bad}: not valid UTF-8" in err
        assert "iconv" in err
        assert ArticleIndex.load(tmp_path / "idx").documents.keys() == {"good.txt"}

    def test_index_of_a_missing_path_exits_1(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        missing = tmp_path / "no-such-dir"
        code = run(["--quiet", "--index-dir", str(tmp_path / "idx"), "index", str(missing)])
        err = capsys.readouterr().err
        assert code == 1
        assert f"error: {missing}: no such file or directory" in err

    def test_clean_index_exits_0(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        article = tmp_path / "short.md"
        article.write_text("# Short\nThe summit ended on Sunday.", encoding="utf-8")
        code = run(["--quiet", "--index-dir", str(tmp_path / "idx"), "index", str(article)])
        out, err = capsys.readouterr()
        assert code == 0
        assert "1 added" in out
        assert "error" not in err

    @pytest.mark.parametrize("question", ["", "   \n"])
    def test_empty_question_prints_error_and_fix_and_exits_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], question: str
    ) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["--quiet", "--index-dir", str(tmp_path / "idx"), "ask", question])
        assert exit_info.value.code == 2
        err_lines = capsys.readouterr().err.splitlines()
        assert err_lines[0] == "error: the question is empty"
        assert err_lines[1].startswith("  fix: ")
        assert "rag ask" in err_lines[1]


def test_readme_lists_every_format_as_the_loaders_describe_it() -> None:
    from rag.ingest.loaders import formats_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert formats_table() in readme, "regenerate the README's table with rag.ingest.loaders.formats_table()"
