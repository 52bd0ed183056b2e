"""What `/openapi.json` says about errors and authentication, so that clients (and the fuzzer) can trust it.

* Every error status an operation can answer is declared with the one error shape, `ErrorResponse`,
  through `error_responses(...)` on the route decorator. Declaring 422 there also keeps FastAPI from
  adding its own `HTTPValidationError`, a shape this API never sends (`api.errors` rewrites it).
* Protected operations carry `BEARER` (or `METRICS_BEARER`) in `openapi_extra`: a declaration only.
  Authentication still runs in `api.context` (and `core.metrics_auth`), which answer 401 in the error
  shape; `install_openapi` adds the schemes those requirements name.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

BEARER_SCHEME = "bearerAuth"
METRICS_SCHEME = "metricsToken"


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable: `not_found`, `validation_error`, `rate_limited`, ...")
    message: str = Field(description="For a person; never quotes submitted values.")
    request_id: str | None = Field(description="The request's `X-Request-ID`, for support and the audit trail.")


class ErrorResponse(BaseModel):
    """Every error, whatever its status."""

    error: ErrorBody


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The request body could not be parsed: JSON that is not UTF-8, or a malformed multipart body.",
    401: "No bearer token, or one that is malformed, expired, badly signed or for another audience.",
    403: "The token's role may not do this, or its tenant is suspended or gone.",
    404: "No such resource in the caller's tenant; another tenant's id answers exactly the same.",
    409: "The resource's current state does not allow this.",
    413: "The upload is larger than the configured limit (`PHIVAULT_MAX_UPLOAD_BYTES`).",
    415: "The file is of a type PHIVault does not accept (judged from its bytes, not its name).",
    422: "The request is invalid; the message names the fields, never their values.",
    429: "A per-user or per-tenant rate limit was reached; retry after `Retry-After` seconds.",
    503: "The database (or another dependency) is unavailable; retry later.",
}

_RETRY_AFTER = {"Retry-After": {"description": "Whole seconds to wait before retrying.", "schema": {"type": "integer"}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route decorator for the error statuses it can answer, all in the error shape."""
    return {
        status: {
            "model": ErrorResponse,
            "description": ERROR_DESCRIPTIONS[status],
            **({"headers": _RETRY_AFTER} if status in (429, 503) else {}),
        }
        for status in statuses
    }


def link(method: str, path: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to the operation `method path`, its parameters taken from runtime expressions
    (`$response.body#/id`, `$request.path.document_id`): how a client, or the fuzzer, chains calls."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {"operationRef": f"#/paths/{pointer}/{method}", "parameters": parameters}


BEARER: dict[str, Any] = {"security": [{BEARER_SCHEME: []}]}
"""`openapi_extra` of an operation behind `Authorization: Bearer <JWT>`."""

METRICS_BEARER: dict[str, Any] = {"security": [{METRICS_SCHEME: []}, {}]}
"""`openapi_extra` of `GET /metrics`: its own token, required only where one is configured."""

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Claims `sub`, `role`, `exp`, and `tenant_id` for tenant users (see docs/API.md).",
    },
    METRICS_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "`PHIVAULT_METRICS_TOKEN`, when configured (always in production).",
    },
}


def install_openapi(app: FastAPI) -> None:
    """Publish the security schemes the operations' requirements refer to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
