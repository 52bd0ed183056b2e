"""`GET /metrics` through the real HTTP app: format, token, route templates, scrape-time gauges, search latency."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.metrics import SCRAPE_TIMEOUT_SECONDS
from core.runtime import Services
from core.settings import Settings
from models.document import DOCUMENT_STATUSES
from tests.harness import NOTE, Tokens, app_client, document_in, upload
from tests.metrics_helpers import UUID_PATTERN, label_values, matching, own_broker, samples, value
from tests.security.test_audit_coverage import high_water

METRICS_TOKEN = "metrics-token-for-tests-" + "x" * 16
REQUESTS = "phivault_http_request_duration_seconds_count"
SEARCHES = "phivault_search_duration_seconds_count"


async def scrape(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> str:
    response = await client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    return response.text


def documents_total(text_: str) -> float:
    return sum(s.value for s in matching(samples(text_), "phivault_documents"))


async def test_scrape_is_prometheus_text_with_every_metric(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    scrape = samples(response.text)
    names = {s.name for s in scrape}
    assert {
        REQUESTS,
        "phivault_http_request_duration_seconds_bucket",
        "phivault_documents",
        "phivault_queue_depth",
        "phivault_metrics_source_up",
        SEARCHES,
        "process_resident_memory_bytes",
    } <= names
    assert value(scrape, "phivault_metrics_source_up", source="database") == 1
    assert value(scrape, "phivault_metrics_source_up", source="broker") == 1
    assert {s.labels["status"] for s in matching(scrape, "phivault_documents")} >= set(DOCUMENT_STATUSES)
    assert value(scrape, REQUESTS, route="/healthz", method="GET", status="200") >= 1


async def test_the_token_is_required_when_configured(
    settings: Settings, services: Services, owner_engine: AsyncEngine
) -> None:
    protected = settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)})
    refusals = {
        "no header": ({}, "missing_token"),
        "another scheme": ({"Authorization": f"Basic {METRICS_TOKEN}"}, "missing_token"),
        "empty bearer": ({"Authorization": "Bearer "}, "missing_token"),
        "wrong token": ({"Authorization": "Bearer " + "y" * len(METRICS_TOKEN)}, "invalid_token"),
        "a prefix of it": ({"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"}, "invalid_token"),
        "a JWT-looking token": ({"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}, "invalid_token"),
    }
    async with app_client(protected, services) as client:
        before = await high_water(owner_engine)
        for label, (headers, code) in refusals.items():
            request_id = f"metrics-{uuid.uuid4().hex}"
            response = await client.get("/metrics", headers={**headers, "X-Request-ID": request_id})
            assert response.status_code == 401, label
            assert response.json() == {
                "error": {"code": code, "message": response.json()["error"]["message"], "request_id": request_id}
            }, label
            assert METRICS_TOKEN not in response.text
        assert await high_water(owner_engine) == before, "a refused scrape must not be audited"

        accepted = await scrape(client, {"Authorization": f"bearer  {METRICS_TOKEN} "})
        assert await high_water(owner_engine) == before, "a scrape must not be audited"
    scrape_ = samples(accepted)
    assert matching(scrape_, "phivault_documents")
    assert "/metrics" not in {s.labels.get("route") for s in scrape_}, "scrapes are not request metrics"


async def test_no_token_is_needed_when_none_is_configured(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 200
    assert (await client.get("/metrics", headers={"Authorization": "Bearer anything"})).status_code == 200


async def test_requests_are_labelled_by_route_template_never_by_path(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    headers = tokens.headers("member", tenant_id)
    created = await upload(client, headers, NOTE + uuid.uuid4().bytes.hex().encode())
    document_id = created.json()["id"]
    assert (await client.get(f"/v1/documents/{document_id}", headers=headers)).status_code == 200
    stranger = uuid.uuid4()
    assert (await client.get(f"/v1/documents/{stranger}", headers=headers)).status_code == 404
    # A trailing slash is redirected by the router; the instrumentator alone would label it with the raw path.
    assert (await client.get(f"/v1/documents/{stranger}/", headers=headers)).status_code == 307
    assert (await client.get(f"/no-such-route/{stranger}")).status_code == 404
    assert (await client.request("PROPFIND", "/healthz")).status_code == 405

    body = await scrape(client)
    scrape_ = samples(body)
    route = "/v1/documents/{document_id}"
    assert value(scrape_, REQUESTS, route=route, method="GET", status="200") >= 1
    assert value(scrape_, REQUESTS, route=route, method="GET", status="404") >= 1
    assert value(scrape_, REQUESTS, route="/v1/documents", method="POST", status="202") >= 1
    assert value(scrape_, REQUESTS, route="unmatched", method="GET", status="307") >= 1
    assert value(scrape_, REQUESTS, route="unmatched", method="GET", status="404") >= 1
    assert value(scrape_, REQUESTS, route="/healthz", method="other", status="405") >= 1
    assert not [v for v in label_values(scrape_) if UUID_PATTERN.search(v)]
    for secret in (document_id, str(stranger), str(tenant_id), "note.txt", "PROPFIND"):
        assert secret not in body


async def test_documents_by_status_counts_an_upload_in_any_tenant(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    before = documents_total(await scrape(client))
    response = await upload(client, tokens.headers("member", tenant_id), NOTE + uuid.uuid4().bytes.hex().encode())
    assert response.status_code == 202, response.text
    after = await scrape(client)
    # The worker may move it on between the scrapes, but it is counted under exactly one status.
    assert documents_total(after) == before + 1
    assert str(tenant_id) not in after


async def test_queue_depth_counts_waiting_messages(
    settings: Settings, services: Services, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    with own_broker(services) as isolated:  # no worker consumes this broker
        async with app_client(settings, isolated) as client:
            assert value(samples(await scrape(client)), "phivault_queue_depth", queue="celery") == 0
            for _ in range(2):
                content = NOTE + uuid.uuid4().bytes.hex().encode()
                assert (await upload(client, tokens.headers("member", tenant_id), content)).status_code == 202
            assert value(samples(await scrape(client)), "phivault_queue_depth", queue="celery") == 2


async def test_search_latency_by_plan_and_mode(client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID) -> None:
    """A tenant without chunks is searched with the exact plan."""
    before = samples(await scrape(client))
    headers = tokens.headers("viewer", tenant_id)
    for mode in ("vector", "hybrid", "hybrid"):
        response = await client.post("/v1/search", json={"query": "wheeze at night", "mode": mode}, headers=headers)
        assert response.status_code == 200, response.text
    after = samples(await scrape(client))

    def delta(plan: str, mode: str) -> float:
        return value(after, SEARCHES, plan=plan, mode=mode) - value(before, SEARCHES, plan=plan, mode=mode)

    assert (delta("exact", "vector"), delta("exact", "hybrid")) == (1, 2)
    assert (delta("hnsw", "vector"), delta("hnsw", "hybrid")) == (0, 0)
    assert "wheeze" not in str(after)


@pytest.mark.usefixtures("worker")
async def test_search_latency_of_the_hnsw_plan(
    settings: Settings, services: Services, client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    """With `search_exact_max_rows=0`, a tenant with any chunk is searched through the HNSW index."""
    headers = tokens.headers("member", tenant_id)
    document_id = (await upload(client, headers, NOTE + uuid.uuid4().bytes.hex().encode())).json()["id"]
    assert (await document_in(client, headers, document_id))["status"] == "ready"

    async with app_client(settings.model_copy(update={"search_exact_max_rows": 0}), services) as hnsw_client:
        response = await hnsw_client.post("/v1/search", json={"query": "pneumonia"}, headers=headers)
        assert response.status_code == 200, response.text
        scrape_ = samples(await scrape(hnsw_client))
    assert value(scrape_, SEARCHES, plan="hnsw", mode="vector") == 1
    assert value(scrape_, SEARCHES, plan="exact", mode="vector") == 0


async def test_a_slow_database_does_not_hang_the_scrape(client: httpx.AsyncClient, owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn:
        await conn.execute(text("LOCK TABLE documents IN ACCESS EXCLUSIVE MODE"))  # held until the rollback
        started = time.monotonic()
        body = await scrape(client)
        elapsed = time.monotonic() - started
        await conn.rollback()
    scrape_ = samples(body)
    assert SCRAPE_TIMEOUT_SECONDS <= elapsed < SCRAPE_TIMEOUT_SECONDS + 5
    assert value(scrape_, "phivault_metrics_source_up", source="database") == 0
    assert value(scrape_, "phivault_metrics_source_up", source="broker") == 1
    assert not matching(scrape_, "phivault_documents")
    recovered = samples(await scrape(client))
    assert value(recovered, "phivault_metrics_source_up", source="database") == 1
    assert matching(recovered, "phivault_documents")


async def test_an_unreachable_broker_leaves_only_the_queue_depth_out(settings: Settings, services: Services) -> None:
    down = Services(database=services.database, redis_url="unix:///nonexistent/redis.sock")
    async with app_client(settings, down) as client:
        scrape_ = samples(await scrape(client))
    assert value(scrape_, "phivault_metrics_source_up", source="broker") == 0
    assert not matching(scrape_, "phivault_queue_depth")
    assert value(scrape_, "phivault_metrics_source_up", source="database") == 1
