"""Ablation: what each retrieval stage buys, measured by switching the stages on one at a time.

A step's settings pick its stages (`rag.retrieval.stages_for`), and the table lists them beside the
metrics, so a new stage shows up in the ladder as soon as a step turns it on.

Each step of the ladder is an ordinary evaluation run with some settings overridden, so its folder can be
inspected, resumed and compared like any other; the table puts their retrieval metrics side by side.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rag.config import Settings
from rag.evaluation.runner import evaluate
from rag.evaluation.scoring import METRICS
from rag.evaluation.sets import load_set
from rag.retrieval import stages_for

NO_DIVERSITY: dict[str, Any] = {"near_duplicate_similarity": None}
NO_QUESTION_DATES: dict[str, Any] = {"question_dates": "off", **NO_DIVERSITY}
NO_RECENCY: dict[str, Any] = {"recency_weight": 0.0, **NO_QUESTION_DATES}
NO_DATES: dict[str, Any] = {"as_of_filter": False, **NO_RECENCY}
LADDER: tuple[tuple[str, dict[str, Any]], ...] = (
    ("dense", {"retrieval_mode": "dense", "article_ranking": False, **NO_DATES}),
    ("bm25 (chunks)", {"retrieval_mode": "bm25", "article_ranking": False, **NO_DATES}),
    ("hybrid (chunk RRF)", {"retrieval_mode": "hybrid", "article_ranking": False, **NO_DATES}),
    ("+ article ranking", {"retrieval_mode": "hybrid", "article_ranking": True, **NO_DATES}),
    ("+ as-of filter", NO_RECENCY),
    ("+ recency prior", NO_QUESTION_DATES),
    ("+ dates named in the question", NO_DIVERSITY),
    ("+ diversity (the defaults)", {}),
)
"""Steps in order; each turns on one more stage over the previous one. The second-stage model (`reranker`)
is added as a last step when one is configured."""


def ladder(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    steps = [(name, {**overrides, "reranker": None}) for name, overrides in LADDER]
    if settings.retrieval.reranker:
        steps.append((f"+ rescore ({settings.retrieval.reranker})", {}))
    return steps


def ablate(
    eval_set: Path | str,
    *,
    settings: Settings | None = None,
    out_dir: Path | str,
    backend: str = "extractive",
    limit: int | None = None,
    progress: bool = True,
) -> Path:
    """Run every step of the ladder into `out_dir/<step>/` and write `out_dir/ablation.md` (and `.json`).
    The answer backend defaults to `extractive`: the table is about retrieval, which the backend does not
    change, and it keeps the ladder fast."""
    settings = settings or Settings()
    loaded = load_set(eval_set)
    out = Path(out_dir)
    rows: list[dict[str, Any]] = []
    for number, (name, overrides) in enumerate(ladder(settings), start=1):
        step = settings.model_copy(update=overrides)
        run_dir = evaluate(
            loaded,
            settings=step,
            out_dir=out / f"{number:02d}",
            backend=backend,
            limit=limit,
            progress=progress,
        )
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        stages = [stage.name for stage in stages_for(step.retrieval)]
        rows.append(
            {"step": name, "run": run_dir.name, "overrides": overrides, "stages": stages, "metrics": summary["metrics"]}
        )
    (out / "ablation.json").write_text(json.dumps(rows, indent=2, default=str), encoding="utf-8")
    (out / "ablation.md").write_text(table(loaded.name, rows, settings), encoding="utf-8")
    return out


def table(set_name: str, rows: list[dict[str, Any]], settings: Settings) -> str:
    def cell(metrics: Mapping[str, Any], name: str) -> str:
        value = metrics.get(name)
        return f"{value:.3f}" if isinstance(value, int | float) else "–"

    columns = [metric.name for metric in METRICS.values() if metric.ablation]
    lines = [
        f"# Retrieval ablation: {set_name}",
        "",
        f"Document-level metrics unless marked passage; embedding {settings.index.embedding_model}, chunks "
        f"{settings.index.chunk_tokens}/{settings.index.chunk_overlap}. Each step adds one stage to the one above.",
        "",
        "| step | stages | " + " | ".join(columns) + " |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    lines += [
        f"| {row['step']} | {', '.join(row.get('stages', []))} | "
        + " | ".join(cell(row["metrics"], m) for m in columns)
        + " |"
        for row in rows
    ]
    return "\n".join(lines) + "\n"
