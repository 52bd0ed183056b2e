"""What `/openapi.json` says about errors and authentication, so that clients (and the fuzzer) can trust it.

* Every error status an operation can answer is declared with the one error shape, `ErrorResponse`,
  through `error_responses(...)` on the route decorator. Declaring 422 there also keeps FastAPI from
  adding its own `HTTPValidationError`, a shape this API never sends (`api.errors` rewrites it).
* Protected operations carry `BEARER` (or `METRICS_BEARER`) in `openapi_extra`: a declaration only.
  Authentication still runs in `api.context` (and `core.metrics_auth`), which answer 401 in the error
  shape; `install_openapi` adds the schemes those requirements name.
* Every operation has a `summary` and a `description` for integrators (in its route decorator), and
  each error status an example of its answer (`ERROR_EXAMPLES`); `tests/api/test_openapi.py` checks
  that every example matches its schema, and `tests/api/test_generated_client.py` that a generated
  client works against the app.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

API_DESCRIPTION = """Multi-tenant document ingestion and semantic search for health data (PHI).

* **Authentication**: `Authorization: Bearer <JWT>` on every `/v1` operation. The token's `role` decides what
  it may do (each operation names the roles it admits); tenant roles act only in their own `tenant_id`.
* **Documents** are uploaded (202, `queued`), then processed in the background: poll
  `GET /v1/documents/{document_id}` until `status` is `ready` (searchable) or `failed` (with `error_code` and
  `error_message`).
* **Pages**: list operations answer `{"items": [...], "next_cursor": ...}`; pass `next_cursor` back as `cursor`
  until it is null.
* **Errors** always have the shape `{"error": {"code", "message", "request_id"}}`; `code` is stable, and each
  operation lists the statuses it can answer. Messages never repeat submitted values.
* **Audit**: every call that reads or changes tenant data, and every refusal, is recorded in the tenant's
  tamper-evident audit trail.
"""

TAGS: list[dict[str, str]] = [
    {"name": "documents", "description": "Upload, list, read, download, delete and restore documents."},
    {"name": "search", "description": "Semantic (vector) and hybrid search over the tenant's ready documents."},
    {"name": "audit", "description": "The tenant's audit trail, for tenant administrators: read, export, verify."},
    {"name": "tenants", "description": "Tenants, for platform administrators: create, list, suspend, resume."},
    {"name": "users", "description": "Users, token revocation and break-glass access, for tenant administrators."},
    {"name": "health", "description": "Probes and metrics for operators."},
]
"""The operation groups, in the order the interactive docs show them."""

BEARER_SCHEME = "bearerAuth"
METRICS_SCHEME = "metricsToken"


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable: `not_found`, `validation_error`, `rate_limited`, ...")
    message: str = Field(description="For a person; never quotes submitted values.")
    request_id: str | None = Field(description="The request's `X-Request-ID`, for support and the audit trail.")


class ErrorResponse(BaseModel):
    """Every error, whatever its status."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"error": {"code": "not_found", "message": "document not found", "request_id": "3f6c2a1e-8d4b"}}
            ]
        }
    )

    error: ErrorBody


class Liveness(BaseModel):
    """`GET /healthz`: the process answers."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]


class Readiness(BaseModel):
    """`GET /readyz`: each dependency's check, `ok` or why not (the same shape with 200 and 503)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready", "checks": {"database": "ok", "broker": "ok", "embedder": "ok"}},
                {"status": "unavailable", "checks": {"database": "ok", "broker": "ok", "embedder": "loading"}},
            ]
        }
    )

    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description="`database`, `broker` and `embedder`: `ok`, or the reason.")


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

ERROR_EXAMPLES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "the request body could not be parsed"),
    401: ("missing_token", "a bearer token is required"),
    403: ("forbidden", "role 'viewer' may not do this"),
    404: ("not_found", "document not found"),
    409: ("retention_expired", "this document was deleted too long ago to be restored"),
    413: ("too_large", "the file is larger than the limit of 52428800 bytes"),
    415: (
        "unsupported_content",
        "Unsupported file type: upload a PDF, DOCX, text, Markdown, HTML, CSV or JSON file.",
    ),
    422: ("validation_error", "query: Field required"),
    429: ("rate_limited", "the per-user rate limit for this operation was reached; retry after 12 seconds"),
    503: ("service_unavailable", "the database is unavailable; retry later"),
}
"""A typical `code` and `message` per status, shown as the example of each declared error response."""

_RETRY_AFTER = {"Retry-After": {"description": "Whole seconds to wait before retrying.", "schema": {"type": "integer"}}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route decorator for the error statuses it can answer, all in the error shape."""
    return {
        status: {
            "model": ErrorResponse,
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"example": _error_example(status)}},
            **({"headers": _RETRY_AFTER} if status in (429, 503) else {}),
        }
        for status in statuses
    }


def _error_example(status: int) -> dict[str, Any]:
    code, message = ERROR_EXAMPLES[status]
    return {"error": {"code": code, "message": message, "request_id": "3f6c2a1e-8d4b-4c1e-9f0a-5b7d2e6c1a90"}}


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
        "description": (
            "A JWT with the claims `sub`, `exp`, `role` (`platform_admin`, `admin`, `member` or `viewer`) and, for "
            "the three tenant roles, `tenant_id`; each operation's description names the roles it admits "
            "(see docs/API.md)."
        ),
    },
    METRICS_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "`PHIVAULT_METRICS_TOKEN`, when configured (always in production).",
    },
}


def _nullable(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or any(branch.get("type") == "null" for branch in schema.get("anyOf", []))


def _restore_nulls(example: Any, schema: dict[str, Any], components: dict[str, Any]) -> None:
    """Put back the `null`s of `example` (in place), walking it along `schema`.

    FastAPI encodes the whole document without `None` values, examples included, so an example's
    `"next_cursor": null` would be published without the field, and no longer match its own schema
    (the field is required). A required nullable field an example lacks can only have been a null."""
    while "$ref" in schema:
        schema = components[schema["$ref"].removeprefix("#/components/schemas/")]
    branches = [branch for branch in schema.get("anyOf", []) if branch.get("type") != "null"]
    if len(branches) == 1:
        _restore_nulls(example, branches[0], components)
    elif isinstance(example, list) and "items" in schema:
        for item in example:
            _restore_nulls(item, schema["items"], components)
    elif isinstance(example, dict):
        for name, field in schema.get("properties", {}).items():
            if name in example:
                _restore_nulls(example[name], field, components)
            elif name in schema.get("required", ()) and _nullable(field):
                example[name] = None


def _examples_with_nulls(schema: dict[str, Any]) -> None:
    """`_restore_nulls` over the components' examples and the JSON examples of every operation."""
    components = schema["components"]["schemas"]
    for component in components.values():
        for example in component.get("examples", []):
            _restore_nulls(example, component, components)
    for methods in schema["paths"].values():
        for operation in methods.values():
            for response in operation.get("responses", {}).values():
                media = response.get("content", {}).get("application/json", {})
                if "example" in media:
                    _restore_nulls(media["example"], media["schema"], components)


def install_openapi(app: FastAPI) -> None:
    """Publish the security schemes the operations' requirements refer to, and examples with their nulls."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            _examples_with_nulls(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
