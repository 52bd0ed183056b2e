"""`phivault tenant ...`: platform operations on tenants."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

import typer

from cli.context import app_database, cli_actor, cli_settings, parse_uuid
from core.errors import DomainError, NotFound
from core.keys import key_provider_from_settings
from core.runtime import resolve_services
from core.storage import object_store_from_settings
from models.tenant import Tenant
from tenants.offboarding import cancel_offboarding, purge_due_tenants, purge_receipt, schedule_offboarding
from tenants.schemas import PurgeReceipt, TenantOut, TenantStatus
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


def _tenant_line(tenant: Tenant) -> str:
    purge_after = tenant.purge_after.isoformat() if tenant.purge_after else "-"
    return f"{tenant.id}\t{tenant.status}\tpurge_after={purge_after}"


def _refused(error: DomainError) -> typer.Exit:
    typer.echo(f"phivault: {error.message} ({error.code})", err=True)
    return typer.Exit(1)


@app.command("offboard")
def tenant_offboard(tenant: str) -> None:
    """Suspend the tenant now and schedule the destruction of its key and data (PHIVAULT_TENANT_RETENTION_DAYS)."""
    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id = parse_uuid(tenant)

    async def offboard() -> Tenant | None:
        async with app_database(settings, services) as db:
            retention = timedelta(days=settings.tenant_retention_days)
            return await schedule_offboarding(db, tenant_id, cli_actor(), retention)

    try:
        scheduled = asyncio.run(offboard())
    except DomainError as error:
        raise _refused(error) from None
    if scheduled is None:
        raise _refused(NotFound("tenant", tenant_id))
    typer.echo(_tenant_line(scheduled))


@app.command("cancel-offboarding")
def tenant_cancel_offboarding(tenant: str) -> None:
    """Cancel a scheduled destruction that has not started; the tenant stays suspended."""
    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id = parse_uuid(tenant)

    async def cancel() -> Tenant | None:
        async with app_database(settings, services) as db:
            return await cancel_offboarding(db, tenant_id, cli_actor())

    try:
        cancelled = asyncio.run(cancel())
    except DomainError as error:
        raise _refused(error) from None
    if cancelled is None:
        raise _refused(NotFound("tenant", tenant_id))
    typer.echo(_tenant_line(cancelled))


@app.command("purge-due")
def tenant_purge_due() -> None:
    """Destroy now every tenant whose offboarding deadline has passed (beat does it hourly); print each receipt."""
    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)
    keys = key_provider_from_settings(settings)

    async def purge() -> list[PurgeReceipt]:
        async with app_database(settings, services) as db:
            return await purge_due_tenants(db, keys, object_store_from_settings(settings, keys))

    receipts = asyncio.run(purge())
    for receipt in receipts:
        typer.echo(receipt.model_dump_json())
    typer.echo(f"purged: {len(receipts)}", err=True)


@app.command("receipt")
def tenant_receipt(tenant: str) -> None:
    """Print the destruction receipt of an offboarded tenant (JSON, from its audit trail); exit 1 if none."""
    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id = parse_uuid(tenant)

    async def read() -> PurgeReceipt | None:
        async with app_database(settings, services) as db:
            return await purge_receipt(db, tenant_id)

    receipt = asyncio.run(read())
    if receipt is None:
        typer.echo("phivault: no destruction receipt for this tenant (not offboarded, or not yet purged)", err=True)
        raise typer.Exit(1)
    typer.echo(receipt.model_dump_json(indent=2))
