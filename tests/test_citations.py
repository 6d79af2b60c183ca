"""Citation parsing, cleaning (including while streaming), quoting and attribution: pure logic over
hand-made passages, so each rule is pinned by an exact expected value."""

from __future__ import annotations

import datetime as dt

import pytest

from rag.answering.citations import CitationStreamFilter, attribute, check_claims, clean_citations, extract_citations
from rag.answering.evidence import EvidencePool
from rag.store.embedding import Embedder
from rag.types import Chunk, Passage


def passage(text: str, rank: int = 1, start: int = 0) -> Passage:
    chunk = Chunk(
        doc_id=f"doc{rank}",
        ordinal=0,
        text=text,
        start=start,
        end=start + len(text),
        n_tokens=len(text.split()),
        title=f"Title {rank}",
        published=dt.date(2020, 10, rank),
        id=rank,
    )
    return Passage(chunk=chunk, score=1.0 / rank, rank=rank)


PASSAGES = [
    passage("Stanislav Zas is the Secretary General of the CSTO. He spoke on Thursday.", 1, 100),
    passage("Putin gave an interview to Russia-1 on Wednesday. He urged a ceasefire.", 2),
    passage("Zakharova is the spokesperson of the Russian Foreign Ministry.", 3),
]


class TestCleanCitations:
    @pytest.mark.parametrize(
        ("text", "expected", "invalid"),
        [
            ("Zas leads it [1].", "Zas leads it [1].", []),
            ("Both [1, 3].", "Both [1][3].", []),
            ("Both [1][3].", "Both [1][3].", []),
            ("Semicolons [2; 3].", "Semicolons [2][3].", []),
            ("Made up [7].", "Made up.", [7]),
            ("Mixed [2, 9].", "Mixed [2].", [9]),
            ("Zero [0] and [4].", "Zero and.", [0, 4]),
            ("Repeated [1, 1].", "Repeated [1].", []),
            ("A list [a] stays.", "A list [a] stays.", []),
        ],
    )
    def test_rewrites_markers(self, text: str, expected: str, invalid: list[int]) -> None:
        assert clean_citations(text, 3) == (expected, invalid)


class TestCitationStreamFilter:
    def test_split_marker_is_held_back_until_closed(self) -> None:
        filt = CitationStreamFilter(2)
        pieces = ["Zas leads ", "the bloc [", "1", ", 5", "] and more [", "2]."]
        out = [filt.feed(p) for p in pieces] + [filt.flush()]
        assert out[1] == "the bloc "
        assert "".join(out) == "Zas leads the bloc [1] and more [2]."
        assert filt.invalid == [5]

    def test_unclosed_bracket_is_flushed(self) -> None:
        filt = CitationStreamFilter(2)
        assert filt.feed("Price [") == "Price "
        assert filt.flush() == "["

    def test_streamed_equals_cleaned_whole(self) -> None:
        text = "One [1]. Two [3, 2]. Three [4][2]."
        filt = CitationStreamFilter(3)
        streamed = "".join(filt.feed(ch) for ch in text) + filt.flush()
        assert streamed == clean_citations(text, 3)[0]
        assert filt.invalid == [4]


class TestExtractCitations:
    def test_quote_is_the_supporting_sentence_with_document_span(self) -> None:
        citations = extract_citations("The Secretary General is Stanislav Zas [1].", EvidencePool(PASSAGES))
        assert len(citations) == 1
        c = citations[0]
        assert c.number == 1 and c.passage is PASSAGES[0]
        assert c.quote == "Stanislav Zas is the Secretary General of the CSTO."
        assert (c.quote_start, c.quote_end) == (100, 100 + len(c.quote))
        assert c.claim == "The Secretary General is Stanislav Zas"

    def test_adjacent_markers_share_the_claim(self) -> None:
        citations = extract_citations("Putin urged a ceasefire and Zakharova spoke [2][3].", EvidencePool(PASSAGES))
        assert [c.number for c in citations] == [2, 3]
        assert citations[0].claim == citations[1].claim
        assert citations[0].quote == "He urged a ceasefire."

    def test_each_claim_gets_its_own_citation(self) -> None:
        text = "Zas leads the CSTO [1]. Putin urged a ceasefire [2]. Zas spoke on Thursday [1]."
        citations = extract_citations(text, EvidencePool(PASSAGES))
        assert [(c.number, c.quote) for c in citations] == [
            (1, "Stanislav Zas is the Secretary General of the CSTO."),
            (2, "He urged a ceasefire."),
            (1, "He spoke on Thursday."),
        ]

    def test_out_of_range_numbers_are_ignored(self) -> None:
        assert extract_citations("Nothing [9].", EvidencePool(PASSAGES)) == []

    def test_to_json_names_the_article(self) -> None:
        data = extract_citations("Zakharova is the spokesperson [3].", EvidencePool(PASSAGES))[0].to_json()
        assert data["title"] == "Title 3" and data["published"] == "2020-10-03" and data["doc_id"] == "doc3"


class TestAttribute:
    def test_uncited_restatement_gets_cited(self) -> None:
        text = "The Secretary General of the CSTO is Stanislav Zas. Paris is lovely in spring."
        assert attribute(text, EvidencePool(PASSAGES)) == (
            "The Secretary General of the CSTO is Stanislav Zas [1]. Paris is lovely in spring."
        )

    def test_cited_sentences_are_left_alone(self) -> None:
        text = "Zakharova is the spokesperson of the Russian Foreign Ministry [2]."
        assert attribute(text, EvidencePool(PASSAGES)) == text


class TestCheckClaims:
    def test_each_sentence_is_matched_to_the_passage_it_cites(self, embedder: Embedder) -> None:
        pool = EvidencePool(PASSAGES, embedder.embed)
        text = (
            "Stanislav Zas [1]. Zas said the CSTO would send troops to Paris [1]. "
            "Zakharova is the spokesperson of the Russian Foreign Ministry. [3]"
        )
        claims = check_claims(text, pool)
        assert [c.text for c in claims] == [
            "Stanislav Zas.",
            "Zas said the CSTO would send troops to Paris.",
            "Zakharova is the spokesperson of the Russian Foreign Ministry.",
        ]
        assert [c.supported for c in claims] == [True, False, True]
        assert claims[2].citations == (3,), "a marker after the full stop belongs to the sentence before"
        assert text[claims[1].start : claims[1].end] == "Zas said the CSTO would send troops to Paris [1]."
        assert claims[0].quote.startswith("Stanislav Zas is the Secretary General")

    def test_uncited_sentences_and_wrong_passages_are_unsupported(self, embedder: Embedder) -> None:
        pool = EvidencePool(PASSAGES, embedder.embed)
        claims = check_claims("Stanislav Zas leads the CSTO. Stanislav Zas leads the CSTO [2].", pool)
        assert [(c.citations, c.supported) for c in claims] == [((), False), ((2,), False)]

    def test_a_bare_verdict_is_supported_by_its_citations(self) -> None:
        (claim,) = check_claims("Yes [1][2].", EvidencePool(PASSAGES))
        assert claim.supported and claim.citations == (1, 2)
