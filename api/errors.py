"""Every error leaves as `{"error": {"code", "message", "request_id"}}`; a client error is never a 500.

Services raise domain errors (`core.errors`; `RejectedUpload`, `TenantUnavailable`); this module
alone decides their HTTP status (`status_of`). A dependency that is down (PostgreSQL unreachable,
restarting or out of connections; the object store failing an upload) is a 503
`service_unavailable` with `Retry-After`: the request may be sent again. It is logged as a warning
naming the exception types, never their messages (a driver's message can quote row data). Any
other database error is a bug and stays a 500.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.db import DatabaseUnreachable, database_unavailable
from core.errors import Conflict, DomainError, InvalidInput, NotFound, error_body
from ingest.detect import RejectedUpload
from ingest.objects import StorageUnavailable
from tenants.service import TenantUnavailable
from users.revocations import RevocationsUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
"""What a 503 asks the client to wait: about the time a managed PostgreSQL takes to restart or fail over."""

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error with a stable machine-readable code and its HTTP status, raised by the HTTP layer itself."""

    def __init__(self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    request: Request, status_code: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    return JSONResponse(status_code=status_code, content=error_body(code, message, request_id), headers=headers)


REJECTION_STATUS = {"too_large": 413, "unsupported_content": 415}
"""An upload refused at the door is a 422 unless its code says the size or the kind of file is the problem."""


def status_of(error: DomainError) -> int:
    """The HTTP status of a refusal raised by a service."""
    if isinstance(error, RejectedUpload):
        return REJECTION_STATUS.get(error.code, 422)
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, TenantUnavailable):
        return 403
    if isinstance(error, InvalidInput):
        return 422
    return 400


CLIENT_KEYED = frozenset({"filters", "metadata"})
"""Objects whose keys the client chooses: a location inside one is named by the object alone."""

QUOTES_INPUT = frozenset({"uuid_parsing"})
"""Pydantic errors whose message quotes part of the input after a comma (`..., found `x` at 1`)."""


def _validation_message(exc: RequestValidationError) -> str:
    """Field paths and reasons only. A client-chosen key (an unexpected field, a filter or metadata key)
    is never echoed, since it could itself be PHI; neither is any submitted value."""
    parts = []
    for error in exc.errors():
        loc = [p for p in error.get("loc", ()) if p != "body"]
        keyed = next((index for index, part in enumerate(loc) if part in CLIENT_KEYED), None)
        if keyed is not None:
            loc = loc[: keyed + 1]
        elif loc and error.get("type") == "extra_forbidden":
            loc = loc[:-1]
        location = ".".join(str(p) for p in loc)
        message = str(error.get("msg", "invalid"))
        if error.get("type") in QUOTES_INPUT:
            message = message.split(",", 1)[0]
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(dict.fromkeys(parts)) or "invalid request"


def unavailable(exc: BaseException) -> APIError | None:
    """The 503 for a dependency outage, or None when `exc` is anything else."""
    if database_unavailable(exc):
        dependency = "the database"
    elif isinstance(exc, StorageUnavailable):
        dependency = "object storage"
    elif isinstance(exc, RevocationsUnavailable):
        dependency = "the token revocation store"
    else:
        return None
    return APIError(
        503,
        "service_unavailable",
        f"{dependency} is unavailable; retry later",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def log_unavailable(exc: BaseException, request_id: str | None) -> None:
    """One warning with the outage's exception type and its root cause's (`ConnectionRefusedError`, ...)."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    log.warning(
        "dependency unavailable",
        extra={"request_id": request_id, "error_type": type(exc).__name__, "cause_type": type(root).__name__},
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(request, exc.status_code, exc.code, exc.message, exc.headers)

    @app.exception_handler(DomainError)
    async def _domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return error_response(request, status_of(exc), exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "error")
        return error_response(request, exc.status_code, code, str(exc.detail))

    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeoutError)
    @app.exception_handler(DatabaseUnreachable)
    @app.exception_handler(StorageUnavailable)
    @app.exception_handler(RevocationsUnavailable)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        error = unavailable(exc)
        if error is None:
            raise exc  # a real fault: the request layer answers 500 and logs its type
        log_unavailable(exc, getattr(request.state, "request_id", None))
        return error_response(request, error.status_code, error.code, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 422, "validation_error", _validation_message(exc))
