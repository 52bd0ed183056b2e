"""`phivault token`: development tokens (refused in production, where tokens come from the identity provider)."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from cli.context import cli_settings, parse_uuid
from core.security import ROLES, TENANT_ROLES, mint_token

RoleOption = Annotated[str, typer.Option("--role", help="platform_admin, admin, member or viewer.")]


def token(
    role: RoleOption,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Tenant id (not for platform_admin).")] = None,
    sub: Annotated[str, typer.Option("--sub", help="Subject (user id).")] = "dev-user",
    ttl: Annotated[int, typer.Option(min=60, help="Lifetime in seconds.")] = 3600,
) -> None:
    """Mint a development token (refused in production)."""
    settings = cli_settings()
    if settings.is_production:
        _refuse(
            "refusing to mint a token in production: tokens come from your identity provider "
            "(PHIVAULT_JWKS_URL) or are signed with PHIVAULT_JWT_SECRET by your own issuer"
        )
    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    if role in TENANT_ROLES and tenant is None:
        _refuse(f"a {role} token acts in one tenant: add --tenant ID (the id `phivault tenant create` printed)")
    if role not in TENANT_ROLES and tenant is not None:
        _refuse(f"a {role} token acts in no tenant: drop --tenant")
    tenant_id = parse_uuid(tenant) if tenant else None
    typer.echo(mint_token(settings, subject=sub, role=role, tenant_id=tenant_id, ttl_seconds=ttl))


def _refuse(reason: str) -> NoReturn:
    typer.echo(f"phivault: {reason}", err=True)
    raise typer.Exit(2)
