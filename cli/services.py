"""Running PHIVault's processes: migrations, the API, a worker, beat, or all of them at once (`up`)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Annotated

import typer

from cli.context import app_database, cli_settings
from core.migrate import migrate as run_migrations
from core.runtime import Services, resolve_services
from core.settings import Settings

GRACEFUL_SHUTDOWN_SECONDS = 25
"""How long the API lets in-flight requests finish after SIGTERM (platforms SIGKILL after ~30 s)."""

HostOption = Annotated[str | None, typer.Option(help="Interface to listen on (default PHIVAULT_API_HOST).")]
PortOption = Annotated[int | None, typer.Option(help="Port to listen on (default PHIVAULT_API_PORT).")]


def _migrate(settings: Settings, services: Services) -> None:
    run_migrations(
        services.owner_url, settings.app_db_password.get_secret_value(), settings.search_tenant_index_min_rows
    )


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
        async with app_database(settings, services):
            pass

    asyncio.run(check())


def _service_env(services: Services) -> dict[str, str]:
    """Environment for child processes: the resolved URLs, so they attach instead of starting servers."""
    env = dict(os.environ)
    env["DATABASE_URL"] = services.owner_url.render_as_string(hide_password=False)
    env["REDIS_URL"] = services.redis_url
    return env


def _port_taken(host: str, port: int) -> bool:
    """Whether something already listens on `host:port` (binding as uvicorn will, with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _base_url(host: str, port: int) -> str:
    """Where a browser on this machine reaches the API listening on `host:port`."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - listening everywhere: this machine reaches it locally
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


READY_POLL_SECONDS = 0.5


def _announce_when_ready(base_url: str, stop: threading.Event) -> None:
    """Print one line saying where everything is, once `/readyz` answers 200 (or give up at `stop`)."""
    import httpx

    while not stop.wait(READY_POLL_SECONDS):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200:
                typer.echo(f"PHIVault is ready: API {base_url}/  console {base_url}/console/  docs {base_url}/docs")
                return


def migrate() -> None:
    """Run migrations as the owner (DATABASE_URL) and create or update the phivault_app role."""
    settings = cli_settings()
    _migrate(settings, resolve_services(settings, need_redis=False))
    typer.echo("migrations at head; role phivault_app ready")


def api(host: HostOption = None, port: PortOption = None) -> None:
    """Serve the HTTP API as phivault_app."""
    settings = cli_settings()
    _serve(settings, resolve_services(settings), host, port)


def worker(concurrency: Annotated[int, typer.Option(min=1)] = 2) -> None:
    """Run a Celery worker (it also runs the reconciler: see ingest.tasks)."""
    settings = cli_settings()
    services = resolve_services(settings)
    _verify_runtime_role(settings, services)
    from ingest.worker_metrics import serve_worker_metrics

    with serve_worker_metrics(settings):  # PHIVAULT_WORKER_METRICS_PORT, from this (the main) process
        from ingest.tasks import configured_app  # registers the tasks; only now (see ingest.worker_metrics)

        app = configured_app(services.redis_url, settings)
        app.conf.worker_concurrency = concurrency  # read by each child to take its share of the cores
        app.worker_main(["worker", "--loglevel=INFO", f"--concurrency={concurrency}", "--pool=prefork"])


def beat() -> None:
    """Run the Celery beat scheduler (periodic reconciliation and purges)."""
    settings = cli_settings()
    services = resolve_services(settings)
    from ingest.tasks import configured_app

    schedule = settings.data_dir.resolve() / "celerybeat-schedule"
    configured_app(services.redis_url, settings).start(["beat", "--loglevel=INFO", f"--schedule={schedule}"])


def up(host: HostOption = None, port: PortOption = None) -> None:
    """Start everything on this machine: PostgreSQL, Redis, migrations, a worker, beat and the API."""
    settings = cli_settings()
    host, port = host or settings.listen_host, port or settings.api_port
    if _port_taken(host, port):
        typer.echo(
            f"phivault: port {port} on {host} is already in use (is PHIVault already running?): "
            "stop it, or choose a free port with PHIVAULT_API_PORT (or --port)",
            err=True,
        )
        raise typer.Exit(2)
    services = resolve_services(settings)
    _migrate(settings, services)
    env = _service_env(services)
    children = [
        subprocess.Popen([sys.executable, "-m", "cli", "worker"], env=env),
        subprocess.Popen([sys.executable, "-m", "cli", "beat"], env=env),
    ]
    stop = threading.Event()
    announcer = threading.Thread(target=_announce_when_ready, args=(_base_url(host, port), stop), daemon=True)
    announcer.start()
    try:
        _serve(settings, services, host, port)
    finally:
        stop.set()
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
