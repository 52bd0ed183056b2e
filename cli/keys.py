"""`phivault keys ...`: rotating the master key and tenant keys (see `tenants.rotation`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.progress import Progress

from cli.context import app_database, cli_actor, cli_settings, parse_uuid
from core.errors import DomainError
from core.keys import LocalKeyProvider, decode_master_key, key_provider_from_settings, load_master_key
from core.runtime import resolve_services
from core.settings import SettingsError
from core.storage import object_store_from_settings
from tenants.repository import tenant_ids
from tenants.rotation import (
    MasterRotation,
    key_rotation_status,
    rotate_master_key,
    rotation_step,
    start_tenant_rotation,
)
from tenants.schemas import KeyRotationStatus
from tenants.tasks import send_rotation

app = typer.Typer(help="Rotate encryption keys.", no_args_is_help=True)


def _status_line(status: KeyRotationStatus) -> str:
    state = "in progress" if status.in_progress else "no rotation in progress"
    return f"{status.tenant_id}\t{state}\tmigrated {status.migrated}/{status.total}"


@app.command("rotate-master")
def rotate_master(
    old_master_key: Annotated[
        str | None,
        typer.Option(
            envvar="PHIVAULT_OLD_MASTER_KEY",
            help="The master key being replaced (base64); the new one is PHIVAULT_MASTER_KEY.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Re-wrap every tenant key under PHIVAULT_MASTER_KEY, one tenant per transaction (run again to resume)."""
    settings = cli_settings()
    if settings.key_provider != "local":
        raise SettingsError("rotate-master is for PHIVAULT_KEY_PROVIDER=local (KMS rotates its own key material)")
    if old_master_key is None:
        raise SettingsError("give the old master key: --old-master-key or PHIVAULT_OLD_MASTER_KEY")
    keys = LocalKeyProvider(load_master_key(settings), decode_master_key(old_master_key, "the old master key"))
    services = resolve_services(settings, need_redis=False)

    async def rotate() -> MasterRotation:
        async with app_database(settings, services) as db:
            with Progress(transient=True) as progress:
                task = progress.add_task("re-wrapping tenant keys", total=len(await tenant_ids(db)))
                return await rotate_master_key(db, keys, cli_actor(), lambda *_: progress.advance(task))

    result = asyncio.run(rotate())
    typer.echo(f"rotated: {result.rotated}  already under the new master key: {result.skipped}")


@app.command("rotate-tenant")
def rotate_tenant(
    tenant: str,
    wait: Annotated[
        bool, typer.Option(help="Migrate the objects here, with a progress bar, instead of a worker.")
    ] = False,
) -> None:
    """Give the tenant a new key; a worker moves its objects to it in the background (`phivault keys status`)."""
    settings = cli_settings()
    services = resolve_services(settings, need_redis=not wait)
    tenant_id = parse_uuid(tenant)
    keys = key_provider_from_settings(settings)

    async def start() -> KeyRotationStatus:
        async with app_database(settings, services) as db:
            status = await start_tenant_rotation(db, keys, tenant_id, cli_actor())
            if not wait:
                return status
            store = object_store_from_settings(settings, keys)
            with Progress(transient=True) as progress:
                task = progress.add_task("moving objects to the new key", total=status.total)
                while status.in_progress:
                    status = await rotation_step(db, keys, store, tenant_id)
                    progress.update(task, completed=status.migrated, total=status.total)
            return status

    try:
        status = asyncio.run(start())
    except DomainError as error:
        typer.echo(f"phivault: {error.message} ({error.code})", err=True)
        raise typer.Exit(1) from None
    if not wait:
        send_rotation(services.redis_url, tenant_id)
    typer.echo(_status_line(status))


@app.command("status")
def rotation_status(tenant: str) -> None:
    """How far the tenant's key rotation got: objects moved to the new key, of all its objects."""
    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id = parse_uuid(tenant)

    async def read() -> KeyRotationStatus:
        async with app_database(settings, services) as db:
            return await key_rotation_status(db, tenant_id)

    try:
        typer.echo(_status_line(asyncio.run(read())))
    except DomainError as error:
        typer.echo(f"phivault: {error.message} ({error.code})", err=True)
        raise typer.Exit(1) from None
