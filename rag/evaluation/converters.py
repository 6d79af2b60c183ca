"""Converters from public QA sets into our eval-set format.

The public sets live read-only outside the repository (`../shared/evaldata/`, see its README) and must
never be copied into it, so each converter reads one set's files and writes an eval-set directory wherever
the caller says (by default the gitignored `evals/data/<name>/`). An eval set is:

- `set.toml`: name, one-line description (source and licence), the questions file, the corpus files, whether
  the corpus holds every answer (`complete`) and
  a `[defaults]` table (`k`, `use_question_date`);
- `questions.jsonl`: `id`, `question`, `question_date`, `answers`, `choices`, `answer_idx`, `gold_doc_ids`,
  `gold_evidence`, `answerable` (plus an optional `type`);
- `corpus.jsonl`: articles `rag index` accepts (`id`, `title`, `text`, `url`, `source`, `published`, extras).

Public data is messy, and one odd record must not stop a conversion: records that cannot be used are
skipped and listed with the reason in the returned `ConvertReport`; values that are merely odd (an
unparseable date) are replaced by null and noted as warnings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = [
    "CONVERTERS",
    "DEFAULT_DATA_DIRS",
    "DEFAULT_OUT_ROOT",
    "ConvertReport",
    "convert",
    "convert_multihop",
    "convert_realtimeqa",
    "convert_rgb",
    "convert_squad2",
]

#: Where converted sets go unless the caller says otherwise (relative to the repository root; gitignored).
DEFAULT_OUT_ROOT = Path("evals/data")
#: RealTime QA questions from this date on are the held-out final test; converting them is refused.
REALTIMEQA_HOLDOUT_FROM = dt.date(2022, 9, 1)
_INSUFFICIENT = "insufficient information."
_QUESTIONS_FILE = "questions.jsonl"
_CORPUS_FILE = "corpus.jsonl"

Record = dict[str, Any]


@dataclass
class ConvertReport:
    """What a conversion produced, so a caller (or a test) can check counts without re-reading the files."""

    name: str
    questions: int = 0
    answerable: int = 0
    corpus_docs: int = 0
    #: One "file:line: reason" entry per input record that was left out.
    skipped: list[str] = field(default_factory=list)
    #: Records kept with a value replaced (e.g. an unparseable date set to null).
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for a CLI to print."""
        return (
            f"{self.name}: {self.questions} questions ({self.answerable} answerable), "
            f"{self.corpus_docs} corpus docs, {len(self.skipped)} skipped, {len(self.warnings)} warnings"
        )


# --------------------------------------------------------------------------------------------- helpers


def _read_jsonl(path: Path, report: ConvertReport) -> Iterator[tuple[int, Record]]:
    """JSON objects with their line numbers; malformed lines are skipped (and reported), not fatal."""
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                report.skipped.append(f"{path.name}:{number}: malformed JSON ({exc.msg})")
                continue
            if not isinstance(record, dict):
                report.skipped.append(f"{path.name}:{number}: not a JSON object")
                continue
            yield number, record


def _question_rows(
    path: Path, report: ConvertReport, *, id_keys: Sequence[str] = ("id",), text_key: str = "question"
) -> Iterator[tuple[str, str, Record]]:
    """(where, id, row) for every question line with an id and a question text, each id once: the
    checks every source needs before its own, so a broken line is reported the same way for all sets."""
    seen: set[str] = set()
    for number, row in _read_jsonl(path, report):
        where = f"{path.name}:{number}"
        raw_id = next(
            (row[key] for key in id_keys if isinstance(row.get(key), (int, str)) and str(row[key]).strip()), ""
        )
        qid = str(raw_id).strip()
        if not qid or not _text(row.get(text_key)):
            report.skipped.append(f"{where}: no {id_keys[0]} or {text_key} text")
            continue
        if qid in seen:
            report.skipped.append(f"{where}: duplicate {id_keys[0]} {qid}")
            continue
        yield where, qid, row


def _iso_date(value: object) -> str | None:
    """`YYYY/MM/DD`, `YYYY-MM-DD` or an ISO datetime as `YYYY-MM-DD`; None when empty or not a real date."""
    if not isinstance(value, str) or not value.strip():
        return None
    match = re.match(r"^\s*(\d{4})[-/](\d{1,2})[-/](\d{1,2})", value)
    if not match:
        return None
    try:
        return dt.date(*(int(part) for part in match.groups())).isoformat()
    except ValueError:
        return None


def _date_or_warn(value: object, where: str, report: ConvertReport) -> str | None:
    """Like `_iso_date`, but a non-empty value that is not a date is worth a warning: it may be a format
    change in the source that silently drops every date."""
    iso = _iso_date(value)
    if iso is None and value not in (None, ""):
        report.warnings.append(f"{where}: unparseable date {value!r}, set to null")
    return iso


def _text(value: object) -> str:
    """A stripped string, or "" for anything that is not a string (null, numbers in a text slot)."""
    return value.strip() if isinstance(value, str) else ""


def _dedupe(values: Iterable[str]) -> list[str]:
    """Non-empty strings in first-seen order: answer lists repeat spans, and order carries preference."""
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.add(value)
            out.append(value)
    return out


def _flatten_strings(value: object) -> list[str]:
    """Strings from a string, a list of strings, or (RGB) a list of lists of alternatives."""
    if isinstance(value, str):
        return [value.strip()]
    if isinstance(value, list):
        return [item for element in value for item in _flatten_strings(element)]
    return []


def _host(url: str | None) -> str | None:
    """The publisher part of a URL ("https://www.cnn.com/..." -> "cnn.com"), shown as the article source."""
    if not url:
        return None
    host = urlparse(url).hostname or ""
    return host.removeprefix("www.") or None


def _question(
    qid: str,
    question: str,
    *,
    answers: list[str],
    answerable: bool,
    question_date: str | None = None,
    choices: list[str] | None = None,
    answer_idx: int | None = None,
    gold_doc_ids: list[str] | None = None,
    gold_evidence: list[str] | None = None,
    extra: Record | None = None,
) -> Record:
    """One questions.jsonl record with every key present, in a fixed order, so the format never drifts
    between converters."""
    record: Record = {
        "id": qid,
        "question": question,
        "question_date": question_date,
        "answers": answers,
        "choices": choices,
        "answer_idx": answer_idx,
        "gold_doc_ids": gold_doc_ids or [],
        "gold_evidence": gold_evidence or [],
        "answerable": answerable,
    }
    record.update(extra or {})
    return record


def _doc(
    doc_id: str,
    text: str,
    *,
    title: str = "",
    url: str | None = None,
    source: str,
    published: str | None = None,
    extra: Record | None = None,
) -> Record:
    """One corpus.jsonl article in the shape `rag index` reads (`rag.ingest.loaders.records.record_to_document`)."""
    record: Record = {
        "id": doc_id,
        "title": title,
        "text": text,
        "url": url,
        "source": source,
        "published": published,
    }
    record.update(extra or {})
    return record


def _toml_string(value: str) -> str:
    """A TOML basic string. JSON's escapes (\\", \\\\, \\n, \\uXXXX, ...) are all valid TOML escapes."""
    return json.dumps(value, ensure_ascii=False)


def _write_jsonl(path: Path, records: Iterable[Record]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _write_set(
    out_dir: Path,
    data_dir: Path,
    *,
    name: str,
    description: str,
    questions: list[Record],
    corpora: dict[str, list[Record]],
    use_question_date: bool,
    k: int = 5,
    complete: bool = True,
) -> None:
    """Write the three parts of an eval set. Refuses to write into the source data directory, which is
    the one place the converted files must never go."""
    out_dir = out_dir.resolve()
    source = data_dir.resolve()
    if out_dir == source or source in out_dir.parents:
        raise ValueError(f"refusing to write converted data into the source data directory {source}")
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out_dir / _QUESTIONS_FILE, questions)
    for file_name, docs in corpora.items():
        _write_jsonl(out_dir / file_name, docs)
    corpus_list = ", ".join(_toml_string(file_name) for file_name in corpora)
    lines = [
        f"name = {_toml_string(name)}",
        f"description = {_toml_string(' '.join(description.split()))}",
        f"questions = {_toml_string(_QUESTIONS_FILE)}",
        f"corpus = [{corpus_list}]",
        f"complete = {'true' if complete else 'false'}",
        "",
        "[defaults]",
        f"k = {k}",
        f"use_question_date = {'true' if use_question_date else 'false'}",
        "",
    ]
    (out_dir / "set.toml").write_text("\n".join(lines), encoding="utf-8")


def _finish(report: ConvertReport, questions: list[Record], corpus: list[Record]) -> ConvertReport:
    report.questions = len(questions)
    report.answerable = sum(1 for question in questions if question["answerable"])
    report.corpus_docs = len(corpus)
    return report


# ------------------------------------------------------------------------------------------ RealTime QA


def convert_realtimeqa(data_dir: Path, out_dir: Path) -> ConvertReport:
    """RealTime QA development split: dated multiple-choice news-quiz questions over a news corpus.

    Only `questions_dev.jsonl` is read. The later weeks are the held-out final test set and must not leak
    into tuning, so no other question file is opened, and any dev record dated in the held-out period is
    skipped as a second line of defence. Questions carry the quiz's publication date, hence
    `use_question_date = true`.
    """
    report = ConvertReport(name="realtimeqa")
    corpus = _realtimeqa_corpus(data_dir / "corpus.jsonl", report)
    questions = _realtimeqa_questions(data_dir / "questions_dev.jsonl", {doc["id"] for doc in corpus}, report)
    dates = sorted(q["question_date"] for q in questions if q["question_date"])
    span = f"{dates[0][:7]}..{dates[-1][:7]}" if dates else "undated"
    _write_set(
        out_dir,
        data_dir,
        name="realtimeqa",
        description=(
            f"RealTime QA (Kasai et al., NeurIPS 2023) development split: {len(questions)} dated "
            f"multiple-choice news-quiz questions ({span}; CNN, USA Today, THE WEEK) over {len(corpus)} news "
            "articles (gold + Google-search top-10); no licence stated: evaluation use only, do not redistribute."
        ),
        questions=questions,
        corpora={_CORPUS_FILE: corpus},
        use_question_date=True,
        complete=False,  # gold articles for 103 of 329 questions; the rest rely on search results
    )
    return _finish(report, questions, corpus)


def _realtimeqa_corpus(corpus_path: Path, report: ConvertReport) -> list[Record]:
    """The articles, each once; a row without an id or text is skipped and reported."""
    corpus: list[Record] = []
    doc_ids: set[str] = set()
    for number, row in _read_jsonl(corpus_path, report):
        where = f"{corpus_path.name}:{number}"
        doc_id = _text(row.get("doc_id")) or _text(row.get("id"))
        text = _text(row.get("text"))
        if not doc_id:
            report.skipped.append(f"{where}: no doc_id")
            continue
        if not text:
            report.skipped.append(f"{where}: {doc_id} has no text")
            continue
        if doc_id in doc_ids:
            report.skipped.append(f"{where}: duplicate doc_id {doc_id}")
            continue
        url = _text(row.get("url")) or None
        extra: Record = {}
        if isinstance(row.get("authors"), list):
            extra["authors"] = row["authors"]
        if row.get("origin"):
            extra["origin"] = row["origin"]
        doc_ids.add(doc_id)
        corpus.append(
            _doc(
                doc_id,
                text,
                title=_text(row.get("title")),  # many gold docs have none; `rag index` derives one
                url=url,
                source=_host(url) or "realtimeqa",
                published=_date_or_warn(row.get("publish_date"), f"{where} publish_date", report),
                extra=extra,
            )
        )

    return corpus


def _realtimeqa_questions(questions_path: Path, doc_ids: set[str], report: ConvertReport) -> list[Record]:
    """The development questions, none from the held-out weeks; gold articles missing from the corpus are
    dropped with a warning."""
    questions: list[Record] = []
    for where, qid, row in _question_rows(questions_path, report, id_keys=("question_id", "id")):
        question = _text(row.get("question"))
        question_date = _date_or_warn(row.get("question_date"), f"{where} question_date", report)
        if question_date is not None and dt.date.fromisoformat(question_date) >= REALTIMEQA_HOLDOUT_FROM:
            report.skipped.append(f"{where}: {qid} is dated {question_date}, in the held-out period")
            continue
        choices_raw = row.get("choices")
        choices = [str(choice) for choice in choices_raw] if isinstance(choices_raw, list) else None
        raw_idx = row.get("answer_idx")
        indexes = [raw_idx] if isinstance(raw_idx, int) else raw_idx if isinstance(raw_idx, list) else []
        valid = [i for i in indexes if isinstance(i, int) and choices is not None and 0 <= i < len(choices)]
        if len(valid) != len(indexes):
            report.warnings.append(f"{where}: {qid} answer_idx {raw_idx!r} does not index its choices")
        chosen = [choices[i].strip() for i in valid] if choices is not None else []
        answers = _dedupe([*_flatten_strings(row.get("answer_text")), *chosen])
        if not answers:
            report.skipped.append(f"{where}: {qid} has no answer")
            continue
        gold = [str(doc_id) for doc_id in row.get("gold_doc_ids") or []]
        missing = [doc_id for doc_id in gold if doc_id not in doc_ids]
        if missing:
            report.warnings.append(f"{where}: {qid} gold docs not in corpus, dropped: {', '.join(missing)}")
        evidence = _text(row.get("evidence"))
        questions.append(
            _question(
                qid,
                question,
                question_date=question_date,
                choices=choices,
                answer_idx=valid[0] if valid else None,
                answers=answers,
                gold_doc_ids=[doc_id for doc_id in gold if doc_id in doc_ids],
                gold_evidence=[evidence] if evidence else [],
                answerable=True,
            )
        )

    return questions


# ------------------------------------------------------------------------------------------- SQuAD 2.0


def convert_squad2(data_dir: Path, out_dir: Path) -> ConvertReport:
    """SQuAD 2.0 dev sample: extractive questions over Wikipedia paragraphs, about half unanswerable.

    Its value here is the unanswerable half: a question whose paragraph does not hold the answer tests
    that we abstain. Unanswerable questions therefore get no gold docs (their paragraph is a distractor,
    not evidence). Paragraphs have no title, date or URL; the title is left empty.
    """
    report = ConvertReport(name="squad2")
    corpus: list[Record] = []
    doc_ids: set[str] = set()
    contexts_path = data_dir / "contexts.jsonl"
    for number, row in _read_jsonl(contexts_path, report):
        where = f"{contexts_path.name}:{number}"
        doc_id = _text(row.get("context_id")) or _text(row.get("id"))
        text = _text(row.get("text")) or _text(row.get("context"))
        if not doc_id or not text:
            report.skipped.append(f"{where}: no context_id or text")
            continue
        if doc_id in doc_ids:
            report.skipped.append(f"{where}: duplicate context_id {doc_id}")
            continue
        doc_ids.add(doc_id)
        corpus.append(_doc(doc_id, text, source="wikipedia"))

    questions: list[Record] = []
    questions_path = data_dir / "questions.jsonl"
    for where, qid, row in _question_rows(questions_path, report):
        question = _text(row.get("question"))
        context_id = _text(row.get("context_id"))
        if context_id not in doc_ids:
            # The question carries its paragraph too, so a paragraph missing from contexts.jsonl is recoverable.
            context = _text(row.get("context"))
            if not context_id or not context:
                report.skipped.append(f"{where}: {qid} has no paragraph (context_id {context_id!r})")
                continue
            report.warnings.append(f"{where}: paragraph {context_id} not in contexts.jsonl, taken from question")
            doc_ids.add(context_id)
            corpus.append(_doc(context_id, context, source="wikipedia"))
        spans = _dedupe(_flatten_strings(row.get("answers")))
        impossible = row.get("is_impossible")
        answerable = bool(spans) if not isinstance(impossible, bool) else not impossible
        if answerable and not spans:
            report.skipped.append(f"{where}: {qid} is answerable but has no answer span")
            continue
        questions.append(
            _question(
                qid,
                question,
                answers=spans if answerable else [],
                gold_doc_ids=[context_id] if answerable else [],
                gold_evidence=spans if answerable else [],
                answerable=answerable,
            )
        )

    unanswerable = sum(1 for q in questions if not q["answerable"])
    _write_set(
        out_dir,
        data_dir,
        name="squad2",
        description=(
            f"SQuAD 2.0 dev sample (Rajpurkar et al., 2018): {len(questions)} questions ({unanswerable} "
            f"unanswerable) over {len(corpus)} Wikipedia paragraphs; CC BY-SA 4.0."
        ),
        questions=questions,
        corpora={_CORPUS_FILE: corpus},
        use_question_date=False,
    )
    return _finish(report, questions, corpus)


# ------------------------------------------------------------------------------------------------- RGB


def convert_rgb(data_dir: Path, out_dir: Path, *, counterfactual: bool = False) -> ConvertReport:
    """RGB `en_fact`: news questions with true passages, falsified copies of them and noise passages.

    The corpus is every question's true (`positive`) and noise (`negative`) passages, one doc each, shared
    across questions: identical texts are kept once, and true passages are assigned ids first so a text
    that is true for one question and noise for another keeps a `-pos-` id. The falsified
    `positive_wrong` passages contradict the answers, so they stay out of the default corpus; with
    `counterfactual=True` they are written to `counterfactual.jsonl` and listed as a second corpus, for
    measuring robustness to conflicting evidence.
    """
    report = ConvertReport(name="rgb")
    path = data_dir / "en_fact.jsonl"
    rows: list[tuple[str, str, Record]] = []
    for where, qid, row in _question_rows(path, report, text_key="query"):
        if not _dedupe(_flatten_strings(row.get("answers"))):
            report.skipped.append(f"{where}: {qid} has no answers")
            continue
        rows.append((where, qid, row))

    def passages(row: Record, key: str) -> list[str]:
        value = row.get(key)
        return [_text(text) for text in value if _text(text)] if isinstance(value, list) else []

    def build(kinds: list[tuple[str, str]]) -> tuple[list[Record], dict[str, str]]:
        """Docs for the given (field, id tag) kinds, in kind-major order; also text -> doc id."""
        docs: list[Record] = []
        by_text: dict[str, str] = {}
        for key, tag in kinds:
            for _, qid, row in rows:
                for n, text in enumerate(passages(row, key)):
                    if text not in by_text:
                        by_text[text] = f"rgb-{qid}-{tag}-{n}"
                        docs.append(_doc(by_text[text], text, source="rgb", extra={"rgb_kind": key}))
        return docs, by_text

    corpus, doc_of = build([("positive", "pos"), ("negative", "neg")])
    questions: list[Record] = []
    for where, qid, row in rows:
        positives = passages(row, "positive")
        if not positives:
            report.warnings.append(f"{where}: {qid} has no positive passage")
        questions.append(
            _question(
                qid,
                _text(row.get("query")),
                answers=_dedupe(_flatten_strings(row.get("answers"))),
                gold_doc_ids=_dedupe(doc_of[text] for text in positives),
                answerable=True,
            )
        )

    corpora = {_CORPUS_FILE: corpus}
    if counterfactual:
        wrong, _ = build([("positive_wrong", "wrong")])
        corpora["counterfactual.jsonl"] = [doc for doc in wrong if doc["text"] not in doc_of]
    _write_set(
        out_dir,
        data_dir,
        name="rgb",
        description=(
            f"RGB en_fact (Chen et al., AAAI 2024): {len(questions)} news questions over {len(corpus)} true and "
            "noise passages"
            + (
                "; the counterfactual positive_wrong passages are in counterfactual.jsonl"
                if counterfactual
                else "; the counterfactual positive_wrong passages are left out"
            )
            + "; CC BY-NC-SA 4.0."
        ),
        questions=questions,
        corpora=corpora,
        use_question_date=False,
    )
    return _finish(report, questions, corpus)


# ---------------------------------------------------------------------------------------- MultiHop-RAG


def _fact_key(url: object, fact: object) -> tuple[str, str]:
    return _text(url), _text(fact)


def _fact_id(record: Record) -> str:
    """The record's own id when it has one, otherwise a hash of url + fact: stable across re-conversions."""
    own = _text(record.get("fact_id")) or _text(record.get("id"))
    if own:
        return own
    url, fact = _fact_key(record.get("url"), record.get("fact"))
    return "mhf-" + hashlib.sha1(f"{url}\n{fact}".encode()).hexdigest()[:12]


def _fact_doc(record: Record, doc_id: str, where: str, report: ConvertReport) -> Record:
    extra = {key: record[key] for key in ("author", "category") if record.get(key)}
    return _doc(
        doc_id,
        _text(record.get("fact")),
        title=_text(record.get("title")),
        url=_text(record.get("url")) or None,
        source=_text(record.get("source")) or _host(_text(record.get("url"))) or "multihop-rag",
        published=_date_or_warn(record.get("published_at"), f"{where} published_at", report),
        extra=extra,
    )


def convert_multihop(data_dir: Path, out_dir: Path) -> ConvertReport:
    """MultiHop-RAG sample: questions needing facts from several news articles, plus "null" questions
    whose answer is not in the corpus.

    The article bodies are not distributed, so the corpus is the gold evidence sentences, one doc per
    unique fact; retrieval is trivially small, but answer synthesis across facts and abstention on null
    queries ("Insufficient information." -> answers [], answerable false) are what this set measures.
    Evidence dates are article dates, not dates at which the questions are asked: `question_date` is null.
    """
    report = ConvertReport(name="multihop")
    facts = _Facts()
    facts_path = data_dir / "evidence_facts.jsonl"
    for number, row in _read_jsonl(facts_path, report):
        where = f"{facts_path.name}:{number}"
        key = _fact_key(row.get("url"), row.get("fact"))
        if not key[1]:
            report.skipped.append(f"{where}: no fact text")
            continue
        doc_id = _fact_id(row)
        if key in facts.id_of or doc_id in facts.text_of:
            report.skipped.append(f"{where}: duplicate fact {doc_id}")
            continue
        facts.add(row, key, doc_id, where, report)

    questions: list[Record] = []
    for where, qid, row in _question_rows(data_dir / "questions.jsonl", report):
        question = _text(row.get("question"))
        answer = _text(row.get("answer"))
        if not answer:
            report.skipped.append(f"{where}: {qid} has no answer")
            continue
        gold = _multihop_gold(row, where, qid, facts, facts_path.name, report)
        answerable = answer.lower() != _INSUFFICIENT
        question_type = _text(row.get("question_type"))
        questions.append(
            _question(
                qid,
                question,
                answers=[answer] if answerable else [],
                gold_doc_ids=gold,
                gold_evidence=[facts.text_of[doc_id] for doc_id in gold],
                answerable=answerable,
                extra={"type": question_type} if question_type else None,
            )
        )
    corpus = facts.corpus

    unanswerable = sum(1 for q in questions if not q["answerable"])
    _write_set(
        out_dir,
        data_dir,
        name="multihop",
        description=(
            f"MultiHop-RAG sample (Tang & Yang, COLM 2024): {len(questions)} multi-article news questions "
            f"({unanswerable} unanswerable null queries) over {len(corpus)} gold evidence sentences "
            "(article bodies not included); ODC-BY."
        ),
        questions=questions,
        corpora={_CORPUS_FILE: corpus},
        use_question_date=False,
    )
    return _finish(report, questions, corpus)


@dataclass
class _Facts:
    """MultiHop-RAG's corpus: each evidence fact once, found by its (url, text) and by its id."""

    corpus: list[Record] = field(default_factory=list)
    id_of: dict[tuple[str, str], str] = field(default_factory=dict)
    text_of: dict[str, str] = field(default_factory=dict)

    def add(self, row: Record, key: tuple[str, str], doc_id: str, where: str, report: ConvertReport) -> None:
        self.id_of[key] = doc_id
        self.text_of[doc_id] = key[1]
        self.corpus.append(_fact_doc(row, doc_id, where, report))


def _multihop_gold(
    row: Record, where: str, qid: str, facts: _Facts, facts_name: str, report: ConvertReport
) -> list[str]:
    """The question's evidence facts as corpus ids: from its evidence list (a fact missing from the facts
    file is added), else from its fact ids (one missing from the corpus is dropped)."""
    gold: list[str] = []
    evidence_list = row.get("evidence_list")
    if isinstance(evidence_list, list) and evidence_list:
        for item in evidence_list:
            if not isinstance(item, dict) or not _text(item.get("fact")):
                report.warnings.append(f"{where}: {qid} has an evidence item without a fact, ignored")
                continue
            key = _fact_key(item.get("url"), item.get("fact"))
            if key not in facts.id_of:
                # The facts file is derived from these lists; a fact missing there is still usable.
                doc_id = _fact_id(item)
                report.warnings.append(f"{where}: evidence fact {doc_id} not in {facts_name}, added")
                facts.add(item, key, doc_id, where, report)
            gold.append(facts.id_of[key])
    else:
        raw_ids = row.get("evidence_fact_ids")
        for doc_id in (str(i) for i in raw_ids) if isinstance(raw_ids, list) else ():
            if doc_id in facts.text_of:
                gold.append(doc_id)
            else:
                report.warnings.append(f"{where}: {qid} evidence fact {doc_id} not in corpus, dropped")
    return _dedupe(gold)


# ------------------------------------------------------------------------------------------- registry

CONVERTERS: dict[str, Callable[[Path, Path], ConvertReport]] = {
    "realtimeqa": convert_realtimeqa,
    "squad2": convert_squad2,
    "rgb": convert_rgb,
    "multihop": convert_multihop,
}

#: Each converter's input folder under the shared evaldata directory.
DEFAULT_DATA_DIRS: dict[str, str] = {
    "realtimeqa": "realtimeqa",
    "squad2": "squad2_dev_sample500",
    "rgb": "rgb",
    "multihop": "multihop_rag_sample500",
}


def convert(name: str, evaldata_dir: Path, out_root: Path = DEFAULT_OUT_ROOT) -> ConvertReport:
    """Convert one registered set from its default folder under `evaldata_dir` into `out_root/<name>/`."""
    if name not in CONVERTERS:
        raise KeyError(f"unknown eval set {name!r}; known: {', '.join(sorted(CONVERTERS))}")
    return CONVERTERS[name](evaldata_dir / DEFAULT_DATA_DIRS[name], out_root / name)
