"""Callers the vault refuses: a bad token is a 401, a valid token without the right is a 403.

A bad token is audited in the system tenant, never in the tenant it names; a wrong role, a suspended or a missing
tenant leaves exactly one `access.denied` row and stores nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import SYSTEM_TENANT_ID
from core.security import LEEWAY_SECONDS
from core.settings import Settings
from tests.conftest import owner_scalar
from tests.harness import Tokens, upload
from tests.security.bad_input import assert_nothing_stored, audit_rows, denied_count, request_id, stored
from tests.security.error_shape import assert_error

# --------------------------------------------------------------------------------------------------------------
# Tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_made(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A JWT assembled by hand, HMAC-SHA256 signed with `key` (or with an empty signature when None)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(tenant: uuid.UUID, /, **changes: Any) -> dict[str, Any]:
    """Claims of a valid admin token for `tenant`; a change to None removes the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "attacker",
        "role": "admin",
        "tenant_id": str(tenant),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _signed(settings: Settings, claims: dict[str, Any], secret: str | None = None) -> str:
    return jwt.encode(claims, secret or settings.jwt_secret.get_secret_value(), algorithm="HS256")


BadAuth = Callable[[Settings, uuid.UUID], dict[str, str]]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


BAD_AUTH: dict[str, tuple[BadAuth, str]] = {
    "no-header": (lambda s, t: {}, "missing_token"),
    "empty-bearer": (lambda s, t: {"Authorization": "Bearer "}, "missing_token"),
    "basic-scheme": (lambda s, t: {"Authorization": "Basic " + _b64(b"admin:admin")}, "missing_token"),
    "token-without-scheme": (lambda s, t: {"Authorization": _signed(s, _claims(t))}, "missing_token"),
    "garbage": (lambda s, t: _bearer("abc.def.ghi"), "invalid_token"),
    "expired": (
        lambda s, t: _bearer(
            _signed(
                s,
                _claims(
                    t,
                    iat=int(time.time()) - 7200,
                    nbf=int(time.time()) - 7200,
                    exp=int(time.time()) - LEEWAY_SECONDS - 60,
                ),
            )
        ),
        "expired_token",
    ),
    "forged": (lambda s, t: _bearer(_signed(s, _claims(t), secret="not-the-secret-" + "x" * 32)), "invalid_token"),
    "alg-none": (lambda s, t: _bearer(_hand_made({"alg": "none", "typ": "JWT"}, _claims(t), None)), "invalid_token"),
    "alg-none-capitalised": (
        lambda s, t: _bearer(_hand_made({"alg": "None", "typ": "JWT"}, _claims(t), None)),
        "invalid_token",
    ),
    "rs256-header-hs256-signed": (
        lambda s, t: _bearer(
            _hand_made({"alg": "RS256", "typ": "JWT"}, _claims(t), s.jwt_secret.get_secret_value().encode())
        ),
        "invalid_token",
    ),
    "not-yet-valid": (lambda s, t: _bearer(_signed(s, _claims(t, nbf=int(time.time()) + 600))), "invalid_token"),
    "missing-exp": (lambda s, t: _bearer(_signed(s, _claims(t, exp=None))), "invalid_token"),
    "missing-sub": (lambda s, t: _bearer(_signed(s, _claims(t, sub=None))), "invalid_token"),
    # A `sub` PostgreSQL could not store (it becomes the audit actor and a users row): refused with the token.
    "sub-with-nul": (lambda s, t: _bearer(_signed(s, _claims(t, sub="alice\x00"))), "invalid_token"),
    "sub-with-surrogate": (lambda s, t: _bearer(_signed(s, _claims(t, sub="alice" + chr(0xD800)))), "invalid_token"),
    "missing-role": (lambda s, t: _bearer(_signed(s, _claims(t, role=None))), "invalid_token"),
    "role-superuser": (lambda s, t: _bearer(_signed(s, _claims(t, role="superuser"))), "invalid_token"),
    "tenant-not-uuid": (lambda s, t: _bearer(_signed(s, _claims(t, tenant_id="clinic-1"))), "invalid_token"),
    "tenant-missing": (lambda s, t: _bearer(_signed(s, _claims(t, tenant_id=None))), "invalid_token"),
    "platform-admin-with-tenant": (
        lambda s, t: _bearer(_signed(s, _claims(t, role="platform_admin"))),
        "invalid_token",
    ),
    "system-tenant": (
        lambda s, t: _bearer(_signed(s, _claims(t, tenant_id=str(SYSTEM_TENANT_ID)))),
        "invalid_token",
    ),
}


@pytest.mark.parametrize(("make_headers", "code"), list(BAD_AUTH.values()), ids=list(BAD_AUTH))
async def test_bad_tokens_are_401_and_audited_in_the_system_tenant(
    client: httpx.AsyncClient,
    settings: Settings,
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    make_headers: BadAuth,
    code: str,
) -> None:
    rid = request_id("auth")
    before = await denied_count(owner_engine, SYSTEM_TENANT_ID, "auth.denied")
    response = await client.get("/v1/documents", headers=make_headers(settings, tenant_id) | {"X-Request-ID": rid})
    error = assert_error(response, 401, code)
    assert error["request_id"] == rid
    assert await denied_count(owner_engine, SYSTEM_TENANT_ID, "auth.denied") == before + 1
    rows = await audit_rows(owner_engine, SYSTEM_TENANT_ID, rid)
    assert len(rows) == 1
    action, outcome, actor_type, metadata = rows[0]
    assert (action, outcome, actor_type) == ("auth.denied", "denied", "anonymous")
    assert metadata["reason"] == code
    # Nothing was written in the tenant the token named.
    assert await audit_rows(owner_engine, tenant_id, rid) == []


async def test_hand_made_hs256_token_is_accepted(
    client: httpx.AsyncClient, settings: Settings, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    """The control for the hand-made tokens: signed right, the same construction is accepted and not audited."""
    rid = request_id("auth-control")
    before = await denied_count(owner_engine, SYSTEM_TENANT_ID, "auth.denied")
    token = _hand_made(
        {"alg": "HS256", "typ": "JWT"}, _claims(tenant_id), settings.jwt_secret.get_secret_value().encode()
    )
    response = await client.get("/v1/documents", headers=_bearer(token) | {"X-Request-ID": rid})
    assert response.status_code == 200, response.text
    assert await denied_count(owner_engine, SYSTEM_TENANT_ID, "auth.denied") == before
    assert await audit_rows(owner_engine, SYSTEM_TENANT_ID, rid) == []
    assert [a for a, _, _, _ in await audit_rows(owner_engine, tenant_id, rid)] == [
        "user.provisioned",
        "document.listed",
    ]


# --------------------------------------------------------------------------------------------------------------
# Wrong role, suspended or missing tenant


async def test_viewer_upload_is_403_audited_and_stores_nothing(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine, settings: Settings
) -> None:
    before = await stored(owner_engine, settings, tenant_id)
    rid = request_id("viewer-upload")
    response = await upload(client, tokens.headers("viewer", tenant_id) | {"X-Request-ID": rid})
    assert_error(response, 403, "forbidden")
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)
    rows = await audit_rows(owner_engine, tenant_id, rid)
    assert [(a, o, t) for a, o, t, _ in rows] == [("access.denied", "denied", "user")]
    assert rows[0][3]["reason"] == "role_not_allowed"


async def test_member_may_not_read_tenants(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    rid = request_id("member-tenant")
    response = await client.get(
        f"/v1/tenants/{tenant_id}", headers=tokens.headers("member", tenant_id) | {"X-Request-ID": rid}
    )
    assert_error(response, 403, "forbidden")
    rows = await audit_rows(owner_engine, tenant_id, rid)
    assert [(a, o) for a, o, _, _ in rows] == [("access.denied", "denied")]


async def test_platform_admin_has_no_tenant_documents(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    rid = request_id("platform-documents")
    response = await client.get("/v1/documents", headers=tokens.platform() | {"X-Request-ID": rid})
    assert_error(response, 403, "forbidden")
    rows = await audit_rows(owner_engine, SYSTEM_TENANT_ID, rid)
    assert [(a, o, t) for a, o, t, _ in rows] == [("access.denied", "denied", "platform")]


async def test_suspended_tenant_upload_is_403_and_stores_nothing(
    client: httpx.AsyncClient,
    tokens: Tokens,
    member: dict[str, str],
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
) -> None:
    suspended = await client.patch(f"/v1/tenants/{tenant_id}", json={"status": "suspended"}, headers=tokens.platform())
    assert suspended.status_code == 200, suspended.text
    before = await stored(owner_engine, settings, tenant_id)
    rid = request_id("suspended")
    response = await upload(client, member | {"X-Request-ID": rid})
    assert_error(response, 403, "tenant_suspended")
    await assert_nothing_stored(before, owner_engine, settings, tenant_id)
    rows = await audit_rows(owner_engine, tenant_id, rid)
    assert [(a, o) for a, o, _, _ in rows] == [("access.denied", "denied")]
    assert rows[0][3]["reason"] == "tenant_suspended"

    # Control: the same upload goes through once the tenant is active again.
    active = await client.patch(f"/v1/tenants/{tenant_id}", json={"status": "active"}, headers=tokens.platform())
    assert active.status_code == 200
    assert (await upload(client, member)).status_code == 202


@pytest.mark.parametrize("method", ["upload", "list"])
async def test_token_for_a_tenant_that_does_not_exist_is_403(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine, settings: Settings, method: str
) -> None:
    ghost = uuid.uuid4()
    before = await stored(owner_engine, settings, ghost)
    rid = request_id("ghost")
    headers = tokens.headers("admin", ghost) | {"X-Request-ID": rid}
    if method == "upload":
        response = await upload(client, headers)
    else:
        response = await client.get("/v1/documents", headers=headers)
    assert_error(response, 403, "tenant_unavailable")
    await assert_nothing_stored(before, owner_engine, settings, ghost)
    assert before.tenant_documents == 0
    rows = await audit_rows(owner_engine, SYSTEM_TENANT_ID, rid)
    assert [(a, o) for a, o, _, _ in rows] == [("access.denied", "denied")]
    assert rows[0][3]["claimed_tenant_id"] == str(ghost)
    assert await owner_scalar(owner_engine, "SELECT count(*) FROM tenants WHERE id = :t", t=ghost) == 0
    assert await owner_scalar(owner_engine, "SELECT count(*) FROM users WHERE tenant_id = :t", t=ghost) == 0
