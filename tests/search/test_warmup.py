"""No cold start: by the time `/readyz` is green, the search path has run on every pooled connection.

Checked by shape, not by time: the pool already holds `db_pool_size` connections, and every statement
of the first search comes from SQLAlchemy's compiled cache (the rehearsal ran the same statements)
over a connection that was open before the search began."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.engine.interfaces import CacheStats

from api.app import create_app
from api.state import AppState
from core.runtime import Services
from core.settings import Settings
from tests.api.test_health import ready_response
from tests.harness import Tokens, process_database_kept


async def test_the_first_search_after_readyz_runs_on_rehearsed_connections_and_statements(
    settings: Settings, services: Services, client: httpx.AsyncClient, tokens: Tokens, tenant_id: uuid.UUID
) -> None:
    headers = tokens.headers("viewer", tenant_id)
    # The user is known already (provisioned through another app), as for any search but a user's first.
    assert (await client.get("/v1/documents", headers=headers)).status_code == 200

    app = create_app(settings, services)
    with process_database_kept():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
                await ready_response(http)
                state: AppState = app.state.phivault
                engine = state.database.engine.sync_engine
                assert engine.pool.checkedin() >= settings.db_pool_size  # type: ignore[attr-defined]

                opened: list[object] = []
                compiled: list[str] = []

                def on_connect(*_: Any) -> None:
                    opened.append(object())

                def on_execute(
                    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
                ) -> None:
                    if context is not None and context.cache_hit is not CacheStats.CACHE_HIT:
                        compiled.append(statement)

                event.listen(engine, "connect", on_connect)
                event.listen(engine, "before_cursor_execute", on_execute)
                try:
                    for mode in ("vector", "hybrid"):
                        response = await http.post(
                            "/v1/search", json={"query": "first search", "mode": mode}, headers=headers
                        )
                        assert response.status_code == 200, response.text
                finally:
                    event.remove(engine, "before_cursor_execute", on_execute)
                    event.remove(engine, "connect", on_connect)
    assert opened == []
    assert compiled == [], compiled
