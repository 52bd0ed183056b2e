"""Health probes through the real ASGI app, as `phivault_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from api.app import create_app
from core.runtime import Services
from core.settings import Settings


@asynccontextmanager
async def client_for(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, services)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


async def test_healthz(settings: Settings, services: Services) -> None:
    async with client_for(settings, services) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_database_and_broker_are_up(settings: Settings, services: Services) -> None:
    async with client_for(settings, services) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


async def test_readyz_is_503_when_the_broker_is_down(settings: Settings, services: Services) -> None:
    down = Services(database=services.database, redis_url="unix:///nonexistent/redis.sock")
    async with client_for(settings, down) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unavailable")


async def test_request_id_is_echoed_or_generated(settings: Settings, services: Services) -> None:
    async with client_for(settings, services) as client:
        given = await client.get("/healthz", headers={"X-Request-ID": "req-123"})
        invalid = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert given.headers["x-request-id"] == "req-123"
    generated = invalid.headers["x-request-id"]
    assert generated != "bad id\twith spaces"
    assert len(generated) == 36


async def test_errors_are_json_with_a_request_id(settings: Settings, services: Services) -> None:
    async with client_for(settings, services) as client:
        response = await client.get("/no-such-route", headers={"X-Request-ID": "req-404"})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found", "request_id": "req-404"}}
