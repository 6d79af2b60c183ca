"""Keyword (BM25) engines for chunk-level keyword search, measured on RealTime QA's chunks.

Four engines index the same chunk texts with the same terms (`rag.text.index_terms`: bm25s's tokenizer,
Lucene's stop words, the Snowball English stemmer) and answer the same questions (`rag.text.query_terms`):

- `bm25s`: what `rag` used before segments, one bm25s model over every text (`bm25s.BM25().index`, then
  `get_scores`). It tokenizes the whole list of texts at once, so every text is in memory while it builds.
- `termcounts`: `rag.store.sparse.TermCounts`, what `rag` uses now: term counts built in segments of
  50,000 texts streamed from disk (one segment's texts in memory at a time), scored with statistics summed
  over the segments (`KeywordStats`), so the segments score as one bm25s index would, to the last bit.
- `tantivy`: the `tantivy` package (Rust), an on-disk index of the pre-tokenized terms joined by spaces
  in a field with a whitespace-only tokenizer, queried with a disjunction of term queries. Its BM25 has
  k1 = 1.2 (bm25s: 1.5) and quantizes document lengths to one byte.
- `fts5`: SQLite FTS5 over the same joined terms (a contentless table, `unicode61` with diacritics kept
  and `_` as a token character, so that every term survives unchanged), ranked by `bm25(t)` (k1 = 1.2,
  and an idf without Lucene's `1 +`, so a term in more than half of the texts weighs nothing).

Sizes: the real chunks (RealTime QA's deduplicated articles cut by `rag`'s own `Chunker` with its default
settings: 50,083 chunks, as in `rag`'s evaluation index), and the real chunks repeated (20 copies for
1 M). Every text of copy `c` ends with one extra term `xcopyNNz` of that copy, so that no two texts are
equal; the copies of a chunk still have equal terms otherwise, so their scores tie exactly and the
vocabulary does not grow as a real corpus of that size would (see `agreement`).

Each engine and size runs in a fresh process
(`--child`) that builds the index from a stream of texts and
times the questions (top 10 each, after 10 untimed warm-up questions), so its peak RSS is its own;
memory is reported absolute (`ru_maxrss`, and `VmHWM`) and above the process's RSS before building.

    /work/main/.venv/bin/python -m benchmarks.keyword_engines [--sizes 50000 1000000]
        [--engines bm25s termcounts tantivy fts5] [--questions 300] [--nice 10] [--timeout 1200]

Sizes above the real corpus run under `nice -n 10` (`--nice`); an engine that takes longer than
`--timeout` seconds at a size is stopped and recorded as timed out. Results go to
`benchmarks/results/keyword_engines.json` (rewritten after every run), and a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import machine, percentile, write_json
from rag.store.sparse import KeywordStats, TermCounts, batched
from rag.text import bm25s_module, index_terms

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "evaldata" / "realtimeqa" / "corpus.jsonl"
QUESTIONS = ROOT / "evals" / "data" / "realtimeqa" / "questions.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "keyword_engines.json"
ENGINES = ("bm25s", "termcounts", "tantivy", "fts5")
SEGMENT = 50_000
"""Texts per `TermCounts` segment."""
BATCH = 10_000
"""Texts tokenized at a time by the engines that stream (tantivy, fts5)."""
TOP = 10
DEPTH = 200
"""bm25s's rows (with scores) kept per question, for the tie-aware agreement."""
WARMUP = 10
TANTIVY_HEAP = 256_000_000
TANTIVY_THREADS = 1
FTS5_TOKENIZE = "unicode61 remove_diacritics 0 tokenchars '_'"
TIE_TOLERANCE = 1e-5


# ---------------------------------------------------------------------------------------------------
# Data: chunk texts, their articles, the questions (written once by `--prepare`, read by every child)


def prepare(work: Path, corpus: Path, questions_file: Path, questions: int) -> None:
    """Chunks of the deduplicated corpus (`chunks.jsonl`, one JSON string a line), the article of each
    chunk (`meta.json`), the questions' terms and gold articles (`queries.json`), and whether every
    term survives each engine's tokenizer unchanged."""
    from rag.ingest.chunking import Chunker
    from rag.text import query_terms
    from rag.types import Document

    chunker = Chunker()
    kept: dict[str, str] = {}
    """Article text -> id of the first article with it: `rag`'s index keeps one of identical articles."""
    alias: dict[str, str] = {}
    article_ids: list[str] = []
    chunk_article: list[int] = []
    started = time.perf_counter()
    with corpus.open(encoding="utf-8") as source, (work / "chunks.jsonl").open("w", encoding="utf-8") as out:
        for line in source:
            row = json.loads(line)
            doc_id, text, title = row["doc_id"], row["text"], row.get("title") or ""
            if text in kept:
                alias[doc_id] = kept[text]
                continue
            if not text.strip():
                continue
            kept[text] = doc_id
            chunks = chunker.split(Document(id=doc_id, text=text, title=title))
            for chunk in chunks:
                out.write(json.dumps(f"{title}\n{chunk.text}" if title else chunk.text) + "\n")
                chunk_article.append(len(article_ids))
            article_ids.append(doc_id)
    chunk_seconds = time.perf_counter() - started

    asked: list[dict[str, Any]] = []
    with questions_file.open(encoding="utf-8") as source:
        for line in source:
            if len(asked) == questions:
                break
            row = json.loads(line)
            gold = sorted({alias.get(g, g) for g in row.get("gold_doc_ids") or []})
            asked.append(
                {"id": row["id"], "question": row["question"], "terms": query_terms(row["question"]), "gold": gold}
            )

    texts = [json.loads(line) for line in (work / "chunks.jsonl").open(encoding="utf-8")]
    vocabulary = list(index_terms(texts, return_ids=True).vocab)
    meta = {
        "chunks": len(chunk_article),
        "articles": len(article_ids),
        "duplicate_articles": len(alias),
        "chunk_seconds": chunk_seconds,
        "chunk_article": chunk_article,
        "article_ids": article_ids,
        "vocabulary": len(vocabulary),
        "fts5_changed_terms": {
            tokenize: _fts5_changed(vocabulary, tokenize) for tokenize in ("unicode61", FTS5_TOKENIZE)
        },
        "tantivy_changed_terms": _tantivy_changed(vocabulary),
    }
    (work / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    (work / "queries.json").write_text(json.dumps(asked), encoding="utf-8")


def _fts5_changed(vocabulary: Sequence[str], tokenize: str) -> dict[str, Any]:
    """How many terms an FTS5 tokenizer would not keep as exactly one identical token."""
    con = sqlite3.connect(":memory:")
    con.execute(f'CREATE VIRTUAL TABLE t USING fts5(body, tokenize="{tokenize}")')
    con.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", enumerate(vocabulary))
    con.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    found: dict[int, list[str]] = {}
    for term, row in con.execute("SELECT term, doc FROM v"):
        found.setdefault(int(row), []).append(str(term))
    changed = [term for row, term in enumerate(vocabulary) if found.get(row) != [term]]
    return {"count": len(changed), "examples": changed[:12]}


def _tantivy_changed(vocabulary: Sequence[str]) -> dict[str, Any]:
    import tantivy

    analyzer = _tantivy_analyzer(tantivy)
    changed = [term for term in vocabulary if analyzer.analyze(term) != [term]]
    return {"count": len(changed), "examples": changed[:12]}


def _tantivy_analyzer(tantivy: Any) -> Any:
    """Splits on whitespace only: no lower-casing, no length limit, no stemming (the terms are `rag`'s)."""
    return tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()


def copy_term(copy: int) -> str:
    """The term every text of copy `copy` ends with (it survives `index_terms` unchanged)."""
    return f"xcopy{copy:02d}z"


def stream(work: Path, copies: int) -> Iterator[str]:
    """The chunk texts, read from disk one at a time; with copies, each copy's texts end with its term."""
    for copy in range(copies):
        suffix = f" {copy_term(copy)}" if copies > 1 else ""
        with (work / "chunks.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                text: str = json.loads(line)
                yield text + suffix


# ---------------------------------------------------------------------------------------------------
# Engines: each builds from a stream of texts and returns how to search (terms -> best rows, best first)

Search = Callable[[list[str]], list[int]]


class Engine:
    """Build once, then search; `disk` saves or measures the index on disk, `frequencies` reports in how
    many texts each term occurs (to check that every engine indexed the same terms)."""

    def build(self, texts: Iterator[str], folder: Path) -> None:
        raise NotImplementedError

    def search(self, terms: list[str]) -> list[int]:
        raise NotImplementedError

    def disk(self, folder: Path) -> int:
        raise NotImplementedError

    def frequencies(self, terms: Sequence[str]) -> dict[str, int] | None:
        return None

    def settings(self) -> dict[str, Any]:
        return {}


def top_rows(scores: np.ndarray, n: int = TOP) -> list[int]:
    """Rows of the n best positive scores, best first (as `rag.retrieval.corpus.top` ranks)."""
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > n:
        candidates = candidates[np.argpartition(-scores[candidates], n - 1)[:n]]
    ranked: list[int] = candidates[np.argsort(-scores[candidates], kind="stable")].tolist()
    return ranked


class Bm25sEngine(Engine):
    def build(self, texts: Iterator[str], folder: Path) -> None:
        everything = list(texts)  # bm25s tokenizes and indexes the whole list at once
        self.model = bm25s_module().BM25()
        self.model.index(index_terms(everything, return_ids=True), show_progress=False)
        self.size = len(everything)
        del everything

    def scores(self, terms: list[str]) -> np.ndarray:
        known = [term for term in terms if term in self.model.vocab_dict]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.model.get_scores(known), dtype=np.float32)

    def search(self, terms: list[str]) -> list[int]:
        return top_rows(self.scores(terms))

    def disk(self, folder: Path) -> int:
        self.model.save(str(folder), show_progress=False)
        return _folder_bytes(folder)

    def frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        """From bm25s's score matrix: a term's column holds one score per text it occurs in (the idf is
        positive, so no score is zero)."""
        model = self.model
        indptr = model.scores["indptr"]
        vocabulary = model.vocab_dict
        return {
            term: int(indptr[vocabulary[term] + 1] - indptr[vocabulary[term]]) if term in vocabulary else 0
            for term in terms
        }

    def settings(self) -> dict[str, Any]:
        model = self.model
        return {"k1": model.k1, "b": model.b, "method": model.method, "idf_method": model.idf_method}


class TermCountsEngine(Engine):
    def build(self, texts: Iterator[str], folder: Path) -> None:
        self.segments = [TermCounts.build(batch) for batch in batched(texts, SEGMENT)]

    def search(self, terms: list[str]) -> list[int]:
        stats = sum((segment.stats(terms) for segment in self.segments), KeywordStats())
        return top_rows(np.concatenate([segment.scores(terms, stats) for segment in self.segments]))

    def disk(self, folder: Path) -> int:
        """The segments saved as `rag` saves them beside a segment, to be memory-mapped."""
        for number, segment in enumerate(self.segments):
            segment.save(folder / str(number))
        return _folder_bytes(folder)

    def frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        stats = sum((segment.stats(terms) for segment in self.segments), KeywordStats())
        return {term: stats.frequency.get(term, 0) for term in terms}

    def settings(self) -> dict[str, Any]:
        model = bm25s_module().BM25()
        return {"k1": model.k1, "b": model.b, "segment_texts": SEGMENT, "segments": len(self.segments)}


class TantivyEngine(Engine):
    def build(self, texts: Iterator[str], folder: Path) -> None:
        import tantivy

        self.tantivy = tantivy
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("body", stored=False, tokenizer_name="pretokenized", index_option="freq")
        builder.add_unsigned_field("row", stored=False, indexed=False, fast=True)
        self.schema = builder.build()
        index = tantivy.Index(self.schema, path=str(folder), reuse=False)
        index.register_tokenizer("pretokenized", _tantivy_analyzer(tantivy))
        writer = index.writer(heap_size=TANTIVY_HEAP, num_threads=TANTIVY_THREADS)
        row = 0
        for batch in batched(texts, BATCH):
            for terms in index_terms(batch, return_ids=False):
                document = tantivy.Document()
                document.add_text("body", " ".join(terms))
                document.add_unsigned("row", row)
                writer.add_document(document)
                row += 1
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        self.searcher = index.searcher()

    def search(self, terms: list[str]) -> list[int]:
        if not terms:
            return []
        tantivy = self.tantivy
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "body", term, index_option="freq"))
                for term in terms
            ]
        )
        hits = self.searcher.search(query, TOP, count=False).hits
        rows = self.searcher.fast_field_values("row", [address for _, address in hits])
        return [int(row) for row in rows if row is not None]

    def disk(self, folder: Path) -> int:
        return _folder_bytes(folder)

    def frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        return {term: int(self.searcher.doc_freq("body", term)) for term in terms}

    def settings(self) -> dict[str, Any]:
        return {
            "k1": 1.2,
            "b": 0.75,
            "heap_bytes": TANTIVY_HEAP,
            "writer_threads": TANTIVY_THREADS,
            "index_option": "freq",
            "segments": self.searcher.num_segments,
        }


class Fts5Engine(Engine):
    def build(self, texts: Iterator[str], folder: Path) -> None:
        self.con = sqlite3.connect(folder / "fts5.sqlite3", isolation_level=None)
        self.con.execute(f"CREATE VIRTUAL TABLE t USING fts5(body, content='', tokenize=\"{FTS5_TOKENIZE}\")")
        row = 0
        self.con.execute("BEGIN")
        for batch in batched(texts, BATCH):
            joined = [(row + i, " ".join(terms)) for i, terms in enumerate(index_terms(batch, return_ids=False))]
            self.con.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", joined)
            row += len(joined)
        self.con.execute("COMMIT")
        self.con.execute("INSERT INTO t(t) VALUES ('optimize')")

    def search(self, terms: list[str]) -> list[int]:
        if not terms:
            return []
        match = " OR ".join(f'"{term}"' for term in terms)
        found = self.con.execute(f"SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT {TOP}", (match,))
        return [int(row) for (row,) in found]

    def disk(self, folder: Path) -> int:
        return _folder_bytes(folder)

    def frequencies(self, terms: Sequence[str]) -> dict[str, int]:
        self.con.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.v USING fts5vocab(main, t, 'row')")
        found = {
            str(term): int(doc)
            for term, doc in self.con.execute(
                f"SELECT term, doc FROM temp.v WHERE term IN ({','.join('?' * len(terms))})", list(terms)
            )
        }
        return {term: found.get(term, 0) for term in terms}

    def settings(self) -> dict[str, Any]:
        return {
            "k1": 1.2,
            "b": 0.75,
            "tokenize": FTS5_TOKENIZE,
            "content": "contentless",
            "detail": "full",
            "optimized": True,
            "sqlite": sqlite3.sqlite_version,
        }


ENGINE_CLASSES: dict[str, type[Engine]] = {
    "bm25s": Bm25sEngine,
    "termcounts": TermCountsEngine,
    "tantivy": TantivyEngine,
    "fts5": Fts5Engine,
}


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------------
# One engine at one size, in its own process


def child(engine_name: str, copies: int, work: Path, out: Path) -> None:
    from rag.text import query_terms

    query_terms("warm up the tokenizer and stemmer before the baseline")
    engine = ENGINE_CLASSES[engine_name]()
    if engine_name == "termcounts":
        import scipy.sparse  # noqa: F401  (imported before the baseline, as the others' modules are)
    elif engine_name == "tantivy":
        import tantivy  # noqa: F401
    queries = [query["terms"] for query in json.loads((work / "queries.json").read_text(encoding="utf-8"))]
    texts = stream(work, copies)
    folder = Path(tempfile.mkdtemp(prefix=f"{engine_name}-", dir=work))
    baseline_rss, baseline_maxrss = _status_mb("VmRSS"), _maxrss_mb()
    load = os.getloadavg()

    started = time.perf_counter()
    engine.build(texts, folder)
    build_seconds = time.perf_counter() - started
    after_build_maxrss = _maxrss_mb()

    for terms in queries[:WARMUP]:
        engine.search(terms)
    found, seconds = [], []
    for terms in queries:
        begin = time.perf_counter()
        found.append(engine.search(terms))
        seconds.append(time.perf_counter() - begin)
    peak_maxrss, peak_hwm = _maxrss_mb(), _status_mb("VmHWM")

    result: dict[str, Any] = {
        "engine": engine_name,
        "copies": copies,
        "build_s": build_seconds,
        "baseline_rss_mb": baseline_rss,
        "baseline_maxrss_mb": baseline_maxrss,
        "peak_rss_mb": peak_maxrss,
        "peak_rss_above_baseline_mb": peak_maxrss - baseline_rss,
        "peak_rss_after_build_mb": after_build_maxrss,
        "vm_hwm_mb": peak_hwm,
        "query_p50_ms": percentile(seconds, 0.5) * 1000,
        "query_p95_ms": percentile(seconds, 0.95) * 1000,
        "query_mean_ms": float(np.mean(seconds)) * 1000,
        "queries": len(queries),
        "loadavg_at_start": load,
        "settings": engine.settings(),
        "top": found,
    }
    unique = sorted({term for terms in queries for term in terms})
    result["frequencies"] = engine.frequencies(unique)
    if isinstance(engine, Bm25sEngine):  # the reference's deeper ranking with scores, for tie-aware agreement
        depth = []
        for terms in queries:
            scores = engine.scores(terms)
            rows = top_rows(scores, DEPTH)
            depth.append([[row, float(scores[row])] for row in rows])
        result["depth"] = depth
    started = time.perf_counter()
    if isinstance(engine, (Bm25sEngine, TermCountsEngine)):
        saved = Path(tempfile.mkdtemp(prefix=f"{engine_name}-saved-", dir=work))
        result["disk_bytes"] = engine.disk(saved)
        shutil.rmtree(saved, ignore_errors=True)
    else:
        result["disk_bytes"] = engine.disk(folder)
    result["save_s"] = time.perf_counter() - started
    result["texts"] = copies * json.loads((work / "meta.json").read_text(encoding="utf-8"))["chunks"]
    out.write_text(json.dumps(result), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# Comparison with bm25s, Hit@k, and the report


def agreement(found: list[list[int]], reference: dict[str, Any], real: int) -> dict[str, float]:
    """How an engine's top 10 compares with bm25s's at the same size: the mean number of shared rows (of
    10), the share of questions with the same 10 rows in the same order, and a tie-aware overlap: how many
    of the engine's rows bm25s scores at least as high as its own 10th (texts with equal bm25s scores,
    such as the copies of one chunk, are interchangeable). Copies of a chunk score alike in bm25s, so a
    row's bm25s score is read from any copy of its chunk in bm25s's top 200."""
    overlap, identical, tie_aware = [], [], []
    for rows, mine, deep in zip(reference["top"], found, reference["depth"], strict=True):
        overlap.append(len(set(rows) & set(mine)))
        identical.append(rows == mine)
        by_chunk: dict[int, float] = {}
        for row, score in deep:
            by_chunk.setdefault(int(row) % real, float(score))
        threshold = float(deep[len(rows) - 1][1]) if rows else float("inf")
        tie_aware.append(sum(1 for row in mine if by_chunk.get(row % real, 0.0) >= threshold * (1 - TIE_TOLERANCE)))
    return {
        "overlap_at_10": float(np.mean(overlap)),
        "identical_order": float(np.mean(identical)),
        "tie_aware_overlap_at_10": float(np.mean(tie_aware)),
    }


def hits(found: list[list[int]], queries: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, float]:
    """Article-level Hit@5 / Hit@10 over the questions with a gold article in the corpus."""
    chunk_article, article_ids = meta["chunk_article"], meta["article_ids"]
    indexed = set(article_ids)
    scored = {5: 0, 10: 0}
    asked = 0
    for rows, query in zip(found, queries, strict=True):
        gold = set(query["gold"])
        if not gold & indexed:
            continue
        asked += 1
        for k in scored:
            scored[k] += any(article_ids[chunk_article[row % len(chunk_article)]] in gold for row in rows[:k])
    return {"hit_at_5": scored[5] / asked, "hit_at_10": scored[10] / asked, "gold_questions": asked}


def versions() -> dict[str, Any]:
    """The engines' and their dependencies' versions, and the commit measured."""
    found: dict[str, str | None] = {}
    for package in ("bm25s", "numpy", "scipy", "PyStemmer", "tantivy", "tiktoken"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    found["sqlite"] = sqlite3.sqlite_version
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": found,
        "git_commit": commit or None,
    }


def table(runs: list[dict[str, Any]]) -> str:
    header = (
        "| engine | texts | build s | peak RSS MB | above baseline MB | disk MB | p50 ms | p95 ms "
        "| overlap@10 vs bm25s | identical order | tie-aware overlap@10 | Hit@5 | Hit@10 |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]

    def number(value: Any, digits: int) -> str:
        return "–" if value is None else f"{value:,.{digits}f}"

    for run in runs:
        if run.get("status") != "ok":
            lines.append(f"| {run['engine']} | {run['texts']:,} | {run.get('status')} |" + " – |" * 10)
            continue
        lines.append(
            f"| {run['engine']} | {run['texts']:,} | {number(run['build_s'], 1)} | {number(run['peak_rss_mb'], 0)} "
            f"| {number(run['peak_rss_above_baseline_mb'], 0)} | {number(run['disk_bytes'] / 1e6, 1)} "
            f"| {number(run['query_p50_ms'], 2)} | {number(run['query_p95_ms'], 2)} "
            f"| {number(run.get('overlap_at_10'), 2)} | {number(run.get('identical_order'), 3)} "
            f"| {number(run.get('tie_aware_overlap_at_10'), 2)} | {number(run.get('hit_at_5'), 3)} "
            f"| {number(run.get('hit_at_10'), 3)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--nice", type=int, default=10, help="niceness of the runs above the real corpus's size")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds before an engine's run is stopped")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--corpus", type=Path, default=CORPUS, help=argparse.SUPPRESS)
    parser.add_argument("--questions-file", type=Path, default=QUESTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--copies", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(args.prepare, args.corpus, args.questions_file, args.questions)
        return
    if args.child:
        child(args.child, args.copies, args.work, args.result)
        return

    command = [sys.executable, "-m", "benchmarks.keyword_engines"]
    work = Path(tempfile.mkdtemp(prefix="keyword-engines-"))
    try:
        source = ROOT
        print("preparing chunks and questions ...", flush=True)
        inputs = ["--corpus", str(args.corpus), "--questions-file", str(args.questions_file)]
        subprocess.run(
            [*command, "--prepare", str(work), "--questions", str(args.questions), *inputs], cwd=source, check=True
        )
        meta = json.loads((work / "meta.json").read_text(encoding="utf-8"))
        queries = json.loads((work / "queries.json").read_text(encoding="utf-8"))
        real = int(meta["chunks"])
        report: dict[str, Any] = {
            "what": "chunk-level BM25 engines on RealTime QA chunks (benchmarks/keyword_engines.py)",
            "machine": {**machine(), **versions()},
            "corpus": {key: meta[key] for key in ("chunks", "articles", "duplicate_articles", "vocabulary")},
            "tokenizer_checks": {"fts5": meta["fts5_changed_terms"], "tantivy": meta["tantivy_changed_terms"]},
            "questions": len(queries),
            "questions_without_terms": sum(1 for query in queries if not query["terms"]),
            "settings": {"top": TOP, "warmup_queries": WARMUP, "segment_texts": SEGMENT, "timeout_s": args.timeout},
            "runs": [],
        }
        for size in args.sizes:
            copies = max(1, round(size / real))
            reference: dict[str, Any] | None = None
            for name in args.engines:
                result_file = work / f"{name}-{copies}.json"
                run_command = [*command, "--child", name, "--copies", str(copies), "--work", str(work)]
                run_command += ["--result", str(result_file)]
                if copies > 1 and args.nice:
                    run_command = ["nice", "-n", str(args.nice), *run_command]
                print(f"{name} at {copies * real:,} texts ...", flush=True)
                started = time.perf_counter()
                run: dict[str, Any] = {"engine": name, "size": size, "copies": copies, "texts": copies * real}
                try:
                    done = subprocess.run(run_command, cwd=source, timeout=args.timeout, capture_output=True, text=True)
                    if done.returncode != 0:
                        run.update(status="failed", error=done.stderr[-3000:])
                    else:
                        run.update(json.loads(result_file.read_text(encoding="utf-8")), status="ok")
                except subprocess.TimeoutExpired:
                    run.update(status="timed out")
                run["wall_s"] = time.perf_counter() - started
                for leftover in work.glob(f"{name}-*"):
                    if leftover.is_dir():
                        shutil.rmtree(leftover, ignore_errors=True)
                if run["status"] == "ok":
                    if name == "bm25s":
                        reference = run
                    if reference is not None:
                        run.update(agreement(run["top"], reference, real))
                        expected = reference["frequencies"]
                        run["frequency_mismatches_vs_bm25s"] = sum(
                            1 for term, count in run["frequencies"].items() if expected.get(term) != count
                        )
                    if copies == 1:
                        run.update(hits(run["top"], queries, meta))
                    run["queries_with_fewer_than_10"] = sum(1 for rows in run["top"] if len(rows) < TOP)
                print(f"  {run['status']} in {run['wall_s']:.0f} s", flush=True)
                report["runs"].append(run)
                _write(args.out, report)
        print()
        print(table(report["runs"]))
        print(f"\nresults: {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write(path: Path, report: dict[str, Any]) -> None:
    """The report without the per-question lists (rows found, bm25s's deeper ranking, term counts)."""
    slim = dict(report)
    slim["runs"] = [
        {k: v for k, v in run.items() if k not in ("top", "depth", "frequencies")} for run in report["runs"]
    ]
    write_json(path, slim)


if __name__ == "__main__":
    main()
