"""`GET /v1/users` and `PATCH /v1/users/{id}`: admin only, one tenant's users only, audited, and no
administrator can lock themself out."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import Tokens
from tests.users.helpers import audit_rows, seen, subject, user_id_of


async def _tenant(client: httpx.AsyncClient, tokens: Tokens) -> uuid.UUID:
    response = await client.post(
        "/v1/tenants", json={"name": f"Users {uuid.uuid4().hex[:6]}"}, headers=tokens.platform()
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def test_only_admins_list_and_change_users(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    target = subject("target")
    await seen(client, tokens.headers("viewer", tenant_id, sub=target))
    user_id = await user_id_of(owner_engine, tenant_id, target)
    for role in ("member", "viewer"):
        headers = tokens.headers(role, tenant_id, sub=subject(role))
        listed = await client.get("/v1/users", headers=headers)
        changed = await client.patch(f"/v1/users/{user_id}", json={"role": "admin"}, headers=headers)
        assert (listed.status_code, changed.status_code) == (403, 403), (listed.text, changed.text)
    assert (await client.get("/v1/users", headers=tokens.platform())).status_code == 403
    reasons = [r["metadata"]["reason"] for r in await audit_rows(owner_engine, tenant_id, "access.denied")]
    assert reasons == ["role_not_allowed"] * 4
    listed_as_admin = await client.get("/v1/users", headers=tokens.headers("admin", tenant_id))
    assert {item["id"]: item["role"] for item in listed_as_admin.json()["items"]}[user_id] == "viewer"


async def test_another_tenants_user_is_not_found_and_not_listed(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    theirs = subject("theirs")
    await seen(client, tokens.headers("member", tenant_id, sub=theirs))
    their_id = await user_id_of(owner_engine, tenant_id, theirs)
    other = await _tenant(client, tokens)
    admin = tokens.headers("admin", other)

    missing = await client.patch(f"/v1/users/{their_id}", json={"active": False}, headers=admin)
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "not_found"
    listed = await client.get("/v1/users", headers=admin)
    assert their_id not in {item["id"] for item in listed.json()["items"]}
    [denied] = await audit_rows(owner_engine, other, "access.denied")
    assert (denied["resource_type"], denied["resource_id"], denied["metadata"]["reason"]) == (
        "user",
        their_id,
        "not_found",
    )
    assert (
        await client.get("/v1/documents", headers=tokens.headers("member", tenant_id, sub=theirs))
    ).status_code == 200


async def test_listing_pages_filters_by_status_and_is_audited_with_the_ids_shown(
    client: httpx.AsyncClient, tokens: Tokens, owner_engine: AsyncEngine
) -> None:
    tenant_id = await _tenant(client, tokens)
    admin = tokens.headers("admin", tenant_id, sub="users-admin")
    names = [subject("listed") for _ in range(3)]
    for name in names:
        await seen(client, tokens.headers("member", tenant_id, sub=name))
    gone = await user_id_of(owner_engine, tenant_id, names[0])
    assert (await client.patch(f"/v1/users/{gone}", json={"active": False}, headers=admin)).status_code == 200

    subjects: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/users", params=params, headers=admin)).json()
        subjects += [item["subject"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert subjects == ["users-admin", *reversed(names)]  # newest first, every page
    deactivated = (await client.get("/v1/users", params={"status": "deactivated"}, headers=admin)).json()
    assert [(item["id"], item["status"]) for item in deactivated["items"]] == [(gone, "deactivated")]
    active = (await client.get("/v1/users", params={"status": "active"}, headers=admin)).json()
    assert gone not in {item["id"] for item in active["items"]}
    listed = await audit_rows(owner_engine, tenant_id, "user.listed")
    assert [row["metadata"]["count"] for row in listed] == [2, 2, 1, 3]
    assert listed[-2]["metadata"]["user_ids"] == [gone]
    bad = await client.get("/v1/users", params={"cursor": "not-a-cursor"}, headers=admin)
    assert bad.status_code == 422, bad.text


async def test_an_admin_may_not_deactivate_or_demote_themself(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    me = subject("self")
    admin = tokens.headers("admin", tenant_id, sub=me)
    await seen(client, admin)
    my_id = await user_id_of(owner_engine, tenant_id, me)
    for body in ({"active": False}, {"role": "member"}, {"role": "viewer", "active": True}):
        refused = await client.patch(f"/v1/users/{my_id}", json=body, headers=admin)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "self_lockout"
    assert await audit_rows(owner_engine, tenant_id, "user.updated") == []
    kept = await client.patch(f"/v1/users/{my_id}", json={"role": "admin"}, headers=admin)
    assert kept.status_code == 200, kept.text
    assert (await client.get("/v1/audit-logs", headers=admin)).status_code == 200


async def test_a_patch_names_something_to_change_and_is_audited_with_old_and_new_values(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    target = subject("changed")
    await seen(client, tokens.headers("viewer", tenant_id, sub=target))
    user_id = await user_id_of(owner_engine, tenant_id, target)
    admin = tokens.headers("admin", tenant_id)
    for body in ({}, {"role": "platform_admin"}, {"active": "maybe"}, {"role": "member", "extra": 1}):
        assert (await client.patch(f"/v1/users/{user_id}", json=body, headers=admin)).status_code == 422, body
    changed = await client.patch(f"/v1/users/{user_id}", json={"role": "member", "active": False}, headers=admin)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["role"], changed.json()["status"]) == ("member", "deactivated")
    [updated] = await audit_rows(owner_engine, tenant_id, "user.updated")
    assert updated["metadata"] == {"role": {"from": "viewer", "to": "member"}, "active": {"from": True, "to": False}}
    assert [r["resource_id"] for r in await audit_rows(owner_engine, tenant_id, "user.deactivated")] == [user_id]
