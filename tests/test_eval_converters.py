"""Converters from public QA sets into eval sets: exact output on tiny synthetic inputs shaped like the real
files (including their odd corners), and counts on the real data in ../shared/evaldata when it is there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomllib

from rag.evaluation.converters import (
    CONVERTERS,
    DEFAULT_DATA_DIRS,
    ConvertReport,
    convert,
    convert_multihop,
    convert_realtimeqa,
    convert_rgb,
    convert_squad2,
)
from rag.ingest.loaders import load_file

ROOT = Path(__file__).resolve().parent.parent
EVALDATA = (ROOT / ".." / "shared" / "evaldata").resolve()
needs_evaldata = pytest.mark.skipif(
    not EVALDATA.is_dir(), reason=f"real eval data not found at {EVALDATA} (see the project README)"
)

QUESTION_KEYS = [
    "id",
    "question",
    "question_date",
    "answers",
    "choices",
    "answer_idx",
    "gold_doc_ids",
    "gold_evidence",
    "answerable",
]


def write_jsonl(path: Path, rows: list[Any], extra_lines: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, ensure_ascii=False) for row in rows] + (extra_lines or [])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_set(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """set.toml, questions and the (first) corpus of a converted set, checking the common format."""
    config = tomllib.loads((out / "set.toml").read_text(encoding="utf-8"))
    assert set(config) == {"name", "description", "questions", "corpus", "complete", "defaults"}
    assert "\n" not in config["description"]
    assert config["defaults"]["k"] == 5
    questions = read_jsonl(out / config["questions"])
    corpus = read_jsonl(out / config["corpus"][0])
    for question in questions:
        assert list(question)[: len(QUESTION_KEYS)] == QUESTION_KEYS
    for doc in corpus:
        assert list(doc)[:6] == ["id", "title", "text", "url", "source", "published"]
    return config, questions, corpus


def assert_indexable(corpus_file: Path, expected_docs: int) -> None:
    """The corpus is something `rag index` accepts, with our ids intact."""
    result = load_file(corpus_file)
    assert result.errors == []
    assert len(result.documents) == expected_docs
    assert {doc.id for doc in result.documents} == {doc["id"] for doc in read_jsonl(corpus_file)}


def assert_gold_in_corpus(questions: list[dict[str, Any]], corpus: list[dict[str, Any]]) -> None:
    ids = [doc["id"] for doc in corpus]
    assert len(ids) == len(set(ids))
    missing = {gold for q in questions for gold in q["gold_doc_ids"]} - set(ids)
    assert missing == set()


class TestRegistry:
    def test_keys_and_folders(self) -> None:
        assert list(CONVERTERS) == ["realtimeqa", "squad2", "rgb", "multihop"]
        assert DEFAULT_DATA_DIRS == {
            "realtimeqa": "realtimeqa",
            "squad2": "squad2_dev_sample500",
            "rgb": "rgb",
            "multihop": "multihop_rag_sample500",
        }

    def test_convert_uses_default_folder_and_names_output_dir(self, tmp_path: Path) -> None:
        data = tmp_path / "evaldata"
        write_jsonl(data / "squad2_dev_sample500" / "contexts.jsonl", [{"context_id": "c1", "text": "Paris."}])
        write_jsonl(
            data / "squad2_dev_sample500" / "questions.jsonl",
            [{"id": "q", "question": "Capital?", "context_id": "c1", "answers": ["Paris"], "is_impossible": False}],
        )
        report = convert("squad2", data, tmp_path / "out")
        assert (tmp_path / "out" / "squad2" / "set.toml").is_file()
        assert report.summary() == "squad2: 1 questions (1 answerable), 1 corpus docs, 0 skipped, 0 warnings"

    def test_unknown_name(self, tmp_path: Path) -> None:
        with pytest.raises(KeyError, match="unknown eval set"):
            convert("nope", tmp_path)

    def test_refuses_to_write_into_the_source_data(self, tmp_path: Path) -> None:
        write_jsonl(tmp_path / "en_fact.jsonl", [{"id": 0, "query": "q", "answers": ["a"], "positive": ["a"]}])
        with pytest.raises(ValueError, match="source data directory"):
            convert_rgb(tmp_path, tmp_path / "converted")


# ------------------------------------------------------------------------------------------ RealTime QA


def rtqa_question(qid: str, date: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "question_id": qid,
        "question_date": date,
        "question_source": "CNN",
        "question_url": "https://edition.cnn.com/quiz",
        "question": f"Question {qid}?",
        "choices": ["Alpha", "Beta", "Gamma", "Delta"],
        "answer_idx": [1],
        "answer_text": ["Beta"],
        "src_file": "past/2022/x_qa.jsonl",
        "gold_doc_ids": [],
        "gcs_baseline_doc_ids": ["rtqa-000001"],
        "evidence_raw": "",
        "evidence": "",
        "evidence_links": [],
    }
    row.update(fields)
    return row


@pytest.fixture
def rtqa_dir(tmp_path: Path) -> Path:
    data = tmp_path / "realtimeqa"
    doc = {"authors": [], "origin": "gcs", "is_gold_for_any": False}
    write_jsonl(
        data / "corpus.jsonl",
        [
            {
                **doc,
                "doc_id": "rtqa-000000",
                "url": "https://www.cnn.com/2022/06/12/media/squid-game/index.html",
                "title": "",
                "text": "New York CNN —\n\nSquid Game is back. ",
                "authors": ["Jane Doe"],
                "publish_date": "2022/06/12",
                "origin": "gold",
                "is_gold_for_any": True,
            },
            {
                **doc,
                "doc_id": "rtqa-000001",
                "url": "https://eu.usatoday.com/story/x",
                "title": "Charging cables",
                "text": "USB-C everywhere.",
                "publish_date": "",
            },
            {
                **doc,
                "doc_id": "rtqa-000002",
                "url": "https://www.theweek.co.uk/news/y",
                "title": "Odd date",
                "text": "Body.",
                "publish_date": "2022/13/40",
            },
            {
                **doc,
                "doc_id": "rtqa-000003",
                "url": "https://www.cnn.com/z",
                "title": "t",
                "text": "  ",
                "publish_date": "",
            },
        ],
        extra_lines=["{not json"],
    )
    write_jsonl(
        data / "questions_dev.jsonl",
        [
            rtqa_question(
                "20220617_0",
                "2022/06/16",
                gold_doc_ids=["rtqa-000000"],
                evidence="Netflix announced Squid Game is coming back.",
                evidence_links=["https://www.cnn.com/2022/06/12/media/squid-game/index.html"],
            ),
            # The answer text differs from the chosen choice (quote marks): both are acceptable answers.
            rtqa_question(
                "20220617_1",
                "2022/06/16",
                choices=["“Squid Game”", "“Friends”"],
                answer_idx=[0],
                answer_text=["Squid Game"],
            ),
            # A gold id whose article is not in the corpus (its text was empty) is dropped with a warning.
            rtqa_question("20220624_0", "2022/06/23", gold_doc_ids=["rtqa-000003", "rtqa-000001"]),
            rtqa_question("20220902_0", "2022/09/01"),  # held-out period: never converted
        ],
    )
    # A held-out question file next to the dev split must never be read.
    write_jsonl(data / "questions_test.jsonl", [rtqa_question("HELD_OUT", "2022/10/01")])
    return data


class TestRealTimeQA:
    def test_synthetic(self, rtqa_dir: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        report = convert_realtimeqa(rtqa_dir, out)
        config, questions, corpus = read_set(out)

        assert config["name"] == "realtimeqa"
        assert config["questions"] == "questions.jsonl"
        assert config["corpus"] == ["corpus.jsonl"]
        assert config["complete"] is False  # search results: an answer may be in no article
        assert config["defaults"] == {"k": 5, "use_question_date": True}
        assert "RealTime QA" in config["description"]
        assert "do not redistribute" in config["description"]

        assert corpus == [
            {
                "id": "rtqa-000000",
                "title": "",
                "text": "New York CNN —\n\nSquid Game is back.",
                "url": "https://www.cnn.com/2022/06/12/media/squid-game/index.html",
                "source": "cnn.com",
                "published": "2022-06-12",
                "authors": ["Jane Doe"],
                "origin": "gold",
            },
            {
                "id": "rtqa-000001",
                "title": "Charging cables",
                "text": "USB-C everywhere.",
                "url": "https://eu.usatoday.com/story/x",
                "source": "eu.usatoday.com",
                "published": None,
                "authors": [],
                "origin": "gcs",
            },
            {
                "id": "rtqa-000002",
                "title": "Odd date",
                "text": "Body.",
                "url": "https://www.theweek.co.uk/news/y",
                "source": "theweek.co.uk",
                "published": None,
                "authors": [],
                "origin": "gcs",
            },
        ]
        base = {"choices": ["Alpha", "Beta", "Gamma", "Delta"], "answer_idx": 1, "answers": ["Beta"]}
        assert questions == [
            {
                "id": "20220617_0",
                "question": "Question 20220617_0?",
                "question_date": "2022-06-16",
                **base,
                "gold_doc_ids": ["rtqa-000000"],
                "gold_evidence": ["Netflix announced Squid Game is coming back."],
                "answerable": True,
            },
            {
                "id": "20220617_1",
                "question": "Question 20220617_1?",
                "question_date": "2022-06-16",
                "answers": ["Squid Game", "“Squid Game”"],
                "choices": ["“Squid Game”", "“Friends”"],
                "answer_idx": 0,
                "gold_doc_ids": [],
                "gold_evidence": [],
                "answerable": True,
            },
            {
                "id": "20220624_0",
                "question": "Question 20220624_0?",
                "question_date": "2022-06-23",
                **base,
                "gold_doc_ids": ["rtqa-000001"],
                "gold_evidence": [],
                "answerable": True,
            },
        ]
        assert "HELD_OUT" not in (out / "questions.jsonl").read_text(encoding="utf-8")

        assert (report.name, report.questions, report.answerable, report.corpus_docs) == ("realtimeqa", 3, 3, 3)
        assert report.skipped == [
            "corpus.jsonl:4: rtqa-000003 has no text",
            "corpus.jsonl:5: malformed JSON (Expecting property name enclosed in double quotes)",
            "questions_dev.jsonl:4: 20220902_0 is dated 2022-09-01, in the held-out period",
        ]
        assert report.warnings == [
            "corpus.jsonl:3 publish_date: unparseable date '2022/13/40', set to null",
            "questions_dev.jsonl:3: 20220624_0 gold docs not in corpus, dropped: rtqa-000003",
        ]
        assert_indexable(out / "corpus.jsonl", 3)

    def test_bad_answer_index_and_no_answer(self, tmp_path: Path) -> None:
        data = tmp_path / "realtimeqa"
        write_jsonl(
            data / "corpus.jsonl", [{"doc_id": "d", "url": None, "title": "", "text": "x", "publish_date": None}]
        )
        write_jsonl(
            data / "questions_dev.jsonl",
            [
                rtqa_question("a", "2022/07/01", answer_idx=[7], answer_text=["Beta"]),
                rtqa_question("b", "2022/07/01", answer_idx=[], answer_text=[]),
            ],
        )
        report = convert_realtimeqa(data, tmp_path / "out")
        _, questions, corpus = read_set(tmp_path / "out")
        assert corpus[0]["source"] == "realtimeqa" and corpus[0]["url"] is None
        assert [(q["id"], q["answers"], q["answer_idx"]) for q in questions] == [("a", ["Beta"], None)]
        assert report.skipped == ["questions_dev.jsonl:2: b has no answer"]
        assert report.warnings == ["questions_dev.jsonl:1: a answer_idx [7] does not index its choices"]


@pytest.fixture(scope="module")
def real_realtimeqa(tmp_path_factory: pytest.TempPathFactory) -> tuple[ConvertReport, Path]:
    if not EVALDATA.is_dir():
        pytest.skip(f"real eval data not found at {EVALDATA}")
    out = tmp_path_factory.mktemp("realtimeqa")
    return convert_realtimeqa(EVALDATA / DEFAULT_DATA_DIRS["realtimeqa"], out), out


@needs_evaldata
class TestRealTimeQAReal:
    def test_counts(self, real_realtimeqa: tuple[ConvertReport, Path]) -> None:
        report, out = real_realtimeqa
        _, questions, corpus = read_set(out)
        assert (report.questions, report.answerable, report.corpus_docs) == (329, 329, 3786)
        assert len(corpus) == 3786
        assert len(questions) == 329
        assert sum(1 for q in questions if q["gold_doc_ids"]) == 103
        assert report.skipped == []
        assert_gold_in_corpus(questions, corpus)

    def test_dev_split_only(self, real_realtimeqa: tuple[ConvertReport, Path]) -> None:
        _, out = real_realtimeqa
        _, questions, _ = read_set(out)
        dates = sorted(q["question_date"] for q in questions)
        assert dates[0] >= "2022-06-01"
        assert dates[-1] < "2022-09-01"
        assert all(q["choices"] and q["answers"] and q["answer_idx"] is not None for q in questions)
        assert all(q["choices"][q["answer_idx"]] in q["answers"] for q in questions)

    def test_corpus_is_indexable(self, real_realtimeqa: tuple[ConvertReport, Path]) -> None:
        _, out = real_realtimeqa
        assert_indexable(out / "corpus.jsonl", 3786)


# ------------------------------------------------------------------------------------------- SQuAD 2.0


class TestSquad2:
    def test_synthetic(self, tmp_path: Path) -> None:
        data = tmp_path / "squad2"
        contexts = {
            "sq2c-0000": "The RNA interference pathway is conserved across eukaryotes.",
            "sq2c-0001": "Southern California has a population of 22,680,010.",
        }
        write_jsonl(data / "contexts.jsonl", [{"context_id": cid, "text": text} for cid, text in contexts.items()])
        write_jsonl(
            data / "questions.jsonl",
            [
                {
                    "id": "q1",
                    "question": "Which pathway is conserved?",
                    "context_id": "sq2c-0000",
                    "context": contexts["sq2c-0000"],
                    "answers": ["RNA interference pathway", "RNA interference", "RNA interference pathway"],
                    "is_impossible": False,
                },
                {
                    "id": "q2",
                    "question": "How much did southern California grow in 2000?",
                    "context_id": "sq2c-0001",
                    "context": contexts["sq2c-0001"],
                    "answers": [""],
                    "is_impossible": True,
                },
                # Paragraph missing from contexts.jsonl: recovered from the question's own `context`.
                {
                    "id": "q3",
                    "question": "What is Warsaw?",
                    "context_id": "sq2c-0002",
                    "context": "Warsaw is the capital of Poland.",
                    "answers": ["the capital of Poland"],
                    "is_impossible": False,
                },
                {
                    "id": "q4",
                    "question": "Broken?",
                    "context_id": "sq2c-0000",
                    "context": contexts["sq2c-0000"],
                    "answers": [],
                    "is_impossible": False,
                },
            ],
        )
        out = tmp_path / "out"
        report = convert_squad2(data, out)
        config, questions, corpus = read_set(out)

        assert config["name"] == "squad2"
        assert config["complete"] is True
        assert config["defaults"] == {"k": 5, "use_question_date": False}
        assert config["description"] == (
            "SQuAD 2.0 dev sample (Rajpurkar et al., 2018): 3 questions (1 unanswerable) over 3 Wikipedia "
            "paragraphs; CC BY-SA 4.0."
        )
        none = {"question_date": None, "choices": None, "answer_idx": None}
        assert questions == [
            {
                "id": "q1",
                "question": "Which pathway is conserved?",
                **none,
                "answers": ["RNA interference pathway", "RNA interference"],
                "gold_doc_ids": ["sq2c-0000"],
                "gold_evidence": ["RNA interference pathway", "RNA interference"],
                "answerable": True,
            },
            {
                "id": "q2",
                "question": "How much did southern California grow in 2000?",
                **none,
                "answers": [],
                "gold_doc_ids": [],
                "gold_evidence": [],
                "answerable": False,
            },
            {
                "id": "q3",
                "question": "What is Warsaw?",
                **none,
                "answers": ["the capital of Poland"],
                "gold_doc_ids": ["sq2c-0002"],
                "gold_evidence": ["the capital of Poland"],
                "answerable": True,
            },
        ]
        doc = {"title": "", "url": None, "source": "wikipedia", "published": None}
        assert corpus == [
            {"id": "sq2c-0000", **doc, "text": contexts["sq2c-0000"]},
            {"id": "sq2c-0001", **doc, "text": contexts["sq2c-0001"]},
            {"id": "sq2c-0002", **doc, "text": "Warsaw is the capital of Poland."},
        ]
        assert (report.questions, report.answerable, report.corpus_docs) == (3, 2, 3)
        assert report.skipped == ["questions.jsonl:4: q4 is answerable but has no answer span"]
        assert report.warnings == ["questions.jsonl:3: paragraph sq2c-0002 not in contexts.jsonl, taken from question"]
        assert_indexable(out / "corpus.jsonl", 3)

    @needs_evaldata
    def test_real(self, tmp_path: Path) -> None:
        report = convert_squad2(EVALDATA / DEFAULT_DATA_DIRS["squad2"], tmp_path / "out")
        _, questions, corpus = read_set(tmp_path / "out")
        assert (report.questions, report.answerable, report.corpus_docs) == (500, 242, 411)
        assert sum(1 for q in questions if not q["answerable"]) == 258
        assert all(q["answers"] == [] and q["gold_doc_ids"] == [] for q in questions if not q["answerable"])
        assert all(q["answers"] and len(q["gold_doc_ids"]) == 1 for q in questions if q["answerable"])
        assert report.skipped == [] and report.warnings == []
        assert_gold_in_corpus(questions, corpus)
        text = {doc["id"]: doc["text"] for doc in corpus}
        assert all(span in text[q["gold_doc_ids"][0]] for q in questions for span in q["gold_evidence"])
        assert_indexable(tmp_path / "out" / "corpus.jsonl", 411)


# ------------------------------------------------------------------------------------------------- RGB


@pytest.fixture
def rgb_dir(tmp_path: Path) -> Path:
    data = tmp_path / "rgb"
    write_jsonl(
        data / "en_fact.jsonl",
        [
            {
                "id": 0,
                "query": "Super Bowl 2021 location",
                "answers": ["Tampa, Florida"],
                "fake_answer": "Glendale, Arizona",
                "positive": ["Played in Tampa, Florida.", "Moved to Tampa, Florida."],
                "positive_wrong": ["Played in Glendale, Arizona.", "Moved to Glendale, Arizona."],
                "negative": ["Tickets for Las Vegas.", "The 2017 film premiered on July 21."],
            },
            {
                "id": 1,
                "query": "When was the film released?",
                # Dates come as a nested list of alternative spellings.
                "answers": [["July 21 2017", "Jul 21, 2017", "July 21 2017"]],
                "fake_answer": "July 1 2016",
                # Noise for question 0, true for question 1: one doc, with a `pos` id.
                "positive": ["The 2017 film premiered on July 21.", "The 2017 film premiered on July 21."],
                "positive_wrong": ["The 2016 film premiered on July 1."],
                "negative": ["Tickets for Las Vegas."],
            },
            {"id": 2, "query": "No answers", "answers": [], "positive": ["x"], "negative": []},
        ],
    )
    return data


class TestRGB:
    def test_synthetic(self, rgb_dir: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        report = convert_rgb(rgb_dir, out)
        config, questions, corpus = read_set(out)

        assert config["name"] == "rgb"
        assert config["corpus"] == ["corpus.jsonl"]
        assert config["defaults"] == {"k": 5, "use_question_date": False}
        assert "positive_wrong passages are left out" in config["description"]
        assert "CC BY-NC-SA 4.0" in config["description"]
        assert not (out / "counterfactual.jsonl").exists()

        doc = {"title": "", "url": None, "source": "rgb", "published": None}
        assert corpus == [
            {"id": "rgb-0-pos-0", **doc, "text": "Played in Tampa, Florida.", "rgb_kind": "positive"},
            {"id": "rgb-0-pos-1", **doc, "text": "Moved to Tampa, Florida.", "rgb_kind": "positive"},
            {"id": "rgb-1-pos-0", **doc, "text": "The 2017 film premiered on July 21.", "rgb_kind": "positive"},
            {"id": "rgb-0-neg-0", **doc, "text": "Tickets for Las Vegas.", "rgb_kind": "negative"},
        ]
        none: dict[str, Any] = {
            "question_date": None,
            "choices": None,
            "answer_idx": None,
            "gold_evidence": [],
            "answerable": True,
        }
        assert questions == [
            {
                "id": "0",
                "question": "Super Bowl 2021 location",
                "answers": ["Tampa, Florida"],
                "gold_doc_ids": ["rgb-0-pos-0", "rgb-0-pos-1"],
                **none,
            },
            {
                "id": "1",
                "question": "When was the film released?",
                "answers": ["July 21 2017", "Jul 21, 2017"],
                "gold_doc_ids": ["rgb-1-pos-0"],
                **none,
            },
        ]
        assert (report.questions, report.answerable, report.corpus_docs) == (2, 2, 4)
        assert report.skipped == ["en_fact.jsonl:3: 2 has no answers"]
        assert_indexable(out / "corpus.jsonl", 4)

    def test_counterfactual_corpus_on_request(self, rgb_dir: Path, tmp_path: Path) -> None:
        out = tmp_path / "out"
        convert_rgb(rgb_dir, out, counterfactual=True)
        config = tomllib.loads((out / "set.toml").read_text(encoding="utf-8"))
        assert config["corpus"] == ["corpus.jsonl", "counterfactual.jsonl"]
        assert [(d["id"], d["text"]) for d in read_jsonl(out / "counterfactual.jsonl")] == [
            ("rgb-0-wrong-0", "Played in Glendale, Arizona."),
            ("rgb-0-wrong-1", "Moved to Glendale, Arizona."),
            ("rgb-1-wrong-0", "The 2016 film premiered on July 1."),
        ]

    @needs_evaldata
    def test_real(self, tmp_path: Path) -> None:
        report = convert_rgb(EVALDATA / DEFAULT_DATA_DIRS["rgb"], tmp_path / "out")
        _, questions, corpus = read_set(tmp_path / "out")
        assert report.questions == len(questions) == 100
        assert report.answerable == 100
        assert report.skipped == []
        assert all(q["answers"] and all(isinstance(a, str) for a in q["answers"]) for q in questions)
        assert all(q["gold_doc_ids"] for q in questions)
        assert_gold_in_corpus(questions, corpus)
        texts = [doc["text"] for doc in corpus]
        assert len(texts) == len(set(texts)) == report.corpus_docs
        # No falsified passage is in the default corpus. (Two `positive_wrong` passages in the real file are
        # byte-identical to their true passage, the answer's case differing; those are not falsified.)
        rows = read_jsonl(EVALDATA / "rgb" / "en_fact.jsonl")
        wrong = {p for row in rows for p in row["positive_wrong"] if p not in row["positive"]}
        assert len(wrong) > 300
        assert wrong.isdisjoint(texts)
        assert_indexable(tmp_path / "out" / "corpus.jsonl", report.corpus_docs)


# ---------------------------------------------------------------------------------------- MultiHop-RAG


def mh_fact(n: int, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "fact_id": f"mhf-{n:05d}",
        "author": "A. Writer",
        "category": "technology",
        "fact": f"Fact number {n}.",
        "published_at": "2023-09-26T17:01:22+00:00",
        "source": "The Verge",
        "title": f"Article {n}",
        "url": f"https://www.theverge.com/{n}",
    }
    row.update(fields)
    return row


def mh_evidence(fact: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in fact.items() if key != "fact_id"}


class TestMultiHop:
    def test_synthetic(self, tmp_path: Path) -> None:
        data = tmp_path / "multihop"
        f0 = mh_fact(0)
        f1 = mh_fact(1, source="TechCrunch", url="https://techcrunch.com/1", published_at="")
        f2 = mh_fact(2, author="", category="")
        del f2["fact_id"]  # no id of its own: a stable hash of url + fact
        unlisted = mh_fact(3, published_at="yesterday")
        write_jsonl(data / "evidence_facts.jsonl", [f0, f1, f2, mh_fact(0), {"fact_id": "mhf-x", "fact": ""}])
        write_jsonl(
            data / "questions.jsonl",
            [
                {
                    "id": "0",
                    "question": "Do The Verge and TechCrunch agree?",
                    "question_type": "comparison_query",
                    "answer": "Yes",
                    "evidence_list": [mh_evidence(f1), mh_evidence(f0), mh_evidence(f1)],
                    "evidence_fact_ids": ["mhf-00001", "mhf-00000"],
                    "evidence_urls": [],
                },
                {
                    "id": "1",
                    "question": "Which network did she partner with?",
                    "question_type": "null_query",
                    "answer": "Insufficient information.",
                    "evidence_list": [],
                    "evidence_fact_ids": [],
                    "evidence_urls": [],
                },
                {
                    "id": "2",
                    "question": "What happened first?",
                    "question_type": "temporal_query",
                    "answer": "The launch",
                    "evidence_list": [mh_evidence(f2), unlisted],  # an item with its own id
                },
                {"id": "3", "question": "No answer?", "question_type": "inference_query", "answer": None},
            ],
        )
        out = tmp_path / "out"
        report = convert_multihop(data, out)
        config, questions, corpus = read_set(out)

        assert config["name"] == "multihop"
        assert config["defaults"] == {"k": 5, "use_question_date": False}
        assert config["description"] == (
            "MultiHop-RAG sample (Tang & Yang, COLM 2024): 3 multi-article news questions (1 unanswerable null "
            "queries) over 4 gold evidence sentences (article bodies not included); ODC-BY."
        )
        assert len(corpus) == 4
        f2_id = corpus[2]["id"]
        assert f2_id.startswith("mhf-") and len(f2_id) == len("mhf-") + 12
        assert corpus == [
            {
                "id": "mhf-00000",
                "title": "Article 0",
                "text": "Fact number 0.",
                "url": "https://www.theverge.com/0",
                "source": "The Verge",
                "published": "2023-09-26",
                "author": "A. Writer",
                "category": "technology",
            },
            {
                "id": "mhf-00001",
                "title": "Article 1",
                "text": "Fact number 1.",
                "url": "https://techcrunch.com/1",
                "source": "TechCrunch",
                "published": None,
                "author": "A. Writer",
                "category": "technology",
            },
            {
                "id": f2_id,
                "title": "Article 2",
                "text": "Fact number 2.",
                "url": "https://www.theverge.com/2",
                "source": "The Verge",
                "published": "2023-09-26",
            },
            {
                "id": "mhf-00003",
                "title": "Article 3",
                "text": "Fact number 3.",
                "url": "https://www.theverge.com/3",
                "source": "The Verge",
                "published": None,
                "author": "A. Writer",
                "category": "technology",
            },
        ]
        none = {"question_date": None, "choices": None, "answer_idx": None}
        assert questions == [
            {
                "id": "0",
                "question": "Do The Verge and TechCrunch agree?",
                **none,
                "answers": ["Yes"],
                "gold_doc_ids": ["mhf-00001", "mhf-00000"],
                "gold_evidence": ["Fact number 1.", "Fact number 0."],
                "answerable": True,
                "type": "comparison_query",
            },
            {
                "id": "1",
                "question": "Which network did she partner with?",
                **none,
                "answers": [],
                "gold_doc_ids": [],
                "gold_evidence": [],
                "answerable": False,
                "type": "null_query",
            },
            {
                "id": "2",
                "question": "What happened first?",
                **none,
                "answers": ["The launch"],
                "gold_doc_ids": [f2_id, "mhf-00003"],
                "gold_evidence": ["Fact number 2.", "Fact number 3."],
                "answerable": True,
                "type": "temporal_query",
            },
        ]
        assert (report.questions, report.answerable, report.corpus_docs) == (3, 2, 4)
        assert report.skipped == [
            "evidence_facts.jsonl:4: duplicate fact mhf-00000",
            "evidence_facts.jsonl:5: no fact text",
            "questions.jsonl:4: 3 has no answer",
        ]
        assert report.warnings == [
            "questions.jsonl:3: evidence fact mhf-00003 not in evidence_facts.jsonl, added",
            "questions.jsonl:3 published_at: unparseable date 'yesterday', set to null",
        ]
        assert_indexable(out / "corpus.jsonl", 4)

        # Re-converting gives the same hash id: ids are stable.
        convert_multihop(data, tmp_path / "again")
        assert read_jsonl(tmp_path / "again" / "corpus.jsonl")[2]["id"] == f2_id

    def test_fact_ids_without_evidence_list(self, tmp_path: Path) -> None:
        data = tmp_path / "multihop"
        write_jsonl(data / "evidence_facts.jsonl", [mh_fact(0)])
        write_jsonl(
            data / "questions.jsonl",
            [{"id": 7, "question": "Q?", "answer": "A", "evidence_fact_ids": ["mhf-00000", "mhf-09999"]}],
        )
        report = convert_multihop(data, tmp_path / "out")
        _, questions, _ = read_set(tmp_path / "out")
        assert [(q["id"], q["gold_doc_ids"], q["gold_evidence"]) for q in questions] == [
            ("7", ["mhf-00000"], ["Fact number 0."])
        ]
        assert "type" not in questions[0]
        assert report.warnings == ["questions.jsonl:1: 7 evidence fact mhf-09999 not in corpus, dropped"]

    @needs_evaldata
    def test_real(self, tmp_path: Path) -> None:
        report = convert_multihop(EVALDATA / DEFAULT_DATA_DIRS["multihop"], tmp_path / "out")
        _, questions, corpus = read_set(tmp_path / "out")
        assert report.questions == len(questions) == 500
        assert report.corpus_docs == len(corpus) == 438
        assert report.skipped == [] and report.warnings == []
        null = [q for q in questions if q["type"] == "null_query"]
        assert all(not q["answerable"] and q["answers"] == [] for q in null)
        assert report.answerable == 500 - len(null)
        assert all(q["gold_doc_ids"] for q in questions if q["answerable"])
        assert all(len(q["gold_doc_ids"]) == len(q["gold_evidence"]) for q in questions)
        assert_gold_in_corpus(questions, corpus)
        assert all(doc["published"] for doc in corpus)
        assert_indexable(tmp_path / "out" / "corpus.jsonl", 438)
