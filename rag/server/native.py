"""`rag`'s own routes: search, the articles in the index, kept conversations and feedback. Writes to the
index (`POST` and `DELETE /v1/documents`) are on their own router so they can be kept to admin keys."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import logging
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from rag.errors import RagError
from rag.ingest.loaders.records import record_text
from rag.pipeline import IndexReport
from rag.pipeline.stories import final
from rag.server.errors import APIError, error_body, rag_error_message, rag_error_status
from rag.server.export import summary_json, to_json, to_markdown
from rag.server.openai_api import ServiceDep, StoreDep
from rag.server.schemas import DocumentsIn, FeedbackIn, FollowIn, RenameIn, SearchRequest, TimelineRequest
from rag.server.security import Caller
from rag.server.service import Service
from rag.store.records import added_through_api
from rag.types import Timeline, content_hash

log = logging.getLogger(__name__)

reads = APIRouter(prefix="/v1", tags=["rag"])
writes = APIRouter(prefix="/v1", tags=["rag: index changes"])

RECORDS_NAME = "documents.jsonl"
"""The name JSON-posted articles are indexed under: an error's line is the article's position plus one."""
AUDIT_NAME = "api-writes.jsonl"


@reads.post("/search", summary="The passages and articles a question finds, with the dates searched")
def search(body: SearchRequest, svc: ServiceDep) -> dict[str, Any]:
    found = svc.pipeline.search(body.question, k=body.k, since=body.since, until=body.until, as_of=body.as_of)
    records = svc.pipeline.open_index().documents
    articles = []
    for hit in found.articles:
        record = records.get(hit.doc_id)
        articles.append(
            {
                "doc_id": hit.doc_id,
                "rank": hit.rank,
                "score": round(hit.score, 6),
                "title": record.title if record else None,
                "published": record.published.isoformat() if record and record.published else None,
                "url": record.url if record else None,
                "also_in": list(hit.also_in),
            }
        )
    return {
        "question": body.question,
        "searched_dates": found.searched_dates,
        "as_of": found.as_of.isoformat(),
        "articles": articles,
        "passages": [p.to_json() for p in found.passages],
        "seconds": round(found.seconds, 4),
    }


@reads.get("/documents", summary="The articles in the index, newest first")
def documents(
    svc: ServiceDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 100, offset: Annotated[int, Query(ge=0)] = 0
) -> dict[str, Any]:
    records = svc.pipeline.documents()
    page = records[offset : offset + limit]
    return {
        "total": len(records),
        "data": [
            {
                "id": r.id,
                "title": r.title,
                "published": r.published.isoformat() if r.published else None,
                "url": r.url,
                "source": r.source,
                "chunks": len(r.chunk_ids),
                "added": added_through_api(r.metadata) or None,
            }
            for r in page
        ],
    }


@writes.post(
    "/documents",
    summary="Add or update articles: files (multipart, field `files`) or JSON records",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    }
                },
                "application/json": {"schema": DocumentsIn.model_json_schema()},
            }
        }
    },
)
async def add_documents(request: Request, svc: ServiceDep) -> dict[str, Any]:
    """Each file is read on its own: a bad one is named in `errors` and the others are indexed. Only the
    new or changed articles are embedded; searches meanwhile see the index before or after, never halfway."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        files = await _uploads(request)
    elif kind.startswith("application/json"):
        try:
            body = DocumentsIn.model_validate_json(await request.body())
        except ValidationError as exc:  # parsed here, not by FastAPI: reported the same way, as a 400
            raise RequestValidationError(exc.errors(include_input=False)) from None
        records = [_with_id(record) for record in body.documents]
        files = [(RECORDS_NAME, b"\n".join(orjson.dumps(record) for record in records))]
    else:
        raise APIError(415, "send files as multipart/form-data (field `files`) or articles as JSON",
                       code="unsupported_media_type")  # fmt: skip
    writer, at = _writer(request, svc), dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    provenance = {"added_by": writer, "added_at": at}
    report = await run_in_threadpool(functools.partial(svc.pipeline.index_uploads, files, provenance=provenance))
    changed = report.report.added + report.report.updated
    if changed:
        _audit(svc, {"at": at, "by": writer, "action": "add", "ids": changed})
    return _report(report)


def _writer(request: Request, svc: Service) -> str:
    """Who wrote, as stored: the key's keyed hash (the conversations' owner id, shortened), never the key."""
    who: Caller = request.state.caller
    owner = svc.store.for_key(who.key).owner
    return owner[:16] if who.key is not None else "api (no keys)"


def _audit(svc: Service, entry: dict[str, Any]) -> None:
    """One line per API write in `api-writes.jsonl` beside the conversations: who added or deleted which
    articles, and when (a deleted article's own record is gone)."""
    path = svc.store.path.parent / AUDIT_NAME
    try:
        with open(path, "a", encoding="utf-8") as file:
            file.write(orjson.dumps(entry).decode() + "\n")
    except OSError as exc:
        log.warning("could not record an API write in %s: %s", path, exc)


def _with_id(record: dict[str, Any]) -> dict[str, Any]:
    """A record without an id or url is named by its content: under the request's line number, the first
    article of the next request would replace the first of this one."""
    if record.get("id") or record.get("doc_id") or record.get("url"):
        return record
    text = record_text(record)
    return {**record, "id": f"api-{content_hash(text)[:16]}"} if isinstance(text, str) and text.strip() else record


async def _uploads(request: Request) -> list[tuple[str, bytes]]:
    async with request.form(max_files=10_000) as form:
        files = [
            (item.filename or "", await item.read()) for item in form.getlist("files") if isinstance(item, UploadFile)
        ]
    if not files:
        raise APIError(400, "no files in the form: send them in the `files` field", code="invalid_request",
                       param="files")  # fmt: skip
    return files


def _report(result: IndexReport) -> dict[str, Any]:
    r = result.report
    return {
        "added": r.added,
        "updated": r.updated,
        "unchanged": r.unchanged,
        "duplicates": [{"id": doc_id, "same_as": other} for doc_id, other in r.duplicates],
        "repeated": r.repeated,
        "chunks_added": r.chunks_added,
        "errors": [{"file": e.path, "line": e.line, "problem": e.problem, "hint": e.hint} for e in result.errors],
        "seconds": round(result.seconds, 3),
    }


@writes.delete("/documents/{doc_id:path}", summary="Remove an article and its passages from the index")
def delete_document(doc_id: str, request: Request, svc: ServiceDep) -> dict[str, Any]:
    if doc_id not in svc.pipeline.ensure_index().documents:
        raise APIError(404, f"no article {doc_id!r} in the index", code="document_not_found", param="doc_id")
    svc.pipeline.delete(doc_id)
    at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    _audit(svc, {"at": at, "by": _writer(request, svc), "action": "delete", "ids": [doc_id]})
    return {"id": doc_id, "deleted": True}


@reads.post("/timeline", summary="A story's events in date order, each quoted from a cited article")
def timeline(body: TimelineRequest, svc: ServiceDep) -> Any:
    steps = svc.pipeline.timeline_stream(body.topic, since=body.since, until=body.until, as_of=body.as_of)
    first = next(steps)  # built before any byte is sent: a bad topic or index is an error status
    if not body.stream:
        return final(itertools.chain([first], steps)).to_json()
    return StreamingResponse(_timeline_lines(first, steps), media_type="application/x-ndjson",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip


def _timeline_lines(first: Timeline, steps: Iterator[Timeline]) -> Iterator[bytes]:
    """Each step of the timeline as one JSON line; a failure after the first as an error line, the status
    being sent already."""
    try:
        for step in itertools.chain([first], steps):
            yield orjson.dumps(step.to_json()) + b"\n"
    except RagError as exc:
        yield orjson.dumps(error_body(rag_error_status(exc), rag_error_message(exc))) + b"\n"


@reads.get("/follows", summary="The followed questions with their last answers, and the changes not yet seen")
def follows(svc: ServiceDep, mark_seen: bool = False) -> dict[str, Any]:
    """`mark_seen=true`: the changes listed are marked seen (the next call lists only newer ones)."""
    store = svc.pipeline.stories.follows()
    return {
        "data": [f.to_json() for f in store.followed()],
        "changes": [c.to_json() for c in store.changes(unseen=True, mark_seen=mark_seen)],
    }


@writes.post("/follows", summary="Follow a question: asked again after every sync, its changes recorded")
def follow(body: FollowIn, svc: ServiceDep) -> dict[str, Any]:
    return svc.pipeline.follow(body.question, body.webhook).to_json()


@writes.delete("/follows/{follow_id}", summary="Stop following a question")
def unfollow(follow_id: int, svc: ServiceDep) -> dict[str, Any]:
    return {**svc.pipeline.stories.follows().remove(follow_id).to_json(), "deleted": True}


@reads.get("/conversations", summary="Kept conversations, most recently active first")
def conversations(store: StoreDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
    return {"data": [summary_json(c) for c in store.list(limit)]}


@reads.get("/conversations/{conversation_id}", summary="One conversation with its answers (JSON or Markdown)")
def conversation(
    conversation_id: str, store: StoreDep, format: Annotated[str, Query(pattern="^(json|markdown)$")] = "json"
) -> Response:
    found = store.get(conversation_id)
    if format == "markdown":
        return PlainTextResponse(to_markdown(found), media_type="text/markdown; charset=utf-8")
    return Response(orjson.dumps(to_json(found)), media_type="application/json")


@reads.patch("/conversations/{conversation_id}", summary="Rename a conversation")
def rename(conversation_id: str, body: RenameIn, store: StoreDep) -> dict[str, Any]:
    summary = store.rename(conversation_id, body.title)
    return {"id": summary.id, "title": summary.title}


@reads.delete("/conversations/{conversation_id}", summary="Delete a conversation, its answers and their feedback")
def delete_conversation(conversation_id: str, store: StoreDep) -> dict[str, Any]:
    store.delete(conversation_id)
    return {"id": conversation_id, "deleted": True}


@reads.post("/feedback", summary="Rate an answer: helpful, wrong answer or wrong source, with a comment")
def feedback(body: FeedbackIn, store: StoreDep) -> dict[str, Any]:
    kept = store.add_feedback(body.turn_id, body.rating, body.comment)
    return {"id": kept.id, "turn_id": kept.turn_id, "rating": kept.rating, "created": kept.created.isoformat()}
