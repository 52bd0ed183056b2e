"""Documents through HTTP as `phivault_app`: upload, duplicate, list, read, download, delete, restore."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import owner_scalar
from tests.harness import NOTE, Tokens, audit_actions, upload


async def test_upload_answers_202_with_the_document(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    response = await upload(client, tokens.headers("member", tenant_id), metadata='{"ward": "3B"}')
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["duplicate"] is False
    assert body["filename"] == "note.txt"
    assert body["content_type"] == "text/plain"
    assert body["size_bytes"] == len(NOTE)
    assert body["metadata"] == {"ward": "3B"}
    assert response.headers["location"] == f"/v1/documents/{body['id']}"
    actions = await audit_actions(owner_engine, tenant_id)
    assert ("document.uploaded", "success", body["id"]) in actions
    assert ("user.provisioned", "success") in [(a, o) for a, o, _ in actions]


async def test_same_content_is_a_duplicate_of_the_first(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    headers = tokens.headers("admin", tenant_id)
    first = await upload(client, headers)
    second = await upload(client, headers, filename="copy.txt")
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert second.json()["id"] == first.json()["id"]


async def test_get_list_and_download(client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID) -> None:
    headers = tokens.headers("member", tenant_id)
    ids = [(await upload(client, headers, NOTE + str(i).encode())).json()["id"] for i in range(3)]

    got = await client.get(f"/v1/documents/{ids[0]}", headers=headers)
    assert got.status_code == 200
    assert set(got.json()) == {
        "id", "filename", "content_type", "size_bytes", "sha256", "status", "progress", "error_code",
        "error_message", "chunk_count", "metadata", "created_at", "updated_at",
    }  # fmt: skip

    first_page = await client.get("/v1/documents", params={"limit": 2}, headers=headers)
    assert first_page.status_code == 200
    page = first_page.json()
    assert [d["id"] for d in page["items"]] == ids[::-1][:2]
    second_page = await client.get("/v1/documents", params={"limit": 2, "cursor": page["next_cursor"]}, headers=headers)
    assert [d["id"] for d in second_page.json()["items"]] == [ids[0]]
    assert second_page.json()["next_cursor"] is None

    content = await client.get(f"/v1/documents/{ids[1]}/content", headers=headers)
    assert content.status_code == 200
    assert content.content == NOTE + b"1"
    assert content.headers["content-type"].startswith("text/plain")


async def test_progress_is_shown_while_processing_once_the_chunks_are_counted(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    headers = tokens.headers("viewer", tenant_id)
    uploaded = (await upload(client, tokens.headers("member", tenant_id))).json()
    assert (uploaded["status"], uploaded["progress"]) == ("queued", None)
    document_id = uploaded["id"]

    async def set_row(status: str, total: int | None, embedded: int | None) -> dict[str, object]:
        async with owner_engine.begin() as conn:
            await conn.execute(
                text("UPDATE documents SET status = :s, chunks_total = :t, chunks_embedded = :e WHERE id = :d"),
                {"s": status, "t": total, "e": embedded, "d": uuid.UUID(document_id)},
            )
        read = await client.get(f"/v1/documents/{document_id}", headers=headers)
        listed = (await client.get("/v1/documents", headers=headers)).json()["items"]
        assert [d for d in listed if d["id"] == document_id] == [read.json()]
        return dict(read.json())

    assert (await set_row("processing", None, None))["progress"] is None  # not yet chunked
    assert (await set_row("processing", 120, 32))["progress"] == {"chunks_total": 120, "chunks_embedded": 32}
    assert (await set_row("queued", 120, 32))["progress"] is None  # only the working claim's counts are shown

    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert schema["DocumentOut"]["properties"]["status"]["enum"] == ["queued", "processing", "ready", "failed"]
    assert set(schema["DocumentProgress"]["properties"]) == {"chunks_total", "chunks_embedded"}


async def test_viewer_reads_but_may_not_upload_or_download(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    document_id = (await upload(client, tokens.headers("member", tenant_id))).json()["id"]
    viewer = tokens.headers("viewer", tenant_id)
    assert (await client.get("/v1/documents", headers=viewer)).status_code == 200
    assert (await client.get(f"/v1/documents/{document_id}", headers=viewer)).status_code == 200
    refused = await upload(client, viewer, b"other content")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert (await client.get(f"/v1/documents/{document_id}/content", headers=viewer)).status_code == 403
    denied = [a for a in await audit_actions(owner_engine, tenant_id) if a[1] == "denied"]
    assert len(denied) == 2


async def test_delete_hides_and_restore_brings_back(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    headers = tokens.headers("member", tenant_id)
    document_id = (await upload(client, headers)).json()["id"]
    assert (await client.delete(f"/v1/documents/{document_id}", headers=headers)).status_code == 204
    assert (await client.get(f"/v1/documents/{document_id}", headers=headers)).status_code == 404
    assert (await client.get(f"/v1/documents/{document_id}/content", headers=headers)).status_code == 404
    listed = (await client.get("/v1/documents", headers=headers)).json()["items"]
    assert document_id not in [d["id"] for d in listed]
    assert (await client.delete(f"/v1/documents/{document_id}", headers=headers)).status_code == 404

    restored = await client.post(f"/v1/documents/{document_id}/restore", headers=headers)
    assert restored.status_code == 200
    assert (await client.get(f"/v1/documents/{document_id}", headers=headers)).status_code == 200


async def test_another_tenants_document_is_404_and_audited(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    theirs = (await upload(client, tokens.headers("member", tenant_id))).json()["id"]
    other = uuid.UUID(
        (await client.post("/v1/tenants", json={"name": "Other"}, headers=tokens.platform())).json()["id"]
    )
    mine = tokens.headers("admin", other)
    missing = await client.get(f"/v1/documents/{uuid.uuid4()}", headers=mine)
    for method, path in [
        ("GET", f"/v1/documents/{theirs}"),
        ("GET", f"/v1/documents/{theirs}/content"),
        ("DELETE", f"/v1/documents/{theirs}"),
        ("POST", f"/v1/documents/{theirs}/restore"),
    ]:
        response = await client.request(method, path, headers=mine)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == missing.json()["error"]["code"]
        assert response.json()["error"]["message"] in ("document not found", "deleted document not found")
    denied = [a for a in await audit_actions(owner_engine, other) if a[1] == "denied" and a[2] == theirs]
    assert len(denied) == 4
    assert await owner_scalar(
        owner_engine, "SELECT deleted_at IS NULL FROM documents WHERE id = :id", id=uuid.UUID(theirs)
    )


async def test_suspended_tenant_is_refused_at_once(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, owner_engine: AsyncEngine
) -> None:
    headers = tokens.headers("admin", tenant_id)
    assert (await client.get("/v1/documents", headers=headers)).status_code == 200
    suspended = await client.patch(f"/v1/tenants/{tenant_id}", json={"status": "suspended"}, headers=tokens.platform())
    assert suspended.status_code == 200
    assert suspended.json()["status"] == "suspended"
    refused = await client.get("/v1/documents", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "tenant_suspended"
    actions = await audit_actions(owner_engine, tenant_id)
    assert ("tenant.updated", "success", str(tenant_id)) in actions
    assert actions[-1][:2] == ("access.denied", "denied")
    await client.patch(f"/v1/tenants/{tenant_id}", json={"status": "active"}, headers=tokens.platform())
    assert (await client.get("/v1/documents", headers=headers)).status_code == 200
