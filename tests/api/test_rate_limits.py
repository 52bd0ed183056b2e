"""Per-user and per-tenant rate limits on upload and search, through the real HTTP app and a shared Redis."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from core.runtime import Services
from core.settings import Settings, SettingsError
from tests.conftest import owner_scalar
from tests.harness import Tokens, app_client, audit_actions, upload

TINY = {
    "rate_limits_enabled": True,
    "rate_limit_search": "3/minute",
    "rate_limit_tenant_search": "5/minute",
    "rate_limit_upload": "2/minute",
    "rate_limit_tenant_upload": "10/minute",
}


@asynccontextmanager
async def limited(settings: Settings, services: Services, **update: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(settings.model_copy(update={**TINY, **update}), services) as http:
        yield http


async def search(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/v1/search", json={"query": "pneumonia follow-up"}, headers=headers)


async def new_tenant(client: httpx.AsyncClient, tokens: Tokens) -> uuid.UUID:
    response = await client.post(
        "/v1/tenants", json={"name": f"Clinic {uuid.uuid4().hex[:6]}"}, headers=tokens.platform()
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def assert_rate_limited(response: httpx.Response, scope: str) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    error = response.json()["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["code"] == "rate_limited"
    assert f"per-{scope}" in error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]


async def test_user_limit_then_tenant_limit_on_search(
    settings: Settings,
    services: Services,
    client: httpx.AsyncClient,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
) -> None:
    alice = tokens.headers("member", tenant_id, sub="alice@example.org")
    bob = tokens.headers("viewer", tenant_id, sub="bob@example.org")
    async with limited(settings, services) as http:
        for _ in range(3):
            assert (await search(http, alice)).status_code == 200
        assert_rate_limited(await search(http, alice), "user")
        # Alice's refused request did not count against the tenant: Bob has two left (5 - 3).
        for _ in range(2):
            assert (await search(http, bob)).status_code == 200
        assert_rate_limited(await search(http, bob), "tenant")

        other = tokens.headers("member", await new_tenant(client, tokens), sub="alice@example.org")
        assert (await search(http, other)).status_code == 200

    denied = [row for row in await audit_actions(owner_engine, tenant_id) if row[0] == "access.denied"]
    assert denied == [("access.denied", "denied", None)] * 2


async def test_replicas_share_counts(
    settings: Settings, services: Services, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    headers = tokens.headers("member", tenant_id)
    async with limited(settings, services) as first, limited(settings, services) as second:
        assert (await search(first, headers)).status_code == 200
        assert (await search(second, headers)).status_code == 200
        assert (await search(first, headers)).status_code == 200
        assert_rate_limited(await search(second, headers), "user")


async def test_upload_limited_before_anything_is_stored(
    settings: Settings, services: Services, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    headers = tokens.headers("member", tenant_id)
    async with limited(settings, services) as http:
        for n in range(2):
            assert (await upload(http, headers, f"Progress note {n}: stable.".encode())).status_code == 202
        assert_rate_limited(await upload(http, headers, b"Progress note 3: stable."), "user")
    count = await owner_scalar(owner_engine, "SELECT count(*) FROM documents WHERE tenant_id = :t", t=tenant_id)
    assert count == 2


async def test_off_by_default_in_development(
    settings: Settings, services: Services, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    assert settings.rate_limits_enabled is None
    assert not settings.rate_limits_on
    assert settings.model_copy(update={"env": "production"}).rate_limits_on
    headers = tokens.headers("member", tenant_id)
    async with limited(settings, services, rate_limits_enabled=None) as http:
        for _ in range(4):
            assert (await search(http, headers)).status_code == 200


async def test_fails_open_when_redis_is_unreachable(
    settings: Settings,
    services: Services,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    unreachable = dataclasses.replace(services, redis_url=f"unix://{tmp_path}/no-redis.sock")
    headers = tokens.headers("member", tenant_id, with_jti=False)  # a token with a jti fails closed (revocations)
    with caplog.at_level(logging.WARNING, logger="api.rate_limiter"):
        async with limited(settings, unreachable) as http:
            for _ in range(4):
                assert (await search(http, headers)).status_code == 200
    assert "rate limit store unavailable" in caplog.text


@pytest.mark.parametrize("name", ["rate_limit_upload", "rate_limit_tenant_search"])
def test_malformed_limit_is_refused(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"PHIVAULT_{name.upper()}", "lots per fortnight")
    with pytest.raises(SettingsError, match=f"PHIVAULT_{name.upper()}"):
        Settings()
