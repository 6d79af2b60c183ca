"""`python -m benchmarks`: run every part (or `--parts`), write JSON and a Markdown table.

python -m benchmarks                      # all parts, 5 repeats, 150 RealTime QA articles
python -m benchmarks --parts query        # one part
python -m benchmarks --smoke              # seconds: the seed article, one repeat, no LlamaIndex (CI)
python -m benchmarks --parts ray          # opt-in: ingest and search on a local Ray cluster (half an hour)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, get_args

from benchmarks import cold, disk_scale, growth, ingest, latency, page, ray_scale, scale, serve, sync_scale
from benchmarks.measure import machine, peak_rss_mb, write_json
from rag import RAG
from rag.config import EmbeddingBackend, Settings
from rag.evaluation.runner import eval_index_dir
from rag.evaluation.timelines import TOPICS
from rag.local_models import EMBEDDERS, assembled_path, is_assembled
from rag.store.index import read_manifest

ROOT = Path(__file__).resolve().parent.parent
SHARED_CORPUS = ROOT.parent / "shared" / "evaldata" / "realtimeqa" / "corpus.jsonl"
RTQA_QUESTIONS = ROOT / "evals" / "data" / "realtimeqa" / "questions.jsonl"
PARTS = (
    "index", "query", "rescore", "cold", "answer", "timeline", "memory", "scale", "growth", "serve", "disk", "sync",
    "ray",
)  # fmt: skip
OPT_IN = ("disk", "sync", "ray")
"""Parts run only when `--parts` names them: disk writes up to 20 GB, ray takes half an hour of every core."""
RESCORE_QUESTIONS = 60
"""RealTime QA questions the rescore part asks: each one's first search embeds about 40 passages (seconds)."""
SEED_QUESTIONS = [
    "Who is the Secretary General of the CSTO?",
    "Who is the spokesperson of Russia's Foreign Ministry?",
    "Who is Armenia's foreign minister?",
    "In which city was Azerbaijan's foreign minister scheduled to meet the Minsk Group co-chairs?",
    "How did Putin characterize the events taking place in Artsakh?",
]


def rtqa_questions() -> list[tuple[str, dt.date | None]]:
    rows = [json.loads(line) for line in RTQA_QUESTIONS.read_text(encoding="utf-8").splitlines()]
    return [
        (r["question"], dt.date.fromisoformat(r["question_date"]) if r.get("question_date") else None) for r in rows
    ]


def rtqa_gold() -> list[frozenset[str]]:
    """Each question's gold article ids, in `rtqa_questions()`'s order (empty: the question is not scored)."""
    rows = [json.loads(line) for line in RTQA_QUESTIONS.read_text(encoding="utf-8").splitlines()]
    return [frozenset(r.get("gold_doc_ids") or ()) for r in rows]


def rtqa_index() -> Path | None:
    """The RealTime QA evaluation index (`rag eval evals/data/realtimeqa` builds it), if there is one."""
    path = eval_index_dir(Settings(), "realtimeqa")
    return path if (path / "manifest.json").is_file() and RTQA_QUESTIONS.is_file() else None


def run(options: argparse.Namespace, parts: list[str], results: dict[str, Any]) -> None:
    """Fills `results` part by part, so a failure late in a long run keeps what was measured."""
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        _run(Path(tmp), options, parts, results)


def _run(work: Path, options: argparse.Namespace, parts: list[str], results: dict[str, Any]) -> None:
    smoke, repeats = options.smoke, 1 if options.smoke else options.repeats
    results.update(machine=machine(), repeats=repeats, started=dt.datetime.now().isoformat())
    big = None if smoke else rtqa_index()
    if "index" in parts:
        corpus = (
            ROOT / "seeds" if smoke else ingest.sample_corpus(SHARED_CORPUS, options.articles, work / "corpus.jsonl")
        )
        backends = [Settings().index.embedding_backend] if smoke else list(get_args(EmbeddingBackend))
        results["index"] = ingest.run(corpus, repeats, not options.no_llamaindex and not smoke, backends)
    if "query" in parts:
        if big is not None:
            results["query"] = latency.search(RAG(index_dir=big, progress=False), rtqa_questions(), repeats)
        else:
            seed = RAG(index_dir=work / "seed-index", progress=False)
            results["query"] = latency.search(seed, [(q, None) for q in SEED_QUESTIONS], repeats)
    if "rescore" in parts and is_assembled(EMBEDDERS["nomic-embed-text-v1.5"], Settings().cache_dir):
        settings = Settings(reranker="nomic-embed-text-v1.5", cache_dir=work / "rescore-cache", progress=False)
        (work / "rescore-cache" / "models").mkdir(parents=True, exist_ok=True)
        model = EMBEDDERS["nomic-embed-text-v1.5"]
        (work / "rescore-cache" / "models" / model.file).symlink_to(assembled_path(model, Settings().cache_dir))
        if big is not None:
            asked, where = rtqa_questions()[:RESCORE_QUESTIONS], big
        else:
            asked, where = [(q, None) for q in SEED_QUESTIONS], work / "seed-index"
        plain = RAG(index_dir=where, progress=False)
        plain.ensure_index()
        results["rescore"] = latency.rescore(plain, RAG(settings, index_dir=where), asked, repeats)
    if "cold" in parts:
        if big is not None:
            cold_index, question = big, rtqa_questions()[0][0]
        else:
            cold_index, question = work / "seed-index", SEED_QUESTIONS[0]
            RAG(index_dir=cold_index, progress=False).ensure_index()
        results["cold"] = {"chunks": read_manifest(cold_index).n_chunks}
        results["cold"].update(cold.first_question(cold_index, question, repeats))
    if "timeline" in parts:
        if big is not None:
            topics = [(topic, dt.date.fromisoformat(as_of)) for topic, as_of in TOPICS]
            results["timeline"] = latency.timelines(RAG(index_dir=big, progress=False), topics, repeats)
        else:
            seed = RAG(index_dir=work / "seed-index", progress=False)
            results["timeline"] = latency.timelines(seed, [("Armenia and the CSTO", None)], repeats)
    if "answer" in parts and not smoke:
        local = RAG(index_dir=work / "seed-index", progress=False, backend="local")
        results["answer"] = latency.answer(local, SEED_QUESTIONS, repeats)
    if "memory" in parts and big is not None:
        rag = str(Path(sys.executable).with_name("rag"))
        env = {**os.environ, "RAG_INDEX_DIR": str(big), "RAG_PROGRESS": "false"}
        question = SEED_QUESTIONS[0]
        results["memory"] = {
            backend: peak_rss_mb([rag, "ask", question, "--backend", backend, "--json"], env)[0]
            for backend in ("extractive", "local")
        }
        results["memory"]["index_chunks"] = len(RAG(index_dir=big).open_index().chunks)
        if page.available():
            results["memory"]["page"] = page.peak_rss(big, question, "local")
    if "growth" in parts and not smoke:
        corpus = ingest.sample_corpus(SHARED_CORPUS, options.articles, work / "growth-base.jsonl")
        asked = rtqa_questions()[:50] if RTQA_QUESTIONS.is_file() else [(q, None) for q in SEED_QUESTIONS]
        results["growth"] = growth.run(corpus, asked, work)
    if "serve" in parts:
        models = ["rag-extractive"] if smoke else ["rag-extractive", "rag-local"]
        seconds, clients = (5.0, 4) if smoke else (options.serve_seconds, options.serve_clients)
        parallel = [int(n) for n in options.local_parallel.split(",")]
        results["serve"] = serve.run(work, ROOT / "seeds", SEED_QUESTIONS, seconds, clients, models, parallel)
    if "disk" in parts and big is not None:
        dated = [(q, d.isoformat() if d else None) for q, d in rtqa_questions()[:200]]
        sizes = [int(size) for size in options.disk_sizes.split(",")]
        results["disk"] = disk_scale.run(work, sizes, RAG(index_dir=big, progress=False).open_index(), dated)
    if "sync" in parts and big is not None:
        results["sync"] = sync_scale.run(work, big, options.sync_target, rtqa_questions()[:50])
        sync_scale.plot(results["sync"], options.out / "sync_scale.png")
    if "scale" in parts:
        if big is None:
            results["scale"] = scale.run(5_000 if smoke else options.vectors)
        else:
            real = RAG(index_dir=big, progress=False)
            _, chunk_vectors = real.open_index().stored_vectors()
            questions = [q for q, _ in rtqa_questions()[:200]]
            results["scale"] = scale.run(options.vectors, chunk_vectors, real.embedder.embed(questions))
    if "ray" in parts:
        cases = [
            ray_scale.Case(question, as_of, gold)
            for (question, as_of), gold in zip(rtqa_questions(), rtqa_gold(), strict=True)
        ]
        if options.ray_index:
            results["ray"] = ray_scale.search_only(options.ray_index, cases, work)
        else:
            articles = 20 if smoke else options.ray_articles or sys.maxsize
            corpus = ingest.sample_corpus(SHARED_CORPUS, articles, work / "ray-corpus.jsonl")
            results["ray"] = ray_scale.run(corpus, cases, work)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}; "
        f"medians of {results['repeats']} runs, ratios over as many interleaved pairs ({results['started'][:16]}).",
        "",
        "| measure | value |",
        "| --- | --- |",
    ]
    if "index" in results:
        lines += _index_rows(results["index"])
    if "query" in results:
        q = results["query"]
        lines += [
            f"| search over {q['chunks']} chunks ({q['questions']} questions) | p50 {q['p50_ms']:.1f} ms, "
            f"p95 {q['p95_ms']:.1f} ms (question embedding p50 {q['embed_p50_ms']:.1f} ms) |",
            f"| first search of a process, index files in the page cache | {q['first_search_s']:.2f} s |",
        ]
    if "rescore" in results:
        r = results["rescore"]
        lines.append(
            f"| search with the second stage ({r['model']}, {r['depth']} articles × {r['passages_per_article']} "
            f"passages) over {r['chunks']} chunks, {r['questions']} questions | passages not yet cached: p50 "
            f"{r['uncached_p50_ms']:.0f} ms, p95 {r['uncached_p95_ms']:.0f} ms; cached: p50 "
            f"{r['cached_p50_ms']:.0f} ms, p95 {r['cached_p95_ms']:.0f} ms; without it: p50 "
            f"{r['without_p50_ms']:.0f} ms, p95 {r['without_p95_ms']:.0f} ms |"
        )
    if "cold" in results:
        c = results["cold"]
        lines.append(
            f"| cold first question over {c['chunks']} chunks ({c['evicted_mb']:.0f} MB of index dropped from the page "
            f"cache, new process): first search median {c['first_search_s']['median']:.2f} s, worst "
            f"{c['first_search_s']['max']:.2f} s | before it: import {c['import_s']['median']:.2f} s, embedding model "
            f"{c['model_s']['median']:.2f} s |"
        )
    if "timeline" in results:
        t = results["timeline"]
        lines.append(
            f"| timeline over {t['chunks']} chunks ({t['topics']} topics, `rag timeline`) | p50 {t['p50_s']:.2f} s, "
            f"p95 {t['p95_s']:.2f} s, first events p50 {t['first_p50_s']:.2f} s, median {t['events_median']:.0f} "
            "events |"
        )
    if "answer" in results:
        a = results["answer"]
        lines.append(
            f"| local answer ({a['model']}), {a['k']} passages | full answer p50 {a['total_p50_s']:.2f} s "
            f"(model {a['generate_p50_s']:.2f} s), p95 {a['total_p95_s']:.2f} s, {a['prompt_tokens_median']:.0f} "
            "prompt tokens |"
        )
    if "memory" in results:
        mem = results["memory"]
        lines.append(
            f"| peak RSS of `rag ask` over {mem['index_chunks']} chunks | extractive {mem['extractive']:.0f} MB, "
            f"local {mem['local']:.0f} MB |"
        )
        if "page" in mem:
            lines.append(
                f"| peak RSS of the chat page (`rag ui`, local model) after one question | "
                f"{mem['page']['peak_rss_mb']:.0f} MB (page opened to answer shown: "
                f"{mem['page']['first_answer_s']:.1f} s) |"
            )
    if "serve" in results:
        lines += _serve_rows(results["serve"])
    if "disk" in results:
        lines += [
            "",
            "`rag`'s index on disk (IVF-SQ8 codes in RAM, exact vectors memory-mapped for rescoring, articles "
            "and chunks in the records file), search with the question embedding, in a fresh process; hybrid adds "
            "BM25 over articles and chunks (disk and build time include its indexes):",
            "",
            "| chunks | search | nprobe | p50 ms | p95 ms | recall@10 | peak RSS MB | anonymous MB | file pages MB | "
            "load s | disk MB | build s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {d['chunks']:,} | {d.get('mode', 'dense')} | {d['nprobe']} | {d['p50_ms']:.1f} | {d['p95_ms']:.1f} | "
            f"{d['recall@10']:.3f} | {d['peak_rss_mb']:,.0f} | {d['rssanon_mb']:,.0f} | {d['rssfile_mb']:,.0f} | "
            f"{d['load_s']:.1f} | {sum(d['disk_mb'].values()) + d.get('bm25_mb', 0):,.0f} | "
            f"{sum(d['build_s'].values()) + d.get('bm25_build_s', 0):.0f} |"
            for d in results["disk"]
        ]
    if "sync" in results:
        lines += sync_scale.rows(results["sync"])
    if "scale" in results:
        sc = results["scale"]
        lines += ["", f"Search at {sc['vectors']:,} synthetic {sc['dim']}-d vectors ({sc['source']}):", ""]
        lines += [
            "| index | p50 ms | p95 ms | recall@10 | build s | bytes/vector |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {name} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['recall@10']:.3f} | {r['build_s']:.0f} | "
            f"{r['bytes_per_vector']:.0f} |"
            for name, r in sc["indexes"].items()
        ]
    if "ray" in results:
        lines += ray_scale.markdown(results["ray"])
    if "growth" in results:
        lines += ["", "Growth (one index build per size; search p50 over 50 questions):", ""]
        lines += [
            "| corpus | articles | chunks | index s | chunks/s | disk MB | `rag ask` RSS MB | search p50 ms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {g['factor']}× | {g['articles']} | {g['chunks']} | {g['index_s']:.0f} | "
            f"{g['chunks'] / g['index_s']:.1f} | {g['disk_mb']:.1f} | {g['rss_mb']:.0f} | {g['search_p50_ms']:.1f} |"
            for g in results["growth"]
        ]
    return "\n".join(lines) + "\n"


def _serve_rows(r: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"`rag serve` under load: {r['clients']} concurrent clients for {r['seconds']:.0f} s per backend over the seed "
        f"index, one article uploaded every {serve.UPLOAD_EVERY_S:.0f} s meanwhile (`rag doctor` afterwards: "
        f"{'ok' if r['doctor_ok'] else 'FAILED'}):",
        "",
        "| model | answers served | shed (503, p95 s to it) | errors | answers/s | p50 s | p95 s | max s | uploads "
        "(found at once, lost) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in r["phases"]:
        u = p["uploads"]
        at_once = f" ({p['local_parallel']} at once)" if p.get("local_parallel") else ""
        lines.append(
            f"| {p['model']}{at_once} | {p['served']} | {p.get('shed', 0)} ({p.get('shed_p95_s')}) | {p['errors']} | "
            f"{p['requests_per_s']:.2f} | {p['p50_s']} | "
            f"{p['p95_s']} | {p['max_s']} | {u['uploaded']} ({u['found_at_once']}, {len(u['lost'])}) |"
        )
    return lines


def _ratio(r: dict[str, float]) -> str:
    return f"{r['median']:.2f}× (worst pair {r['min']:.2f}×, best {r['max']:.2f}×)"


def _index_rows(r: dict[str, Any]) -> list[str]:
    rows = []
    for backend, b in r["backends"].items():
        default = " (default)" if backend == r["default_backend"] else ""
        rows.append(
            f"| `rag index`, {backend}{default}: {r['articles']} articles, {b['chunks']} chunks | "
            f"{b['rag_index_chunks_per_s']:.1f} chunks/s; {_ratio(b['vs_raw_encoder'])} its raw encoder "
            f"({b['raw_encoder_chunks_per_s']:.1f} chunks/s) |"
        )
        if "vs_llamaindex_per_article" in b:
            rows.append(
                f"| … against LlamaIndex, {backend} | per article {_ratio(b['vs_llamaindex_per_article'])}; per chunk "
                f"{_ratio(b['vs_llamaindex_per_chunk'])}; against LlamaIndex at rag's chunk size, per article "
                f"{_ratio(b['vs_llamaindex_rag_size_per_article'])} |"
            )
    if "llamaindex" in r:
        li = r["llamaindex"]
        rows.append(
            f"| LlamaIndex {li['versions']['llama-index-core']} ingest (torch fp32) | {li['nodes']} nodes at 256/20 "
            f"tokens, median {li['seconds']['median']:.1f} s; {li['nodes_at_rag_size']} nodes at rag's size, median "
            f"{li['seconds_at_rag_size']['median']:.1f} s |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--parts",
        default=",".join(p for p in PARTS if p not in OPT_IN),
        help=f"comma-separated, of: {', '.join(PARTS)} (default: all but disk, which writes up to 20 GB, sync, which "
        "grows an index to a million chunks in 100-article saves (an hour), and ray, which takes half an hour of every "
        "core)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--articles", type=int, default=150, help="RealTime QA articles indexed by the index part")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run on the seed article (CI)")
    parser.add_argument("--no-llamaindex", action="store_true", help="skip the LlamaIndex comparison")
    parser.add_argument("--vectors", type=int, default=1_000_000, help="synthetic vectors searched by the scale part")
    parser.add_argument("--serve-seconds", type=float, default=60.0, help="load duration per backend (serve part)")
    parser.add_argument("--serve-clients", type=int, default=20, help="concurrent clients (serve part)")
    parser.add_argument(
        "--local-parallel", default="1,2", help="RAG_LOCAL_PARALLEL values the local model is loaded under (serve part)"
    )
    parser.add_argument("--disk-sizes", default="1000000,4000000", help="corpus sizes of the disk part, in chunks")
    parser.add_argument("--sync-target", type=int, default=1_000_000, help="chunks the sync part grows the index to")
    parser.add_argument(
        "--ray-articles", type=int, default=None, help="RealTime QA articles of the ray part (default: all 3786)"
    )
    parser.add_argument(
        "--ray-index",
        type=Path,
        help="the ray part's search half only, over this index split into an archive with its own vectors",
    )
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if not args.smoke and "index" in parts and not SHARED_CORPUS.is_file():
        parser.error(f"the index part reads {SHARED_CORPUS}; use --smoke without it")
    if "ray" in parts and not (SHARED_CORPUS.is_file() and RTQA_QUESTIONS.is_file()):
        parser.error(f"the ray part reads {SHARED_CORPUS} and {RTQA_QUESTIONS}")
    name = "smoke" if args.smoke else "latest"
    results: dict[str, Any] = {}
    try:
        run(args, parts, results)
    except BaseException:
        write_json(args.out / f"{name}.partial.json", results)
        print(f"failed; what was measured is in {args.out / f'{name}.partial.json'}", file=sys.stderr)
        raise
    write_json(args.out / f"{name}.json", results)
    table = markdown(results)
    (args.out / f"{name}.md").write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
