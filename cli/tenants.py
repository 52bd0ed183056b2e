"""`phivault tenant ...`: platform operations on tenants."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from cli.context import app_database, cli_actor, cli_settings
from core.keys import key_provider_from_settings
from core.runtime import resolve_services
from models.tenant import Tenant
from tenants.schemas import TenantOut, TenantStatus
from tenants.service import create_tenant, key_provisioner, list_tenants

app = typer.Typer(help="Manage tenants (platform operations).", no_args_is_help=True)

LIST_PAGE_SIZE = 100


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


@app.command("list")
def tenant_list(
    status: Annotated[TenantStatus | None, typer.Option(help="Only tenants in this status.")] = None,
) -> None:
    """Print every live tenant, newest first: id, slug, status and name, tab-separated."""
    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)

    async def every_page() -> list[TenantOut]:
        tenants: list[TenantOut] = []
        cursor = None
        async with app_database(settings, services) as db:
            while True:
                page = await list_tenants(db, cli_actor(), status=status, limit=LIST_PAGE_SIZE, cursor=cursor)
                tenants.extend(page.items)
                if page.next_cursor is None:
                    return tenants
                cursor = page.next_cursor

    for tenant in asyncio.run(every_page()):
        typer.echo(f"{tenant.id}\t{tenant.slug}\t{tenant.status}\t{tenant.name}")
