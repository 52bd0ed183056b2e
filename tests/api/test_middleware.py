"""The request layer: client address behind trusted proxies, one JSON log line, and a PHI-free 500."""

from __future__ import annotations

import ipaddress
import logging
import uuid

import httpx
import pytest

from api.app import create_app
from api.middleware import client_address, parse_networks
from core.runtime import Services
from core.settings import Settings
from tests.harness import Tokens

PROXIES = parse_networks(["10.0.0.0/8", "127.0.0.1/32"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.1.2.3", "198.51.100.1", "198.51.100.1"),
        ("10.1.2.3", "6.6.6.6, 198.51.100.1, 10.9.9.9", "198.51.100.1"),  # right-most untrusted hop
        ("10.1.2.3", "not-an-ip", "10.1.2.3"),
        ("10.1.2.3", None, "10.1.2.3"),
        ("10.1.2.3", "10.4.4.4", "10.1.2.3"),  # only proxies: the peer
        ("testclient", "198.51.100.1", None),  # a peer that is no IP address is unknown, never stored as one
        ("/run/phivault.sock", None, None),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str | None) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected
    if expected is not None:
        ipaddress.ip_address(expected)


async def test_forwarded_address_is_audited_only_from_a_trusted_proxy(
    settings: Settings, services: Services, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    trusting = create_app(settings.model_copy(update={"trusted_proxies": ["127.0.0.1/32"]}), services)
    headers = {**tokens.headers("admin", tenant_id), "X-Forwarded-For": "198.51.100.7"}
    async with trusting.router.lifespan_context(trusting):
        transport = httpx.ASGITransport(app=trusting, client=("127.0.0.1", 50004))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            await client.get("/v1/documents", headers=headers)
            events = (await client.get("/v1/audit-logs", params={"action": "document.listed"}, headers=headers)).json()[
                "items"
            ]
    assert events[0]["ip_address"] == "198.51.100.7"


async def test_forwarded_for_is_ignored_by_default(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    headers = {**tokens.headers("admin", tenant_id), "X-Forwarded-For": "198.51.100.7"}
    await client.get("/v1/documents", headers=headers)
    events = (await client.get("/v1/audit-logs", params={"action": "document.listed"}, headers=headers)).json()
    assert events["items"][0]["ip_address"] == "127.0.0.1"


async def test_an_unexpected_error_is_a_json_500_logged_without_its_message(
    settings: Settings, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Patient Jane Doe MRN 12345"

    async def boom() -> None:
        raise RuntimeError(secret)

    app = create_app(settings, services)
    app.add_api_route("/boom", boom)
    caplog.set_level(logging.INFO)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-500"
    error = {"code": "internal_error", "message": "internal server error", "request_id": "req-500"}
    assert response.json() == {"error": error}
    assert secret not in caplog.text
    records = [r for r in caplog.records if r.name == "phivault.request" and r.__dict__.get("request_id") == "req-500"]
    assert [r.getMessage() for r in records] == ["unhandled error", "request"]
    assert records[0].__dict__["error_type"] == "RuntimeError"
    assert records[1].__dict__["status"] == 500


async def test_each_request_logs_one_line_with_its_context(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="phivault.request")
    await client.get(
        f"/v1/documents/{uuid.uuid4()}", headers={**tokens.headers("viewer", tenant_id), "X-Request-ID": "req-log"}
    )
    lines = [r for r in caplog.records if getattr(r, "request_id", None) == "req-log"]
    assert len(lines) == 1
    line = lines[0]
    context = {key: line.__dict__[key] for key in ("route", "status", "tenant_id", "method")}
    assert context == {
        "route": "/v1/documents/{document_id}",
        "status": 404,
        "tenant_id": str(tenant_id),
        "method": "GET",
    }
    assert line.__dict__["duration_ms"] >= 0


SECURITY = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


async def test_every_response_carries_the_security_headers(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    responses = [
        await client.get("/v1/documents", headers=tokens.headers("viewer", tenant_id)),  # PHI-bearing JSON
        await client.post("/v1/search", json={"query": "x"}, headers=tokens.headers("viewer", tenant_id)),
        await client.get(f"/v1/documents/{uuid.uuid4()}", headers=tokens.headers("viewer", tenant_id)),  # 404
        await client.get("/v1/documents"),  # 401
        await client.get("/healthz"),
        await client.get("/no-such-route"),
    ]
    for response in responses:
        assert {name: response.headers.get(name) for name in SECURITY} == SECURITY, response.request.url
        assert "strict-transport-security" not in response.headers
    docs = await client.get("/docs")
    assert docs.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" not in docs.headers  # the interactive page runs its own scripts


async def test_hsts_only_when_configured(settings: Settings, services: Services) -> None:
    app = create_app(settings.model_copy(update={"hsts": True}), services)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            response = await client.get("/healthz")
    assert response.headers["strict-transport-security"].startswith("max-age=")


async def test_a_client_that_disconnects_mid_upload_is_a_499_at_info_level(
    settings: Settings, services: Services, tokens: Tokens, tenant_id: uuid.UUID, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, services)
    boundary = "phivault-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode() + b"partial content " * 1000
    messages: list[dict[str, object]] = [
        {"type": "http.request", "body": head, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    auth = tokens.headers("member", tenant_id)["Authorization"]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/documents",
        "raw_path": b"/v1/documents",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", auth.encode()),
            (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
            (b"content-length", b"10000000"),
            (b"x-request-id", b"req-cut"),
        ],
        "client": ("127.0.0.1", 50010),
        "server": ("127.0.0.1", 80),
    }
    caplog.set_level(logging.INFO, logger="phivault.request")
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)  # type: ignore[arg-type]
    records = [r for r in caplog.records if r.__dict__.get("request_id") == "req-cut"]
    assert [(r.levelname, r.getMessage()) for r in records] == [("INFO", "client disconnected"), ("INFO", "request")]
    assert records[1].__dict__["status"] == 499
    assert not [m for m in sent if m["type"] == "http.response.start" and m.get("status") == 500]
