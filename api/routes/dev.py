"""Development sign-in: `POST /v1/dev/token` mints a token for any role, as `phivault token` does.

It exists only when PHIVAULT_ENV=development (`api.console.install_console` registers it), so a production
server answers 404. It is kept out of the OpenAPI document, which describes what every deployment serves
(docs/API.md documents it). It reads and writes no tenant data, so it leaves no audit event.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Self

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.state import AppState
from core.db import SYSTEM_TENANT_ID
from core.security import Role, mint_token

router = APIRouter(prefix="/v1/dev", tags=["development"], include_in_schema=False)

DEV_TOKEN_TTL_SECONDS = 8 * 3600
"""A working day: the console asks again after that."""


class DevTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    tenant_id: uuid.UUID | None = None
    sub: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$")] = "console-user"

    @model_validator(mode="after")
    def _tenant_matches_role(self) -> Self:
        """The claims `core.security` accepts: a tenant for tenant roles (never the system's), none for platform."""
        if self.role == "platform_admin" and self.tenant_id is not None:
            raise ValueError("tenant_id: platform_admin tokens carry no tenant")
        if self.role != "platform_admin" and self.tenant_id in (None, SYSTEM_TENANT_ID):
            raise ValueError("tenant_id: a tenant role needs the id of a client tenant")
        return self


class DevToken(BaseModel):
    token: str
    expires_in: int


@router.post("/token")
async def development_token(request: Request, body: DevTokenRequest) -> DevToken:
    state: AppState = request.app.state.phivault
    token = mint_token(
        state.settings, subject=body.sub, role=body.role, tenant_id=body.tenant_id, ttl_seconds=DEV_TOKEN_TTL_SECONDS
    )
    return DevToken(token=token, expires_in=DEV_TOKEN_TTL_SECONDS)
