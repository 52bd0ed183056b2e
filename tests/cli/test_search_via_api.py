"""`phivault search` embeds its query with the API running on this machine, and loads no model to do it.

A real `phivault api` serves on a free port of 127.0.0.1; `phivault search` runs under `python -X importtime`,
whose report names every module the command imported: torch and sentence-transformers must not be among them
when the API embeds the query, and must be when the command embeds it itself.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import SYSTEM_TENANT_ID
from core.runtime import Services
from core.settings import Settings
from tests.harness import Worker, phivault, worker_env
from tests.waiting import patience, wait_until

MODEL_PACKAGES = {"torch", "sentence_transformers"}
QUERY = "chest pain"
CLI_ACTOR = f"cli:{getpass.getuser()}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def env(settings: Settings, services: Services) -> dict[str, str]:
    return worker_env(settings, services)


@pytest.fixture(scope="module")
def api_port(env: dict[str, str], settings: Settings) -> Iterator[int]:
    """A real `phivault api` on a free port of 127.0.0.1, ready (model loaded); stopped by its pid after."""
    port = _free_port()
    log = (settings.data_dir / f"api-{port}.log").open("wb")
    api = subprocess.Popen(
        [sys.executable, "-m", "cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return True
        assert api.poll() is None, (settings.data_dir / f"api-{port}.log").read_text(errors="replace")[-3000:]
        return False

    try:
        wait_until(ready, f"phivault api on port {port} ready")
        yield port
    finally:
        api.terminate()
        api.wait(timeout=patience())
        log.close()


@pytest.fixture(scope="module")
def tenant(env: dict[str, str], worker: Worker, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tenant with one ready document about chest pain (uploaded and processed by the real worker)."""
    created = phivault(env, "tenant", "create", "Search Via API Clinic")
    assert created.returncode == 0, created.stderr
    tenant_id = created.stdout.strip().split("\t")[0]
    note = Path(tmp_path_factory.mktemp("notes")) / "triage.txt"
    note.write_text("Triage note. Patient reports chest pain on exertion, relieved by rest; ECG ordered.")
    ingested = phivault(env, "ingest", str(note), "--tenant", tenant_id, "--timeout", str(patience()))
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    assert "ready: 1" in ingested.stdout, ingested.stdout
    return tenant_id


def search(env: dict[str, str], port: int, tenant_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cli", "search", QUERY, "--tenant", tenant_id, *extra],
        env=env | {"PHIVAULT_API_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=patience(),
    )


def imported_packages(stderr: str) -> set[str]:
    """The top-level packages `-X importtime` reports (`import time: self | cumulative | name` lines)."""
    return {
        line.rsplit("|", 1)[1].strip().split(".")[0] for line in stderr.splitlines() if line.startswith("import time:")
    }


def said(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("phivault: ")]


async def actions_since(owner: AsyncEngine, after: int) -> list[tuple[uuid.UUID, str, str, str]]:
    async with owner.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT tenant_id, action, actor_id, actor_type FROM audit_logs "
                "WHERE id > :after AND actor_type <> 'system' ORDER BY id"
            ),
            {"after": after},
        )
        return [(row.tenant_id, row.action, row.actor_id, row.actor_type) for row in rows]


async def high_water(owner: AsyncEngine) -> int:
    async with owner.connect() as conn:
        value = await conn.scalar(text("SELECT coalesce(max(id), 0) FROM audit_logs"))
    assert isinstance(value, int)
    return value


async def test_search_embeds_with_the_running_api_and_loads_no_model(
    env: dict[str, str], api_port: int, tenant: str, owner_engine: AsyncEngine
) -> None:
    before = await high_water(owner_engine)

    found = search(env, api_port, tenant)

    assert found.returncode == 0, found.stderr[-3000:]
    assert said(found.stderr) == [f"phivault: embedding the query with the running API at http://127.0.0.1:{api_port}"]
    assert "1 results" in found.stdout, found.stdout
    assert "triage.txt" in found.stdout, found.stdout
    assert not imported_packages(found.stderr) & MODEL_PACKAGES
    assert await actions_since(owner_engine, before) == [
        (SYSTEM_TENANT_ID, "embedding.computed", CLI_ACTOR, "platform"),
        (uuid.UUID(tenant), "search.query", CLI_ACTOR, "platform"),
    ]


@pytest.mark.parametrize("how", ["--local", "no API on the port", "the API refuses the token"])
async def test_otherwise_search_embeds_with_the_local_model(
    env: dict[str, str], api_port: int, tenant: str, owner_engine: AsyncEngine, how: str
) -> None:
    port, extra, cli_env = api_port, ["--local"], env
    if how == "no API on the port":
        port, extra = _free_port(), []
    elif how == "the API refuses the token":
        extra, cli_env = [], env | {"PHIVAULT_JWT_SECRET": "another-secret-" + "x" * 32}
    before = await high_water(owner_engine)

    found = search(cli_env, port, tenant, *extra)

    assert found.returncode == 0, found.stderr[-3000:]
    local = "phivault: embedding the query with the local model"
    expected = {
        "--local": [local],
        "no API on the port": [local],
        "the API refuses the token": [
            f"phivault: embedding the query with the running API at http://127.0.0.1:{port}",
            "phivault: the API did not embed the query (HTTP 401)",
            local,
        ],
    }[how]
    assert said(found.stderr) == expected
    assert "1 results" in found.stdout, found.stdout
    assert "triage.txt" in found.stdout, found.stdout
    assert imported_packages(found.stderr) >= MODEL_PACKAGES
    refused = [(SYSTEM_TENANT_ID, "auth.denied")] if how == "the API refuses the token" else []
    assert [(t, a) for t, a, _, _ in await actions_since(owner_engine, before)] == [
        *refused,
        (uuid.UUID(tenant), "search.query"),
    ]
