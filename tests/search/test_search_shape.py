"""The shape of a search, not its speed: nothing slow happens inside its transaction.

The query is embedded before the transaction opens (no connection, no lock is held while the model
works), and the audit row, which holds the tenant's chain lock until commit, is its last statement."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx
import pytest

from api.app import create_app
from api.state import AppState
from core.runtime import Services
from core.settings import Settings
from embeddings.base import Embedder
from tests.harness import HashEmbedder, Tokens, database_timeline, process_database_kept

EMBEDDED = "-- the query was embedded here --"


class MarkingEmbedder(HashEmbedder):
    """An embedder that marks in the database timeline the moment it embeds a query."""

    def __init__(self, timeline: list[str]) -> None:
        self.timeline = timeline
        self.threads: set[str] = set()

    def embed_query(self, text: str) -> list[float]:
        self.timeline.append(EMBEDDED)
        self.threads.add(threading.current_thread().name)
        return super().embed_query(text)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return super().embed_documents(texts)


@dataclass
class Traced:
    http: httpx.AsyncClient
    timeline: list[str]
    embedder: MarkingEmbedder


@pytest.fixture
async def traced(settings: Settings, services: Services) -> AsyncIterator[Traced]:
    """An app whose database work and query embeddings are recorded, in order, in one timeline."""
    app = create_app(settings, services)
    with process_database_kept():
        async with app.router.lifespan_context(app):
            state: AppState = app.state.phivault
            await state.embedder  # the start-up rehearsal (search.warmup) is done: its statements are not traced
            with database_timeline(state.database.engine) as timeline:
                marking = MarkingEmbedder(timeline)
                embedder: asyncio.Future[Embedder] = asyncio.get_running_loop().create_future()
                embedder.set_result(marking)
                state.embedder = embedder
                transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
                async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                    yield Traced(http=http, timeline=timeline, embedder=marking)


def _open_transactions(timeline: list[str]) -> int:
    return sum(1 for entry in timeline if entry == "begin") - sum(
        1 for entry in timeline if entry in ("commit", "rollback")
    )


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
async def test_the_query_is_embedded_before_the_transaction_opens(
    traced: Traced, tokens: Tokens, tenant_id: uuid.UUID, mode: str
) -> None:
    headers = tokens.headers("viewer", tenant_id)
    traced.timeline.clear()
    response = await traced.http.post("/v1/search", json={"query": "wheeze at night", "mode": mode}, headers=headers)
    assert response.status_code == 200, response.text
    timeline = list(traced.timeline)
    embedded = timeline.index(EMBEDDED)
    assert _open_transactions(timeline[:embedded]) == 0, timeline[: embedded + 1]
    after = timeline[embedded + 1 :]
    assert after[0] == "begin", timeline
    committed = after.index("commit")
    assert "begin" not in after[1:committed], after  # one transaction, from the tenant check to the audit row
    assert after[committed - 1].startswith("INSERT INTO audit_logs"), after[:committed]


async def test_a_known_user_searching_again_writes_nothing_but_the_audit_row(
    traced: Traced, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    headers = tokens.headers("viewer", tenant_id, sub=f"reader-{uuid.uuid4().hex[:8]}")
    first = await traced.http.post("/v1/search", json={"query": "first"}, headers=headers)
    assert first.status_code == 200, first.text
    traced.timeline.clear()
    again = await traced.http.post("/v1/search", json={"query": "again"}, headers=headers)
    assert again.status_code == 200, again.text
    writes = [
        entry
        for entry in traced.timeline
        if entry.startswith(("INSERT", "UPDATE", "DELETE")) and "audit_logs" not in entry
    ]
    assert writes == [], writes


async def test_every_query_is_embedded_on_the_one_model_thread(
    traced: Traced, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    """Never on the default executor's threads, each of which would start its own torch thread pool."""
    headers = tokens.headers("viewer", tenant_id)
    searches = [
        traced.http.post("/v1/search", json={"query": f"night cough {i}", "mode": "vector"}, headers=headers)
        for i in range(6)
    ]
    assert all(response.status_code == 200 for response in await asyncio.gather(*searches))
    assert len(traced.embedder.threads) == 1
    assert next(iter(traced.embedder.threads)).startswith("phivault-model")
