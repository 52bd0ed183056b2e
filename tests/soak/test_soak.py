"""Isolation under load, the short run in `make test` (`make soak` runs the long one, `python -m tests.soak`).

Twenty tenants upload, search, list, read, download, delete, restore and read their audit trail at
once against the real app and a real worker; every answer is checked against the tenant that asked.
The bug the soak found (a document deleted before processing stayed `queued` after its restore) has
a test of its own, and the checks are shown to catch what they look for on hand-made answers.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from core.settings import Settings
from tests.conftest import owner_scalar
from tests.harness import Tokens, upload
from tests.soak.corpus import TOPICS
from tests.soak.driver import TERMINAL, Doc, Soak, SoakPlan, TenantRun, run_soak, settings_minter
from tests.waiting import eventually, patience

SHORT = SoakPlan(
    tenants=20,
    documents_per_tenant=2,
    requests=300,
    duration_seconds=patience(0.5),
    settle_seconds=patience(0.5),
    concurrency=8,
    seed=11,
)
OPERATIONS = (
    "tenant create", "upload", "search vector", "search hybrid", "list", "read", "download", "delete", "restore",
    "audit read", "verify", "probe",
)  # fmt: skip


@pytest.mark.usefixtures("worker")
async def test_twenty_tenants_under_load_see_only_their_own(client: httpx.AsyncClient, settings: Settings) -> None:
    report = await run_soak(client, settings_minter(settings, SHORT.token_ttl_seconds), SHORT)
    print(report.render())
    assert report.ok, report.render()
    assert report.tenants == SHORT.tenants
    assert report.documents == SHORT.uploads
    assert report.skipped == 0, report.summary()
    assert all(report.requests[op] > 0 for op in OPERATIONS), report.summary()
    assert report.deleted + report.restored > 0
    assert report.probes_refused > 0
    assert report.rows_checked > SHORT.uploads


@pytest.mark.usefixtures("worker")
async def test_a_document_deleted_while_queued_is_processed_once_restored(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    """Found by the soak: the worker skips a document deleted before its turn and leaves it `queued`;
    restoring it must send it to the worker again, or it stays `queued` until a reconciler happens by."""
    headers = tokens.headers("member", tenant_id)
    blocker = " ".join(f"Note {i} on {topic} and its management." for i in range(300) for topic in TOPICS[:4])
    assert (await upload(client, headers, blocker.encode(), "blocker.txt")).status_code == 202
    first = (await upload(client, headers, b"Asthma review: inhaler technique checked.\n", "a.txt")).json()["id"]
    assert (await client.delete(f"/v1/documents/{first}", headers=headers)).status_code == 204
    later = (await upload(client, headers, b"Migraine review: triptan helps.\n", "b.txt")).json()["id"]

    async def status(document_id: str) -> str | None:
        response = await client.get(f"/v1/documents/{document_id}", headers=headers)
        return str(response.json()["status"]) if response.status_code == 200 else None

    # One worker takes the queue in order: once the later upload is done, the deleted one's turn has passed.
    await eventually(lambda: _terminal(status(later)), "the later upload processed")
    sql = "SELECT status FROM documents WHERE id = :d"
    assert await owner_scalar(owner_engine, sql, d=uuid.UUID(first)) == "queued", (
        "the worker reached it before the delete"
    )
    assert (await client.post(f"/v1/documents/{first}/restore", headers=headers)).status_code == 200
    await eventually(lambda: _terminal(status(first)), "the restored document processed", seconds=patience(0.3))


async def _terminal(status: Awaitable[str | None]) -> bool:
    return await status in TERMINAL


# The checks, on hand-made answers: each one must notice what it is there to catch.


@pytest.fixture
async def soak() -> AsyncIterator[Soak]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(500))) as http:
        checker = Soak(http, lambda role, tenant_id, subject: "token", SoakPlan(tenants=2, documents_per_tenant=1))
        checker.tenants = [TenantRun(index=i, marker=f"mk0000000{i}", id=str(uuid.uuid4())) for i in range(2)]
        for tenant in checker.tenants:
            checker.owner[tenant.marker] = checker.owner[tenant.id] = tenant.index
            name = f"{tenant.marker}-000.txt"
            doc = Doc(id=str(uuid.uuid4()), filename=name, kind="txt", sha256="0", size_bytes=1, content=b"x")
            tenant.documents[doc.id] = doc
            checker.owner[doc.id] = tenant.index
        yield checker


def _hit(tenant: TenantRun, text: str | None = None) -> dict[str, object]:
    doc = next(iter(tenant.documents.values()))
    return {"document_id": doc.id, "filename": doc.filename, "text": text or f"{tenant.marker} asthma", "metadata": {}}


def test_a_clean_hit_passes(soak: Soak) -> None:
    own = soak.tenants[0]
    soak._check_hit(own, "search", _hit(own), set())
    soak._check_deferred()
    assert (soak.report.rows_checked, soak.report.cross_tenant_rows, soak.report.failures) == (1, 0, [])


@pytest.mark.parametrize(
    "leak",
    ["another tenant's marker in the text", "another tenant's document", "text without the marker"],
)
def test_a_search_hit_of_another_tenant_is_a_cross_tenant_row(soak: Soak, leak: str) -> None:
    own, other = soak.tenants
    hit = {
        "another tenant's marker in the text": _hit(own, f"{own.marker} and {other.marker}"),
        "another tenant's document": _hit(other, f"{own.marker} asthma"),
        "text without the marker": _hit(own, "asthma"),
    }[leak]
    hit["filename"] = f"{own.marker}-000.txt"
    soak._check_hit(own, "search", hit, set())
    assert soak.report.cross_tenant_rows == 1
    assert not soak.report.ok


def test_an_unknown_document_is_caught_once_uploads_are_known(soak: Soak) -> None:
    own = soak.tenants[0]
    soak._check_hit(own, "search", {**_hit(own), "document_id": str(uuid.uuid4())}, set())
    assert soak.report.cross_tenant_rows == 0  # it may be an upload whose answer is on its way
    soak._check_deferred()
    assert soak.report.cross_tenant_rows == 1


def test_a_deleted_document_in_a_list_is_counted(soak: Soak) -> None:
    own = soak.tenants[0]
    doc = next(iter(own.documents.values()))
    item = {
        "id": doc.id,
        "filename": doc.filename,
        "sha256": "0",
        "size_bytes": 1,
        "metadata": {"soak_tenant": own.marker},
    }
    soak._check_document(own, "list", item, {doc.id})
    assert (soak.report.cross_tenant_rows, soak.report.deleted_rows) == (0, 1)
    assert not soak.report.ok


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("actor_id", "mk00000001-member"),
        ("request_id", "soak.mk00000001.3"),
        ("resource_id", "other-document"),
        ("resource_id", "other-tenant"),
    ],
)
def test_an_audit_event_of_another_tenant_is_a_cross_tenant_row(soak: Soak, field: str, value: str) -> None:
    own, other = soak.tenants
    event: dict[str, object] = {
        "actor_type": "user",
        "actor_id": own.subjects[1],
        "action": "document.viewed",
        "outcome": "success",
        "request_id": own.request_id(),
        "resource_type": "document",
        "resource_id": next(iter(own.documents)),
        "metadata": {},
    }
    event[field] = {"other-document": next(iter(other.documents)), "other-tenant": other.id}.get(value, value)
    if value == "other-tenant":
        event["resource_type"] = "tenant"
    soak._check_event(own, "audit read", event)
    assert soak.report.cross_tenant_rows == 1


def test_a_denial_may_name_a_document_the_tenant_probed(soak: Soak) -> None:
    own, other = soak.tenants
    target = next(iter(other.documents))
    own.probed.add(target)
    event = {"actor_type": "user", "actor_id": own.subjects[0], "outcome": "denied", "request_id": None,
             "resource_type": "document", "resource_id": target, "metadata": {"reason": "not_found"}}  # fmt: skip
    soak._check_event(own, "audit read", event)
    soak._check_deferred()
    assert soak.report.cross_tenant_rows == 0


def test_a_live_document_missing_or_unfinished_is_lost(soak: Soak) -> None:
    own = soak.tenants[0]
    doc = next(iter(own.documents.values()))
    soak._final_document(own, dataclasses.replace(doc, id="missing"), None)
    soak._final_document(own, dataclasses.replace(doc, id="stuck", restored=True), {"status": "queued"})
    soak._final_document(own, dataclasses.replace(doc, id="no-reason"), {"status": "failed", "error_code": None})
    assert soak.report.lost == 3
    assert any("after its restore" in failure for failure in soak.report.failures)
