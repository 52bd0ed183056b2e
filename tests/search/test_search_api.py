"""Search through HTTP with the real packaged model and a real worker: relevance, isolation, audit, bad input."""

from __future__ import annotations

import hashlib
import json
import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import Tokens, upload
from tests.waiting import eventually

pytestmark = pytest.mark.usefixtures("worker")

CORPUS = {
    "asthma": "Asthma causes wheezing, chest tightness and shortness of breath; inhaled corticosteroids and "
    "bronchodilators such as salbutamol control the airway inflammation.",
    "diabetes": "Type 2 diabetes mellitus is managed with metformin, diet and exercise; HbA1c measures long-term "
    "blood glucose control.",
    "hypertension": "Hypertension is persistently high blood pressure; ACE inhibitors, thiazide diuretics and salt "
    "restriction lower it.",
    "migraine": "Migraine headaches are throbbing, one-sided and come with nausea and sensitivity to light; triptans "
    "relieve attacks.",
    "fracture": "A fractured femur needs surgical fixation with an intramedullary nail, followed by physiotherapy "
    "and weight-bearing rehabilitation.",
    "pneumonia": "Community-acquired pneumonia presents with fever, productive cough and consolidation on chest "
    "x-ray; it is treated with antibiotics such as amoxicillin.",
    "depression": "Major depressive disorder involves low mood and loss of interest; treatment combines "
    "cognitive behavioural therapy with SSRIs like sertraline.",
    "kidney": "Chronic kidney disease is staged by glomerular filtration rate; dialysis or transplantation is "
    "needed in end-stage renal failure.",
    "thyroid": "Hypothyroidism causes fatigue, weight gain and cold intolerance; levothyroxine replaces the missing "
    "thyroid hormone.",
    "pregnancy": "Antenatal care monitors the pregnancy with ultrasound scans, folic acid supplements and screening "
    "for gestational diabetes.",
    "stroke": "An ischaemic stroke causes sudden facial droop and arm weakness; thrombolysis with alteplase must be "
    "given within hours.",
    "allergy": "Anaphylaxis is a severe allergic reaction with throat swelling; intramuscular adrenaline is the "
    "first treatment.",
    "skin": "Eczema (atopic dermatitis) causes itchy, dry, inflamed skin treated with emollients and topical steroids.",
    "vaccine": "Childhood immunisation schedules include measles, mumps and rubella vaccines given as injections.",
    "cataract": "A cataract clouds the lens of the eye and blurs vision; phacoemulsification surgery replaces the "
    "lens.",
    "dental": "Tooth decay and gum disease are prevented by brushing with fluoride toothpaste and regular dental "
    "check-ups.",
    "sleep": "Obstructive sleep apnoea causes loud snoring and daytime sleepiness; CPAP machines keep the airway "
    "open at night.",
    "anemia": "Iron deficiency anaemia causes pallor and fatigue; ferritin is low and oral iron tablets restore "
    "haemoglobin.",
    "arthritis": "Rheumatoid arthritis is an autoimmune disease of swollen painful joints treated with methotrexate.",
    "covid": "COVID-19 is caused by the SARS-CoV-2 coronavirus and spreads by respiratory droplets; loss of smell "
    "is common.",
}

QUERIES = {
    "medicine for high blood pressure": "hypertension",
    "sugar levels and metformin": "diabetes",
    "wheezing and inhaler": "asthma",
    "broken thigh bone operation": "fracture",
    "feeling sad and antidepressants": "depression",
    "snoring and tired during the day": "sleep",
    "severe allergic reaction treatment": "allergy",
    "blurry vision eye surgery": "cataract",
    "one sided headache with nausea": "migraine",
    "renal failure and dialysis": "kidney",
}


async def _wait_ready(client: httpx.AsyncClient, headers: dict[str, str], ids: list[str]) -> None:
    async def all_ready() -> bool:
        page = (await client.get("/v1/documents", params={"limit": 100}, headers=headers)).json()["items"]
        states = {d["id"]: d["status"] for d in page}
        assert not any(states.get(i) == "failed" for i in ids), states
        return all(states.get(i) == "ready" for i in ids)

    await eventually(all_ready, "the corpus ready")


@pytest.fixture(scope="module")
async def corpus(client: httpx.AsyncClient, tokens: Tokens) -> tuple[uuid.UUID, dict[str, str]]:
    """One tenant holding the 20-document corpus, all ready: (tenant id, topic -> document id)."""
    tenant = (await client.post("/v1/tenants", json={"name": "Search Clinic"}, headers=tokens.platform())).json()["id"]
    headers = tokens.headers("member", uuid.UUID(tenant))
    ids = {}
    for topic, body in CORPUS.items():
        response = await upload(client, headers, body.encode(), f"{topic}.txt", metadata=json.dumps({"topic": topic}))
        ids[topic] = response.json()["id"]
    await _wait_ready(client, headers, list(ids.values()))
    return uuid.UUID(tenant), ids


async def _search(client: httpx.AsyncClient, headers: dict[str, str], **body: object) -> httpx.Response:
    return await client.post("/v1/search", json=body, headers=headers)


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
async def test_each_query_finds_its_document_in_the_top_3(
    client: httpx.AsyncClient, tokens: Tokens, corpus: tuple[uuid.UUID, dict[str, str]], mode: str
) -> None:
    tenant_id, ids = corpus
    headers = tokens.headers("viewer", tenant_id)
    for query, topic in QUERIES.items():
        response = await _search(client, headers, query=query, k=3, mode=mode)
        assert response.status_code == 200, response.text
        top = [r["document_id"] for r in response.json()["results"]]
        assert ids[topic] in top, (query, topic, [r["filename"] for r in response.json()["results"]])


async def test_response_shape_scores_and_audit(
    client: httpx.AsyncClient, tokens: Tokens, corpus: tuple[uuid.UUID, dict[str, str]], owner_engine: AsyncEngine
) -> None:
    tenant_id, _ = corpus
    query = "wheezing and inhaler"
    response = await _search(client, tokens.headers("member", tenant_id), query=query, k=5)
    body = response.json()
    assert set(body) == {"results", "took_ms"}
    results = body["results"]
    assert len(results) == 5
    assert set(results[0]) == {
        "chunk_id",
        "document_id",
        "filename",
        "chunk_index",
        "page",
        "text",
        "score",
        "metadata",
    }
    assert results[0]["filename"] == "asthma.txt"
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)

    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT actor_id, outcome, metadata FROM audit_logs "
                    "WHERE tenant_id = :t AND action = 'search.query' ORDER BY id DESC LIMIT 1"
                ),
                {"t": tenant_id},
            )
        ).one()
    assert row.actor_id == "member-user"
    assert row.outcome == "success"
    assert "query_sha256" not in row.metadata  # an HMAC under the tenant's key instead (tests/audit)
    assert len(row.metadata["query_hmac"]) == 64
    assert row.metadata["query_hmac"] != hashlib.sha256(query.encode()).hexdigest()
    assert row.metadata["k"] == 5
    assert row.metadata["mode"] == "vector"
    assert row.metadata["result_count"] == 5
    assert row.metadata["chunk_ids"] == [r["chunk_id"] for r in results]
    assert query not in json.dumps(row.metadata)


async def test_filters_document_ids_and_min_score(
    client: httpx.AsyncClient, tokens: Tokens, corpus: tuple[uuid.UUID, dict[str, str]]
) -> None:
    tenant_id, ids = corpus
    headers = tokens.headers("member", tenant_id)
    filtered = await _search(client, headers, query="treatment", k=10, filters={"topic": "stroke"})
    assert {r["document_id"] for r in filtered.json()["results"]} == {ids["stroke"]}
    only = [ids["dental"], ids["vaccine"]]
    restricted = await _search(client, headers, query="high blood pressure", k=10, document_ids=only)
    assert {r["document_id"] for r in restricted.json()["results"]} <= set(only)
    assert restricted.json()["results"]
    strict = await _search(client, headers, query="high blood pressure", k=10, min_score=0.99)
    assert strict.json()["results"] == []


async def test_another_tenant_never_sees_these_chunks(
    client: httpx.AsyncClient, tokens: Tokens, corpus: tuple[uuid.UUID, dict[str, str]]
) -> None:
    _, ids = corpus
    other = uuid.UUID(
        (await client.post("/v1/tenants", json={"name": "Other"}, headers=tokens.platform())).json()["id"]
    )
    headers = tokens.headers("admin", other)
    response = await _search(client, headers, query="high blood pressure", k=10)
    assert response.status_code == 200
    assert response.json()["results"] == []
    theirs = await _search(client, headers, query="high blood pressure", k=10, document_ids=list(ids.values()))
    assert theirs.json()["results"] == []


async def test_deleted_documents_never_appear(
    client: httpx.AsyncClient, tokens: Tokens, corpus: tuple[uuid.UUID, dict[str, str]]
) -> None:
    tenant_id, ids = corpus
    headers = tokens.headers("admin", tenant_id)
    assert (await client.delete(f"/v1/documents/{ids['covid']}", headers=headers)).status_code == 204
    try:
        response = await _search(client, headers, query="coronavirus loss of smell", k=20, mode="hybrid")
        assert ids["covid"] not in {r["document_id"] for r in response.json()["results"]}
    finally:
        assert (await client.post(f"/v1/documents/{ids['covid']}/restore", headers=headers)).status_code == 200


async def test_client_chosen_keys_are_not_echoed_in_errors(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    headers = tokens.headers("viewer", tenant_id)
    for body in (
        {"query": "ok", "Zebulon Quartermaine": 1},
        {"query": "ok", "filters": {"Zebulon Quartermaine": [1, 2]}},
    ):
        response = await client.post("/v1/search", json=body, headers=headers)
        assert response.status_code == 422
        assert "Zebulon" not in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"query": ""},
        {"query": "   \n\t "},
        {"query": "x" * 1_000_000},
        {"query": "ok", "k": 0},
        {"query": "ok", "k": 10_000},
        {"query": "ok", "document_ids": ["not-a-uuid"]},
        {"query": "ok", "mode": "keyword"},
        {"query": "ok", "filters": ["a", "b"]},
        {"query": "ok", "filters": "topic=stroke"},
        {"query": "ok", "min_score": 2},
        {"k": 3},
        {"query": "ok", "unexpected": True},
        '{"query": "ok", "filters": {"score": NaN}}',
        {"query": "ok", "filters": {"ward": "3\u0000B"}},
    ],
    ids=[
        "empty",
        "whitespace",
        "1mb",
        "k0",
        "k10000",
        "bad-uuid",
        "unknown-mode",
        "filters-list",
        "filters-string",
        "min-score",
        "no-query",
        "extra-field",
        "filter-nan",
        "filter-nul",
    ],
)
async def test_bad_search_input_is_422(
    client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID, body: dict[str, object] | str
) -> None:
    headers = {**tokens.headers("viewer", tenant_id), "Content-Type": "application/json"}
    raw = body if isinstance(body, str) else json.dumps(body)
    response = await client.post("/v1/search", content=raw, headers=headers)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"]
    assert "x" * 100 not in error["message"]
