"""The request id of an error is the one the client sent, or a fresh one when what it sent is malformed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.harness import NOTE, Tokens
from tests.security.bad_input import SMALL_LIMIT, multipart, request_id, text_of_size
from tests.security.error_shape import assert_error


def _requests(tokens: Tokens, tenant_id: uuid.UUID) -> Iterator[tuple[str, str, dict[str, Any], int]]:
    member = tokens.headers("member", tenant_id)
    yield "GET", "/v1/documents", {}, 401
    yield "GET", f"/v1/documents/{uuid.uuid4()}", {"headers": member}, 404
    yield "GET", "/v1/documents", {"headers": member, "params": {"limit": 0}}, 422
    yield "POST", "/v1/documents", {"headers": member, "files": {"file": ("x.txt", b"", "text/plain")}}, 422
    yield "POST", "/v1/documents", {"headers": tokens.headers("viewer", tenant_id), "files": {"file": ("x", NOTE)}}, 403


async def test_error_request_id_is_the_one_sent(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    for method, path, options, status_code in _requests(tokens, tenant_id):
        rid = request_id("echo")
        headers = dict(options.pop("headers", {})) | {"X-Request-ID": rid}
        response = await client.request(method, path, headers=headers, **options)
        error = assert_error(response, status_code)
        assert error["request_id"] == rid, (method, path)
        assert response.headers["x-request-id"] == rid


async def test_middleware_413_carries_the_request_id_sent(
    small_client: httpx.AsyncClient, member: dict[str, str]
) -> None:
    rid = request_id("too-large")
    body, headers = multipart(("file", "big.txt", text_of_size(SMALL_LIMIT + 300 * 1024, rid)))
    response = await small_client.post("/v1/documents", content=body, headers=member | headers | {"X-Request-ID": rid})
    error = assert_error(response, 413, "too_large")
    assert error["request_id"] == rid


@pytest.mark.parametrize("sent", ["has spaces", "x" * 129, "semi;colon", "ünïcode"])
async def test_malformed_request_id_is_replaced(client: httpx.AsyncClient, sent: str) -> None:
    response = await client.get("/v1/documents", headers={b"X-Request-ID": sent.encode()})
    error = assert_error(response, 401, "missing_token")
    assert error["request_id"] != sent
    uuid.UUID(error["request_id"])
