"""PostgreSQL stopped and started again under load: 503s in the error shape, then recovery, and nothing lost.

The app (over ASGI) and a real `phivault worker` subprocess use a PostgreSQL of this module's own on
127.0.0.1. A few concurrent clients upload, read, search and read the audit trail while the server is
stopped (fast shutdown: every session is cut off) and started again on the same port. Every answer is
a 2xx or a 503 `service_unavailable` with `Retry-After`, never a 500; `/readyz` says 503 while the
server is down and 200 after; the same app, never restarted, serves again within a bounded time; every
upload that got 202 ends `ready` (the worker retried through the outage instead of failing it), every
upload that got 503 left no row, and every object in the store belongs to a row and every row has its
object. Nothing at error level is logged by the app, and no log line carries the notes' text.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import socket
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import Receive, Scope, Send

from api.middleware import RequestContextMiddleware
from core.db import create_engine, database_unavailable, to_asyncpg_url
from core.settings import APP_ROLE
from ingest.processing import is_transient
from tests.deploy.servers import HOST
from tests.faults.conftest import FaultStack, RunningApp, create_tenant, files_under, running_app
from tests.harness import Worker, document_in, upload, worker_env
from tests.security.error_shape import assert_error
from tests.waiting import eventually, patience

pytestmark = pytest.mark.timeout(patience(3))

CLIENTS = 4
MAX_REQUESTS = 3000
"""A bound on the whole run; the phases below end it long before, on a quick machine or a slow one."""
REQUESTS_BEFORE = 24
REFUSALS_WHILE_DOWN = 12
PAUSE_AFTER_REFUSAL = 0.05
"""A client pauses this long after a 503 (real ones wait `Retry-After`), so the outage does not eat the bound."""
OUTAGE_SECONDS = 5.0
"""How long the server stays down at least: long enough for the worker to meet the outage too."""
MARKER = "Quarrington"
"""Stands for PHI: it is in every note and every search, and must never reach a log line."""
OPERATIONS = ("upload", "read", "search", "audit")
APP_LOGGERS = ("api", "phivault", "ingest", "core", "models", "search", "embeddings")


@dataclass
class Answer:
    operation: str
    phase: str
    """The phase the request was sent in."""
    ended: str
    """The phase its answer came in."""
    status: int
    response: httpx.Response


@dataclass
class Load:
    """Concurrent clients, each going round the operations until told to stop (or the request bound)."""

    app: RunningApp
    tenant_id: uuid.UUID
    phase: str = "before"
    stopping: bool = False
    answers: list[Answer] = field(default_factory=list)
    accepted: dict[str, str] = field(default_factory=dict)
    """Document id to content digest, for every upload answered 202."""
    refused: list[str] = field(default_factory=list)
    """Content digests of the uploads answered 503."""

    def count(self, phase: str, status: int | None = None, operation: str | None = None) -> int:
        return sum(
            1
            for a in self.answers
            if a.phase == phase and status in (None, a.status) and operation in (None, a.operation)
        )

    async def client(self, number: int) -> None:
        member = self.app.tokens.headers("member", self.tenant_id, sub=f"client-{number}")
        admin = self.app.tokens.headers("admin", self.tenant_id, sub=f"auditor-{number}")
        for step in itertools.count(number):
            if self.stopping or len(self.answers) >= MAX_REQUESTS:
                return
            operation = OPERATIONS[step % len(OPERATIONS)]
            phase = self.phase
            response = await self._send(operation, member, admin)
            self.answers.append(Answer(operation, phase, self.phase, response.status_code, response))
            if response.status_code == 503:
                await asyncio.sleep(PAUSE_AFTER_REFUSAL)

    async def _send(self, operation: str, member: dict[str, str], admin: dict[str, str]) -> httpx.Response:
        http = self.app.http
        if operation == "upload":
            content = f"Discharge note {uuid.uuid4()} for {MARKER}.\n\nTreated for pneumonia; recovered.\n".encode()
            digest = hashlib.sha256(content).hexdigest()
            response = await upload(http, member, content, filename="note.txt")
            if response.status_code == 202:
                self.accepted[response.json()["id"]] = digest
            elif response.status_code == 503:
                self.refused.append(digest)
            return response
        if operation == "read" and self.accepted:
            return await http.get(f"/v1/documents/{next(reversed(self.accepted))}", headers=member)
        if operation == "read":
            return await http.get("/v1/documents?limit=5", headers=member)
        if operation == "search":
            return await http.post("/v1/search", json={"query": f"pneumonia {MARKER}", "k": 3}, headers=member)
        return await http.get("/v1/audit-logs?limit=5", headers=admin)


@pytest.fixture
def settings_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def app(fault_stack: FaultStack, settings_dir: Path) -> AsyncIterator[RunningApp]:
    async with running_app(fault_stack.settings_for(settings_dir), fault_stack.services) as running:
        yield running


@pytest.fixture
def fault_worker(fault_stack: FaultStack, settings_dir: Path, app: RunningApp) -> Iterator[Worker]:
    """A real worker on the module's PostgreSQL and Redis, sharing the app's data directory (objects, keys)."""
    running = Worker(worker_env(fault_stack.settings_for(settings_dir), fault_stack.services), settings_dir / "w.log")
    running.start()
    yield running
    running.stop()


async def readiness(app: RunningApp) -> tuple[int, dict[str, Any]]:
    response = await app.http.get("/readyz")
    return response.status_code, response.json()


async def storage_keys(owner: AsyncEngine, tenant_id: uuid.UUID) -> set[str]:
    async with owner.connect() as conn:
        keys = await conn.scalars(text("SELECT storage_key FROM documents WHERE tenant_id = :t"), {"t": tenant_id})
        return set(keys.all())


async def rows_with_digests(owner: AsyncEngine, digests: list[str]) -> int:
    async with owner.connect() as conn:
        found = await conn.scalar(text("SELECT count(*) FROM documents WHERE sha256 = ANY(:d)"), {"d": digests})
        return int(found or 0)


async def test_postgres_stopped_and_restarted_under_load(
    app: RunningApp,
    fault_worker: Worker,
    fault_stack: FaultStack,
    fault_owner: AsyncEngine,
    settings_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    await eventually(lambda: _ready(app), "the app ready (database, broker, model)")
    load = Load(app, await create_tenant(app))
    clients = [asyncio.create_task(load.client(n)) for n in range(CLIENTS)]
    try:

        def still_running() -> None:
            if all(task.done() for task in clients):
                raise AssertionError(f"the load ended early: {Counter((a.phase, a.status) for a in load.answers)}")

        async def progress(phase: str, status: int, enough: int) -> bool:
            still_running()
            return load.count(phase, status) >= enough

        await eventually(lambda: progress("before", 200, REQUESTS_BEFORE), "successes before the outage")

        load.phase = "stopping"
        stopped_at = time.monotonic()
        await asyncio.to_thread(fault_stack.postgres.stop)
        load.phase = "down"

        async def long_enough_down() -> bool:
            refusals = await progress("down", 503, REFUSALS_WHILE_DOWN)
            return refusals and time.monotonic() - stopped_at >= OUTAGE_SECONDS

        await eventually(long_enough_down, "503s while PostgreSQL is down")
        status, body = await readiness(app)
        assert status == 503, body
        assert body["checks"]["database"].startswith("unavailable"), body
        # A refusal is audited in the database too: it cannot be written now, so it is not answered either.
        anonymous = await app.http.get("/v1/documents", headers={"Authorization": "Bearer not-a-token"})
        assert_error(anonymous, 503, "service_unavailable")

        load.phase = "starting"
        await asyncio.to_thread(fault_stack.postgres.start)
        started_at = time.monotonic()
        load.phase = "after"

        async def recovered() -> bool:
            still_running()
            return all(
                any(a.phase == "after" and a.operation == op and a.status in (200, 202) for a in load.answers)
                for op in OPERATIONS
            )

        await eventually(recovered, "every operation succeeding again after the restart", seconds=patience(0.5))
        recovered_after = time.monotonic() - started_at
    finally:
        load.stopping = True
        await asyncio.gather(*clients)

    statuses = Counter((a.phase, a.status) for a in load.answers)
    print(
        f"\n{len(load.answers)} requests from {CLIENTS} clients; (phase sent, status): "
        f"{dict(sorted(statuses.items()))}; "
        f"down {started_at - stopped_at:.1f} s; every operation succeeded again {recovered_after:.1f} s after "
        f"the restart; {len(load.accepted)} uploads accepted, {len(load.refused)} refused with 503"
    )
    unexpected = [(a.operation, a.phase, a.status, a.response.text[:200]) for a in load.answers]
    assert all(a.status in (200, 202, 503) for a in load.answers), [
        u for u in unexpected if u[2] not in (200, 202, 503)
    ]
    for answer in (a for a in load.answers if a.status == 503):
        assert answer.ended != "before", (answer.operation, answer.response.text)
        assert_error(answer.response, 503, "service_unavailable")
        assert int(answer.response.headers["retry-after"]) > 0
    assert load.count("down", 503) >= REFUSALS_WHILE_DOWN
    assert await readiness(app) == (
        200,
        {"status": "ready", "checks": dict.fromkeys(["database", "broker", "embedder"], "ok")},
    )

    member = app.tokens.headers("member", load.tenant_id)
    for document_id in load.accepted:
        document = await document_in(app.http, member, document_id)
        assert document["status"] == "ready", document
    assert await rows_with_digests(fault_owner, load.refused) == 0, "an upload answered 503 left a row"
    objects = {f"tenants/{name}" for name in files_under(settings_dir / "objects" / "tenants")}
    assert objects == await storage_keys(fault_owner, load.tenant_id), (
        "an object without a row, or a row without its object"
    )

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(APP_LOGGERS)]
    assert errors == [], [(r.name, r.getMessage(), getattr(r, "error_type", None)) for r in errors]
    assert any(r.getMessage() == "dependency unavailable" for r in caplog.records)
    leaked = [r for r in caplog.records if MARKER in r.getMessage() or MARKER in (r.exc_text or "")]
    assert leaked == []
    worker_log = fault_worker.log_path.read_text(errors="replace")
    assert MARKER not in worker_log
    print(f"the worker retried {worker_log.count('transient failure; retrying')} tasks; all {len(load.accepted)} ready")


async def _ready(app: RunningApp) -> bool:
    return (await readiness(app))[0] == 200


async def test_an_outage_met_in_a_middleware_is_a_503_too(fault_stack: FaultStack) -> None:
    """ASGI middleware runs outside the app's exception handlers: the request layer maps the outage itself."""
    nowhere = to_asyncpg_url(fault_stack.postgres.superuser_url()).set(host=HOST, port=_closed_port())
    engine = create_engine(nowhere, fault_stack.settings)

    async def touches_the_database(scope: Scope, receive: Receive, send: Send) -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    try:
        transport = httpx.ASGITransport(app=RequestContextMiddleware(touches_the_database))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            response = await http.get("/anything")
    finally:
        await engine.dispose()
    assert_error(response, 503, "service_unavailable")
    assert int(response.headers["retry-after"]) > 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def test_no_free_connection_slot_is_an_outage_too(app: RunningApp, fault_owner: AsyncEngine) -> None:
    """PostgreSQL refusing new connections (53300) is a 503 for the API and a retry for the worker, not a bug."""
    tenant_id = await create_tenant(app)
    headers = app.tokens.headers("member", tenant_id)
    async with fault_owner.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f"ALTER ROLE {APP_ROLE} CONNECTION LIMIT 0"))
        try:
            # Pooled connections outlive the limit: end them, so that the next checkout has to connect.
            await conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :role"), {"role": APP_ROLE}
            )
            response = await app.http.get("/v1/documents", headers=headers)
            assert_error(response, 503, "service_unavailable")
            assert (await readiness(app))[0] == 503
            with pytest.raises(DBAPIError) as refused:
                async with app.state.database.tenant_session(tenant_id) as session:
                    await session.execute(text("SELECT 1"))
            assert database_unavailable(refused.value)
            assert is_transient(refused.value)
        finally:
            await conn.execute(text(f"ALTER ROLE {APP_ROLE} CONNECTION LIMIT -1"))
    assert (await app.http.get("/v1/documents", headers=headers)).status_code == 200


async def test_a_statement_error_stays_a_500(app: RunningApp) -> None:
    """Only the connection-level errors are outages: a failing statement is a bug, answered 500."""

    async def divide_by_zero() -> None:
        async with app.state.database.engine.connect() as conn:
            await conn.execute(text("SELECT 1 / 0"))

    app.app.add_api_route("/faults/divide-by-zero", divide_by_zero)
    assert_error(await app.http.get("/faults/divide-by-zero"), 500, "internal_error")
