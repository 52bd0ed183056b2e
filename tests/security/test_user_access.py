"""Revocation takes effect on the next request: deactivation, a lowered role, a revoked `jti`, an ended
break-glass grant. Each goes through the real HTTP app, and each refusal is in the audit trail."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.runtime import Services
from core.security import LEEWAY_SECONDS, mint_token
from core.settings import Settings
from tests.harness import Tokens, app_client, upload
from tests.users.helpers import audit_rows, seen, subject, user_id_of
from users.revocations import revocation_key

REASON = "Night shift: the on-call administrator is unreachable."


async def test_a_deactivated_users_token_is_refused_on_the_next_request_and_reactivation_restores_it(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    alice = subject("alice")
    token = tokens.headers("member", tenant_id, sub=alice)
    admin = tokens.headers("admin", tenant_id, sub=subject("admin"))
    await seen(client, token)
    user_id = await user_id_of(owner_engine, tenant_id, alice)

    off = await client.patch(f"/v1/users/{user_id}", json={"active": False}, headers=admin)
    assert off.status_code == 200, off.text
    assert off.json()["status"] == "deactivated"

    calls = (("list", "GET", "/v1/documents", None), ("search", "POST", "/v1/search", {"query": "asthma"}))
    for name, method, path, body in calls:
        refused = await client.request(
            method, path, json=body, headers={**token, "X-Request-ID": f"deactivated-{name}"}
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "user_deactivated"
    denials = [r for r in await audit_rows(owner_engine, tenant_id, "access.denied") if r["actor_id"] == alice]
    assert [(r["outcome"], r["metadata"]["reason"], r["request_id"]) for r in denials] == [
        ("denied", "user_deactivated", "deactivated-list"),
        ("denied", "user_deactivated", "deactivated-search"),
    ]
    assert [r["resource_id"] for r in await audit_rows(owner_engine, tenant_id, "user.deactivated")] == [user_id]

    on = await client.patch(f"/v1/users/{user_id}", json={"active": True}, headers=admin)
    assert on.status_code == 200, on.text
    assert (await client.get("/v1/documents", headers=token)).status_code == 200
    assert [r["resource_id"] for r in await audit_rows(owner_engine, tenant_id, "user.reactivated")] == [user_id]


async def test_a_lowered_role_bounds_the_same_token_at_once(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    bob = subject("bob")
    token = tokens.headers("admin", tenant_id, sub=bob)
    admin = tokens.headers("admin", tenant_id, sub=subject("carol"))
    assert (await client.get("/v1/audit-logs", headers=token)).status_code == 200
    user_id = await user_id_of(owner_engine, tenant_id, bob)

    demoted = await client.patch(f"/v1/users/{user_id}", json={"role": "viewer"}, headers=admin)
    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["role"] == "viewer"

    refused = await client.get("/v1/audit-logs", headers=token)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "forbidden"
    no_upload = await upload(client, token, b"A note the viewer may not store.", "note.txt")
    assert no_upload.status_code == 403, no_upload.text
    assert (await client.get("/v1/documents", headers=token)).status_code == 200  # viewers may list
    reasons = [r["metadata"]["reason"] for r in await audit_rows(owner_engine, tenant_id, "access.denied")]
    assert reasons == ["role_not_allowed", "role_not_allowed"]
    [updated] = await audit_rows(owner_engine, tenant_id, "user.updated")
    assert updated["metadata"] == {"role": {"from": "admin", "to": "viewer"}}


async def test_a_later_token_with_a_higher_role_does_not_raise_the_stored_one(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    dana = subject("dana")
    await seen(client, tokens.headers("viewer", tenant_id, sub=dana))
    refused = await client.get("/v1/audit-logs", headers=tokens.headers("admin", tenant_id, sub=dana))
    assert refused.status_code == 403, refused.text


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def test_a_revoked_jti_is_refused_on_the_next_request_until_the_token_expires(
    client: httpx.AsyncClient,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    settings: Settings,
    services: Services,
) -> None:
    erin = subject("erin")
    revoked_token = mint_token(settings, subject=erin, role="member", tenant_id=tenant_id, ttl_seconds=600)
    revoked = {"Authorization": f"Bearer {revoked_token}"}
    other = tokens.headers("member", tenant_id, sub=erin)
    admin = tokens.headers("admin", tenant_id, sub=subject("admin"))
    assert (await client.get("/v1/documents", headers=revoked)).status_code == 200
    claims = _claims(revoked_token)

    answer = await client.post(
        "/v1/tokens/revoke", json={"jti": claims["jti"], "expires_at": claims["exp"]}, headers=admin
    )
    assert answer.status_code == 200, answer.text

    refused = await client.get("/v1/documents", headers={**revoked, "X-Request-ID": "revoked-jti"})
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == {
        "code": "token_revoked",
        "message": "this token was revoked",
        "request_id": "revoked-jti",
    }
    assert (await client.get("/v1/documents", headers=other)).status_code == 200
    [denied] = await audit_rows(owner_engine, tenant_id, "auth.denied")
    assert (denied["actor_id"], denied["resource_id"], denied["metadata"]["reason"]) == (
        erin,
        claims["jti"],
        "token_revoked",
    )
    [recorded] = await audit_rows(owner_engine, tenant_id, "token.revoked")
    assert recorded["resource_id"] == claims["jti"]

    redis = Redis.from_url(services.redis_url)
    try:
        ttl = await redis.ttl(revocation_key(str(tenant_id), claims["jti"]))
    finally:
        await redis.aclose()
    assert 0 < ttl <= claims["exp"] - time.time() + LEEWAY_SECONDS + 1  # held while the verifier still accepts it


async def test_a_tenant_admin_revokes_only_in_its_tenant_and_a_platform_admin_everywhere(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, settings: Settings
) -> None:
    token = mint_token(settings, subject=subject("frank"), role="viewer", tenant_id=tenant_id)
    headers = {"Authorization": f"Bearer {token}"}
    body = {"jti": _claims(token)["jti"], "expires_at": _claims(token)["exp"]}
    elsewhere = await client.post(
        "/v1/tenants", json={"name": f"Other {uuid.uuid4().hex[:6]}"}, headers=tokens.platform()
    )
    foreign_admin = tokens.headers("admin", uuid.UUID(elsewhere.json()["id"]))

    assert (await client.post("/v1/tokens/revoke", json=body, headers=foreign_admin)).status_code == 200
    assert (await client.get("/v1/documents", headers=headers)).status_code == 200
    assert (await client.post("/v1/tokens/revoke", json=body, headers=tokens.platform())).status_code == 200
    assert (await client.get("/v1/documents", headers=headers)).status_code == 401


async def test_a_revocable_token_fails_closed_when_redis_is_unreachable(
    settings: Settings, services: Services, tokens: Tokens, tenant_id: uuid.UUID, tmp_path: Path
) -> None:
    unreachable = dataclasses.replace(services, redis_url=f"unix://{tmp_path}/no-redis.sock")
    async with app_client(settings, unreachable) as http:
        refused = await http.get("/v1/documents", headers=tokens.headers("viewer", tenant_id))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "service_unavailable"
        assert refused.headers["Retry-After"]
        without_jti = await http.get("/v1/documents", headers=tokens.headers("viewer", tenant_id, with_jti=False))
        assert without_jti.status_code == 200, without_jti.text


async def _grant(client: httpx.AsyncClient, admin: dict[str, str], user_id: str, **overrides: object) -> httpx.Response:
    body = {"user_id": user_id, "role": "admin", "reason": REASON, "expires_in_minutes": 30, **overrides}
    return await client.post("/v1/access-grants", json=body, headers=admin)


async def test_break_glass_admits_a_member_to_an_admin_route_marks_its_events_and_ends_when_revoked(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    gina = subject("gina")
    member = tokens.headers("member", tenant_id, sub=gina)
    admin = tokens.headers("admin", tenant_id, sub=subject("admin"))
    await seen(client, member)
    user_id = await user_id_of(owner_engine, tenant_id, gina)
    assert (await client.get("/v1/audit-logs", headers=member)).status_code == 403

    granted = await _grant(client, admin, user_id)
    assert granted.status_code == 201, granted.text
    grant = granted.json()
    assert (grant["role"], grant["reason"], grant["active"]) == ("admin", REASON, True)

    under = await client.get("/v1/audit-logs", params={"action": "access.granted"}, headers=member)
    assert under.status_code == 200, under.text
    [event] = under.json()["items"]
    assert event["resource_id"] == grant["id"]
    assert event["metadata"]["reason"] == REASON
    [read] = [r for r in await audit_rows(owner_engine, tenant_id, "audit.read") if r["actor_id"] == gina]
    assert read["metadata"]["break_glass"] == {"grant_id": grant["id"], "reason": REASON}
    listed = await client.get("/v1/access-grants", params={"active": "true"}, headers=admin)
    assert [item["id"] for item in listed.json()["items"]] == [grant["id"]]

    assert (await client.delete(f"/v1/access-grants/{grant['id']}", headers=admin)).status_code == 204
    assert (await client.get("/v1/audit-logs", headers=member)).status_code == 403
    ended = await client.get("/v1/access-grants", params={"active": "false"}, headers=admin)
    assert [item["active"] for item in ended.json()["items"]] == [False]
    [revoked] = await audit_rows(owner_engine, tenant_id, "access.grant_revoked")
    assert revoked["metadata"] == {"grant_id": grant["id"], "user_id": user_id, "was_active": True}


async def test_an_expired_grant_admits_no_more(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    hank = subject("hank")
    viewer = tokens.headers("viewer", tenant_id, sub=hank)
    admin = tokens.headers("admin", tenant_id, sub=subject("admin"))
    await seen(client, viewer)
    granted = await _grant(client, admin, await user_id_of(owner_engine, tenant_id, hank), role="member")
    assert granted.status_code == 201, granted.text
    assert (await upload(client, viewer, b"Stored under the grant.", "granted.txt")).status_code == 202

    async with owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE access_grants SET expires_at = now() - interval '1 second' WHERE id = :g"),
            {"g": granted.json()["id"]},
        )
    assert (await upload(client, viewer, b"Refused once it lapsed.", "lapsed.txt")).status_code == 403


async def test_a_grant_needs_a_reason_and_at_most_a_day(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    ivy = subject("ivy")
    await seen(client, tokens.headers("member", tenant_id, sub=ivy))
    admin = tokens.headers("admin", tenant_id, sub=subject("admin"))
    user_id = await user_id_of(owner_engine, tenant_id, ivy)
    for overrides, field in (
        ({"reason": "too short"}, "reason"),
        ({"reason": "x" * 1001}, "reason"),
        ({"expires_in_minutes": 1441}, "expires_in_minutes"),
        ({"expires_in_minutes": 0}, "expires_in_minutes"),
        ({"role": "viewer"}, "role"),
    ):
        refused = await _grant(client, admin, user_id, **overrides)
        assert refused.status_code == 422, (overrides, refused.text)
        assert refused.json()["error"]["message"].startswith(field), refused.text
    assert await audit_rows(owner_engine, tenant_id, "access.granted") == []
