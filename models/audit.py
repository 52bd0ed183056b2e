"""The append-only audit trail and its single writer.

Rows are chained per tenant: a database trigger fills `prev_hash` and `row_hash`
(`row_hash = sha256(prev_hash || canonical row)`) under a lock on the tenant's
chain head, so the application cannot write a row outside the chain or forge
its hash, and concurrent writers of one tenant are serialised.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    FetchedValue,
    ForeignKey,
    Index,
    Text,
    insert,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import INET, JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, tenant_fk
from models.tenant import Tenant

GENESIS_HASH = "0" * 64

Outcome = Literal["success", "denied", "error"]
ActorType = Literal["user", "platform", "system", "anonymous"]


class AuditLog(Base):
    __tablename__ = "audit_logs"
    __table_args__ = (
        CheckConstraint("outcome IN ('success', 'denied', 'error')", name="outcome"),
        Index("ix_audit_logs_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_audit_logs_tenant_id_action_created_at", "tenant_id", "action", "created_at"),
        Index("ix_audit_logs_tenant_id_resource_id", "tenant_id", "resource_id"),
        Index("ix_audit_logs_tenant_id_id", "tenant_id", "id"),
        Index(  # "which searches returned this document" (the disclosures report; migration 0009)
            "ix_audit_logs_search_document_ids",
            literal_column("(metadata -> 'document_ids')").label("document_ids"),
            postgresql_using="gin",
            postgresql_ops={"document_ids": "jsonb_path_ops"},
            postgresql_where=text("action = 'search.query'"),
        ),
    )

    # Assigned by the chain trigger from `audit_logs_id_seq` while it holds the tenant's chain
    # head, so ids rise in chain order within a tenant.
    id: Mapped[int] = mapped_column(BigInteger, FetchedValue(), primary_key=True, autoincrement=False)
    tenant_id: Mapped[uuid.UUID] = tenant_fk()
    actor_id: Mapped[str | None] = mapped_column(Text)
    actor_type: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    resource_type: Mapped[str | None] = mapped_column(Text)
    resource_id: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text, nullable=False)
    ip_address: Mapped[str | None] = mapped_column(INET)
    user_agent: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = created_at_column()
    prev_hash: Mapped[str] = mapped_column(Text, nullable=False)
    row_hash: Mapped[str] = mapped_column(Text, nullable=False)


class AuditChainHead(Base):
    """The last link of each tenant's chain: locked by every insert, so a deleted tail is detected."""

    __tablename__ = "audit_chain_heads"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_hash: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


@dataclass(frozen=True)
class AuditEvent:
    """What happened, to what, by whom. Carries ids and hashes only, never PHI."""

    tenant_id: uuid.UUID
    action: str
    outcome: Outcome = "success"
    actor_id: str | None = None
    actor_type: ActorType = "system"
    resource_type: str | None = None
    resource_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Actor:
    """Who acts and from where: copied onto every event the action writes."""

    actor_id: str | None
    actor_type: ActorType
    request_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    break_glass: dict[str, str] | None = None
    """Set while the actor acts under a break-glass grant: `{"grant_id", "reason"}`, on every event it writes."""

    def event(
        self,
        tenant_id: uuid.UUID,
        action: str,
        *,
        outcome: Outcome = "success",
        resource_type: str | None = None,
        resource_id: object = None,
        metadata: dict[str, Any] | None = None,
    ) -> AuditEvent:
        return AuditEvent(
            tenant_id=tenant_id,
            action=action,
            outcome=outcome,
            actor_id=self.actor_id,
            actor_type=self.actor_type,
            resource_type=resource_type,
            resource_id=None if resource_id is None else str(resource_id),
            ip_address=self.ip_address,
            user_agent=self.user_agent,
            request_id=self.request_id,
            metadata={**(metadata or {}), "break_glass": self.break_glass} if self.break_glass else metadata or {},
        )


SYSTEM_ACTOR = Actor(actor_id="phivault", actor_type="system")


async def write_audit_event(session: AsyncSession, event: AuditEvent) -> int:
    """Append `event` inside the caller's transaction; any failure propagates and aborts the action."""
    stmt = (
        insert(AuditLog)
        .values(
            tenant_id=event.tenant_id,
            action=event.action,
            outcome=event.outcome,
            actor_id=event.actor_id,
            actor_type=event.actor_type,
            resource_type=event.resource_type,
            resource_id=event.resource_id,
            ip_address=event.ip_address,
            user_agent=event.user_agent,
            request_id=event.request_id,
            metadata_=event.metadata,
        )
        .returning(AuditLog.id)
    )
    return int((await session.execute(stmt)).scalar_one())


@dataclass
class ActingSession:
    """A tenant transaction together with who acts in it: the unit routes, tasks and the CLI work in."""

    session: AsyncSession
    tenant: Tenant
    actor: Actor
    user_id: uuid.UUID | None = None

    async def audit(
        self,
        action: str,
        *,
        resource_type: str | None = None,
        resource_id: object = None,
        outcome: Outcome = "success",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        await write_audit_event(
            self.session,
            self.actor.event(
                self.tenant.id,
                action,
                outcome=outcome,
                resource_type=resource_type,
                resource_id=resource_id,
                metadata=metadata,
            ),
        )


TransactionFactory = Callable[[], AbstractAsyncContextManager[ActingSession]]
"""Opens one acting transaction per call: for services that commit in several steps (an upload)."""
