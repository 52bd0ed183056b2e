"""What a refusal is, and the one shape every error leaves a server in.

Services raise `DomainError`s: a stable machine-readable code and a message a person can act on,
never quoting what the client sent (it could be PHI). The edges decide how to show one:
`api.errors` maps each kind to an HTTP status, the command line prints the message.

`error_body` is the JSON every server of PHIVault answers an error with (the API's handlers and
middleware, the upload limit, the worker's metrics endpoint); `send_error` writes it to a raw ASGI
`send` for the layers that run outside FastAPI's exception handlers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.types import Send


class DomainError(Exception):
    """A refusal with a stable `code` and a `message` safe to show (no client input in it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidInput(DomainError):
    """The request is well-formed but a value in it cannot be used (HTTP 422)."""


class NotFound(DomainError):
    """No such resource for this caller; another tenant's id is answered alike (HTTP 404, audited as denied)."""

    def __init__(self, resource_type: str, resource_id: object) -> None:
        super().__init__("not_found", f"{resource_type} not found")
        self.resource_type = resource_type
        self.resource_id = resource_id


class Conflict(DomainError):
    """The resource's current state does not allow the action (HTTP 409)."""


def error_body(code: str, message: str, request_id: str | None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": request_id}}


async def send_error(
    send: Send,
    status_code: int,
    code: str,
    message: str,
    request_id: str | None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Answer a raw ASGI request with `error_body` (for middleware, where no exception handler runs)."""
    body = json.dumps(error_body(code, message, request_id)).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": status_code, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
