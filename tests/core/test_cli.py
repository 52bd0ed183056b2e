"""`phivault migrate` and `phivault api` against an outside PostgreSQL given only by DATABASE_URL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from core.runtime import Services
from tests.conftest import TEST_APP_PASSWORD
from tests.harness import scratch_database


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
        [sys.executable, "-m", "core.cli", "migrate"], env=cli_env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "migrations at head" in migrate.stdout

    port = _free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and api.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
                if status == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert status == 200
    finally:
        api.terminate()
        api.wait(timeout=20)


def test_api_refuses_to_start_as_the_owner(cli_env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "core.cli", "migrate"], env=cli_env, check=True, capture_output=True)
    env = dict(cli_env, PHIVAULT_APP_DATABASE_URL=cli_env["DATABASE_URL"])
    api = subprocess.run(
        [sys.executable, "-m", "core.cli", "api", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert api.returncode != 0
    assert "refusing to run as database role 'postgres'" in api.stderr
