"""A whole worker killed (every process of its group, as an OOM kill or a redeploy does), then restarted.

Only the API and `phivault worker` run, no beat, with the production defaults for the reconciler
(`PHIVAULT_QUEUED_TIMEOUT_SECONDS`, `PHIVAULT_PROCESSING_TIMEOUT_SECONDS`,
`PHIVAULT_RECONCILE_INTERVAL_SECONDS`) and for Redis's visibility timeout. The messages the dead
worker had taken stay unacknowledged in Redis for the visibility timeout (a day); the new
worker's own reconciler must find their documents and finish every one within three minutes of the
restart. The claim tests below show why a document is never processed twice on the way: a live
claim is never taken, a lapsed one is, and only the latest claim may finish.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import Database, create_engine
from core.keys import key_provider_from_settings
from core.runtime import Services, throwaway_services
from core.settings import Settings
from ingest.chunking import Chunk
from ingest.maintenance import reconcile
from ingest.processing import Prepared, claim, finish, renew
from models.audit import Actor
from tenants.service import create_tenant, key_provisioner
from tests.conftest import development_settings
from tests.harness import HashEmbedder, SentTasks, Tokens, Worker, app_client, audit_actions, upload, worker_env
from tests.ingest.private_stack import (
    all_settled,
    assert_processed_once,
    new_tenant,
    statuses,
)
from tests.waiting import eventually, patience, stretched, wait_until

pytestmark = pytest.mark.timeout(patience(3))

RECOVERY_BOUND_SECONDS = stretched(180.0)
"""Issue 11's bound (3 minutes from the restart), stretched only where the suite is told the machine is slower."""
PROSE = (
    "Asthma is a chronic inflammatory disease of the airways. Patients present with wheeze, cough and "
    "shortness of breath, often worse at night. Inhaled corticosteroids reduce airway inflammation. "
)
RECONCILER_SETTINGS = (
    "PHIVAULT_QUEUED_TIMEOUT_SECONDS",
    "PHIVAULT_PROCESSING_TIMEOUT_SECONDS",
    "PHIVAULT_RECONCILE_INTERVAL_SECONDS",
    "PHIVAULT_BROKER_VISIBILITY_TIMEOUT_SECONDS",
)


@dataclass(frozen=True)
class Stack:
    settings: Settings
    services: Services
    owner: AsyncEngine
    database: Database
    http: httpx.AsyncClient
    tokens: Tokens


@pytest.fixture(scope="module")
def stack_services() -> Iterator[tuple[Settings, Services]]:
    data_dir = Path(tempfile.mkdtemp(prefix="phivault-crash-"))  # short: unix socket paths are limited
    settings = development_settings(data_dir)
    services = throwaway_services(settings)
    try:
        yield settings, services
    finally:
        if services.embedded_redis is not None:
            services.embedded_redis.stop()
        if services.embedded_postgres is not None:
            services.embedded_postgres.server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
async def stack(stack_services: tuple[Settings, Services]) -> AsyncIterator[Stack]:
    settings, services = stack_services
    owner = create_engine(services.owner_url, settings)
    database = Database(create_engine(services.app_url, settings))
    try:
        async with app_client(settings, services) as http:
            yield Stack(settings, services, owner, database, http, Tokens(settings))
    finally:
        await database.dispose()
        await owner.dispose()


def _env(stack: Stack) -> dict[str, str]:
    env = worker_env(stack.settings, stack.services)
    for name in RECONCILER_SETTINGS:  # the defaults are what this test proves
        env.pop(name, None)
    return env


def _group(pgid: int) -> list[psutil.Process]:
    """Every live process of the process group (zombies are dead: they only wait to be reaped)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def kill_group(worker: Worker) -> list[int]:
    """SIGKILL the worker's whole process group and wait until none of it is left; returns the pids killed."""
    assert worker.process is not None
    assert worker.new_session
    pgid = worker.process.pid
    assert os.getpgid(pgid) == pgid
    members = _group(pgid)
    assert len(members) >= 2, "the main process and its pool children"
    os.killpg(pgid, signal.SIGKILL)
    worker.process.wait()
    wait_until(lambda: not _group(pgid), "every process of the worker's group gone")
    for process in members:
        assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE, process
    return [process.pid for process in members]


async def test_every_document_finishes_within_three_minutes_of_restarting_a_killed_worker(stack: Stack) -> None:
    tenant_id = await new_tenant(stack.http, stack.tokens)
    headers = stack.tokens.headers("member", tenant_id)
    first = Worker(_env(stack), stack.settings.data_dir / "worker-1.log", concurrency=2, new_session=True)
    second = Worker(_env(stack), stack.settings.data_dir / "worker-2.log", concurrency=2, new_session=True)
    try:
        first.start()
        documents: list[str] = []
        for n in range(3):  # large enough to be caught mid-processing
            body = "\n\n".join(f"Document {n}, visit {i}. {PROSE}" for i in range(400)).encode()
            documents.append(await _accepted(stack.http, headers, body, f"visits-{n}.txt"))
        for n in range(4):
            body = f"Follow-up {n}: the wheeze settled with inhaled steroids.".encode()
            documents.append(await _accepted(stack.http, headers, body, f"follow-up-{n}.txt"))

        async def processing() -> list[str] | None:
            held = [d for d, status in (await statuses(stack.owner, documents)).items() if status == "processing"]
            return held or None

        await eventually(processing, "a document being processed", max_interval=0.02)
        killed = kill_group(first)
        at_kill = await statuses(stack.owner, documents)
        interrupted = [d for d, status in at_kill.items() if status == "processing"]
        assert interrupted, at_kill
        print(f"\nkilled {len(killed)} processes; at the kill: {sorted(at_kill.values())}")

        restarted = time.monotonic()
        second.start()
        bodies = await all_settled(stack.http, headers, documents, seconds=max(patience(), RECOVERY_BOUND_SECONDS))
        took = time.monotonic() - restarted
        print(f"every document ready or failed {took:.1f} s after the restart (bound {RECOVERY_BOUND_SECONDS:.0f} s)")
        assert took <= RECOVERY_BOUND_SECONDS
        assert {body["status"] for body in bodies.values()} == {"ready"}, bodies
        await assert_processed_once(stack.owner, tenant_id, bodies)
        attempts = await _attempts(stack.owner, interrupted)
        assert all(count >= 2 for count in attempts.values()), attempts
        requeued = [r for a, _, r in await audit_actions(stack.owner, tenant_id) if a == "document.requeued"]
        print(f"the new worker's reconciler sent {len(requeued)} documents again ({len(interrupted)} interrupted)")
        assert set(interrupted) <= set(requeued), "the reconciler sent the interrupted documents again"
        assert second.process is not None
        assert second.process.poll() is None
    finally:
        if first.process is not None and first.process.poll() is None:
            kill_group(first)
        second.stop()


async def test_a_live_task_longer_than_its_lease_is_not_taken_over(stack: Stack) -> None:
    """Renewals keep a long, live claim: the reconciler (every second here) never sends it again."""
    lease = 4
    env = _env(stack) | {"PHIVAULT_PROCESSING_TIMEOUT_SECONDS": str(lease), "PHIVAULT_RECONCILE_INTERVAL_SECONDS": "1"}
    worker = Worker(env, stack.settings.data_dir / "worker-lease.log")
    tenant_id = await new_tenant(stack.http, stack.tokens)
    headers = stack.tokens.headers("member", tenant_id)
    try:
        worker.start()
        body = "\n\n".join(f"Visit {i}. {PROSE}" for i in range(3000)).encode()
        document_id = await _accepted(stack.http, headers, body, "long.txt")

        async def processing() -> bool:
            return (await statuses(stack.owner, [document_id]))[document_id] == "processing"

        await eventually(processing, "the document being processed", max_interval=0.02)
        started = time.monotonic()
        bodies = await all_settled(stack.http, headers, [document_id], seconds=patience())
        took = time.monotonic() - started
    finally:
        worker.stop()
    print(f"\nprocessed in {took:.1f} s with a {lease} s lease")
    assert took > 2 * lease, "the premise: processing outlasts the lease"
    assert bodies[document_id]["status"] == "ready"
    await assert_processed_once(stack.owner, tenant_id, bodies)
    assert await _attempts(stack.owner, [document_id]) == {document_id: 1}
    assert "document.requeued" not in [a for a, _, r in await audit_actions(stack.owner, tenant_id) if r == document_id]


async def _accepted(http: httpx.AsyncClient, headers: dict[str, str], body: bytes, filename: str) -> str:
    response = await upload(http, headers, body, filename)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def _attempts(owner: AsyncEngine, document_ids: list[str]) -> dict[str, int]:
    async with owner.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, attempts FROM documents WHERE id = ANY(:ids)"),
            {"ids": [uuid.UUID(d) for d in document_ids]},
        )
        return {str(row.id): row.attempts for row in rows}


# Claims and concurrent reconcilers, on the same private database (no worker runs while these do) ----------


async def _tenant(stack: Stack) -> uuid.UUID:
    provision = key_provisioner(key_provider_from_settings(stack.settings))
    tenant = await create_tenant(
        stack.database, f"Clinic {uuid.uuid4().hex[:8]}", Actor(actor_id="tests", actor_type="platform"), provision
    )
    return tenant.id


async def _document(
    stack: Stack, tenant_id: uuid.UUID, status: str = "queued", age: timedelta = timedelta()
) -> uuid.UUID:
    """A row whose message was never sent, last updated `age` ago."""
    async with stack.database.tenant_session(tenant_id) as session:
        document_id = await session.scalar(
            text(
                "INSERT INTO documents (tenant_id, filename, content_type, size_bytes, sha256, storage_key, status) "
                "VALUES (:t, 'n.txt', 'text/plain', 1, :h, 'k', :s) RETURNING id"
            ),
            {"t": tenant_id, "h": uuid.uuid4().hex, "s": status},
        )
    assert isinstance(document_id, uuid.UUID)
    await _age(stack, document_id, age)
    return document_id


async def _age(stack: Stack, document_id: uuid.UUID, age: timedelta) -> None:
    async with stack.owner.begin() as conn:
        await conn.execute(
            text("UPDATE documents SET updated_at = now() - CAST(:age AS interval) WHERE id = :d"),
            {"age": age, "d": document_id},
        )


def _prepared(words: str) -> Prepared:
    chunk = Chunk(index=0, text=words, token_count=len(words.split()), page=None, metadata={})
    return Prepared(chunks=[chunk], vectors=HashEmbedder().embed_documents([words]))


LEASE = timedelta(seconds=60)


async def test_a_live_claim_is_kept_and_a_lapsed_one_is_taken_over_and_fenced(stack: Stack) -> None:
    tenant_id = await _tenant(stack)
    document_id = await _document(stack, tenant_id)
    holder = await claim(stack.database, tenant_id, document_id, lease=LEASE)
    assert holder is not None
    assert holder.attempts == 1

    # A duplicate message while the holder works (and renews its lease) is dropped, not run beside it.
    assert await claim(stack.database, tenant_id, document_id, lease=LEASE) is None
    await _age(stack, document_id, LEASE * 0.75)
    assert await renew(stack.database, tenant_id, document_id, holder.attempts)
    assert await claim(stack.database, tenant_id, document_id, lease=LEASE) is None

    # Unrenewed for a whole lease: the holder is taken for dead, and a new claim takes over.
    await _age(stack, document_id, LEASE * 1.5)
    successor = await claim(stack.database, tenant_id, document_id, lease=LEASE)
    assert successor is not None
    assert successor.attempts == 2
    # The old holder, had it been alive after all, can neither renew nor finish.
    assert not await renew(stack.database, tenant_id, document_id, holder.attempts)
    assert not await finish(stack.database, tenant_id, document_id, holder, _prepared("stale work"), HashEmbedder())
    assert await finish(stack.database, tenant_id, document_id, successor, _prepared("the work"), HashEmbedder())
    processed = [a for a, _, r in await audit_actions(stack.owner, tenant_id) if a == "document.processed"]
    assert processed == ["document.processed"]


async def test_a_message_back_from_a_dead_worker_takes_over_at_once(stack: Stack) -> None:
    """A pool child died holding it (`reject_on_worker_lost` redelivers): no need to wait for the lease."""
    tenant_id = await _tenant(stack)
    document_id = await _document(stack, tenant_id)
    dead = await claim(stack.database, tenant_id, document_id, lease=LEASE)
    assert dead is not None
    redelivered = await claim(stack.database, tenant_id, document_id, lease=LEASE, take_over=True)
    assert redelivered is not None
    assert redelivered.attempts == dead.attempts + 1


async def test_reconcilers_running_at_once_send_each_document_once(stack: Stack) -> None:
    """Every worker and beat run the reconciler: together they send a stale document once, not once each."""
    tenant_id = await _tenant(stack)
    lapsed = await _document(stack, tenant_id, "processing", timedelta(minutes=5))
    lost = await _document(stack, tenant_id, "queued", timedelta(minutes=5))
    waiting = await _document(stack, tenant_id, "queued", timedelta(minutes=5))
    live = await _document(stack, tenant_id, "processing", timedelta(seconds=5))
    await _document(stack, tenant_id, "queued", timedelta(seconds=5))  # fresh: not yet stale
    tasks = SentTasks()

    runs = [
        reconcile(
            stack.database,
            tasks,
            queued_after=timedelta(seconds=60),
            processing_after=LEASE,
            in_queue=frozenset({waiting}),
        )
        for _ in range(4)
    ]
    await asyncio.gather(*runs)
    assert sorted(tasks.documents(tenant_id)) == sorted([lapsed, lost])
    assert (await statuses(stack.owner, [str(lapsed), str(live)])) == {str(lapsed): "queued", str(live): "processing"}
    requeued = [r for a, _, r in await audit_actions(stack.owner, tenant_id) if a == "document.requeued"]
    assert sorted(map(str, requeued)) == sorted([str(lapsed), str(lost)])

    # Just sent: the next runs leave them alone until they are stale again.
    await reconcile(
        stack.database, tasks, queued_after=timedelta(seconds=60), processing_after=LEASE, in_queue={waiting}
    )
    assert sorted(tasks.documents(tenant_id)) == sorted([lapsed, lost])
