"""The accounting of disclosures (`GET /v1/audit-logs/report`), end to end: real app, real worker, real PostgreSQL.

Two users, two documents: Alice reads, downloads and searches document 1; Bob searches something that returns
document 2 only. The report for document 1 lists exactly Alice's accesses (and the upload and processing), the
report for Bob exactly his; the CSV form says the same; another tenant's id is an empty report, not an error.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.schemas import REPORT_WINDOW
from tests.conftest import owner_scalar
from tests.harness import Tokens, Worker, upload
from tests.waiting import eventually

ASTHMA = b"Asthma review.\n\nWheezing at night; inhaled corticosteroid started, peak flow improving.\n"
FRACTURE = b"Orthopaedic note.\n\nClosed fracture of the left radius, cast applied, review in six weeks.\n"


async def _ready(owner_engine: AsyncEngine, document_id: str) -> None:
    """Waits on the row itself (as the owner), so the wait leaves no `document.viewed` in the trail."""

    async def probe() -> bool:
        status = await owner_scalar(owner_engine, "SELECT status FROM documents WHERE id = :d", d=document_id)
        assert status != "failed", document_id
        return status == "ready"

    await eventually(probe, f"document {document_id} ready")


async def _report(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> dict[str, Any]:
    response = await client.get("/v1/audit-logs/report", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["count"] == len(body["entries"])
    assert body["truncated"] is False
    return body


def _accesses(report: dict[str, Any]) -> list[tuple[str | None, str, str | None, list[str] | None]]:
    return [(e["actor_id"], e["action"], e["resource_id"], e["documents"]) for e in report["entries"]]


async def test_the_report_lists_exactly_the_accesses_made(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, worker: Worker, owner_engine: AsyncEngine
) -> None:
    alice = tokens.headers("member", tenant_id, sub="alice")
    bob = tokens.headers("member", tenant_id, sub="bob")
    admin = tokens.headers("admin", tenant_id, sub="compliance")
    first = (await upload(client, alice, ASTHMA, "asthma.txt")).json()["id"]
    second = (await upload(client, bob, FRACTURE, "fracture.txt")).json()["id"]
    await _ready(owner_engine, first)
    await _ready(owner_engine, second)

    assert (await client.get(f"/v1/documents/{first}", headers=alice)).status_code == 200
    assert (await client.get(f"/v1/documents/{first}/content", headers=alice)).status_code == 200
    mine = await client.post("/v1/search", json={"query": "asthma inhaler", "k": 3}, headers=alice)
    assert {hit["document_id"] for hit in mine.json()["results"]} == {first, second}
    theirs = await client.post(
        "/v1/search", json={"query": "broken arm", "k": 3, "document_ids": [second]}, headers=bob
    )
    assert {hit["document_id"] for hit in theirs.json()["results"]} == {second}

    about_first = await _report(client, admin, resource_id=first)
    assert about_first["subject"] == {"kind": "resource", "id": first}
    both = sorted([first, second])
    assert _accesses(about_first) == [
        ("alice", "document.uploaded", first, None),
        ("phivault-worker", "document.processed", first, None),
        ("alice", "document.viewed", first, None),
        ("alice", "document.downloaded", first, None),
        ("alice", "search.query", None, both),
    ]
    assert {e["outcome"] for e in about_first["entries"]} == {"success"}
    assert all(e["request_id"] for e in about_first["entries"] if e["actor_type"] == "user")

    by_bob = await _report(client, admin, actor_id="bob")
    assert by_bob["subject"] == {"kind": "actor", "id": "bob"}
    bob_user = by_bob["entries"][0]["resource_id"]
    assert _accesses(by_bob) == [
        ("bob", "user.provisioned", bob_user, None),
        ("bob", "document.uploaded", second, None),
        ("bob", "search.query", None, [second]),
    ]

    as_csv = await client.get("/v1/audit-logs/report", params={"resource_id": first, "format": "csv"}, headers=admin)
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["x-report-truncated"] == "false"
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    again = await _report(client, admin, resource_id=first)

    def cell(value: object) -> str:
        return "" if value is None else " ".join(value) if isinstance(value, list) else str(value)

    assert rows == [{key: cell(value) for key, value in entry.items()} for entry in again["entries"]]

    reports = await _report_events(owner_engine, tenant_id)
    assert [(m["subject"], m["subject_id"], m["count"], m["format"]) for m in reports] == [
        ("resource", first, 5, "json"),
        ("actor", "bob", 3, "json"),
        ("resource", first, 5, "csv"),
        ("resource", first, 5, "json"),
    ]


async def _report_events(owner_engine: AsyncEngine, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    async with owner_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT metadata FROM audit_logs WHERE tenant_id = :t AND action = 'audit.report' "
                "AND actor_id = 'compliance' ORDER BY id"
            ),
            {"t": tenant_id},
        )
        return [dict(row.metadata) for row in rows]


async def test_only_admins_get_a_report_and_another_tenants_ids_match_nothing(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    member = tokens.headers("member", tenant_id)
    mine = (await upload(client, member, f"A note of our own {uuid.uuid4()}.".encode())).json()["id"]
    other = await client.post("/v1/tenants", json={"name": f"Other {uuid.uuid4().hex[:6]}"}, headers=tokens.platform())
    outsider = tokens.headers("admin", uuid.UUID(other.json()["id"]))

    for role in ("member", "viewer"):
        refused = await client.get(
            "/v1/audit-logs/report", params={"resource_id": mine}, headers=tokens.headers(role, tenant_id)
        )
        assert refused.status_code == 403, refused.text
    foreign = await _report(client, outsider, resource_id=mine)
    assert foreign["entries"] == []
    assert foreign["count"] == 0
    own = await _report(client, tokens.headers("admin", tenant_id), resource_id=mine)
    assert own["entries"][0]["action"] == "document.uploaded"  # then its processing, if a worker runs


async def test_the_subject_and_the_window_are_checked(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    admin = tokens.headers("admin", tenant_id)
    refusals: list[dict[str, str]] = [
        {},
        {"resource_id": "a", "actor_id": "b"},
        {"actor_id": "b", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"actor_id": "b", "since": "2010-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        {"actor_id": "b", "format": "xml"},
    ]
    for params in refusals:
        response = await client.get("/v1/audit-logs/report", params=params, headers=admin)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    default = await _report(client, admin, actor_id="nobody")
    since, until = (datetime.fromisoformat(default["window"][end]) for end in ("since", "until"))
    assert until - since == REPORT_WINDOW
    assert abs(until - datetime.now(UTC)) < timedelta(minutes=5)
