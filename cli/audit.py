"""`phivault audit ...`: inspecting the audit trail."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from audit.schemas import ChainReport, VerificationIncomplete
from audit.service import compute_query_hash, verify_and_record
from cli.context import TenantOption, app_database, cli_actor, cli_settings, parse_uuid
from core.keys import key_provider_from_settings
from core.runtime import resolve_services
from tenants.query_keys import QueryKeys
from tenants.service import acting_session

app = typer.Typer(help="Inspect the audit trail.", no_args_is_help=True)


@app.command("verify")
def audit_verify(tenant: TenantOption) -> None:
    """Walk the tenant's audit hash chain; exit 1 and name the first broken link if it was altered.

    Exit 2 when the check itself could not finish (PHIVAULT_AUDIT_VERIFY_TIMEOUT_SECONDS, database limits)."""
    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id = parse_uuid(tenant)

    async def run() -> ChainReport | VerificationIncomplete:
        async with app_database(settings, services) as db, acting_session(db, tenant_id, cli_actor()) as tx:
            return await verify_and_record(tx, timeout_seconds=settings.audit_verify_timeout_seconds)

    report = asyncio.run(run())
    if isinstance(report, VerificationIncomplete):
        typer.echo(f"NOT CHECKED: the verification could not finish ({report.reason}); no verdict on the chain")
        raise typer.Exit(2)
    if report.valid:
        typer.echo(f"valid: {report.checked} events checked")
    else:
        typer.echo(f"BROKEN: first broken link at audit event {report.first_broken_id} ({report.checked} checked)")
        raise typer.Exit(1)


@app.command("query-hash")
def audit_query_hash(
    tenant: TenantOption, query: Annotated[str, typer.Argument(help="the query text, as a user would search it")]
) -> None:
    """Print the `query_hmac` a search for QUERY records in the tenant's audit trail, to look for in it.

    Audited as `audit.query_hash_computed` (with the HMAC, never the text)."""
    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id = parse_uuid(tenant)

    async def run() -> str:
        async with app_database(settings, services) as db, acting_session(db, tenant_id, cli_actor()) as tx:
            return await compute_query_hash(tx, QueryKeys(db, key_provider_from_settings(settings)), query)

    typer.echo(asyncio.run(run()))
