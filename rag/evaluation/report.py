"""Reports: the summary, Markdown report and plots of a run folder, comparisons between runs, and the CI
gate. Everything here is derived from `run.json` and `results.jsonl`, so a report can be rebuilt."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.evaluation import scoring, selective
from rag.evaluation.runfolder import (
    PLOT_LATENCY,
    PLOT_METRICS,
    PLOT_RISK,
    REPORT,
    SUMMARY,
    load_summary,
    read_results,
)
from rag.evaluation.scoring import KS, METRICS, STAGES


def summarize(config: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every registered metric over the run, plus counts."""
    counts = {
        "questions": len(records),
        "answerable": sum(r["answerable"] for r in records),
        "with_gold_docs": sum(1 for r in records if r["gold_doc_ids"]),
        "multiple_choice": sum(1 for r in records if r["picked"] is not None),
        "refused": sum(r["refused"] for r in records),
        "citations": sum(r["scores"]["citations"] for r in records),
    }
    summary = {"config": config, "counts": counts, "metrics": scoring.summarize(records)}
    kinds = sorted({r["type"] for r in records if r.get("type")})
    if len(kinds) > 1:  # a set of several kinds of question (MultiHop-RAG's comparison, temporal, ...)
        summary["by_type"] = {
            kind: {"questions": len(rows), "metrics": scoring.summarize(rows)}
            for kind in kinds
            if (rows := [r for r in records if r.get("type") == kind])
        }
    return summary


BY_TYPE = ("hit@5", "mrr@10", "contains", "f1", "answered_precision", "refusal_rate", "aurc")
"""The metrics the report lists per question type."""


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown(summary: dict[str, Any]) -> str:
    c, n, m = summary["config"], summary["counts"], summary["metrics"]
    lines = [
        f"# Eval report: {c['set']} — {c['backend']} ({c['model']})",
        "",
        f"{n['questions']} questions ({n['answerable']} answerable, {n['with_gold_docs']} with gold articles, "
        f"{n['multiple_choice']} multiple choice); k = {c['k']}, retrieval scored to depth "
        f"{c['retrieval_depth']}; embedding {c['embedding_model']}, chunks {c['chunk_tokens']}/{c['chunk_overlap']}; "
        f"commit {c.get('commit') or 'unknown'}; "
        f"judge: {c.get('judge') or 'none (ALCE citation metrics not computed)'}.",
        "",
        "## Retrieval",
        "",
        "| level | metric | " + " | ".join(f"@{k}" for k in KS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in KS) + " |",
    ]
    for level in ("document", "passage"):
        bases = dict.fromkeys(metric.base for metric in METRICS.values() if metric.level == level)
        for base in bases:
            row = [_fmt(m.get(f"{base}@{k}")) for k in KS]
            lines.append(f"| {level} | {base.removeprefix('passage_')} | " + " | ".join(row) + " |")
    lines += ["", "## Answers, citations, refusals", "", "| metric | value |", "| --- | --- |"]
    for metric in METRICS.values():
        if metric.level in ("answer", "citation", "refusal"):
            lines.append(f"| {metric.name} | {_fmt(m.get(metric.name))} |")
    lines += [
        "",
        "## Selective answering",
        "",
        f"Answers below the confidence threshold ({c.get('min_confidence', '–')}) are withheld. The curve answers "
        "the most confident questions first: the risk is the share of wrong answers among those answered.",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for metric in METRICS.values():
        if metric.level == "selective":
            lines.append(f"| {metric.name} | {_fmt(m.get(metric.name))} |")
    if "by_type" in summary:
        lines += ["", "## By question type", "", "| type | questions | " + " | ".join(BY_TYPE) + " |"]
        lines.append("| --- | --- | " + " | ".join("---" for _ in BY_TYPE) + " |")
        for kind, part in summary["by_type"].items():
            row = [_fmt(part["metrics"].get(name)) for name in BY_TYPE]
            lines.append(f"| {kind} | {part['questions']} | " + " | ".join(row) + " |")
    lines += ["", "## Cost", "", "| stage | p50 (s) | p95 (s) | mean (s) |", "| --- | --- | --- | --- |"]
    for stage in STAGES:
        stats = [_fmt(m.get(f"latency_{stage}_{s}")) for s in ("p50", "p95", "mean")]
        lines.append(f"| {stage} | " + " | ".join(stats) + " |")
    lines += [
        "",
        f"Tokens per question (tiktoken): {_fmt(m.get('tokens_prompt_mean'))} prompt, "
        f"{_fmt(m.get('tokens_completion_mean'))} completion. Metric definitions: README, section Evaluation.",
        "",
        f"![metrics]({PLOT_METRICS})",
        f"![risk-coverage]({PLOT_RISK})",
        f"![latency]({PLOT_LATENCY})",
        "",
    ]
    return "\n".join(lines)


def plot(summary: dict[str, Any], records: Sequence[dict[str, Any]], run_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = summary["metrics"]
    names = [name for name in scoring.headline() if m.get(name) is not None]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar(names, [m[name] for name in names], color="#4c78a8")
    ax.set_ylim(0, 1)
    ax.set_title(f"{summary['config']['set']} · {summary['config']['backend']}")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(run_dir / PLOT_METRICS, dpi=100)
    plt.close(fig)
    curve = selective.risk_coverage(scoring.confidence_pairs(records))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    if curve:
        ax.plot([c for c, _ in curve], [r for _, r in curve], color="#4c78a8", label="by confidence")
        ax.axhline(curve[-1][1], color="#999999", linestyle="--", linewidth=1, label="answering all")
        shown = m.get("coverage")
        if shown is not None:
            ax.axvline(shown, color="#e45756", linewidth=1, label=f"threshold (coverage {shown:.2f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("coverage (share answered, most confident first)")
    ax.set_ylabel("risk (share wrong)")
    ax.set_title(f"risk–coverage · AURC {_fmt(m.get('aurc'))}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run_dir / PLOT_RISK, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for stage in STAGES:
        series = [r["timings"][stage] for r in records if stage in r["timings"]]
        if series:
            ax.hist(series, bins=30, alpha=0.6, label=stage)
    ax.set_xlabel("seconds")
    ax.set_ylabel("questions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / PLOT_LATENCY, dpi=100)
    plt.close(fig)


def write_report(run_dir: Path) -> dict[str, Any]:
    config, records = read_results(run_dir)
    summary = summarize(config, records)
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (run_dir / REPORT).write_text(markdown(summary), encoding="utf-8")
    plot(summary, records, run_dir)
    return summary


def compare(run_a: Path, run_b: Path) -> str:
    """A Markdown table of every metric either run has, with B − A."""
    a, b = load_summary(run_a)["metrics"], load_summary(run_b)["metrics"]
    lines = [f"| metric | A: {run_a.name} | B: {run_b.name} | B − A |", "| --- | --- | --- | --- |"]
    for name in sorted(set(a) | set(b)):
        va, vb = a.get(name), b.get(name)
        delta = f"{vb - va:+.3f}" if isinstance(va, float) and isinstance(vb, float) else "–"
        lines.append(f"| {name} | {_fmt(va)} | {_fmt(vb)} | {delta} |")
    return "\n".join(lines)


def gate(summary: dict[str, Any], floors: Sequence[str], ceilings: Sequence[str] = ()) -> list[str]:
    """Failures for `METRIC=VALUE` thresholds: below a floor, above a ceiling (a rate that must stay low,
    such as wrong refusals), or a metric the run does not have. The names offered for a missing metric are
    only those with a value: a None metric (mc_accuracy on a set without choices) would itself fail the
    gate, so listing it as "known" would mislead. A threshold of nan or inf is malformed: nothing compares
    below nan, so such a gate could never fail."""
    failures = []
    values = summary["metrics"]
    measured = sorted(name for name, value in values.items() if value is not None)
    for spec, ceiling in [*((f, False) for f in floors), *((c, True) for c in ceilings)]:
        name, _, raw = spec.partition("=")
        name = name.strip()
        try:
            wanted = float(raw)
            if not math.isfinite(wanted):
                raise ValueError(raw)
        except ValueError:
            failures.append(f"{spec!r}: write METRIC=VALUE, e.g. hit@5=0.8")
            continue
        if name not in values or values[name] is None:
            failures.append(f"{name}: not measured by this run (known: {', '.join(measured)})")
        elif ceiling and values[name] > wanted:
            failures.append(f"{name} = {values[name]:.3f} is above {wanted}")
        elif not ceiling and values[name] < wanted:
            failures.append(f"{name} = {values[name]:.3f} is below {wanted}")
    return failures
