"""Errors in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`), so an OpenAI client raises
its own exception type with the message a user can act on, and nothing else (no stack trace) leaves the
server."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from rag.errors import (
    ConfigError,
    DeadlineError,
    DocumentError,
    FeedbackError,
    IndexDirError,
    LLMError,
    NotFoundError,
    QuestionError,
    RagError,
)

log = logging.getLogger("rag.server")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
}

_STATUS: tuple[tuple[type[RagError], int], ...] = (
    (NotFoundError, 404),
    (QuestionError, 400),
    (FeedbackError, 400),
    (DocumentError, 400),
    (ConfigError, 400),
    (LLMError, 502),
    (IndexDirError, 503),
    (DeadlineError, 503),
)
"""A generator that failed (endpoint down, model missing) is the upstream's fault: 502 with its cause. An
index another process is rebuilding, and an answer stopped at its deadline on a busy server, are a
temporary 503."""


class APIError(Exception):
    """Raised by the routes for a failure that is not a `RagError` (bad key, unknown model)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.headers = status, message, code, param, headers


def error_body(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": _TYPES.get(status, "api_error"), "param": param, "code": code}}


def rag_error_status(exc: RagError) -> int:
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 500)


def rag_error_message(exc: RagError) -> str:
    return f"{exc.message}. {exc.hint}" if exc.hint else exc.message


def _response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(status, message, code=code, param=param), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Every error the app can raise becomes an OpenAI-shaped body with the right status."""

    @app.exception_handler(APIError)
    async def _api(_: Request, exc: APIError) -> JSONResponse:
        return _response(exc.status, exc.message, code=exc.code, param=exc.param, headers=exc.headers)

    @app.exception_handler(RagError)
    async def _rag(_: Request, exc: RagError) -> JSONResponse:
        status = rag_error_status(exc)
        if status >= 500:
            log.warning("%s", exc)
        return _response(status, rag_error_message(exc), code=type(exc).__name__)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        if first.get("type") == "json_invalid":
            message = f"the request body is not valid JSON ({first.get('msg', '')})"
        else:
            message = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg', '')}"
                for e in problems[:5]
            )
        return _response(400, message, param=where or None, code="invalid_request")

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return _response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _response(500, "internal server error; the server log has the details", code="internal_error")
