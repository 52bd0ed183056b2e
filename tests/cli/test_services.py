"""`phivault migrate` and `phivault api` against an outside PostgreSQL given only by DATABASE_URL; `phivault up`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from core.runtime import Services
from tests.cli.test_readme import readme_answer
from tests.conftest import TEST_APP_PASSWORD, run_in_fresh_loop
from tests.harness import scratch_database
from tests.waiting import patience, wait_until


@pytest.fixture
async def outside_database(services: Services, owner_engine: AsyncEngine) -> AsyncIterator[URL]:
    async with scratch_database(owner_engine, services, "phivault_outside") as url:
        yield url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def cli_env(outside_database: URL, services: Services) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=outside_database.set(drivername="postgresql").render_as_string(hide_password=False),
        REDIS_URL=services.redis_url,
        PHIVAULT_APP_DB_PASSWORD=TEST_APP_PASSWORD,
    )
    return env


def test_migrate_then_api_serves_as_the_app_role(cli_env: dict[str, str]) -> None:
    migrate = subprocess.run(
        [sys.executable, "-m", "cli", "migrate"], env=cli_env, capture_output=True, text=True, timeout=patience()
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "migrations at head" in migrate.stdout

    port = _free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait_ready(port, api) == 200
    finally:
        api.terminate()
        api.wait(timeout=patience())


def test_api_refuses_to_start_as_the_owner(cli_env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "cli", "migrate"], env=cli_env, check=True, capture_output=True)
    env = dict(cli_env, PHIVAULT_APP_DATABASE_URL=cli_env["DATABASE_URL"])
    api = subprocess.run(
        [sys.executable, "-m", "cli", "api", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=patience(),
    )
    assert api.returncode != 0
    assert "refusing to run as database role 'postgres'" in api.stderr


def test_token_is_refused_in_a_valid_production_configuration(cli_env: dict[str, str]) -> None:
    strong = "p" * 40
    env = dict(
        cli_env,
        PHIVAULT_ENV="production",
        PHIVAULT_JWT_SECRET=strong,
        PHIVAULT_APP_DB_PASSWORD=strong,
        PHIVAULT_MASTER_KEY=strong,
        PHIVAULT_METRICS_TOKEN=strong,
        PHIVAULT_ALLOW_LOCAL_STORAGE="true",
        PHIVAULT_DB_ALLOW_PLAINTEXT="true",
    )
    refused = subprocess.run(
        [sys.executable, "-m", "cli", "token", "--role", "platform_admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=patience(),
    )
    assert refused.returncode == 2
    assert "refusing to mint a token in production" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert refused.stdout == ""


async def _migrated(url: URL) -> bool:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(text("SELECT to_regclass('alembic_version')")) is not None
    finally:
        await engine.dispose()


def test_a_second_up_says_the_port_is_taken_before_migrating(
    cli_env: dict[str, str], outside_database: URL, tmp_path: Path
) -> None:
    with socket.socket() as running:  # what a first `phivault up` holds
        running.bind(("127.0.0.1", 0))
        running.listen()
        port = int(running.getsockname()[1])
        env = dict(cli_env, PHIVAULT_API_PORT=str(port), PHIVAULT_DATA_DIR=str(tmp_path / "data"))
        env.pop("PORT", None)
        second = subprocess.run(
            [sys.executable, "-m", "cli", "up"], env=env, capture_output=True, text=True, timeout=patience()
        )
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip().splitlines() == [
        f"phivault: port {port} on 127.0.0.1 is already in use (is PHIVault already running?): "
        "stop it, or choose a free port with PHIVAULT_API_PORT (or --port)"
    ]
    assert not run_in_fresh_loop(lambda: _migrated(outside_database))


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _redis_servers_in(data_dir: Path) -> set[int]:
    """redis-server processes working in `data_dir` (others, of other suites, may come and go meanwhile)."""
    found: set[int] = set()
    for process in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error, OSError):
            if "redis-server" in (process.info["name"] or "") and Path(process.cwd()) == data_dir.resolve():
                found.add(process.pid)
    return found


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> int | None:
    """The /readyz status once it is 200, or the last one seen if the process exits first."""
    status = None

    def settled() -> bool:
        nonlocal status
        with contextlib.suppress(httpx.TransportError):
            status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
        return status == 200 or process.poll() is not None

    wait_until(settled, f"/readyz on port {port} green")
    return status


def test_up_stopped_with_ctrl_c_stops_everything_it_started(tmp_path: Path) -> None:
    """`make run` then Ctrl-C (or a supervisor's SIGINT): the API, worker, beat, Redis and PostgreSQL all exit."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PORT")}
    port = _free_port()
    data_dir = tmp_path / "data"
    env.update(PHIVAULT_DATA_DIR=str(data_dir), PHIVAULT_API_PORT=str(port), HF_HUB_OFFLINE="1")
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "cli", "up"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        assert _wait_ready(port, up) == 200, (tmp_path / "up.log").read_text(errors="replace")[-3000:]
        base = f"http://127.0.0.1:{port}"
        ready_line = f"PHIVault is ready: API {base}/  console {base}/console/  docs {base}/docs"
        wait_until(lambda: ready_line in (tmp_path / "up.log").read_text(errors="replace"), "the ready line in the log")
        shown = readme_answer("curl -s http://127.0.0.1:8000/readyz")
        assert httpx.get(f"{base}/readyz", timeout=patience()).text == shown
        started = {p.pid for p in psutil.Process(up.pid).children(recursive=True)} | {up.pid}
        postmaster = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        owned_redis = _redis_servers_in(data_dir)
        assert owned_redis, "the embedded redis-server was not found"

        os.kill(up.pid, signal.SIGINT)  # to `up` alone: what it started must be stopped by `up` itself
        up.wait(timeout=patience())
        alive = started | owned_redis | {postmaster}

        def all_stopped() -> bool:
            nonlocal alive
            alive = {pid for pid in alive if _running(pid)}
            return not alive

        wait_until(all_stopped, "every process `up` started, stopped")
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        for pid in _redis_servers_in(data_dir):  # redis-server runs in a session of its own
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        log.close()
