"""`phivault tenant ...`: platform operations on tenants."""

from __future__ import annotations

import asyncio

import typer

from cli.context import app_database, cli_actor, cli_settings
from core.keys import key_provider_from_settings
from core.runtime import resolve_services
from models.tenant import Tenant
from tenants.service import create_tenant, key_provisioner

app = typer.Typer(help="Manage tenants (platform operations).", no_args_is_help=True)


@app.command("create")
def tenant_create(name: str) -> None:
    """Create a tenant (and its key) and print its id."""
    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)

    async def create() -> Tenant:
        async with app_database(settings, services) as db:
            return await create_tenant(db, name, cli_actor(), key_provisioner(key_provider_from_settings(settings)))

    tenant = asyncio.run(create())
    typer.echo(f"{tenant.id}\t{tenant.slug}")
