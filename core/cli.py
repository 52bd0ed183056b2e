"""The `phivault` command line."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import Annotated

import typer

from core.runtime import Services, resolve_services
from core.settings import Settings, get_settings

app = typer.Typer(
    help="PHIVault: multi-tenant document vault with semantic search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

HostOption = Annotated[str | None, typer.Option(help="Interface to listen on (default PHIVAULT_API_HOST).")]
PortOption = Annotated[int | None, typer.Option(help="Port to listen on (default PHIVAULT_API_PORT).")]


def _settings() -> Settings:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return get_settings()


def _migrate(settings: Settings, services: Services) -> None:
    from core.migrate import migrate as run_migrations

    run_migrations(services.owner_url, settings.app_db_password.get_secret_value())


def _serve(settings: Settings, services: Services, host: str | None, port: int | None) -> None:
    import uvicorn

    from api.app import create_app

    uvicorn.run(
        create_app(settings, services),
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level="info",
    )


def _verify_runtime_role(settings: Settings, services: Services) -> None:
    """Workers hold the same guard as the API: never run as a role that could bypass RLS."""
    import asyncio

    from core.db import create_engine, verify_app_role

    async def check() -> None:
        engine = create_engine(services.app_url, settings)
        try:
            await verify_app_role(engine)
        finally:
            await engine.dispose()

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
    """Run a Celery worker."""
    settings = _settings()
    services = resolve_services(settings)
    _verify_runtime_role(settings, services)
    from core.celery_app import configure_celery

    configure_celery(services.redis_url).worker_main(
        ["worker", "--loglevel=INFO", f"--concurrency={concurrency}", "--pool=prefork"]
    )


@app.command()
def beat() -> None:
    """Run the Celery beat scheduler (periodic reconciliation and purges)."""
    settings = _settings()
    services = resolve_services(settings)
    from core.celery_app import configure_celery

    schedule = settings.data_dir.resolve() / "celerybeat-schedule"
    configure_celery(services.redis_url).start(["beat", "--loglevel=INFO", f"--schedule={schedule}"])


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
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


def main() -> None:
    """Console entry point: configuration and role errors end with a clear message, not a traceback."""
    from core.db import UnsafeDatabaseRole
    from core.settings import SettingsError

    try:
        app()
    except (SettingsError, UnsafeDatabaseRole) as exc:
        typer.echo(f"phivault: {exc}", err=True)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
