"""Run folders: what `rag eval` writes and reads back. `run.json` holds the configuration,
`results.jsonl` one line per finished question, flushed as it is written, so an interrupted run resumes
where it stopped; `summary.json`, `report.md` and the plots are derived from those two files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag.errors import RagError

RESULTS = "results.jsonl"
RUN_CONFIG = "run.json"
SUMMARY = "summary.json"
REPORT = "report.md"
PLOT_METRICS = "metrics.png"
PLOT_LATENCY = "latency.png"
PLOT_RISK = "risk_coverage.png"


class RunError(RagError):
    """A run folder that cannot be resumed as asked."""


def done_ids(run_dir: Path, config: dict[str, Any]) -> set[str]:
    config_path, results_path = run_dir / RUN_CONFIG, run_dir / RESULTS
    if not config_path.is_file():
        return set()
    previous = json.loads(config_path.read_text(encoding="utf-8"))
    differing = sorted(k for k in config if k != "started" and previous.get(k) != config[k])
    if differing:
        raise RunError(
            f"{run_dir} holds a run with another configuration ({', '.join(differing)} differ)",
            hint="choose another --out folder, or delete that one to start over",
        )
    if not results_path.is_file():
        return set()
    done = set()
    lines = results_path.read_text(encoding="utf-8").splitlines()
    with open(results_path, "w", encoding="utf-8") as handle:  # drop a torn last line from a crash
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            done.add(record["id"])
            handle.write(line + "\n")
    return done


def read_results(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config_path, results_path = run_dir / RUN_CONFIG, run_dir / RESULTS
    if not config_path.is_file() or not results_path.is_file():
        raise RunError(
            f"{run_dir} is not a run folder (no {RUN_CONFIG} / {RESULTS})", hint="give a folder `rag eval` wrote"
        )
    records = []
    for line in results_path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn line from an interrupted run; the next resume drops it
    return json.loads(config_path.read_text(encoding="utf-8")), records


def load_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / SUMMARY
    if not path.is_file():
        raise RunError(f"{run_dir} has no {SUMMARY}", hint="give a folder `rag eval` wrote, or rerun it")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
