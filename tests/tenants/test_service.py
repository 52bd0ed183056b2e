"""What an active tenant is, and the tenant transaction every caller acts in (`tenants.service`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import Database
from core.security import Principal
from models.audit import Actor
from models.tenant import Tenant
from tenants.service import TenantNameError, TenantUnavailable, acting_session, require_active, slugify
from tests.conftest import TenantFactory, owner_scalar

ACTOR = Actor(actor_id="tests", actor_type="platform")


def _tenant(**fields: object) -> Tenant:
    return Tenant(**{"id": uuid.uuid4(), "name": "Clinic", "slug": "clinic", "status": "active", **fields})


@pytest.mark.parametrize(
    ("tenant", "code"),
    [
        (None, "tenant_unavailable"),
        (_tenant(deleted_at=datetime.now(UTC)), "tenant_unavailable"),
        (_tenant(status="suspended"), "tenant_suspended"),
    ],
    ids=["missing", "deleted", "suspended"],
)
def test_require_active_refuses(tenant: Tenant | None, code: str) -> None:
    with pytest.raises(TenantUnavailable) as refused:
        require_active(tenant)
    assert refused.value.code == code


def test_require_active_admits_an_active_tenant() -> None:
    tenant = _tenant()
    assert require_active(tenant) is tenant


@pytest.mark.parametrize(("name", "slug"), [("  St. Mary's Clinic  ", "st-mary-s-clinic"), ("Ärzte 24", "rzte-24")])
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_a_name_without_letters_or_digits_is_refused() -> None:
    with pytest.raises(TenantNameError) as refused:
        slugify("---")
    assert refused.value.code == "invalid_name"


async def test_acting_session_provisions_the_caller_once(
    db: Database, make_tenant: TenantFactory, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    principal = Principal(subject="dr-who", role="member", tenant_id=tenant.id)
    for _ in range(2):
        async with acting_session(db, tenant.id, ACTOR, principal) as tx:
            assert tx.tenant.id == tenant.id
            assert tx.user_id is not None
    provisioned = await owner_scalar(
        owner_engine,
        "SELECT count(*) FROM audit_logs WHERE tenant_id = :t AND action = 'user.provisioned'",
        t=tenant.id,
    )
    assert provisioned == 1


async def test_acting_session_refuses_a_suspended_tenant_before_any_work(
    db: Database, make_tenant: TenantFactory, owner_engine: AsyncEngine
) -> None:
    tenant = await make_tenant()
    async with owner_engine.begin() as conn:
        await conn.execute(text("UPDATE tenants SET status = 'suspended' WHERE id = :t"), {"t": tenant.id})
    entered = False
    with pytest.raises(TenantUnavailable) as refused:
        async with acting_session(db, tenant.id, ACTOR):
            entered = True
    assert refused.value.code == "tenant_suspended"
    assert not entered
