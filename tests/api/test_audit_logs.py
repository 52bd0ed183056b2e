"""Reading, exporting and verifying the audit trail through HTTP; each is itself audited."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.runtime import Services
from core.settings import Settings
from tests.harness import Tokens, app_client, upload


async def _busy_tenant(client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID) -> dict[str, str]:
    admin = tokens.headers("admin", tenant_id)
    for i in range(3):
        await upload(client, admin, f"Note {i} on cardiology follow-up.".encode(), f"n{i}.txt")
    return admin


async def test_list_filters_and_pages(client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID) -> None:
    admin = await _busy_tenant(client, tokens, tenant_id)
    first = await client.get("/v1/audit-logs", params={"limit": 2}, headers=admin)
    assert first.status_code == 200
    page = first.json()
    assert len(page["items"]) == 2
    assert page["items"][0]["id"] > page["items"][1]["id"]
    second = (
        await client.get("/v1/audit-logs", params={"limit": 2, "cursor": page["next_cursor"]}, headers=admin)
    ).json()
    assert second["items"][0]["id"] < page["items"][1]["id"]

    uploads = (await client.get("/v1/audit-logs", params={"action": "document.uploaded"}, headers=admin)).json()
    assert len(uploads["items"]) == 3
    event = uploads["items"][0]
    assert event["actor_id"] == "admin-user"
    assert event["ip_address"] == "127.0.0.1"
    assert event["request_id"]
    assert len(event["row_hash"]) == 64
    assert set(event["metadata"]) == {"sha256", "size_bytes", "content_type"}

    reads = (await client.get("/v1/audit-logs", params={"action": "audit.read"}, headers=admin)).json()["items"]
    assert len(reads) >= 3
    assert reads[0]["metadata"]["filters"] == {"action": "document.uploaded"}


async def test_only_admins_read_the_trail(client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID) -> None:
    for role in ("member", "viewer"):
        headers = tokens.headers(role, tenant_id)
        for path in ("/v1/audit-logs", "/v1/audit-logs/export", "/v1/audit-logs/verify"):
            response = await client.get(path, headers=headers)
            assert response.status_code == 403, (role, path)
    denied = (
        await client.get(
            "/v1/audit-logs", params={"action": "access.denied"}, headers=tokens.headers("admin", tenant_id)
        )
    ).json()["items"]
    assert len(denied) == 6


async def test_export_jsonl_and_csv(client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID) -> None:
    admin = await _busy_tenant(client, tokens, tenant_id)
    jsonl = await client.get("/v1/audit-logs/export", params={"format": "jsonl"}, headers=admin)
    assert jsonl.status_code == 200
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in jsonl.text.splitlines()]
    ids = [r["id"] for r in records]
    assert ids == sorted(ids)
    assert [r["action"] for r in records].count("document.uploaded") == 3
    requests = [r for r in records if r["actor_type"] != "system"]  # the worker may append meanwhile
    assert requests[-1]["action"] == "audit.exported"  # recorded before the first row left

    exported = await client.get(
        "/v1/audit-logs/export", params={"format": "csv", "action": "document.uploaded"}, headers=admin
    )
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 3
    assert json.loads(rows[0]["metadata"])["content_type"] == "text/plain"
    assert (await client.get("/v1/audit-logs/export", params={"format": "xml"}, headers=admin)).status_code == 422


async def test_verify_reports_an_intact_chain(client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID) -> None:
    admin = await _busy_tenant(client, tokens, tenant_id)
    report = (await client.get("/v1/audit-logs/verify", headers=admin)).json()
    assert report["valid"] is True
    assert report["first_broken_id"] is None
    assert report["checked"] >= 5
    verified = (await client.get("/v1/audit-logs", params={"action": "audit.verified"}, headers=admin)).json()
    assert verified["items"][0]["metadata"]["valid"] is True
    assert verified["items"][0]["metadata"]["result"] == "intact"


async def test_a_verification_the_database_stops_is_reported_as_incomplete_not_broken(
    client: httpx.AsyncClient,
    tokens: Tokens,
    tenant_id: uuid.UUID,
    settings: Settings,
    services: Services,
    owner_engine: AsyncEngine,
) -> None:
    """The check runs past its time limit on a long chain: 503 `verification_incomplete`, recorded as such.

    Nothing about the chain is claimed (no `valid: false`), the event says `incomplete`, not `broken`,
    and the same chain verifies as intact once the check is given its time."""
    async with owner_engine.begin() as conn:  # a long, intact chain, written through the chain trigger
        await conn.execute(
            text(
                "INSERT INTO audit_logs (tenant_id, actor_type, action, outcome) "
                "SELECT :t, 'system', 'test.filler', 'success' FROM generate_series(1, 20000)"
            ),
            {"t": tenant_id},
        )
    admin = tokens.headers("admin", tenant_id)
    hurried = settings.model_copy(update={"audit_verify_timeout_seconds": 0.001})
    async with app_client(hurried, services) as rushed:
        response = await rushed.get("/v1/audit-logs/verify", headers=admin)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "verification_incomplete"
    assert "valid" not in response.json()
    assert int(response.headers["Retry-After"]) > 0

    events = (await client.get("/v1/audit-logs", params={"action": "audit.verified"}, headers=admin)).json()["items"]
    assert [(e["outcome"], e["metadata"]) for e in events] == [("error", {"result": "incomplete", "reason": "timeout"})]

    report = (await client.get("/v1/audit-logs/verify", headers=admin)).json()
    assert report["valid"] is True
    assert report["checked"] > 20000


async def test_time_bounds_and_cursor_limits(client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID) -> None:
    admin = tokens.headers("admin", tenant_id)
    mixed = {"since": "2020-01-01T00:00:00", "until": "2999-01-01T00:00:00+02:00"}
    assert (await client.get("/v1/audit-logs", params=mixed, headers=admin)).status_code == 200
    backwards = {"since": "2030-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"}
    assert (await client.get("/v1/audit-logs", params=backwards, headers=admin)).status_code == 422
    huge = await client.get("/v1/audit-logs", params={"cursor": "9" * 19}, headers=admin)
    assert huge.status_code == 422


async def test_verify_never_reports_an_intact_chain_broken_while_it_is_written_to(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    """200 verifications while three writers append to the same tenant's chain: zero false alarms."""
    admin = tokens.headers("admin", tenant_id)
    writers = [tokens.headers("viewer", tenant_id, sub=f"writer-{i}") for i in range(3)]
    done = asyncio.Event()
    written = 0

    async def write(headers: dict[str, str]) -> None:
        nonlocal written
        while not done.is_set():
            assert (await client.get("/v1/documents", headers=headers)).status_code == 200  # audits document.listed
            written += 1

    tasks = [asyncio.create_task(write(headers)) for headers in writers]
    try:
        reports = []
        for _ in range(200):
            response = await client.get("/v1/audit-logs/verify", headers=admin)
            assert response.status_code == 200
            reports.append(response.json())
    finally:
        done.set()
        await asyncio.gather(*tasks)
    assert written > 50  # the chain really was being written to throughout
    assert [report for report in reports if not report["valid"]] == []
    assert reports[-1]["checked"] > reports[0]["checked"]


async def test_csv_export_neutralises_formulas_and_jsonl_stays_exact(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    hostile = {'=HYPERLINK("http://evil")': "sub", "+1+2": "sub", "-2+3": "sub", "@SUM(A1)": "sub"}
    for subject in hostile:
        headers = {**tokens.headers("viewer", tenant_id, sub=subject), "User-Agent": "=cmd|' /C calc'!A0"}
        assert (await client.get("/v1/documents", headers=headers)).status_code == 200
    admin = tokens.headers("admin", tenant_id)
    params = {"action": "document.listed"}
    as_csv = await client.get("/v1/audit-logs/export", params={**params, "format": "csv"}, headers=admin)
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert sorted(row["actor_id"] for row in rows) == sorted("'" + subject for subject in hostile)
    assert {row["user_agent"] for row in rows} == {"'=cmd|' /C calc'!A0"}
    for row in rows:
        assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row.values() if cell)

    as_jsonl = await client.get("/v1/audit-logs/export", params={**params, "format": "jsonl"}, headers=admin)
    events = [json.loads(line) for line in as_jsonl.text.splitlines()]
    assert sorted(event["actor_id"] for event in events) == sorted(hostile)
    assert {event["user_agent"] for event in events} == {"=cmd|' /C calc'!A0"}
