"""Runs: push every question of a set through the real pipeline and record what happened.

A run is a folder. `run.json` holds the configuration, `results.jsonl` one line per finished question,
flushed as it is written, so an interrupted run resumes where it stopped when started again with the
same folder. The summary, report and plots are derived from those two files (`rag.evaluation.report`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.answering.choice import choose
from rag.answering.confidence import family_of
from rag.answering.evidence import EvidencePool
from rag.config import Settings
from rag.evaluation.report import write_report
from rag.evaluation.runfolder import RESULTS, RUN_CONFIG, RunError, done_ids
from rag.evaluation.scoring import Scored, score_question, without_markers
from rag.evaluation.sets import EvalQuestion, EvalSet, load_set
from rag.ingest.chunking import split_sentences
from rag.pipeline import RAG
from rag.prompts import entailment_messages
from rag.store.embedding import precision_of
from rag.types import Answer, GenerationRequest, Generator, Retrieval

RETRIEVAL_DEPTH = 10
"""Retrieval is scored at 1, 3, 5 and 10 whatever `k` the answer uses."""


def eval_index_dir(settings: Settings, set_name: str) -> Path:
    """Indexes are cached per set, model, precision and chunking, so repeated runs never re-embed a corpus."""
    model = re.sub(r"[^a-z0-9]+", "-", settings.index.embedding_model.lower()).strip("-")
    root = settings.index_dir.parent / "eval-indexes"
    int8 = "-int8" if precision_of(settings.index.embedding_backend) == "int8" else ""
    return root / f"{set_name}--{model}{int8}--c{settings.index.chunk_tokens}-o{settings.index.chunk_overlap}"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _cited_sentences(answer: Answer) -> list[tuple[str, list[int]]]:
    """Each answer sentence, markers removed, with the passage numbers cited for it: those of every claim
    it holds (`X [1], which Y [2].` cites 1 and 2, not just the first claim's). Markers placed after the
    full stop (`… Thursday.” [1]`) split off as a "sentence" with no words; they belong to the sentence
    before, so they are not counted as an uncited sentence of their own."""
    by_claim: dict[str, list[int]] = {}
    for citation in answer.citations:
        by_claim.setdefault(citation.claim, []).append(citation.number)
    sentences = []
    for start, end in split_sentences(answer.text):
        raw = answer.text[start:end]
        claim = without_markers(raw)
        if not claim.strip(" .,;"):
            continue
        numbers = [n for cited, nums in by_claim.items() if cited and cited in raw for n in nums]
        valid = [n for n in dict.fromkeys(numbers) if 1 <= n <= len(answer.passages)]
        sentences.append((claim, valid))
    return sentences


def _entails(judge: Generator, premise: str, claim: str) -> bool:
    messages = entailment_messages(premise, claim)
    reply = "".join(judge.stream(GenerationRequest(claim, [], messages, 4, 0.0)))
    return reply.strip().lower().startswith("yes")


def judge_citations(answer: Answer, judge: Generator) -> tuple[float | None, float | None]:
    """ALCE citation recall and precision (Gao et al., 2023) with `judge` as the entailment model.
    Recall: share of answer sentences whose cited passages, together, entail them (uncited sentences
    count as unsupported). Precision: share of citations that are not irrelevant, where a citation is
    irrelevant if its passage alone does not entail the sentence and the others entail it without it.
    As in ALCE's reference code, the citations of a sentence they do not support are all imprecise (a
    citation pointing at an unrelated passage must not count as precise), and the one-by-one check only
    runs for a supported sentence with several citations; a lone citation is precise iff it entails."""
    sentences = _cited_sentences(answer)
    if answer.refused or not sentences:
        return None, None
    supported, relevant, total = 0, 0, 0
    for sentence, numbers in sentences:
        if not numbers:
            continue
        texts = [answer.passages[n - 1].text for n in numbers]
        full = _entails(judge, "\n\n".join(texts), sentence)
        supported += full
        total += len(texts)
        if not full:
            continue
        if len(texts) == 1:
            relevant += 1
            continue
        for i, text in enumerate(texts):
            others = "\n\n".join(t for j, t in enumerate(texts) if j != i)
            relevant += _entails(judge, text, sentence) or not _entails(judge, others, sentence)
    return supported / len(sentences), (relevant / total if total else None)


def _run_config(
    eval_set: EvalSet, rag: RAG, backend: str, family: str, model: str, k: int, judge: str | None
) -> dict[str, Any]:
    s = rag.settings
    return {
        "set": eval_set.name,
        "set_path": str(eval_set.path),
        "questions": len(eval_set.questions),
        "backend": backend,
        "family": family,
        "model": model,
        "k": k,
        "retrieval_depth": RETRIEVAL_DEPTH,
        "use_question_date": eval_set.config.defaults.use_question_date,
        "judge": judge,
        "embedding_model": s.index.embedding_model,
        "chunk_tokens": s.index.chunk_tokens,
        "chunk_overlap": s.index.chunk_overlap,
        "context_tokens": s.reader.context_tokens,
        "min_confidence": s.reader.min_confidence,
        "local_focus_sentences": s.reader.local_focus_sentences,
        "embedding_backend": s.index.embedding_backend,
        **s.retrieval.model_dump(),  # what is retrieved: resuming under other values is refused
    }


def _pipeline_for(eval_set: EvalSet, settings: Settings) -> tuple[RAG, dict[str, str]]:
    """The pipeline the set's questions are asked of: its own index of its corpus (built or brought up to
    date here), or the configured index for a set without one; and the corpus's duplicate ids, each to the
    id of the article kept in its place."""
    if not eval_set.config.corpus:
        return RAG(settings), {}  # the index the questions were asked of
    rag = RAG(settings.model_copy(update={"index_dir": eval_index_dir(settings, eval_set.name)}))
    indexed = rag.index(eval_set.corpus)
    if indexed.errors:
        raise RunError(
            f"the corpus of {eval_set.name} has {len(indexed.errors)} unreadable input(s), first: {indexed.errors[0]}",
            hint="fix the corpus (or its converter) so scores are not computed on a partial corpus",
        )
    return rag, dict(indexed.report.duplicates)


def _record(
    q: EvalQuestion, found: Retrieval, answer: Answer, picked: int | None, scores: dict[str, Any]
) -> dict[str, Any]:
    """One line of the run's results: the question, what was retrieved and answered, and its scores."""
    return {
        "id": q.id,
        "question": q.question,
        "question_date": q.question_date.isoformat() if q.question_date else None,
        "answerable": q.answerable,
        "type": q.extra.get("type"),
        "gold_doc_ids": q.gold_doc_ids,
        "answers": q.answers,
        "retrieved_doc_ids": [a.doc_id for a in found.articles],
        "answer": answer.text,
        "short": answer.short,
        "refused": answer.refused,
        "confidence": answer.confidence,
        "confidence_level": answer.confidence_level,
        "signals": answer.signals,
        "draft": answer.draft,
        "draft_short": answer.draft_short,
        "claims": [c.to_json() for c in answer.claims],
        "picked": picked,
        "answer_idx": q.answer_idx,
        "cited": sorted({c.number for c in answer.citations}),
        "inferred_citations": answer.inferred_citations,
        "scores": scores,
        "timings": answer.timings,
        "tokens": {"prompt": answer.tokens.prompt, "completion": answer.tokens.completion},
    }


def evaluate(
    eval_set: EvalSet | Path | str,
    *,
    settings: Settings | None = None,
    out_dir: Path | str | None = None,
    backend: str | None = None,
    k: int | None = None,
    limit: int | None = None,
    judge: str | None = None,
    progress: bool = True,
) -> Path:
    """Run (or resume) an evaluation and write its report; returns the run folder."""
    if not isinstance(eval_set, EvalSet):
        eval_set = load_set(eval_set)
    rag, aliases = _pipeline_for(eval_set, settings or Settings())
    generator = rag.generator(backend)
    judge_generator = rag.generator(judge) if judge else None
    k = k or eval_set.config.defaults.k
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out_dir) if out_dir else Path("evals/runs") / f"{eval_set.name}-{generator.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    caps = generator.capabilities
    config = _run_config(eval_set, rag, generator.name, family_of(caps.llm, caps.logprobs), generator.model, k, judge)
    done = done_ids(run_dir, config)
    (run_dir / RUN_CONFIG).write_text(
        json.dumps({**config, "commit": _git_commit(), "started": stamp}, indent=2), encoding="utf-8"
    )
    todo = [q for q in eval_set.questions[:limit] if q.id not in done]
    with (
        open(run_dir / RESULTS, "a", encoding="utf-8") as results,
        tqdm(total=len(todo), desc=f"eval {eval_set.name}", unit="q", disable=not progress) as bar,
    ):
        for q in todo:
            as_of = q.question_date if eval_set.config.defaults.use_question_date else None
            found = rag.search(q.question, k=RETRIEVAL_DEPTH, as_of=as_of)
            answer = rag.answer(q.question, k=k, backend=backend, retrieved=found)
            picked = (
                choose(q.question, q.choices, EvidencePool(answer.passages, rag.embedder.embed), generator)
                if q.choices
                else None
            )
            scored = Scored(q, found, answer, picked, aliases, eval_set.config.complete)
            record = _record(q, found, answer, picked, score_question(scored))
            if judge_generator is not None:
                recall, precision = judge_citations(answer, judge_generator)
                record["scores"]["citation_recall"], record["scores"]["citation_precision"] = recall, precision
            results.write(json.dumps(record, ensure_ascii=False) + "\n")
            results.flush()
            bar.update(1)
    write_report(run_dir)
    return run_dir
