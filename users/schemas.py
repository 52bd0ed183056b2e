"""Shapes of the users, token-revocation and break-glass endpoints. Bad input is a 422 naming the field."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from core.validation import PG_TEXT, PgDateTime
from models.access_grant import AccessGrant
from models.user import User

UserRole = Literal["admin", "member", "viewer"]
UserStatus = Literal["active", "deactivated"]
GrantRole = Literal["admin", "member"]

MAX_GRANT_MINUTES = 24 * 60
"""A break-glass grant lasts at most a day."""

USER_EXAMPLE: dict[str, JsonValue] = {
    "id": "5d0c9a3e-2f4b-4c1d-9e8f-7a6b5c4d3e2f",
    "subject": "dr.alvarez@stmarys.example",
    "role": "member",
    "status": "active",
    "deactivated_at": None,
    "last_seen_at": "2026-11-24T09:30:00Z",
    "created_at": "2026-11-02T08:00:00Z",
}
GRANT_EXAMPLE: dict[str, JsonValue] = {
    "id": "3a2b1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d",
    "user_id": USER_EXAMPLE["id"],
    "role": "admin",
    "reason": "Night shift: the on-call administrator is unreachable and a record must be corrected.",
    "granted_by": "carol",
    "expires_at": "2026-11-24T13:30:00Z",
    "revoked_at": None,
    "revoked_by": None,
    "active": True,
    "created_at": "2026-11-24T09:30:00Z",
}


class UserOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [USER_EXAMPLE]})

    id: uuid.UUID
    subject: str = Field(description="The token's `sub`.")
    role: UserRole = Field(description="The stored role: a request acts on the lesser of it and the token's role.")
    status: UserStatus = Field(description="`deactivated`: every token of this user is refused (403).")
    deactivated_at: datetime | None
    last_seen_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            subject=user.subject,
            role=user.role,
            status="active" if user.deactivated_at is None else "deactivated",
            deactivated_at=user.deactivated_at,
            last_seen_at=user.last_seen_at,
            created_at=user.created_at,
        )


class UserPage(BaseModel):
    """Users newest first; pass `next_cursor` back as `cursor` for the next page (null: no more)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [USER_EXAMPLE], "next_cursor": None}]})

    items: list[UserOut]
    next_cursor: str | None


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "viewer"}, {"active": False}]})

    role: UserRole | None = Field(default=None, description="The new stored role; it bounds the token's at once.")
    active: bool | None = Field(
        default=None, description="`false` deactivates the user (its tokens are refused at once); `true` reactivates."
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if self.role is None and self.active is None:
            raise ValueError("give role, active or both")
        return self


class TokenRevoke(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"jti": "8f14e45f-ceea-467f-a8f3-5f7a1e2b9c0d", "expires_at": "2026-11-24T17:30:00Z"}]
        },
    )

    jti: Annotated[str, Field(min_length=1, max_length=255, description="The token's `jti` claim."), PG_TEXT]
    expires_at: PgDateTime = Field(description="The token's `exp`: the revocation is held until then.")


class TokenRevoked(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"revoked_until": "2026-11-24T17:30:30Z"}]})

    revoked_until: datetime = Field(
        description="When the revocation lapses: the token's expiry, at most `PHIVAULT_TOKEN_MAX_LIFETIME_SECONDS` "
        "from now."
    )


class GrantCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "user_id": USER_EXAMPLE["id"],
                    "role": "admin",
                    "reason": GRANT_EXAMPLE["reason"],
                    "expires_in_minutes": 240,
                }
            ]
        },
    )

    user_id: uuid.UUID
    role: GrantRole
    reason: Annotated[
        str,
        Field(
            min_length=10,
            max_length=1000,
            description="Why access is needed, in the admin's own words: stored with the grant and in every audit "
            "event written under it. Do not put PHI here.",
        ),
        PG_TEXT,
    ]
    expires_in_minutes: int = Field(ge=1, le=MAX_GRANT_MINUTES, description="1 to 1440 (24 hours).")


class GrantOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [GRANT_EXAMPLE]})

    id: uuid.UUID
    user_id: uuid.UUID
    role: GrantRole
    reason: str
    granted_by: str = Field(description="The granting actor's id (the admin's `sub`).")
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    active: bool = Field(description="Neither revoked nor expired as of this answer.")
    created_at: datetime

    @classmethod
    def of(cls, grant: AccessGrant, now: datetime) -> GrantOut:
        return cls(
            id=grant.id,
            user_id=grant.user_id,
            role=grant.role,
            reason=grant.reason,
            granted_by=grant.granted_by,
            expires_at=grant.expires_at,
            revoked_at=grant.revoked_at,
            revoked_by=grant.revoked_by,
            active=grant.revoked_at is None and grant.expires_at > now,
            created_at=grant.created_at,
        )


class GrantPage(BaseModel):
    """Grants newest first; pass `next_cursor` back as `cursor` for the next page (null: no more)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [GRANT_EXAMPLE], "next_cursor": None}]})

    items: list[GrantOut]
    next_cursor: str | None
