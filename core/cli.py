"""The `phivault` command line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from core.logging import configure_logging
from core.runtime import Services, resolve_services
from core.settings import Settings, get_settings

app = typer.Typer(
    help="PHIVault: multi-tenant document vault with semantic search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

GRACEFUL_SHUTDOWN_SECONDS = 25
"""How long the API lets in-flight requests finish after SIGTERM (platforms SIGKILL after ~30 s)."""

HostOption = Annotated[str | None, typer.Option(help="Interface to listen on (default PHIVAULT_API_HOST).")]
PortOption = Annotated[int | None, typer.Option(help="Port to listen on (default PHIVAULT_API_PORT).")]


def _settings() -> Settings:
    settings = get_settings()
    if settings.log_json:
        configure_logging()
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return settings


def _migrate(settings: Settings, services: Services) -> None:
    from core.migrate import migrate as run_migrations

    run_migrations(services.owner_url, settings.app_db_password.get_secret_value())


def _serve(settings: Settings, services: Services, host: str | None, port: int | None) -> None:
    import uvicorn

    from api.app import create_app

    uvicorn.run(
        create_app(settings, services),
        host=host or settings.listen_host,
        port=port or settings.api_port,
        log_config=None,  # keep our JSON logging
        proxy_headers=False,  # the client address is PHIVault's decision (PHIVAULT_TRUSTED_PROXIES)
        access_log=False,  # one request line comes from our middleware, without query strings
        # SIGTERM: stop accepting, let in-flight requests finish (within the platform's drain window), exit.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def _verify_runtime_role(settings: Settings, services: Services) -> None:
    """Workers hold the same guard as the API: never run as a role that could bypass RLS."""

    async def check() -> None:
        await (await _app_database(settings, services)).dispose()

    asyncio.run(check())


def _service_env(services: Services) -> dict[str, str]:
    """Environment for child processes: the resolved URLs, so they attach instead of starting servers."""
    env = dict(os.environ)
    env["DATABASE_URL"] = services.owner_url.render_as_string(hide_password=False)
    env["REDIS_URL"] = services.redis_url
    return env


@app.command()
def migrate() -> None:
    """Run migrations as the owner (DATABASE_URL) and create or update the phivault_app role."""
    settings = _settings()
    _migrate(settings, resolve_services(settings, need_redis=False))
    typer.echo("migrations at head; role phivault_app ready")


@app.command()
def api(host: HostOption = None, port: PortOption = None) -> None:
    """Serve the HTTP API as phivault_app."""
    settings = _settings()
    _serve(settings, resolve_services(settings), host, port)


@app.command()
def worker(concurrency: Annotated[int, typer.Option(min=1)] = 2) -> None:
    """Run a Celery worker (it also runs the reconciler: see ingest.tasks)."""
    settings = _settings()
    services = resolve_services(settings)
    _verify_runtime_role(settings, services)
    from core.celery_app import configure_celery
    from ingest.worker_metrics import serve_worker_metrics

    with serve_worker_metrics(settings):  # PHIVAULT_WORKER_METRICS_PORT, from this (the main) process
        configure_celery(services.redis_url, settings).worker_main(
            ["worker", "--loglevel=INFO", f"--concurrency={concurrency}", "--pool=prefork"]
        )


@app.command()
def beat() -> None:
    """Run the Celery beat scheduler (periodic reconciliation and purges)."""
    settings = _settings()
    services = resolve_services(settings)
    from core.celery_app import configure_celery

    schedule = settings.data_dir.resolve() / "celerybeat-schedule"
    configure_celery(services.redis_url, settings).start(["beat", "--loglevel=INFO", f"--schedule={schedule}"])


@app.command()
def up(host: HostOption = None, port: PortOption = None) -> None:
    """Start everything on this machine: PostgreSQL, Redis, migrations, a worker, beat and the API."""
    settings = _settings()
    services = resolve_services(settings)
    _migrate(settings, services)
    env = _service_env(services)
    children = [
        subprocess.Popen([sys.executable, "-m", "core.cli", "worker"], env=env),
        subprocess.Popen([sys.executable, "-m", "core.cli", "beat"], env=env),
    ]
    try:
        _serve(settings, services, host, port)
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if services.embedded_redis is not None:  # PostgreSQL stops by itself with the last process using it
            services.embedded_redis.stop()


tenant_app = typer.Typer(help="Manage tenants (platform operations).", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")

RoleOption = Annotated[str, typer.Option("--role", help="platform_admin, admin, member or viewer.")]
TenantOption = Annotated[str, typer.Option("--tenant", help="Tenant id (uuid).")]


def _cli_actor() -> Any:
    import getpass

    from models.audit import Actor

    return Actor(actor_id=f"cli:{getpass.getuser()}", actor_type="platform")


def _uuid(value: str, what: str = "tenant") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise typer.BadParameter(f"{what} must be a uuid") from None


@app.command()
def token(
    role: RoleOption,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Tenant id (not for platform_admin).")] = None,
    sub: Annotated[str, typer.Option("--sub", help="Subject (user id).")] = "dev-user",
    ttl: Annotated[int, typer.Option(min=60, help="Lifetime in seconds.")] = 3600,
) -> None:
    """Mint a development token (refused in production)."""
    from core.security import ROLES, mint_token

    settings = _settings()
    if settings.is_production:
        typer.echo(
            "phivault: refusing to mint a token in production: tokens come from your identity provider "
            "(PHIVAULT_JWKS_URL) or are signed with PHIVAULT_JWT_SECRET by your own issuer",
            err=True,
        )
        raise typer.Exit(2)
    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    tenant_id = _uuid(tenant) if tenant else None
    typer.echo(mint_token(settings, subject=sub, role=role, tenant_id=tenant_id, ttl_seconds=ttl))


@tenant_app.command("create")
def tenant_create(name: str) -> None:
    """Create a tenant (and its key) and print its id."""
    settings = _settings()
    services = resolve_services(settings, need_redis=False)

    async def create() -> Any:
        from core.keys import key_provider_from_settings
        from models.tenancy import create_tenant, key_provisioner

        db = await _app_database(settings, services)
        try:
            return await create_tenant(db, name, _cli_actor(), key_provisioner(key_provider_from_settings(settings)))
        finally:
            await db.dispose()

    tenant = asyncio.run(create())
    typer.echo(f"{tenant.id}\t{tenant.slug}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="Files or folders (searched recursively).")],
    tenant: TenantOption,
    wait: Annotated[bool, typer.Option(help="Wait until every document is ready or failed.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for processing.")] = 600,
) -> None:
    """Upload files for a tenant, show progress, and summarise ready / failed / duplicate."""
    from ingest.cli_ingest import ingest_paths

    settings = _settings()
    services = resolve_services(settings)

    async def run() -> Any:
        db = await _app_database(settings, services)
        try:
            return await ingest_paths(settings, services, db, _uuid(tenant), paths, wait=wait, wait_seconds=timeout)
        finally:
            await db.dispose()

    summary = asyncio.run(run())
    typer.echo(summary.render())
    if summary.failed or summary.rejected:
        raise typer.Exit(1)


async def _app_database(settings: Settings, services: Services) -> Any:
    """The app-role database, after the same role guard the API and workers pass."""
    from core.db import Database, create_engine, verify_app_role

    db = Database(create_engine(services.app_url, settings))
    try:
        await verify_app_role(db.engine)
    except BaseException:
        await db.dispose()
        raise
    return db


@app.command()
def search(
    query: str,
    tenant: TenantOption,
    k: Annotated[int, typer.Option(min=1, max=100)] = 10,
    mode: Annotated[str, typer.Option(help="vector or hybrid")] = "vector",
) -> None:
    """Search a tenant's documents and print the results as a table."""
    from pydantic import ValidationError
    from rich.console import Console
    from rich.table import Table

    from embeddings.sentence_transformer import get_embedder
    from ingest.upload import service_transaction
    from search.schemas import SearchRequest
    from search.service import search as run_search

    settings = _settings()
    services = resolve_services(settings, need_redis=False)
    try:
        request = SearchRequest(query=query, k=k, mode=mode)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc.errors()[0]["msg"])) from None

    async def run() -> Any:
        db = await _app_database(settings, services)
        try:
            async with service_transaction(db, _uuid(tenant), _cli_actor())() as tx:
                return await run_search(tx, get_embedder(settings), request, settings)
        finally:
            await db.dispose()

    response = asyncio.run(run())
    table = Table(title=f"{len(response.results)} results in {response.took_ms:.0f} ms")
    for column in ("score", "document", "chunk", "page", "text"):
        table.add_column(column)
    for hit in response.results:
        snippet = " ".join(hit.text.split())[:100]
        table.add_row(f"{hit.score:.3f}", hit.filename, str(hit.chunk_index), str(hit.page or ""), snippet)
    Console().print(table)


@app.command()
def reembed(tenant: TenantOption, batch_size: Annotated[int, typer.Option(min=1, max=1024)] = 64) -> None:
    """Re-embed a tenant's chunks made by another model with the active one, with progress."""
    from rich.progress import Progress

    from embeddings.sentence_transformer import get_embedder
    from ingest.reembed import reembed_tenant, stale_chunk_count

    settings = _settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id = _uuid(tenant)

    async def run() -> int:
        db = await _app_database(settings, services)
        embedder = get_embedder(settings)
        try:
            total = await stale_chunk_count(db, tenant_id, embedder.model_id)
            with Progress() as progress:
                task = progress.add_task("re-embedding", total=total)
                return await reembed_tenant(
                    db,
                    embedder,
                    tenant_id,
                    _cli_actor(),
                    batch_size=batch_size,
                    on_batch=lambda n: progress.advance(task, n),
                )
        finally:
            await db.dispose()

    typer.echo(f"re-embedded {asyncio.run(run())} chunks")


audit_app = typer.Typer(help="Inspect the audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(tenant: TenantOption) -> None:
    """Walk the tenant's audit hash chain; exit 1 and name the first broken link if it was altered.

    Exit 2 when the check itself could not finish (PHIVAULT_AUDIT_VERIFY_TIMEOUT_SECONDS, database limits)."""
    from ingest.upload import service_transaction
    from models.audit_trail import VerificationIncomplete, verify_and_record

    settings = _settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id = _uuid(tenant)

    async def run() -> Any:
        db = await _app_database(settings, services)
        try:
            async with service_transaction(db, tenant_id, _cli_actor())() as tx:
                return await verify_and_record(tx, timeout_seconds=settings.audit_verify_timeout_seconds)
        finally:
            await db.dispose()

    report = asyncio.run(run())
    if isinstance(report, VerificationIncomplete):
        typer.echo(f"NOT CHECKED: the verification could not finish ({report.reason}); no verdict on the chain")
        raise typer.Exit(2)
    if report.valid:
        typer.echo(f"valid: {report.checked} events checked")
    else:
        typer.echo(f"BROKEN: first broken link at audit event {report.first_broken_id} ({report.checked} checked)")
        raise typer.Exit(1)


def main() -> None:
    """Console entry point: configuration and role errors end with a clear message, not a traceback."""
    from core.db import UnsafeDatabaseRole
    from core.settings import SettingsError
    from ingest.upload import TenantUnavailable

    try:
        app()
    except (SettingsError, UnsafeDatabaseRole, TenantUnavailable) as exc:
        typer.echo(f"phivault: {exc}", err=True)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
