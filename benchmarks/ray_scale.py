"""Scale-out on Ray (`rag index --ray`, RAG_RAY_ADDRESS), on one machine: what the Ray path costs before it
is run on machines it could pay off on, and whether it searches as one index does.

One run over the same RealTime QA articles measures

- ingest: `rag index` in this process against `index_with_ray` with 1 and with 2 embedding workers, each on
  a fresh index directory, end to end (the encoder loads are inside every timing, as in a new `rag index`
  process and in fresh Ray actors). The ratio ray seconds / single seconds is Ray's overhead here: on a
  2-core machine the in-process encoder already uses both cores, so 2 Ray workers can at best match it;
- retrieval equality: every development question (searched as of its date) against the single index and
  against the archive, searched in this process and through 2 Ray shard actors: how often the top 10
  articles are identical, and Hit@1, Hit@5, MRR@10 against the gold articles with their differences, so a
  change in ranking shows both as a count and as what it costs;
- search latency, warm (a first search, which loads and counts the index, is run and reported apart).

The Ray cluster is local (`ray.cluster_utils.Cluster`): a head with no CPUs, so it schedules nothing but
Ray's own services, and two one-CPU worker nodes, where the two embedding actors go; the search's shard
actors take no CPU and spread over the nodes. Its start-up is timed apart from the ingests. Each
measurement is taken once: the full run takes about half an hour of both cores."""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.measure import percentile, timed
from rag import RAG
from rag.archive.ingest import split
from rag.archive.shards import connect
from rag.config import Settings
from rag.evaluation.metrics import hit_at_k, mrr_at_k
from rag.pipeline import IndexReport
from rag.pipeline.ray_indexer import index_with_ray
from rag.store.embedding import Embedder

K = 10
WORKERS = (1, 2)
OBJECT_STORE_BYTES = 512 * 2**20
"""Per node: the default (30% of memory per node) would ask three nodes for most of the machine's RAM;
the ingest streams a few dozen articles per block, far below this."""


@dataclass(frozen=True)
class Case:
    """A development question, the date it is asked, and the articles that answer it (empty: not scored)."""

    question: str
    as_of: dt.date | None
    gold: frozenset[str]


@contextmanager
def local_cluster(worker_nodes: int = 2) -> Iterator[tuple[str, float]]:
    """A head (0 CPUs) and `worker_nodes` one-CPU nodes, this process connected as the driver; yields the
    address and the seconds start-up took. Shut down however the body ends: a benchmark that fails must not
    leave raylets holding the machine's cores for the next one."""
    from ray.cluster_utils import Cluster

    started = time.perf_counter()
    cluster = Cluster()
    try:
        cluster.add_node(num_cpus=0, object_store_memory=OBJECT_STORE_BYTES)  # the first node is the head
        for _ in range(worker_nodes):
            cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE_BYTES)
        cluster.wait_for_nodes()
        connect(cluster.address)  # the driver's connection is start-up too; index and search reuse it
        yield cluster.address, time.perf_counter() - started
    finally:
        try:
            import ray

            ray.shutdown()
        finally:
            cluster.shutdown()  # type: ignore[no-untyped-call]


def _encoder_load_s() -> float:
    """Seconds to load the encoder, reported beside the ingests that each include such a load; it also reads
    the model's files once before anything is timed, so no run pays the disk for the others."""
    s = Settings()
    i = s.index
    embedder = Embedder(i.embedding_model, backend=i.embedding_backend, batch_size=i.embedding_batch_size,
                        device=i.embedding_device, cache_dir=s.cache_dir)  # fmt: skip
    return timed(lambda: embedder.encoder)


def _ingest(report: IndexReport, seconds: float) -> dict[str, Any]:
    chunks = report.report.chunks_added
    return {
        "seconds": seconds,
        "articles": len(report.report.added),
        "duplicates": len(report.report.duplicates),
        "chunks": chunks,
        "chunks_per_s": chunks / seconds,
        "errors": len(report.errors),
    }


def _search(rag: RAG, cases: Sequence[Case]) -> tuple[list[list[str]], dict[str, Any]]:
    """Every question's top-K article ids, and the latency of their searches after a warm-up search (the
    first question, untimed in the percentiles: it loads the index and builds the keyword counts)."""
    first = cases[0]
    first_s = timed(lambda: rag.search(first.question, k=K, as_of=first.as_of))
    ranked, times = [], []
    for case in cases:
        start = time.perf_counter()
        found = rag.search(case.question, k=K, as_of=case.as_of)
        times.append(time.perf_counter() - start)
        ranked.append([hit.doc_id for hit in found.articles[:K]])
    return ranked, {
        "first_search_s": first_s,
        "p50_ms": percentile(times, 0.5) * 1000,
        "p95_ms": percentile(times, 0.95) * 1000,
    }


def _quality(ranked: Sequence[Sequence[str]], cases: Sequence[Case]) -> dict[str, float]:
    """Mean Hit@1, Hit@5 and MRR@10 over the questions with gold articles (`rag eval`'s definitions)."""
    scored = [(r, c.gold) for r, c in zip(ranked, cases, strict=True) if c.gold]
    if not scored:
        return {"hit@1": 0.0, "hit@5": 0.0, "mrr@10": 0.0}
    return {
        "hit@1": statistics.fmean(hit_at_k(r, g, 1) or 0.0 for r, g in scored),
        "hit@5": statistics.fmean(hit_at_k(r, g, 5) or 0.0 for r, g in scored),
        "mrr@10": statistics.fmean(mrr_at_k(r, g, K) or 0.0 for r, g in scored),
    }


def _compared(ranked: Sequence[Sequence[str]], baseline: Sequence[Sequence[str]], cases: Sequence[Case],
              base_quality: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    """Agreement with the single index: identical top-K lists (order included), identical top-K sets, and
    the quality metrics with their absolute differences."""
    pairs = list(zip(ranked, baseline, strict=True))
    quality = _quality(ranked, cases)
    return {
        "identical_top10": sum(a == b for a, b in pairs) / len(pairs),
        "same_top10_set": sum(set(a) == set(b) for a, b in pairs) / len(pairs),
        "differing_questions": [c.question for (a, b), c in zip(pairs, cases, strict=True) if a != b][:20],
        **quality,
        "abs_diff": {name: abs(value - base_quality[name]) for name, value in quality.items()},
    }


def run(corpus: Path, cases: Sequence[Case], work: Path | None = None) -> dict[str, Any]:
    """Ingest `corpus` three ways, then search the single index and the archive (in process, on Ray)."""
    with tempfile.TemporaryDirectory(prefix="rag-bench-ray-", dir=work) as tmp:
        return _run(Path(tmp), corpus, cases)


def _run(work: Path, corpus: Path, cases: Sequence[Case]) -> dict[str, Any]:
    encoder_load_s = _encoder_load_s()
    single_dir, archive_dir = work / "single", work / "archive-2"
    single = RAG(index_dir=single_dir, progress=False, ray_address=None)
    started = time.perf_counter()
    single_report = single.index([corpus])
    ingest = {"single": _ingest(single_report, time.perf_counter() - started)}
    result: dict[str, Any] = {
        "articles": len(single_report.report.added),
        "duplicates": len(single_report.report.duplicates),
        "chunks": single_report.report.chunks_added,
        "questions": len(cases),
        "scored_questions": sum(1 for c in cases if c.gold),
        "encoder_load_s": encoder_load_s,
        "cluster": {"head_cpus": 0, "worker_nodes": 2, "cpus_per_worker_node": 1},
        "ingest": ingest,
    }
    with local_cluster() as (address, start_s):
        result["cluster"]["start_s"] = start_s
        for workers in WORKERS:
            settings = Settings(index_dir=work / f"archive-{workers}", progress=False, ray_address=None)
            started = time.perf_counter()
            report = index_with_ray(settings, [corpus], address=address, workers=workers)
            one = _ingest(report, time.perf_counter() - started)
            one["overhead"] = one["seconds"] / ingest["single"]["seconds"]
            ingest[f"ray_{workers}"] = one
        result["search"] = compare_search(single, archive_dir, cases, address)
    return result


def compare_search(single: RAG, archive_dir: Path, cases: Sequence[Case], address: str) -> dict[str, Any]:
    """Search the single index (as configured, and exact: an IVF past `ann_min_chunks` is approximate,
    which no sharding can match) and the archive, in process and on Ray shard actors; agreement is counted
    against the exact single index, since every partition under `ann_min_chunks` is searched exactly."""
    embedder = single.embedder  # one query encoder for every setup: the same cost in each latency
    exact = RAG(single.settings.model_copy(update={"ann_min_chunks": None}), embedder=embedder)
    setups = {
        "single": single,
        "single_exact": exact,
        "archive_in_process": RAG(index_dir=archive_dir, progress=False, ray_address=None, embedder=embedder),
        "archive_ray": RAG(index_dir=archive_dir, progress=False, ray_address=address, ray_shards=2,
                           embedder=embedder),
    }  # fmt: skip
    searches: dict[str, Any] = {}
    ranked: dict[str, list[list[str]]] = {}
    for name, rag in setups.items():
        ranked[name], searches[name] = _search(rag, cases)
    base_quality = _quality(ranked["single_exact"], cases)
    searches["single_exact"].update(base_quality)
    for name in ("single", "archive_in_process", "archive_ray"):
        searches[name].update(_compared(ranked[name], ranked["single_exact"], cases, base_quality))
    return searches


def search_only(index_dir: Path, cases: Sequence[Case], work: Path | None = None) -> dict[str, Any]:
    """The search half without the ingest: the index at `index_dir` split into an archive with its own
    vectors (`rag.archive.ingest.split`), then `compare_search`."""
    with tempfile.TemporaryDirectory(prefix="rag-bench-ray-", dir=work) as tmp:
        single = RAG(index_dir=index_dir, progress=False, ray_address=None)
        split(single.open_index(), Path(tmp) / "archive")
        with local_cluster() as (address, start_s):
            return {
                "search_only": str(index_dir),
                "chunks": len(single.open_index().chunks),
                "questions": len(cases),
                "scored_questions": sum(1 for c in cases if c.gold),
                "cluster": {"head_cpus": 0, "worker_nodes": 2, "cpus_per_worker_node": 1, "start_s": start_s},
                "search": compare_search(single, Path(tmp) / "archive", cases, address),
            }


def markdown(r: dict[str, Any]) -> list[str]:
    """The part's rows for `python -m benchmarks`' table."""
    c = r["cluster"]
    cluster = (
        f"a local Ray cluster of a head with {c['head_cpus']} CPUs and {c['worker_nodes']} worker nodes of "
        f"{c['cpus_per_worker_node']} CPU, started in {c['start_s']:.1f} s"
    )
    if "ingest" not in r:
        lines = ["", f"Ray scale-out, search only: the index at {r['search_only']} ({r['chunks']} chunks) split "
                 f"into an archive with its own vectors; {cluster}."]  # fmt: skip
    else:
        lines = [
            "",
            f"Ray scale-out on this machine, each measured once: {r['articles']} RealTime QA articles (and "
            f"{r['duplicates']} duplicates skipped), {r['chunks']} chunks; {cluster} (encoder load, inside every "
            f"ingest: {r['encoder_load_s']:.1f} s):",
            "",
            "| ingest | seconds | chunks/s | Ray / single machine |",
            "| --- | --- | --- | --- |",
        ]
        names = {
            "single": "`rag index`, this process",
            **{f"ray_{w}": f"`rag index --ray`, {w} worker(s)" for w in WORKERS},
        }
        for key, label in names.items():
            i = r["ingest"][key]
            ratio = f"{i['overhead']:.2f}×" if "overhead" in i else "1.00×"
            lines.append(f"| {label} | {i['seconds']:.1f} | {i['chunks_per_s']:.1f} | {ratio} |")
    lines += [
        "",
        f"Search over {r['questions']} development questions, each as of its date (quality over the "
        f"{r['scored_questions']} with gold articles; latency warm):",
        "",
        "| searched | identical top 10 | same top-10 set | Hit@1 | Hit@5 | MRR@10 | p50 ms | p95 ms | first s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    labels = {
        "single_exact": "single index, exact search (the reference)",
        "single": "single index, as configured (IVF past `ann_min_chunks`)",
        "archive_in_process": "archive, in process",
        "archive_ray": "archive, 2 Ray shard actors",
    }
    for key, label in labels.items():
        s = r["search"][key]
        diff = s.get("abs_diff", {})

        def metric(name: str, s: dict[str, Any] = s, diff: dict[str, float] = diff) -> str:
            return f"{s[name]:.3f}" + (f" (Δ {diff[name]:.3f})" if name in diff else "")

        same = f"{s['identical_top10']:.1%}" if "identical_top10" in s else "—"
        same_set = f"{s['same_top10_set']:.1%}" if "same_top10_set" in s else "—"
        lines.append(
            f"| {label} | {same} | {same_set} | {metric('hit@1')} | {metric('hit@5')} | {metric('mrr@10')} | "
            f"{s['p50_ms']:.1f} | {s['p95_ms']:.1f} | {s['first_search_s']:.2f} |"
        )
    return lines
