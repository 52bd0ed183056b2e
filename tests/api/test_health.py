"""Health probes through the real ASGI app, as `phivault_app`."""

from __future__ import annotations

import asyncio

import httpx

from api.app import create_app
from core.runtime import Services
from core.settings import Settings
from tests.harness import app_client
from tests.waiting import eventually


async def test_healthz(settings: Settings, services: Services) -> None:
    async with app_client(settings, services) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def ready_response(client: httpx.AsyncClient) -> httpx.Response:
    """Poll /readyz until it is 200 (the model loads in the background); fail at the deadline."""

    async def ready() -> httpx.Response | None:
        response = await client.get("/readyz")
        if response.status_code == 200:
            return response
        assert response.json()["checks"]["embedder"] == "loading", response.json()
        return None

    return await eventually(ready, "/readyz green")


async def test_readyz_when_database_broker_and_model_are_up(settings: Settings, services: Services) -> None:
    async with app_client(settings, services) as client:
        response = await ready_response(client)
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok", "embedder": "ok"}}


async def test_readyz_waits_for_a_model_that_is_still_loading(settings: Settings, services: Services) -> None:
    app = create_app(settings, services)
    async with app.router.lifespan_context(app):
        state = app.state.phivault
        loaded = state.embedder
        state.embedder = asyncio.get_running_loop().create_future()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            loading = await client.get("/readyz")
            state.embedder.set_result(await loaded)
            ready = await client.get("/readyz")
    assert loading.status_code == 503
    assert loading.json()["checks"]["embedder"] == "loading"
    assert ready.status_code == 200


async def test_readyz_is_503_when_the_broker_is_down(settings: Settings, services: Services) -> None:
    down = Services(database=services.database, redis_url="unix:///nonexistent/redis.sock")
    async with app_client(settings, down) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unavailable")


async def test_request_id_is_echoed_or_generated(settings: Settings, services: Services) -> None:
    async with app_client(settings, services) as client:
        given = await client.get("/healthz", headers={"X-Request-ID": "req-123"})
        invalid = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert given.headers["x-request-id"] == "req-123"
    generated = invalid.headers["x-request-id"]
    assert generated != "bad id\twith spaces"
    assert len(generated) == 36


async def test_errors_are_json_with_a_request_id(settings: Settings, services: Services) -> None:
    async with app_client(settings, services) as client:
        response = await client.get("/no-such-route", headers={"X-Request-ID": "req-404"})
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found", "request_id": "req-404"}}
