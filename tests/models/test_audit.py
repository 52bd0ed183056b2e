"""The audit writer: an event becomes the next link of its tenant's chain, inside the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import Database
from models import AuditEvent, Document, write_audit_event
from models.audit import SYSTEM_ACTOR, ActingSession, Actor
from tests.conftest import TenantFactory, owner_scalar

COLUMNS = (
    "tenant_id",
    "action",
    "outcome",
    "actor_id",
    "actor_type",
    "resource_type",
    "resource_id",
    "ip_address",
    "user_agent",
    "request_id",
    "metadata",
)


async def audit_logs(owner_engine: AsyncEngine, tenant_id: uuid.UUID) -> list[Any]:
    """A tenant's audit rows, oldest first, read as the owner."""
    async with owner_engine.connect() as conn:
        result = await conn.execute(text("SELECT * FROM audit_logs WHERE tenant_id = :t ORDER BY id"), {"t": tenant_id})
        return list(result)


def fields_of(event: AuditEvent) -> dict[str, object]:
    return {column: getattr(event, column) for column in COLUMNS}


def stored_event(row: Any) -> dict[str, object]:
    """The event's fields as a row holds them (the address as text)."""
    fields = {column: getattr(row, column) for column in COLUMNS}
    fields["ip_address"] = None if row.ip_address is None else str(row.ip_address)
    return fields


def test_actor_event_copies_the_actor_and_stringifies_the_resource_id() -> None:
    tenant_id, document_id = uuid.uuid4(), uuid.uuid4()
    actor = Actor(actor_id="carol", actor_type="user", request_id="req-7", ip_address="192.0.2.7", user_agent="curl/8")

    event = actor.event(
        tenant_id,
        "document.deleted",
        outcome="denied",
        resource_type="document",
        resource_id=document_id,
        metadata={"reason": "role_not_allowed"},
    )

    assert event == AuditEvent(
        tenant_id=tenant_id,
        action="document.deleted",
        outcome="denied",
        actor_id="carol",
        actor_type="user",
        resource_type="document",
        resource_id=str(document_id),
        ip_address="192.0.2.7",
        user_agent="curl/8",
        request_id="req-7",
        metadata={"reason": "role_not_allowed"},
    )
    assert actor.event(tenant_id, "audit.listed", resource_id=42).resource_id == "42"
    assert SYSTEM_ACTOR.event(tenant_id, "document.purged") == AuditEvent(
        tenant_id=tenant_id, action="document.purged", actor_id="phivault", actor_type="system"
    )


async def test_the_writer_appends_each_event_as_the_next_link_and_returns_its_id(
    db: Database, make_tenant: TenantFactory, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    event = AuditEvent(
        tenant_id=tenant.id,
        action="test.written",
        outcome="denied",
        actor_id="alice",
        actor_type="user",
        resource_type="document",
        resource_id="doc-1",
        ip_address="10.1.2.3",
        user_agent="pytest",
        request_id="req-written",
        metadata={"reason": "role_not_allowed", "attempt": 2},
    )
    bare = AuditEvent(tenant_id=tenant.id, action="test.defaults")
    async with db.tenant_session(tenant.id) as session:
        first = await write_audit_event(session, event)
        second = await write_audit_event(session, bare)

    created, written, defaults = await audit_logs(owner_engine, tenant.id)
    assert created.action == "tenant.created"
    assert (written.id, defaults.id) == (first, second)
    assert stored_event(written) == fields_of(event)
    assert stored_event(defaults) == fields_of(bare)
    assert (written.prev_hash, defaults.prev_hash) == (created.row_hash, written.row_hash)


async def test_an_acting_session_audits_as_its_actor_in_its_tenant(
    db: Database, make_tenant: TenantFactory, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    actor = Actor(actor_id="bob", actor_type="user", request_id="req-acting", ip_address="2001:db8::1", user_agent="ua")
    document_id = uuid.uuid4()
    async with db.tenant_session(tenant.id) as session:
        acting = ActingSession(session=session, tenant=tenant, actor=actor)
        await acting.audit("document.viewed", resource_type="document", resource_id=document_id, metadata={"page": 1})

    *_, viewed = await audit_logs(owner_engine, tenant.id)
    assert stored_event(viewed) == {
        "tenant_id": tenant.id,
        "action": "document.viewed",
        "outcome": "success",
        "actor_id": "bob",
        "actor_type": "user",
        "resource_type": "document",
        "resource_id": str(document_id),
        "ip_address": "2001:db8::1",
        "user_agent": "ua",
        "request_id": "req-acting",
        "metadata": {"page": 1},
    }


async def test_a_failed_audit_write_leaves_nothing_of_the_action(
    db: Database, make_tenant: TenantFactory, owner_engine: AsyncEngine
) -> None:
    """The event cannot be written (it names another tenant): the document flushed before it goes too."""
    tenant, other = await make_tenant(), await make_tenant()
    sha = uuid.uuid4().hex
    with pytest.raises(DBAPIError, match='row-level security policy for table "audit_logs"'):
        async with db.tenant_session(tenant.id) as session:
            session.add(
                Document(
                    tenant_id=tenant.id,
                    filename="a.txt",
                    content_type="text/plain",
                    size_bytes=1,
                    sha256=sha,
                    storage_key="k",
                )
            )
            await session.flush()
            await write_audit_event(session, AuditEvent(tenant_id=other.id, action="document.uploaded"))

    assert await owner_scalar(owner_engine, "SELECT count(*) FROM documents WHERE sha256 = :h", h=sha) == 0
    assert [row.action for row in await audit_logs(owner_engine, tenant.id)] == ["tenant.created"]
    assert [row.action for row in await audit_logs(owner_engine, other.id)] == ["tenant.created"]
