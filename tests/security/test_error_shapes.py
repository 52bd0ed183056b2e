"""Malformed requests answer 4xx in the error shape `{"error": {"code", "message", "request_id"}}`, never 500.

A hand-picked list instead of a fuzzer: each case names the status and code the contract promises. A 500 fails the
test twice over: the ASGI transport re-raises the app's unhandled exception, and the status would not match.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.harness import Tokens
from tests.security.error_shape import assert_error


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status_code: int
    code: str
    # Who asks: "member" and "admin" carry a token for the test's tenant, "platform" a platform admin's, None none.
    role: str | None = "member"
    options: dict[str, Any] = field(default_factory=dict)


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


DOCUMENT_ID = "00000000-0000-4000-8000-000000000001"
JSON = {"Content-Type": "application/json"}

CASES = [
    # Bad JSON bodies to POST /v1/tenants
    Case("tenant-body-not-json", "POST", "/v1/tenants", 422, "validation_error", "platform",
         {"content": b"{not json", "headers": JSON}),
    Case("tenant-body-truncated", "POST", "/v1/tenants", 422, "validation_error", "platform",
         {"content": b'{"name": "Clinic', "headers": JSON}),
    Case("tenant-body-empty", "POST", "/v1/tenants", 422, "validation_error", "platform",
         {"content": b"", "headers": JSON}),
    Case("tenant-body-array", "POST", "/v1/tenants", 422, "validation_error", "platform",
         {"content": b'["Clinic"]', "headers": JSON}),
    Case("tenant-body-not-utf8", "POST", "/v1/tenants", 400, "bad_request", "platform",
         {"content": b'{"name": "\xff\xfe"}', "headers": JSON}),
    Case("tenant-name-missing", "POST", "/v1/tenants", 422, "validation_error", "platform", {"json": {}}),
    Case("tenant-name-number", "POST", "/v1/tenants", 422, "validation_error", "platform", {"json": {"name": 5}}),
    Case("tenant-name-empty", "POST", "/v1/tenants", 422, "validation_error", "platform", {"json": {"name": ""}}),
    Case("tenant-name-too-long", "POST", "/v1/tenants", 422, "validation_error", "platform",
         {"json": {"name": "x" * 201}}),
    Case("tenant-extra-field", "POST", "/v1/tenants", 422, "validation_error", "platform",
         {"json": {"name": "Clinic", "status": "active"}}),
    Case("tenant-name-no-letters", "POST", "/v1/tenants", 422, "invalid_name", "platform", {"json": {"name": "!!!"}}),
    Case("tenant-name-nul", "POST", "/v1/tenants", 422, "validation_error", "platform",
         {"content": b'{"name": "Clinic\\u0000One"}', "headers": JSON}),
    Case("tenant-name-lone-surrogate", "POST", "/v1/tenants", 422, "validation_error", "platform",
         {"content": b'{"name": "Clinic \\ud800"}', "headers": JSON}),
    Case("tenant-status-bogus", "PATCH", "/v1/tenants/{tenant_id}", 422, "validation_error", "platform",
         {"json": {"status": "deleted"}}),
    # Wrong methods and unknown paths
    Case("put-documents", "PUT", "/v1/documents", 405, "method_not_allowed"),
    Case("delete-documents", "DELETE", "/v1/documents", 405, "method_not_allowed"),
    Case("patch-document", "PATCH", f"/v1/documents/{DOCUMENT_ID}", 405, "method_not_allowed"),
    Case("delete-tenants", "DELETE", "/v1/tenants", 405, "method_not_allowed", "platform"),
    Case("get-content-by-post", "POST", f"/v1/documents/{DOCUMENT_ID}/content", 405, "method_not_allowed"),
    Case("unknown-path", "GET", "/v1/nothing-here", 404, "not_found"),
    # Ids that are not uuids
    Case("document-id-not-uuid", "GET", "/v1/documents/not-a-uuid", 422, "validation_error"),
    Case("document-id-sql", "GET", "/v1/documents/1%27%20OR%20%271%27=%271", 422, "validation_error"),
    Case("content-id-not-uuid", "GET", "/v1/documents/not-a-uuid/content", 422, "validation_error"),
    Case("delete-id-not-uuid", "DELETE", "/v1/documents/not-a-uuid", 422, "validation_error"),
    Case("restore-id-not-uuid", "POST", "/v1/documents/not-a-uuid/restore", 422, "validation_error"),
    Case("tenant-id-not-uuid", "GET", "/v1/tenants/not-a-uuid", 422, "validation_error", "platform"),
    Case("patch-tenant-id-not-uuid", "PATCH", "/v1/tenants/12345", 422, "validation_error", "platform",
         {"json": {"status": "active"}}),
    # List parameters
    Case("limit-zero", "GET", "/v1/documents", 422, "validation_error", options={"params": {"limit": 0}}),
    Case("limit-1000", "GET", "/v1/documents", 422, "validation_error", options={"params": {"limit": 1000}}),
    Case("limit-negative", "GET", "/v1/documents", 422, "validation_error", options={"params": {"limit": -1}}),
    Case("limit-not-int", "GET", "/v1/documents", 422, "validation_error", options={"params": {"limit": "ten"}}),
    Case("limit-huge", "GET", "/v1/documents", 422, "validation_error", options={"params": {"limit": "9" * 40}}),
    Case("status-bogus", "GET", "/v1/documents", 422, "validation_error", options={"params": {"status": "bogus"}}),
    Case("cursor-not-base64", "GET", "/v1/documents", 422, "invalid_cursor", options={"params": {"cursor": "!!!"}}),
    Case("cursor-bad-padding", "GET", "/v1/documents", 422, "invalid_cursor", options={"params": {"cursor": "abc"}}),
    Case("cursor-not-utf8", "GET", "/v1/documents", 422, "invalid_cursor",
         options={"params": {"cursor": base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode()}}),
    Case("cursor-no-separator", "GET", "/v1/documents", 422, "invalid_cursor",
         options={"params": {"cursor": _cursor("2024-01-01T00:00:00+00:00")}}),
    Case("cursor-id-not-uuid", "GET", "/v1/documents", 422, "invalid_cursor",
         options={"params": {"cursor": _cursor("2024-01-01T00:00:00+00:00|not-a-uuid")}}),
    Case("cursor-date-underflow", "GET", "/v1/documents", 422, "invalid_cursor",
         options={"params": {"cursor": _cursor(f"0001-01-01T00:00:00+14:00|{DOCUMENT_ID}")}}),
    Case("cursor-date-overflow", "GET", "/v1/documents", 422, "invalid_cursor",
         options={"params": {"cursor": _cursor(f"9999-12-31T23:59:59-14:00|{DOCUMENT_ID}")}}),
    Case("cursor-too-long", "GET", "/v1/documents", 422, "validation_error",
         options={"params": {"cursor": "A" * 201}}),
    # Malformed uploads
    Case("multipart-without-boundary", "POST", "/v1/documents", 400, "bad_request",
         options={"content": b"--x\r\n\r\n", "headers": {"Content-Type": "multipart/form-data"}}),
    Case("upload-as-json", "POST", "/v1/documents", 422, "validation_error",
         options={"json": {"file": "aGVsbG8="}}),
    Case("upload-two-files", "POST", "/v1/documents", 400, "bad_request",
         options={"files": [("file", ("a.txt", b"first note")), ("file", ("b.txt", b"second note"))]}),
]  # fmt: skip


def _headers(role: str | None, tokens: Tokens, tenant_id: uuid.UUID) -> dict[str, str]:
    if role is None:
        return {}
    if role == "platform":
        return tokens.platform()
    assert role in ("admin", "member")
    return tokens.headers("member" if role == "member" else "admin", tenant_id)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_malformed_request_is_a_4xx_in_the_error_shape(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, case: Case
) -> None:
    options = dict(case.options)
    request_id = f"shape-{case.id}"
    headers = _headers(case.role, tokens, tenant_id) | dict(options.pop("headers", {})) | {"X-Request-ID": request_id}
    response = await client.request(case.method, case.path.format(tenant_id=tenant_id), headers=headers, **options)
    error = assert_error(response, case.status_code, case.code)
    assert error["request_id"] == request_id


async def test_the_cases_are_well_formed_when_corrected(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    """Controls: the same routes answer 2xx to corrected requests, so the cases above fail for their input only."""
    member = tokens.headers("member", tenant_id)
    platform = tokens.platform()
    assert (await client.post("/v1/tenants", json={"name": "Clinic Two"}, headers=platform)).status_code == 201
    assert (
        await client.patch(f"/v1/tenants/{tenant_id}", json={"status": "active"}, headers=platform)
    ).status_code == 200
    assert (await client.get(f"/v1/tenants/{tenant_id}", headers=platform)).status_code == 200
    assert (await client.get(f"/v1/documents/{DOCUMENT_ID}", headers=member)).status_code == 404
    listed = await client.get(
        "/v1/documents",
        params={
            "limit": 100,
            "status": "queued",
            "cursor": _cursor(f"2024-01-01T00:00:00+00:00|{DOCUMENT_ID}"),
        },
        headers=member,
    )
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"items": [], "next_cursor": None}
    uploaded = await client.post("/v1/documents", files={"file": ("a.txt", b"first note")}, headers=member)
    assert uploaded.status_code == 202, uploaded.text
